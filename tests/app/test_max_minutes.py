"""trainer.max_minutes and trainer.test_minutes: training time (evals and checkpoints left out,
carried over resumes) decides when a run stops and when the test split is scored."""

import json
import time

import pytest
import torch

from nerflite.engine import checkpoint as ckpt
from nerflite.engine import step as step_mod
from nerflite.engine import trainer as trainer_mod
from nerflite.engine.step import TrainClock
from nerflite.engine.trainer import train

LONG = ["trainer.steps=100000", "trainer.ckpt_every=100000", "trainer.eval_every=0", "trainer.log_every=1000"]


def test_the_clock_adds_laps_and_leaves_skipped_time_out(monkeypatch):
    now = [100.0]
    monkeypatch.setattr(step_mod.time, "perf_counter", lambda: now[0])
    clock = TrainClock(carried=30.0)
    now[0] += 2.0
    assert clock.lap() == 32.0
    now[0] += 5.0  # an eval
    clock.skip()
    now[0] += 1.5
    assert clock.lap() == 33.5 and clock.seconds == 33.5


def test_max_minutes_stops_checkpoints_and_scores_the_test_split_as_at_the_last_step(tiny_cfg, monkeypatch):
    real_eval = trainer_mod.evaluate_and_log

    def slow_eval(*args, **kwargs):  # evals are not training time: a slow one must not shorten the run
        time.sleep(0.3)
        return real_eval(*args, **kwargs)

    monkeypatch.setattr(trainer_mod, "evaluate_and_log", slow_eval)
    t0 = time.perf_counter()
    run = train(tiny_cfg(*LONG, "trainer.eval_every=2", "trainer.max_minutes=0.02", "trainer.test_minutes=[0.01]"))
    wall = time.perf_counter() - t0
    assert run.timed_out and not run.interrupted
    assert 3 < run.step < 100000
    assert 1.2 <= run.train_seconds < 1.2 + 1.0  # stops at the first step past 1.2 s of training
    assert wall > run.train_seconds + 0.3 * (run.step // 2 - 1)  # the slow evals ran, not counted
    # the last step's checkpoint holds the training time; the final metrics name that step
    last = ckpt.latest(run.run_dir)
    assert last.name == ckpt.checkpoint_name(run.step)
    assert torch.load(last, weights_only=True)["train_seconds"] == pytest.approx(run.train_seconds, abs=0.5)
    final = json.loads((run.run_dir / "metrics_test.json").read_text())
    assert final["step"] == run.step and final["mean"]["psnr"] == pytest.approx(run.test["psnr"])
    rows = json.loads((run.run_dir / "metrics_test_time.json").read_text())
    assert [r["final"] for r in rows] == [False, True]
    assert 0.01 <= rows[0]["minutes"] < 0.02 and rows[0]["step"] < run.step
    assert rows[1]["step"] == run.step and rows[1]["psnr"] == pytest.approx(run.test["psnr"])


def test_max_minutes_counts_on_over_a_resume(tiny_cfg):
    first = train(tiny_cfg(*LONG, "trainer.max_minutes=0.01"))
    assert first.timed_out
    # the same limit: the time is up, so no step runs, and the final metrics are written again
    again = train(tiny_cfg(*LONG, "trainer.max_minutes=0.01", f"resume={first.run_dir}"))
    assert again.timed_out and again.step == first.step and again.losses == []
    assert again.test["psnr"] == pytest.approx(first.test["psnr"])
    # a longer limit: training goes on from where the clock stood
    longer = train(tiny_cfg(*LONG, "trainer.max_minutes=0.02", f"resume={first.run_dir}"))
    assert longer.timed_out and longer.step > first.step
    assert 1.2 <= longer.train_seconds < 2.2


def test_bad_time_settings_are_refused_naming_the_key(tiny_cfg):
    with pytest.raises(ValueError, match="trainer.max_minutes"):
        train(tiny_cfg("trainer.max_minutes=-1"))
    with pytest.raises(ValueError, match="trainer.test_minutes"):
        train(tiny_cfg("trainer.test_minutes=[0]"))
