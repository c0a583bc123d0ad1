import json
import math
import shutil
import signal
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf

from nerflite.engine import checkpoint as ckpt
from nerflite.engine import trainer as trainer_mod
from nerflite.engine.render import render
from nerflite.engine.trainer import TrainingDiverged, train
from tests.app.helpers import compose_config


def test_train_checkpoint_resume_render(tiny_cfg, tmp_path):
    cfg = tiny_cfg()
    first = train(cfg)
    run = first.run_dir
    assert first.step == 6 and len(first.losses) == 6
    assert all(torch.isfinite(torch.tensor(first.losses)))
    assert 0.0 < first.eval["ssim"] <= 1.0 and first.eval["psnr"] > 5.0
    # The run folder: resolved config, checkpoints, TensorBoard events, eval pictures.
    saved = OmegaConf.create((run / "config.yaml").read_text())
    assert saved.trainer.steps == 6 and saved.model.name == "nerf"
    assert [p.name for p in ckpt.list_checkpoints(run / "checkpoints")] == [
        ckpt.checkpoint_name(3),
        ckpt.checkpoint_name(6),
    ]
    assert list(run.glob("events.out.tfevents.*"))
    assert list((run / "eval").glob("*.png"))
    state = torch.load(ckpt.latest(run), weights_only=True)
    assert set(state) >= {"model", "optimizer", "scheduler", "scaler", "datamanager", "rng", "config", "step"}

    # resume=true picks the latest run of the experiment and continues it in its folder.
    more = train(tiny_cfg("trainer.steps=8", "resume=true"))
    assert more.run_dir == run and more.step == 8 and len(more.losses) == 2
    assert ckpt.latest(run).name == ckpt.checkpoint_name(8)

    out = render(compose_config([f"run={run}", "path=test", f"out={tmp_path / 'test'}"], name="render"))
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["views"] and 0.0 < metrics["mean"]["ssim"] <= 1.0
    assert metrics["mean"]["psnr"] == pytest.approx(sum(v["psnr"] for v in metrics["views"]) / len(metrics["views"]))
    assert len(list((out / "rgb").glob("*.png"))) == len(metrics["views"])
    assert (out / "rgb.mp4").stat().st_size > 0 and (out / "depth.mp4").stat().st_size > 0


def test_resume_continues_exactly_step_for_step(tiny_cfg, tmp_path):
    full = train(tiny_cfg())
    # A copy of the run as it was after 3 steps, resumed from there.
    cut = tmp_path / "cut"
    shutil.copytree(full.run_dir, cut)
    for p in ckpt.list_checkpoints(cut / "checkpoints")[1:]:
        p.unlink()
    resumed = train(tiny_cfg(f"resume={cut}"))
    assert resumed.run_dir == cut and resumed.step == 6
    assert resumed.losses == full.losses[3:]  # bit-identical on the CPU


def test_ctrl_c_writes_a_checkpoint_and_stops(tiny_cfg, monkeypatch):
    real = trainer_mod.build_datamanager

    def interrupting(*args, **kwargs):
        dm = real(*args, **kwargs)
        next_train = dm.next_train

        def wrapped(step):
            if step == 1:
                signal.raise_signal(signal.SIGINT)  # as if the user pressed Ctrl-C during step 1
            return next_train(step)

        dm.next_train = wrapped
        return dm

    monkeypatch.setattr(trainer_mod, "build_datamanager", interrupting)
    before = signal.getsignal(signal.SIGINT)  # default_int_handler, or SIG_IGN in a background job
    result = train(tiny_cfg())
    assert result.interrupted and result.step == 2
    assert ckpt.latest(result.run_dir).name == ckpt.checkpoint_name(2)
    assert signal.getsignal(signal.SIGINT) == before  # the handler is restored


def test_non_finite_loss_stops_and_keeps_last_good_checkpoint(tiny_cfg, monkeypatch):
    real = trainer_mod.build_model

    def poisoned(*args, **kwargs):
        model = real(*args, **kwargs)
        losses = model.losses

        def bad_losses(outputs, batch):
            out = losses(outputs, batch)
            if model.step == 4:
                out["rgb"] = out["rgb"] * float("nan")
            return out

        model.losses = bad_losses
        return model

    monkeypatch.setattr(trainer_mod, "build_model", poisoned)
    cfg = tiny_cfg()
    with pytest.raises(TrainingDiverged, match=r"loss is nan at step 4.*step_000000003\.pt"):
        train(cfg)
    runs = list(Path(cfg.output_root).glob("*/*"))
    latest = ckpt.latest(runs[0])
    assert latest.name == ckpt.checkpoint_name(3)
    state = torch.load(latest, weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values())


def test_trainer_amp_switches_the_models_autocast(tiny_cfg):
    cfg = tiny_cfg("trainer.amp=true", "trainer.amp_dtype=bf16", "trainer.steps=2", "trainer.eval_every=0")
    result = train(cfg)
    assert cfg.model.amp == "none"  # the caller's config is untouched
    saved = OmegaConf.create((result.run_dir / "config.yaml").read_text())
    assert saved.model.amp == "bf16" and all(math.isfinite(x) for x in result.losses)


def test_resume_uses_the_runs_own_config_with_only_the_given_overrides(tiny_cfg, tiny_scene, tmp_path, capsys):
    run = train(tiny_cfg("trainer.eval_every=0")).run_dir
    # The resuming command line gives no model sizes: its composed config has the default (larger)
    # model, which the run's checkpoint does not fit. The run's own config.yaml is used instead.
    overrides = [f"resume={run}", "trainer.steps=8"]
    cfg = compose_config([f"dataset.path={tiny_scene('blender')}", *overrides])
    assert cfg.model.netwidth != 16
    more = train(cfg, overrides=overrides)
    assert more.run_dir == run and more.step == 8 and len(more.losses) == 2
    assert "resume: applying overrides trainer.steps=8" in capsys.readouterr().out
    saved = OmegaConf.create((run / "config.yaml").read_text())
    assert saved.model.netwidth == 16 and saved.trainer.steps == 8 and saved.datamanager.rays_per_batch == 64
