"""Run folders: where a new run goes, which run ``resume=true|PATH`` means, and its config on resume.

A run lives in ``<output_root>/<name>/<date_time>/``, or, for a job of a Hydra multirun, in
``<output_root>/<name>/multirun_<date_time>/<job_num>/``. Folder names sort in time order, so the
newest run of an experiment is the one with the latest date (then the highest job number) that
holds a checkpoint.

A resumed run keeps its own configuration: the run's ``config.yaml`` with only the overrides given
on the resuming command line applied (``resume_config``); overrides that would change what the
checkpoint holds (another model, another seed) are refused.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from nerflite.engine import checkpoint as ckpt
from nerflite.engine.config import TrainConfig
from nerflite.engine.ownership import (
    RunError,
    RunRef,
    check_dataset,
    checker,
    read_config,
    run_config,
    run_ref,
    with_dataset,
)

MULTIRUN_PREFIX = "multirun_"  # hydra.sweep.dir of conf/config.yaml
_QUIET_KEYS = {"resume"}  # applied on resume without being reported
_REFUSED_KEYS = {"seed": "the run's random streams"}  # overrides a resumed run cannot take


@dataclass
class ResumeTarget:
    run_dir: Path  # the run to continue
    checkpoints: list[Path]  # its checkpoints, newest first (just one when a file was named)


def new_run_dir(output_root: str, name: str) -> Path:
    return Path(output_root, name, datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))


def list_runs(output_root: str, name: str) -> list[Path]:
    """Every run folder of ``name``, single runs and multirun jobs alike, newest first."""
    root = Path(output_root, name)
    found = []
    for folder in (p for p in root.glob("*") if p.is_dir()):
        if folder.name.startswith(MULTIRUN_PREFIX):
            stamp = folder.name[len(MULTIRUN_PREFIX) :]
            found += [((stamp, _job_num(job)), job) for job in folder.iterdir() if job.is_dir()]
        else:
            found.append(((folder.name, -1), folder))
    return [run for _, run in sorted(found, key=lambda item: item[0], reverse=True)]


def _job_num(job: Path) -> int:
    return int(job.name) if job.name.isdigit() else -1


def find_resume(resume, output_root: str, name: str, sweep_job: int | None = None) -> ResumeTarget | None:
    """``resume``: false -> None; true -> the newest run of ``name`` with a checkpoint (in job
    ``sweep_job`` of a multirun: the newest sweep's job of that number); a path -> that checkpoint
    file, or that run folder. ``RunError`` (one line) when there is nothing to resume."""
    if resume is None or resume is False or (isinstance(resume, str) and resume.lower() in ("", "false")):
        return None
    if resume is True or (isinstance(resume, str) and resume.lower() == "true"):
        runs = list_runs(output_root, name)
        if sweep_job is not None:
            runs = [r for r in runs if r.parent.name.startswith(MULTIRUN_PREFIX) and r.name == str(sweep_job)]
        for run in runs:
            found = _checkpoints_newest_first(run)
            if found:
                return ResumeTarget(run, found)
        which = f"job {sweep_job} of a multirun of '{name}'" if sweep_job is not None else f"run of '{name}'"
        raise RunError(f"resume=true: no {which} with a checkpoint under {Path(output_root, name)}")
    path = Path(str(resume))
    if path.is_file():
        return ResumeTarget(run_dir_of_checkpoint(path), [path])
    if not path.exists():
        raise RunError(f"resume={resume}: no such run folder or checkpoint file")
    found = _checkpoints_newest_first(path)
    if not found:
        raise RunError(f"resume={resume}: no checkpoint there (expected {path / ckpt.CKPT_DIR}/step_*.pt)")
    return ResumeTarget(run_dir_of_checkpoint(found[0]), found)


def _checkpoints_newest_first(run: Path) -> list[Path]:
    folder = run / ckpt.CKPT_DIR if (run / ckpt.CKPT_DIR).is_dir() else run
    return ckpt.list_checkpoints(folder)[::-1]


def find_resume_checkpoint(resume, output_root: str, name: str) -> Path | None:
    """The newest checkpoint of what ``resume`` names (see ``find_resume``), or None."""
    target = find_resume(resume, output_root, name)
    return target.checkpoints[0] if target is not None else None


def sweep_job() -> int | None:
    """This job's number when running as a job of a Hydra multirun, else None."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        hc = HydraConfig.get()
        return int(hc.job.num) if hc.mode == RunMode.MULTIRUN else None
    except (ValueError, ImportError):
        return None


def run_dir_of_checkpoint(path: Path) -> Path:
    return path.parent.parent if path.parent.name == ckpt.CKPT_DIR else path.parent


def default_run_dir(cfg: DictConfig) -> Path:
    """Hydra's run folder when running under Hydra, else <output_root>/<name>/<date_time>."""
    try:
        from hydra.core.hydra_config import HydraConfig

        return Path(HydraConfig.get().runtime.output_dir)
    except (ValueError, ImportError):
        return new_run_dir(cfg.output_root, cfg.name)


def hydra_run_dir(output_root: str, name: str, resume) -> str:
    """``hydra.run.dir`` (the ``nerflite_run_dir`` resolver of conf/config.yaml): the resumed run's own
    folder with ``resume``, else a new one. A resume target that does not exist is left for
    ``train()`` to report."""
    try:
        target = find_resume(resume, output_root, name)
    except FileNotFoundError:
        target = None
    return str(target.run_dir if target is not None else new_run_dir(output_root, name))


# ------------------------------------------------------------------------------------------------
# The config of a resumed run


def saved_config(run_dir: Path, state: dict, checkpoint: Path) -> tuple[DictConfig, Path]:
    """The run's own config (its config.yaml, else the copy inside the checkpoint) and where it came from."""
    path = Path(run_dir) / "config.yaml"
    if path.is_file():
        return read_config(path), path
    loaded = OmegaConf.create(state.get("config") or {})
    if not isinstance(loaded, DictConfig) or "model" not in loaded or "dataset" not in loaded:
        raise ValueError(f"{checkpoint}: not a run's config (no dataset / model section)")
    return loaded, checkpoint


def resume_config(saved: DictConfig, overrides: Sequence[str], source: str | Path = "config.yaml"):
    """(config, applied, ignored): the run's ``saved`` config with the key overrides of a command line applied,
    validated against the schema. Overrides equal to the saved value are dropped; a config group
    choice is ignored (listed in ``ignored``) unless it names another model (refused, as is another
    seed); ``applied`` lists the rest as given (e.g. ``trainer.steps=5000``). A refusal or a bad
    value: a one-line ``ValueError``."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    cfg = OmegaConf.create(OmegaConf.to_container(saved, resolve=True))
    applied, ignored = [], []
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key, line = o.key_or_group, o.input_line
        if key.startswith("hydra") or o.package is not None:
            continue
        if _is_group(cfg, key, o):
            if key == "model" and str(o.value()) != str(cfg.model.get("name")):
                raise ValueError(
                    f"resume: {line} would change the run's model ({cfg.model.get('name')}); "
                    "the checkpoint holds that model's weights: start a new run (resume=false) instead"
                )
            if key != "model":
                ignored.append(line)
            continue
        if o.is_delete():
            if OmegaConf.select(cfg, key, default=None) is not None:
                _delete(cfg, key)
                applied.append(line)
            continue
        value = o.value()
        current = OmegaConf.select(cfg, key, default=_Absent)
        if current is not _Absent and (_plain(current) == value or _same_path(key, current, value)):
            continue
        if key in _REFUSED_KEYS:
            raise ValueError(
                f"resume: {line} would change {_REFUSED_KEYS[key]} (the run has {key}={current}); "
                "start a new run (resume=false) for that"
            )
        OmegaConf.update(cfg, key, value, merge=False, force_add=True)
        if key not in _QUIET_KEYS:
            applied.append(line)
    try:
        typed = OmegaConf.merge(OmegaConf.structured(TrainConfig), cfg)
    except Exception as e:  # noqa: BLE001  (omegaconf's validation errors)
        key = getattr(e, "full_key", "") or "?"
        raise ValueError(f"{source}: key {key}: {str(e).splitlines()[0]}") from e
    return typed, applied, ignored


class _Absent:
    """Marks a key the saved config does not have."""


def _is_group(cfg: DictConfig, key: str, o) -> bool:
    """A config group choice (``model=neus``, ``experiment=lego``, ``hydra/launcher=...``), not a key."""
    if "/" in key:
        return True
    if "." in key:
        return False
    return key not in cfg or (OmegaConf.is_dict(cfg[key]) and not isinstance(o.value(), dict))


def _same_path(key: str, current, value) -> bool:
    """``dataset.path`` given relative on the command line, recorded absolute by the run."""
    return key == "dataset.path" and isinstance(value, str) and Path(value).resolve() == Path(str(current)).resolve()


def _plain(value):
    return OmegaConf.to_container(value, resolve=True) if OmegaConf.is_config(value) else value


def _delete(cfg: DictConfig, key: str) -> None:
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(cfg, parent) if parent else cfg
    del node[leaf]


# ------------------------------------------------------------------------------------------------
# Opening a run: for resuming and for rendering


@dataclass
class Resumed:
    path: Path  # the checkpoint that loaded (the newest one that does and belongs to the run)
    state: dict  # its contents
    config: DictConfig | None  # the run's own config with the given overrides (None: none were given)
    applied: list[str]  # the overrides applied to it
    run: RunRef | None = None  # the run's config.yaml, which its checkpoints must match (None: none)
    rest: tuple = ()  # (older checkpoints, map_location, warn): where to look when the tensors do not fit

    @property
    def model_hint(self) -> str:
        """The end of the message when the checkpoint does not fit the model: the model overrides given."""
        changed = [o for o in self.applied if o.startswith("model.")]
        return f"; the overrides {' '.join(changed)} change the model: resume without them" if changed else ""

    def fit(self, model) -> tuple[Path, dict]:
        """(path, state) of the newest checkpoint whose tensors also fit the run's ``model``: the one
        loaded, or an older one when it was picked automatically (skipped ones reported). Model
        overrides that change the tensors, or a named file, are left for ``check_model_state`` to report."""
        older, map_location, warn = self.rest or ((), "cpu", warn_stderr)
        if self.model_hint or not older or ckpt.state_mismatch(model, self.state["model"]) is None:
            return self.path, self.state
        warn(f"warning: skipping checkpoint {self.path}: does not fit the run's model "
             f"({ckpt.state_mismatch(model, self.state['model'])})")
        return ckpt.load_newest(list(older), map_location, ckpt.RESUME_KEYS, warn, check=checker(self.run, model, warn))


def warn_stderr(line: str) -> None:
    print(line, file=sys.stderr)


def load_resume(target: ResumeTarget, overrides: Sequence[str] | None, map_location="cpu", verbose=True) -> Resumed:
    """The newest checkpoint of ``target`` that loads and belongs to the run (skipped ones reported;
    ``nerflite.engine.ownership``) and, when ``overrides`` is given (a command line's), the run's own
    config with them applied (``resume_config``)."""
    say = print if verbose else (lambda line: None)
    warn = warn_stderr if verbose else say
    run = run_ref(target.run_dir)
    check = checker(run, None, warn)  # model and dataset; the tensors once the model is built (Resumed.fit)
    path, state = ckpt.load_newest(target.checkpoints, map_location, ckpt.RESUME_KEYS, warn, check=check)
    older = target.checkpoints[target.checkpoints.index(path) + 1 :]
    if overrides is None:
        return Resumed(path, state, None, [], run, (older, map_location, warn))
    saved, source = saved_config(target.run_dir, state, path)
    cfg, applied, ignored = resume_config(saved, overrides, source)
    if ignored:
        say(f"resume: ignoring {' '.join(ignored)} (config groups: the run's own config holds its choices)")
    if applied:
        say(f"resume: applying overrides {' '.join(applied)}")
    check_dataset(cfg, f"{source}", "dataset.path")
    return Resumed(path, state, cfg, applied, run, (older, map_location, warn))


def run_checkpoints(run: str | Path, ckpt_path: str | Path | None) -> list[Path]:
    """The checkpoints to try for a run folder, newest first: ``ckpt_path`` alone when given. One-line
    ``RunError`` naming the folder when it is missing or holds none."""
    if ckpt_path:
        return [Path(ckpt_path)]
    run = Path(run)
    if not run.exists():
        raise RunError(f"run={run}: no such run folder")
    if not run.is_dir():
        raise RunError(f"run={run}: not a folder (give the run folder, or its checkpoint as ckpt=FILE)")
    found = _checkpoints_newest_first(run)
    if not found:
        raise RunError(
            f"run={run}: no checkpoint in {run / ckpt.CKPT_DIR} (not a run folder, or the run stopped before "
            "writing one)"
        )
    return found


def open_run(run: str | Path, ckpt_path: str | Path | None, map_location="cpu", check=None) -> tuple[Path, dict]:
    """(checkpoint, its state) of a run folder to render: ``ckpt_path`` as given, else the newest
    checkpoint of ``run`` that loads (skipped ones reported); ``check`` as in ``ckpt.load_newest``
    (``ownership.checker``). One-line errors naming the folder or file."""
    return ckpt.load_newest(run_checkpoints(run, ckpt_path), map_location, ckpt.MODEL_KEYS, warn_stderr, check=check)


__all__ = ["RunError", "check_dataset", "run_config", "with_dataset"]  # (from ownership, for callers of this module)
