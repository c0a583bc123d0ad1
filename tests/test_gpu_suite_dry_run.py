"""bench/gpu_suite.sh's CPU dry run (DRY_RUN=1): toy sizes on generated scenes, one JSON file."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_suite_dry_run_writes_its_json(tmp_path):
    out = tmp_path / "suite.json"
    env = {**os.environ, "DRY_RUN": "1", "PYTHON": sys.executable, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(["bash", str(ROOT / "bench" / "gpu_suite.sh"), str(out)], env=env,
                          capture_output=True, text=True, timeout=1200)  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["device"] == "cpu" and len(result["lego_instant"]["psnr"]) == 2
    lego = result["lego_instant"]
    assert len(lego["occupied"]) == 2 and len(lego["samples_per_ray"]) == 2
    assert lego["render_s_per_view"] > 0 and lego["render_s_per_view_dense"] > 0
    for variant in ("eager", "bf16"):
        step = result["step"][variant]
        assert step["samples_per_s"] > 0 and 0 < step["samples_per_step"] <= 4096, variant
    speed = result["speed"]
    for name in ("nerf", "instant", "neus"):
        assert speed[name]["steps_per_s"] > 0 and 0 <= speed[name]["data_wait_frac"] <= 1, name
    assert "neus_instant" in speed  # measured once that model is registered, else reported as skipped
