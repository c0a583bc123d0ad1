import os
import subprocess
import sys
from pathlib import Path

import pytest
from omegaconf import DictConfig, OmegaConf

from nerflite.engine import checkpoint as ckpt
from nerflite.engine.runs import (
    RunError,
    find_resume,
    find_resume_checkpoint,
    hydra_run_dir,
    list_runs,
    open_run,
    resume_config,
    run_config,
    saved_config,
)
from tests.app.helpers import TINY_NERF, TINY_RUN, compose_config

REPO = Path(__file__).resolve().parents[2]


def _run_with_checkpoints(root: Path, name: str, stamp: str, steps: list[int]) -> Path:
    run = root / name / stamp
    for step in steps:
        ckpt.save_checkpoint(run, step, {"x": 0})
    return run


def test_resume_finds_the_newest_run_with_a_checkpoint(tmp_path):
    old = _run_with_checkpoints(tmp_path, "lego", "2026-01-01_10-00-00", [10, 20])
    (tmp_path / "lego" / "2026-01-02_10-00-00").mkdir()  # newer, but crashed before any checkpoint
    assert find_resume_checkpoint(True, str(tmp_path), "lego") == old / "checkpoints" / ckpt.checkpoint_name(20)
    assert find_resume_checkpoint("true", str(tmp_path), "lego") == old / "checkpoints" / ckpt.checkpoint_name(20)
    assert find_resume_checkpoint(False, str(tmp_path), "lego") is None
    assert find_resume_checkpoint(str(old), str(tmp_path), "other").name == ckpt.checkpoint_name(20)
    given = old / "checkpoints" / ckpt.checkpoint_name(10)
    assert find_resume_checkpoint(str(given), str(tmp_path), "x") == given
    with pytest.raises(FileNotFoundError, match="no run of 'fern'"):
        find_resume_checkpoint(True, str(tmp_path), "fern")
    # Hydra's run folder: the resumed run's own, else a new dated one.
    assert hydra_run_dir(str(tmp_path), "lego", True) == str(old)
    fresh = Path(hydra_run_dir(str(tmp_path), "lego", False))
    assert fresh.parent == tmp_path / "lego" and fresh.name[:2] == "20" and not fresh.exists()


def test_multirun_sweep_trains_each_job_in_its_own_folder(tiny_scene, tmp_path):
    args = [
        f"dataset.path={tiny_scene('blender')}",
        f"output_root={tmp_path}",
        *TINY_NERF,
        *TINY_RUN,
        "trainer.steps=1",
        "trainer.final_eval_images=1",
    ]
    proc = subprocess.run(
        [sys.executable, "train.py", "-m", "seed=0,1", *args], cwd=REPO, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    jobs = sorted(p for p in (tmp_path / "synthetic_nerf").glob("multirun_*/*") if p.is_dir())
    assert [j.name for j in jobs] == ["0", "1"]
    for seed, job in enumerate(jobs):
        assert f"seed={seed}" in (job / ".hydra" / "overrides.yaml").read_text()
        assert "seed: " + str(seed) in (job / "config.yaml").read_text()
        assert ckpt.latest(job).name == ckpt.checkpoint_name(1)


def test_resume_true_finds_multirun_jobs_newest_first(tmp_path):
    single = _run_with_checkpoints(tmp_path, "lego", "2026-01-01_10-00-00", [5])
    job0 = _run_with_checkpoints(tmp_path, "lego", "multirun_2026-01-02_10-00-00/0", [5])
    job1 = _run_with_checkpoints(tmp_path, "lego", "multirun_2026-01-02_10-00-00/1", [5])
    (tmp_path / "lego" / "multirun_2026-01-03_10-00-00" / "0").mkdir(parents=True)  # newer, no checkpoint yet
    assert list_runs(str(tmp_path), "lego") == [
        tmp_path / "lego" / "multirun_2026-01-03_10-00-00" / "0",
        job1,
        job0,
        single,
    ]
    target = find_resume(True, str(tmp_path), "lego")
    assert target.run_dir == job1 and target.checkpoints == [job1 / "checkpoints" / ckpt.checkpoint_name(5)]
    assert hydra_run_dir(str(tmp_path), "lego", True) == str(job1)
    assert find_resume(True, str(tmp_path), "lego", sweep_job=0).run_dir == job0  # job 0 of a multirun: its own
    with pytest.raises(RunError, match="no job 2 of a multirun of 'lego'"):
        find_resume(True, str(tmp_path), "lego", sweep_job=2)
    later = _run_with_checkpoints(tmp_path, "lego", "2026-01-04_10-00-00", [1, 2])
    target = find_resume("true", str(tmp_path), "lego")
    assert target.run_dir == later and [p.name for p in target.checkpoints] == [
        ckpt.checkpoint_name(2),
        ckpt.checkpoint_name(1),
    ]
    with pytest.raises(RunError, match="no such run folder"):
        find_resume(str(tmp_path / "nothing"), str(tmp_path), "lego")
    with pytest.raises(RunError, match="no checkpoint there"):
        find_resume(str(tmp_path / "lego" / "multirun_2026-01-03_10-00-00" / "0"), str(tmp_path), "lego")


def _saved(scene) -> DictConfig:
    """A run's config.yaml as the trainer writes it (resolved)."""
    cfg = compose_config(["dataset=blender", f"dataset.path={scene}", *TINY_NERF, *TINY_RUN])
    return OmegaConf.create(OmegaConf.to_yaml(cfg, resolve=True))


def test_resume_config_applies_only_the_given_overrides(tiny_scene):
    scene = tiny_scene("blender")
    saved = _saved(scene)
    cfg, applied, ignored = resume_config(
        saved,
        [f"dataset.path={scene}", "experiment=lego", "model=nerf", "resume=true", "trainer.steps=50",
         "model.chunk=128", "trainer.lr=1e-3"],
    )  # fmt: skip
    assert applied == ["trainer.steps=50", "model.chunk=128", "trainer.lr=1e-3"]  # unchanged values are dropped
    assert ignored == ["experiment=lego"]  # a group choice: the run's config holds its values
    assert cfg.trainer.steps == 50 and cfg.model.chunk == 128 and cfg.trainer.lr == 1e-3 and cfg.resume is True
    assert cfg.model.netwidth == 16 and cfg.datamanager.rays_per_batch == 64  # the run's own, not the defaults
    assert saved.trainer.steps == 6  # the saved config is untouched
    relative = os.path.relpath(scene)  # the original command repeated from the current folder
    assert resume_config(saved, [f"dataset.path={relative}"])[1] == []
    cfg, applied, _ = resume_config(saved, ["~trainer.grad_clip"])
    assert applied == ["~trainer.grad_clip"] and cfg.trainer.grad_clip == 0.0  # deleted: back to the default

    with pytest.raises(ValueError, match=r"resume: model=neus would change the run's model \(nerf\)"):
        resume_config(saved, ["model=neus"])
    with pytest.raises(ValueError, match=r"resume: seed=4 would change the run's random streams"):
        resume_config(saved, ["seed=4"])
    with pytest.raises(ValueError, match=r"config.yaml: key trainer.steps"):
        resume_config(saved, ["trainer.steps=many"])


def test_open_run_names_what_is_wrong(tmp_path, tiny_scene):
    with pytest.raises(RunError, match=r"run=.*nowhere: no such run folder"):
        open_run(tmp_path / "nowhere", None)
    (tmp_path / "file").write_text("x")
    with pytest.raises(RunError, match="not a folder"):
        open_run(tmp_path / "file", None)
    with pytest.raises(RunError, match="no checkpoint in"):
        open_run(tmp_path, None)
    # A run whose newest checkpoint is truncated opens its previous one, saying so.
    saved = _saved(tiny_scene("blender"))
    state = {"model": {}, "config": OmegaConf.to_yaml(saved)}
    run = tmp_path / "run"
    for step in (1, 2):
        ckpt.save_checkpoint(run, step, state)
    newest = ckpt.latest(run)
    newest.write_bytes(newest.read_bytes()[:100])
    path, loaded = open_run(run, None)
    assert path.name == ckpt.checkpoint_name(1) and loaded["step"] == 1
    cfg = run_config(loaded, path)
    assert cfg.model.netwidth == 16
    # Resuming reads the run's config.yaml; without one, the copy inside the checkpoint.
    (run / "config.yaml").write_text(OmegaConf.to_yaml(OmegaConf.merge(saved, {"seed": 7})))
    assert saved_config(run, loaded, path)[0].seed == 7
    (run / "config.yaml").unlink()
    from_ckpt, source = saved_config(run, loaded, path)
    assert source == path and from_ckpt.model.netwidth == 16 and from_ckpt.seed == 0
    (run / "config.yaml").write_text("model: [unclosed\n")
    with pytest.raises(ValueError, match=r"config.yaml: not a readable config"):
        saved_config(run, loaded, path)
    # The dataset moved: named, with the key that fixes it.
    loaded["config"] = OmegaConf.to_yaml(OmegaConf.merge(saved, {"dataset": {"path": str(tmp_path / "gone")}}))
    with pytest.raises(RunError, match=r"gone \(the run's dataset.path.*dataset_path=NEW_FOLDER"):
        run_config(loaded, path)
    assert run_config(loaded, path, dataset_path=str(tiny_scene("blender"))).dataset.path == str(tiny_scene("blender"))


@pytest.mark.slow  # two sweeps of two jobs in subprocesses
def test_multirun_resume_continues_each_job_in_its_own_folder(tiny_scene, tmp_path):
    args = [f"dataset.path={tiny_scene('blender')}", f"output_root={tmp_path}", *TINY_NERF, *TINY_RUN]
    first = subprocess.run(
        [sys.executable, "train.py", "-m", "seed=0,1", *args, "trainer.steps=1", "trainer.final_eval_images=1"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr[-2000:]
    again = subprocess.run(
        [sys.executable, "train.py", "-m", "seed=0,1", f"output_root={tmp_path}", "resume=true", "trainer.steps=2"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert again.returncode == 0, again.stderr[-2000:]
    jobs = sorted(p for p in (tmp_path / "synthetic_nerf").glob("multirun_*/*") if p.is_dir() and ckpt.latest(p))
    assert [j.name for j in jobs] == ["0", "1"]  # the second sweep made no new job folders with checkpoints
    for seed, job in enumerate(jobs):
        assert ckpt.latest(job).name == ckpt.checkpoint_name(2)
        assert f"resuming {job} from {ckpt.checkpoint_name(1)}" in again.stdout
        assert ckpt.load_checkpoint(ckpt.latest(job))["datamanager"]["seed"] == seed
