"""bench/time_to_psnr.py runs end to end at toy sizes: table, plot, and the JSON line last."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow
def test_time_to_psnr_prints_curves_plot_and_json(tmp_path):
    from nerflite.data.synthetic import generate

    data = generate("blender", tmp_path / "scene", views=9, size=16, seed=0)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "time_to_psnr.py"), "--data", str(data), "--models", "nerf", "instant",
         "--minutes", "0.05", "--size", "8", "--evals", "2", "--eval-views", "1", "--device", "cpu",
         "--threads", "1", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["size"] == 8 and result["device"] == "cpu"
    for name in ("nerf", "instant"):
        r = result["models"][name]
        assert len(r["t_s"]) == len(r["psnr"]) == 2 and r["t_s"][0] <= r["t_s"][1]
        assert r["final_psnr"] == r["psnr"][-1] and r["steps_per_s"] > 0 and r["peak_rss_mb"] > 0
    assert (tmp_path / "out" / "time_to_psnr.png").stat().st_size > 0
    assert any(line.startswith("instant") for line in lines[:-1])  # the table


@pytest.mark.slow
def test_time_to_psnr_on_a_dynamic_scene_scores_the_test_views_with_time(tmp_path):
    from nerflite.data.synthetic import generate

    data = generate("dnerf", tmp_path / "scene", views=8, size=16, seed=0)
    proc = subprocess.run(
        [sys.executable, str(BENCH / "time_to_psnr.py"), "--data", str(data), "--format", "dnerf", "--models",
         "dnerf", "dynamic_instant", "--minutes", "0.02", "--size", "8", "--evals", "1", "--device", "cpu",
         "--threads", "1", "--clock", "cpu", "--out", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["format"] == "dnerf" and result["clock"] == "cpu"
    for name in ("dnerf", "dynamic_instant"):
        assert len(result["models"][name]["psnr"]) == 1 and result["models"][name]["final_psnr"] > 0
    assert "render_rays_per_s" in result["models"]["dynamic_instant"]
