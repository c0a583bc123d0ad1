"""What users see when something is wrong: the real entry points in a subprocess end in ONE
``error: ...`` line naming the file or key, a non-zero exit status and no traceback."""

from __future__ import annotations

import os
import pickle
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from nerflite.engine import checkpoint as ckpt
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_NERF, TINY_RUN, compose_config

REPO = Path(__file__).resolve().parents[2]


def run_cli(script: str, *args: str, debug: bool = False) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    env.pop("NERFLITE_DEBUG", None)
    if debug:
        env["NERFLITE_DEBUG"] = "1"
    return subprocess.run(
        [sys.executable, script, *args], cwd=REPO, capture_output=True, text=True, timeout=300, env=env
    )


def error_line(proc: subprocess.CompletedProcess, *fragments: str) -> str:
    """The one error line of a failed command, checked to hold every fragment."""
    assert proc.returncode == 1, (proc.returncode, proc.stderr[-3000:])
    for noise in ("Traceback", "HYDRA_FULL_ERROR", "Error executing job"):
        assert noise not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, proc.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A finished tiny run (checkpoints at steps 3 and 6) and its scene, made once; tests copy it."""
    from nerflite.data.synthetic import generate

    root = tmp_path_factory.mktemp("errors")
    scene = root / "scene"
    generate("blender", scene, views=8, size=24, seed=0)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        cfg = compose_config(
            ["dataset=blender", f"dataset.path={scene}", f"output_root={root / 'out'}", *TINY_NERF, *TINY_RUN]
        )
        run = train(cfg).run_dir
    finally:
        torch.set_num_threads(threads)
    return run, scene


@pytest.fixture
def run_copy(trained, tmp_path):
    run, _ = trained
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    return copy


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # a copy or disk fault


# ------------------------------------------------------------------------------------------------
# Config


def test_config_value_out_of_range_is_one_line(trained, tmp_path):
    _, scene = trained
    proc = run_cli(
        "train.py", f"dataset.path={scene}", f"output_root={tmp_path}", *TINY_NERF, *TINY_RUN,
        "datamanager.rays_per_batch=0",
    )  # fmt: skip
    error_line(proc, "rays_per_batch must be >= 1, got 0")


@pytest.mark.parametrize(
    "override, fragments",
    [
        ("trainer.stepz=10", ["trainer.stepz", "Key 'stepz' not in 'TrainerConfig'"]),
        pytest.param("trainer.steps=many", ["trainer.steps", "converted to Integer"], marks=pytest.mark.slow),
        pytest.param("dataset=nosuch", ["dataset/nosuch", "blender, colmap, llff, neus, synthetic, transforms"],
                     marks=pytest.mark.slow),
        pytest.param("trainer.steps=[1", ["bad override 'trainer.steps=[1'"], marks=pytest.mark.slow),
    ],
)
def test_bad_config_key_type_or_option_is_one_line(override, fragments, tmp_path):
    error_line(run_cli("train.py", override, f"output_root={tmp_path}"), *fragments)
    assert not any(tmp_path.iterdir())  # stopped before any run folder was made


def test_debug_switch_shows_the_traceback(tmp_path):
    proc = run_cli("render.py", f"run={tmp_path / 'none'}", debug=True)
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "RunError" in proc.stderr


# ------------------------------------------------------------------------------------------------
# Damaged and foreign checkpoints


def test_resume_and_render_skip_a_truncated_newest_checkpoint(run_copy, tmp_path):
    newest = run_copy / "checkpoints" / ckpt.checkpoint_name(6)
    truncate(newest)
    proc = run_cli("train.py", f"resume={run_copy}", "trainer.steps=7", "trainer.eval_every=0")
    assert proc.returncode == 0, proc.stderr[-3000:]
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and str(newest) in warnings[0] and "damaged or truncated" in warnings[0]
    assert f"from {ckpt.checkpoint_name(3)} (step 3)" in proc.stdout
    assert "resume: applying overrides trainer.steps=7 trainer.eval_every=0" in proc.stdout
    assert ckpt.load_checkpoint(run_copy / "checkpoints" / ckpt.checkpoint_name(7))["step"] == 7

    (run_copy / "checkpoints" / ckpt.checkpoint_name(7)).unlink()  # render.py falls back the same way
    truncate(newest)  # (the resumed run wrote step 6 again)
    out = tmp_path / "orbit"
    proc = run_cli("render.py", f"run={run_copy}", "path=orbit", "frames=1", "video=false", f"out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "warning: skipping checkpoint" in proc.stderr and ckpt.checkpoint_name(3) in proc.stdout
    assert len(list((out / "rgb").glob("*.png"))) == 1


@pytest.mark.slow  # several subprocesses; the same checks run in-process in test_runs / test_checkpoint
def test_no_checkpoint_loads_is_one_line(run_copy):
    for path in ckpt.list_checkpoints(run_copy / "checkpoints"):
        truncate(path)
    names = [ckpt.checkpoint_name(6), ckpt.checkpoint_name(3)]
    error_line(run_cli("train.py", f"resume={run_copy}"), "no checkpoint loads", *names)
    error_line(run_cli("render.py", f"run={run_copy}"), "no checkpoint loads", *names)


def test_checkpoint_with_a_pickled_object_is_refused_in_one_line(run_copy):
    path = run_copy / "checkpoints" / ckpt.checkpoint_name(6)
    state = torch.load(path, weights_only=True)
    torch.save({**state, "extra": Path("/tmp")}, path)  # a pickled object: weights_only refuses it
    error_line(run_cli("render.py", f"run={run_copy}", f"ckpt={path}"), str(path), "refused", "pathlib")
    error_line(run_cli("train.py", f"resume={path}"), str(path), "refused", "weights_only")


@pytest.mark.slow  # several subprocesses; the same checks run in-process in test_runs / test_checkpoint
@pytest.mark.parametrize(
    "content, problem",
    [(b"", "empty file"), (b"name: not a checkpoint\n", "not a PyTorch checkpoint"), ("dict", "missing step")],
)
def test_ckpt_pointing_at_a_non_checkpoint_is_one_line(run_copy, tmp_path, content, problem):
    path = tmp_path / "weights.pt"
    if content == "dict":
        torch.save({"weights": torch.zeros(3)}, path)  # a tensor file, not a nerflite checkpoint
    else:
        path.write_bytes(content)
    error_line(run_cli("render.py", f"run={run_copy}", f"ckpt={path}"), str(path), problem)


# ------------------------------------------------------------------------------------------------
# Run folders


@pytest.mark.slow  # several subprocesses; the same checks run in-process in test_runs / test_checkpoint
def test_render_bad_run_folders_are_one_line(run_copy, tmp_path):
    error_line(run_cli("render.py"), "run: missing")
    error_line(run_cli("render.py", f"run={tmp_path / 'nowhere'}"), f"run={tmp_path / 'nowhere'}", "no such run")
    empty = tmp_path / "empty"
    empty.mkdir()
    error_line(run_cli("render.py", f"run={empty}"), f"run={empty}", "no checkpoint")
    busy = tmp_path / "file"
    busy.write_text("x")
    error_line(run_cli("render.py", f"run={run_copy}", "frames=1", f"out={busy}"), str(busy))  # out= is a file


@pytest.mark.slow  # several subprocesses; the same checks run in-process in test_runs / test_checkpoint
def test_render_with_a_moved_dataset_names_it_and_takes_dataset_path(trained, tmp_path):
    _, scene = trained
    moved_scene = tmp_path / "scene"
    shutil.copytree(scene, moved_scene)
    cfg = compose_config(
        ["dataset=blender", f"dataset.path={moved_scene}", f"output_root={tmp_path / 'out'}", *TINY_NERF, *TINY_RUN,
         "trainer.steps=1", "trainer.eval_every=0", "trainer.final_eval_images=1"]
    )  # fmt: skip
    run = train(cfg).run_dir
    moved_scene.rename(tmp_path / "elsewhere")
    error_line(run_cli("render.py", f"run={run}"), str(moved_scene), "dataset_path=")
    proc = run_cli(
        "render.py", f"run={run}", f"dataset_path={tmp_path / 'elsewhere'}", "frames=1", "video=false",
        f"out={tmp_path / 'r'}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow  # several subprocesses; the same checks run in-process in test_runs / test_checkpoint
def test_resume_to_nothing_and_changed_model_or_seed_are_one_line(run_copy, tmp_path):
    error_line(run_cli("train.py", f"resume={tmp_path / 'nothing'}"), f"resume={tmp_path / 'nothing'}")
    error_line(
        run_cli("train.py", f"output_root={tmp_path}", "resume=true"), "resume=true", "no run of 'synthetic_nerf'"
    )
    line = error_line(run_cli("train.py", f"resume={run_copy}", "model.netwidth=32"), "does not fit the model")
    assert "model.netwidth=32" in line and ckpt.checkpoint_name(6) in line
    error_line(run_cli("train.py", f"resume={run_copy}", "seed=5"), "seed=5", "resume")
    error_line(run_cli("train.py", f"resume={run_copy}", "model=neus"), "model=neus", "nerf")


def test_checkpoint_of_another_model_does_not_fit(trained):
    run, _ = trained
    state = ckpt.load_checkpoint(ckpt.latest(run))
    model = torch.nn.Linear(2, 2)
    with pytest.raises(ckpt.CheckpointError, match="does not fit the model.*missing"):
        ckpt.check_model_state(model, state["model"], "x.pt")
    ckpt.check_model_state(model, model.state_dict(), "x.pt")  # its own state fits
    bad = {"not": "a checkpoint"}
    path = Path(ckpt.latest(run)).with_name("pickle.pt")
    try:
        with open(path, "wb") as f:
            pickle.dump(bad, f)  # a plain pickle: not torch's format
        with pytest.raises(ckpt.CheckpointError, match="pickle.pt: "):
            ckpt.load_checkpoint(path)
    finally:
        path.unlink()


# ------------------------------------------------------------------------------------------------
# The one-line report itself (in-process)


def test_error_line_makes_each_kind_of_error_one_line(monkeypatch, capsys):
    from hydra.errors import ConfigCompositionException

    from nerflite.engine.cli import EntryPoint
    from nerflite.engine.cli import error_line as line_of

    for override, key in [("trainer.stepz=1", "trainer.stepz"), ("trainer.steps=many", "trainer.steps")]:
        with pytest.raises(ConfigCompositionException) as err:
            compose_config([override])
        line = line_of(err.value)
        assert key in line and "\n" not in line and "full_key" not in line and "object_type" not in line
    assert line_of(PermissionError(13, "Permission denied", "/out/x")) == "/out/x: Permission denied"
    assert line_of(ValueError("trainer.lr must be > 0\n  got -1")) == "trainer.lr must be > 0; got -1"
    assert "NERFLITE_DEBUG=1" in line_of(ZeroDivisionError("division by zero"))  # a bug: says how to see more

    monkeypatch.setenv("NERFLITE_DEBUG", "")  # off (and restored after the test, as is HYDRA_FULL_ERROR,
    monkeypatch.setenv("HYDRA_FULL_ERROR", "")  # which EntryPoint.run sets for Hydra)
    entry = EntryPoint()
    failing = entry.job(lambda cfg: (_ for _ in ()).throw(ValueError("model.chunk must be >= 1")))
    assert failing(None) is None and entry.failed == 1  # reported at once; a multirun goes on
    with pytest.raises(SystemExit) as done:
        entry.run(lambda: None)
    assert done.value.code == 1
    assert capsys.readouterr().err.splitlines() == ["error: model.chunk must be >= 1"]
    monkeypatch.setenv("NERFLITE_DEBUG", "1")
    with pytest.raises(ValueError):  # the debug switch lets the exception (and its traceback) through
        EntryPoint().run(lambda: (_ for _ in ()).throw(ValueError("x")))


SHIPPED = [[], ["experiment=lego"], ["experiment=fern"], ["experiment=dtu"], ["model=neus"]]


@pytest.mark.parametrize("overrides", SHIPPED)
def test_shipped_configs_pass_the_range_checks(overrides):
    from nerflite.engine.checks import check_render_config, check_train_config

    check_train_config(compose_config(overrides))
    check_render_config(compose_config(["run=x"], name="render"))


def test_settings_that_cannot_work_are_named():
    from nerflite.engine.checks import check_device, check_render_config, check_train_config

    cfg = compose_config(["trainer.ckpt_every=0", "trainer.lr=0", "trainer.adam_betas=[0.9]", "trainer.amp_dtype=f8"])
    with pytest.raises(ValueError) as err:
        check_train_config(cfg)
    assert str(err.value) == (
        "trainer.ckpt_every must be >= 1, got 0; trainer.lr must be > 0.0, got 0.0; "
        "trainer.amp_dtype must be one of ('bf16', 'fp16'), got 'f8'; "
        "trainer.adam_betas must be two values in [0, 1), got [0.9]"
    )
    with pytest.raises(ValueError, match=r"^frames must be >= 1, got 0; downscale must be > 0.0, got 0.0$"):
        check_render_config(compose_config(["run=x", "frames=0", "downscale=0"], name="render"))
    with pytest.raises(ValueError, match="device=gpu: not a device"):
        check_device("gpu", "device")
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match=r"trainer.device=cuda:1: no CUDA GPU here"):
            check_device("cuda:1", "trainer.device")


def test_resume_from_a_checkpoint_whose_state_does_not_fit_names_it(run_copy, one_thread):
    path = run_copy / "checkpoints" / ckpt.checkpoint_name(6)
    state = ckpt.load_checkpoint(path)
    ckpt.atomic_save({**state, "rng": {"torch": "not a state"}}, path)  # complete, but a broken RNG state
    cfg = compose_config([f"resume={run_copy}"])
    with pytest.raises(ckpt.CheckpointError, match=r"step_000000006.pt: does not fit this run \(TypeError"):
        train(cfg, overrides=[f"resume={run_copy}"])
