"""Which checkpoints belong to a run: the one rule of every place that loads weights.

A run's ``config.yaml`` defines its model; a checkpoint records the config it was written with
(``state["config"]``, the resolved YAML). A checkpoint belongs to the run when

1. it holds the run's model: the same ``model.name``;
2. it was trained on the run's data: the same ``dataset.path`` (a folder of the same name
   elsewhere is taken as the same dataset, moved) and, where both name one, ``dataset.format``;
3. its tensors have the names and shapes of the run's model, i.e. the settings that define the
   architecture agree (``netwidth``, hash-grid sizes, ...); checked where the model is built.

Resume, render.py (every path, the test-view evaluation included) and the viewer load weights
through ``checker`` and ``ckpt.load_newest``, so they apply the rule alike: a checkpoint that
breaks it is refused when it was named (``ckpt=FILE``, ``resume=FILE``: one line naming the
checkpoint and the run) and skipped with a warning when the newest one is picked automatically,
as a damaged one is. Other settings that differ (``model.n_samples`` changed by a resume, say)
do not make it foreign: a warning names them, and the run's own settings are used.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nerflite.engine import checkpoint as ckpt

RUNTIME_KEYS = {"model.chunk", "model.netchunk", "model.compile", "model.amp"}  # how a model runs, not what it is
SHOW_DIFFERENCES = 3  # settings named in a warning
ADVICE = "pass a checkpoint of this run"


class RunError(FileNotFoundError):
    """A run folder, or the run ``resume`` names, that is missing or holds no usable checkpoint."""


class ForeignCheckpoint(ckpt.CheckpointError):
    """A checkpoint of another run: the message names the checkpoint, the run and what differs."""

    def __init__(self, path: str | Path, problem: str):
        super().__init__(path, problem)
        self.args = (f"{path}: {problem}: {ADVICE}",)

    def __str__(self) -> str:
        return self.args[0]


@dataclass
class RunRef:
    run_dir: Path  # the run folder
    config: DictConfig  # its own config (config.yaml, as written by the run)
    source: Path  # that file


def read_config(path: Path) -> DictConfig:
    """A run's config file; ``ValueError`` (one line) when it is not one."""
    try:
        loaded = OmegaConf.load(path)
    except Exception as e:  # noqa: BLE001  (yaml's parser errors have no common base we can name)
        raise ValueError(f"{path}: not a readable config ({str(e).splitlines()[0]})") from e
    if not isinstance(loaded, DictConfig) or "model" not in loaded or "dataset" not in loaded:
        raise ValueError(f"{path}: not a run's config (no dataset / model section)")
    return loaded


def run_ref(run_dir: str | Path) -> RunRef | None:
    """The run folder and its config.yaml, which defines the run's model; None without one (the
    checkpoint's own config then stands for the run)."""
    path = Path(run_dir) / "config.yaml"
    return RunRef(Path(run_dir), read_config(path), path) if path.is_file() else None


def recorded_config(state: dict, path: str | Path) -> DictConfig:
    """The config a checkpoint records (``CheckpointError`` when it has no readable one)."""
    try:
        cfg = OmegaConf.create(state["config"])
    except Exception as e:  # noqa: BLE001  (yaml's parser errors)
        raise ckpt.CheckpointError(path, f"its config is not readable ({str(e).splitlines()[0]})") from e
    if not isinstance(cfg, DictConfig) or "model" not in cfg or "dataset" not in cfg:
        raise ckpt.CheckpointError(path, "its config has no dataset / model section")
    return cfg


def _model_name(cfg: DictConfig) -> str:
    return str(cfg.model.get("name", "?"))


def _same_dataset(a: DictConfig, b: DictConfig) -> bool:
    pa, pb = Path(str(a.get("path", ""))), Path(str(b.get("path", "")))
    same_folder = pa.resolve() == pb.resolve() or (pa.name != "" and pa.name == pb.name)
    fa, fb = str(a.get("format", "auto")), str(b.get("format", "auto"))
    return same_folder and (fa == fb or "auto" in (fa, fb))


def _flat(node, prefix: str) -> dict[str, object]:
    plain = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node
    if not isinstance(plain, dict):
        return {prefix: plain}
    out: dict[str, object] = {}
    for k, v in plain.items():
        out.update(_flat(v, f"{prefix}.{k}"))
    return out


def differences(theirs: DictConfig, mine: DictConfig) -> list[str]:
    """``key: A in the checkpoint, B in the run`` for each model / dataset setting that differs
    (dataset.path and the keys of ``RUNTIME_KEYS`` left out)."""
    out = []
    for section in ("model", "dataset"):
        a, b = _flat(theirs.get(section), section), _flat(mine.get(section), section)
        for key in sorted(set(a) | set(b)):
            if key in RUNTIME_KEYS or key == "dataset.path" or a.get(key, "(none)") == b.get(key, "(none)"):
                continue
            out.append(f"{key}: {a.get(key, '(none)')} in the checkpoint, {b.get(key, '(none)')} in the run")
    return out


def _few(items: list[str]) -> str:
    more = f"; {len(items) - SHOW_DIFFERENCES} more" if len(items) > SHOW_DIFFERENCES else ""
    return "; ".join(items[:SHOW_DIFFERENCES]) + more


def foreign_problem(state: dict, path: str | Path, run: RunRef, model=None) -> str | None:
    """Why the checkpoint at ``path`` is not one of ``run`` (rules 1-3 of the module docstring;
    3 only with the run's ``model`` built), or None when it is."""
    theirs, mine = recorded_config(state, path), run.config
    if _model_name(theirs) != _model_name(mine):
        return (f"holds a model={_model_name(theirs)}, but run {run.run_dir} is model={_model_name(mine)} "
                f"(its {run.source.name})")
    if not _same_dataset(theirs.dataset, mine.dataset):
        return f"was trained on {theirs.dataset.get('path')}, but run {run.run_dir} on {mine.dataset.get('path')}"
    what = None if model is None else ckpt.state_mismatch(model, state["model"])
    if what is not None:
        diffs = [d for d in differences(theirs, mine) if d.startswith("model.")]
        because = f"; other model settings: {_few(diffs)}" if diffs else ""
        return f"does not fit the model of run {run.run_dir} (model={_model_name(mine)}): {what}{because}"
    return None


def checker(run: RunRef | None, model=None, warn: Callable[[str], None] = print) -> Callable[[Path, dict], None] | None:
    """The ``check`` of ``ckpt.load_newest`` for ``run`` (None without a run config): raises
    ``ForeignCheckpoint`` for a checkpoint of another run; warns when other settings differ."""
    if run is None:
        return None

    def check(path: Path, state: dict) -> None:
        problem = foreign_problem(state, path, run, model)
        if problem is not None:
            raise ForeignCheckpoint(path, problem)
        diffs = differences(recorded_config(state, path), run.config)
        if diffs:
            warn(f"warning: checkpoint {path} was written with other settings than run {run.run_dir} "
                 f"({_few(diffs)}): using the run's ({run.source.name})")

    return check


# ------------------------------------------------------------------------------------------------
# The config a run is opened with


def run_config(state: dict, path: Path, dataset_path: str | None = None) -> DictConfig:
    """The config a checkpoint records, with ``dataset_path`` (a dataset that moved) put in."""
    return with_dataset(recorded_config(state, path), str(path), dataset_path)


def with_dataset(cfg: DictConfig, source: str, dataset_path: str | None = None) -> DictConfig:
    """A copy of ``cfg`` with ``dataset_path`` (a dataset that moved) put in, its dataset checked to exist."""
    cfg = copy.deepcopy(cfg)
    if dataset_path:
        cfg.dataset.path = str(Path(dataset_path).resolve())
    check_dataset(cfg, source, "dataset_path")
    return cfg


def check_dataset(cfg: DictConfig, source: str, key: str) -> None:
    """``RunError`` when the run's dataset folder is gone (a generated synthetic scene is remade instead)."""
    if cfg.dataset.get("synthetic") is not None:
        return
    data = Path(str(cfg.dataset.path))
    if not data.exists():
        raise RunError(
            f"dataset {data} (the run's dataset.path, from {source}) does not exist: if it moved, pass {key}=NEW_FOLDER"
        )
