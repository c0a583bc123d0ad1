"""Checkpoints that do not belong to their run (nerflite.engine.ownership): refused in one line when
named, skipped with a warning when the newest is picked, by every command that loads weights
(train.py resume, render.py, python -m nerflite.view) alike."""

from __future__ import annotations

import shutil

import pytest
import torch
from omegaconf import OmegaConf

from nerflite.engine import checkpoint as ckpt
from nerflite.engine.ownership import ForeignCheckpoint
from nerflite.engine.render import load_run
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_INSTANT, TINY_NERF, TINY_RUN, compose_config
from tests.app.test_errors import error_line, run_cli


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A finished tiny NeRF run (checkpoints 3, 6) and a tiny instant run (1, 2) on one scene; tests copy them."""
    from nerflite.data.synthetic import generate

    root = tmp_path_factory.mktemp("ownership")
    scene = root / "scene"
    generate("blender", scene, views=8, size=24, seed=0)
    common = ["dataset=blender", f"dataset.path={scene}", f"output_root={root / 'out'}", *TINY_RUN]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        nerf = train(compose_config([*common, *TINY_NERF])).run_dir
        instant = train(compose_config([*common, *TINY_INSTANT, "trainer.steps=2", "trainer.ckpt_every=1",
                                        "trainer.eval_every=0", "trainer.final_eval_images=1"])).run_dir
    finally:
        torch.set_num_threads(threads)
    return nerf, instant, scene


@pytest.fixture
def copies(runs, tmp_path):
    nerf, instant, scene = runs
    shutil.copytree(nerf, tmp_path / "nerf")
    shutil.copytree(instant, tmp_path / "instant")
    return tmp_path / "nerf", tmp_path / "instant", scene


def _edit_config(run, **changes) -> None:
    cfg = OmegaConf.load(run / "config.yaml")
    for key, value in changes.items():
        OmegaConf.update(cfg, key, value)
    (run / "config.yaml").write_text(OmegaConf.to_yaml(cfg))


VIEW = ("-m", "nerflite.view")


def _refusal(nerf, instant):
    """(the foreign checkpoint, the one error line every command ends in)."""
    foreign = nerf / "checkpoints" / ckpt.checkpoint_name(6)
    return foreign, (f"error: {foreign}: holds a model=nerf, but run {instant} is model=instant (its config.yaml): "
                     "pass a checkpoint of this run")


@pytest.mark.parametrize("command", ["render.py", "view", "resume"])
def test_a_named_checkpoint_of_another_model_is_refused_by_every_command(copies, command, capsys, one_thread,
                                                                         monkeypatch):
    import nerflite.view
    from nerflite.engine.cli import error_line as line_of
    from nerflite.view import main as view_main

    monkeypatch.setattr(nerflite.view, "serve", lambda viewer, model, stop=None: viewer.close())  # never block

    nerf, instant, _ = copies
    foreign, expected = _refusal(nerf, instant)
    if command == "render.py":  # the real command in a subprocess (slow: the others too)
        assert error_line(run_cli("render.py", f"run={instant}", f"ckpt={foreign}", "frames=1")) == expected
    elif command == "view":  # python -m nerflite.view's own main
        assert view_main([f"run={instant}", f"ckpt={foreign}", "port=0"]) == 1
        assert capsys.readouterr().err.splitlines() == [expected]
    else:  # resume=FILE with the file put into the instant run's folder
        named = shutil.copy(foreign, instant / "checkpoints" / ckpt.checkpoint_name(9))
        with pytest.raises(ForeignCheckpoint) as err:
            train(compose_config([f"resume={named}"]), overrides=[f"resume={named}"])
        assert f"error: {line_of(err.value)}" == expected.replace(str(foreign), str(named))
    assert not (instant / "renders").exists()  # nothing was made of it


@pytest.mark.slow  # three subprocesses; the default run checks render.py's and the others in-process
def test_every_command_refuses_a_named_checkpoint_of_another_model_in_one_line(copies):
    nerf, instant, _ = copies
    foreign, expected = _refusal(nerf, instant)
    assert error_line(run_cli(*VIEW, f"run={instant}", f"ckpt={foreign}", "port=0")) == expected
    assert error_line(run_cli("render.py", f"run={instant}", f"ckpt={foreign}", "path=test")) == expected
    named = shutil.copy(foreign, instant / "checkpoints" / ckpt.checkpoint_name(9))
    assert error_line(run_cli("train.py", f"resume={named}")) == expected.replace(str(foreign), str(named))


def test_the_newest_checkpoint_of_another_model_is_skipped_with_a_warning(copies, tmp_path, capsys, one_thread):
    nerf, instant, _ = copies
    stray = instant / "checkpoints" / ckpt.checkpoint_name(9)
    shutil.copy(nerf / "checkpoints" / ckpt.checkpoint_name(6), stray)
    warning = f"warning: skipping checkpoint {stray}: holds a model=nerf, but run {instant} is model=instant"
    out = tmp_path / "frames"
    proc = run_cli("render.py", f"run={instant}", "frames=1", "video=false", f"out={out}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert warning in proc.stderr.splitlines()[0] and f"({ckpt.checkpoint_name(2)})" in proc.stdout
    assert len(list((out / "rgb").glob("*.png"))) == 1
    overrides = [f"resume={instant}", "trainer.steps=3", "trainer.final_eval_images=1", "trainer.test_at_end=false"]
    result = train(compose_config(overrides), overrides=overrides)  # resume=RUN picks the same way
    assert result.step == 3 and warning in capsys.readouterr().err
    assert ckpt.load_checkpoint(instant / "checkpoints" / ckpt.checkpoint_name(3))["step"] == 3


def test_same_model_with_another_architecture_or_dataset_is_not_of_the_run(copies, tmp_path, capsys):
    nerf, _, scene = copies
    theirs = nerf / "checkpoints" / ckpt.checkpoint_name(6)
    wide = tmp_path / "wide"  # a run of the same model, 32 channels wide: the 16-wide tensors do not fit
    shutil.copytree(nerf, wide)
    _edit_config(wide, **{"model.netwidth": 32})
    with pytest.raises(ForeignCheckpoint) as err:
        load_run(wide, theirs, torch.device("cpu"))
    assert str(err.value).startswith(f"{theirs}: does not fit the model of run {wide} (model=nerf): ")
    assert "model.netwidth: 16 in the checkpoint, 32 in the run" in str(err.value)
    # the run's own (older) checkpoints are just as foreign to it: picking the newest names every one
    with pytest.raises(ckpt.CheckpointError, match=r"no checkpoint loads and fits the run \(step_000000006.pt: "
                                                    r"does not fit.*step_000000003.pt: does not fit"):
        load_run(wide, None, torch.device("cpu"))
    other = tmp_path / "other_scene"
    shutil.copytree(scene, other)
    elsewhere = tmp_path / "elsewhere"
    shutil.copytree(nerf, elsewhere)
    _edit_config(elsewhere, **{"dataset.path": str(other)})
    with pytest.raises(ForeignCheckpoint, match=f"was trained on {scene}, but run {elsewhere} on {other}: pass"):
        load_run(elsewhere, theirs, torch.device("cpu"))
    moved = tmp_path / "moved" / scene.name  # the same folder name elsewhere: the dataset moved, not another one
    shutil.copytree(scene, moved)
    _edit_config(elsewhere, **{"dataset.path": str(moved)})
    assert load_run(elsewhere, theirs, torch.device("cpu"))[3] == theirs


def test_other_settings_are_named_in_a_warning_and_the_runs_are_used(copies, capsys):
    nerf, _, _ = copies
    _edit_config(nerf, **{"model.n_samples": 12, "model.chunk": 64})  # e.g. changed by a resume
    run_cfg, _, model, path = load_run(nerf, None, torch.device("cpu"))
    err = capsys.readouterr().err
    assert err.splitlines() == [
        f"warning: checkpoint {path} was written with other settings than run {nerf} "
        "(model.n_samples: 8 in the checkpoint, 12 in the run): using the run's (config.yaml)"
    ]  # model.chunk: how the model runs, not what it is
    assert run_cfg.model.n_samples == 12 and model.cfg.n_samples == 12


def test_a_damaged_config_yaml_falls_back_to_the_checkpoints_own_config(copies, capsys):
    nerf, _, _ = copies
    (nerf / "config.yaml").write_text("model: [unclosed\n")
    _, _, model, path = load_run(nerf, None, torch.device("cpu"))
    assert path.name == ckpt.checkpoint_name(6) and model.cfg.netwidth == 16
    assert capsys.readouterr().err.startswith(f"warning: {nerf / 'config.yaml'}: not a readable config (")
