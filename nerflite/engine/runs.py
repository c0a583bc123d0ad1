"""Run folders: where a new run goes, and which checkpoint ``resume=true|PATH`` means.

A run lives in ``<output_root>/<name>/<date_time>/``; names sort in time order, so the newest run
of an experiment is the last folder name that holds a checkpoint.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from omegaconf import DictConfig

from nerflite.engine import checkpoint as ckpt


def new_run_dir(output_root: str, name: str) -> Path:
    return Path(output_root, name, datetime.now().strftime("%Y-%m-%d_%H-%M-%S"))


def find_resume_checkpoint(resume, output_root: str, name: str) -> Path | None:
    """``resume``: false -> None; true -> latest checkpoint of the newest run of ``name`` that has one;
    a path -> that checkpoint file, or the latest checkpoint of that run folder."""
    if resume is None or resume is False or (isinstance(resume, str) and resume.lower() in ("", "false")):
        return None
    if resume is True or (isinstance(resume, str) and resume.lower() == "true"):
        runs = sorted((p for p in Path(output_root, name).glob("*") if p.is_dir()), reverse=True)
        for run in runs:
            found = ckpt.latest(run)
            if found is not None:
                return found
        raise FileNotFoundError(f"resume=true: no run of '{name}' with a checkpoint under {Path(output_root, name)}")
    path = Path(str(resume))
    if path.is_file():
        return path
    found = ckpt.latest(path) if path.is_dir() else None
    if found is None:
        raise FileNotFoundError(f"resume={resume}: no checkpoint found there")
    return found


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
        found = find_resume_checkpoint(resume, output_root, name)
    except FileNotFoundError:
        found = None
    return str(run_dir_of_checkpoint(found) if found is not None else new_run_dir(output_root, name))
