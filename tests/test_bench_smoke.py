"""The model benchmarks run end to end at toy sizes and end with the JSON their issues name."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.parametrize(
    "script,args,keys",
    [
        ("nerf.py", ["--rays", "32", "--samples", "4", "--importance", "4", "--render-size", "4"],
         ["train_it_per_s", "train_rays_per_s", "render_s_per_800px_image", "peak_gpu_mem_mb"]),
        ("neus.py", ["--rays", "32", "--samples", "4", "--importance", "4", "--n-outside", "2", "--mesh-res", "8"],
         ["train_it_per_s", "train_rays_per_s", "mesh_extract_s", "peak_gpu_mem_mb"]),
    ],
)
def test_benchmark_prints_a_table_then_its_json(script, args, keys):
    proc = subprocess.run(
        [sys.executable, str(BENCH / script), "--device", "cpu", "--steps", "1", "--warmup", "1", *args],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = proc.stdout.strip().splitlines()
    assert len(lines) > 3  # the readable table comes first
    result = json.loads(lines[-1])
    for key in keys:
        assert key in result
    assert result["train_it_per_s"] > 0 and result["peak_gpu_mem_mb"] is None
