"""bench/time_to_chamfer.py runs end to end at toy sizes and ends with its JSON."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench"


@pytest.mark.slow  # three processes and a generated scene: ~30 s on a busy 2-core box
def test_time_to_chamfer_prints_curves_then_its_json(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(BENCH / "time_to_chamfer.py"), "--device", "cpu", "--minutes", "0.02", "--evals", "1",
         "--views", "6", "--size", "16", "--mesh-res", "16", "--threads", "1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result["models"]) == {"neus", "neus_instant"}
    for r in result["models"].values():
        assert len(r["t_s"]) == len(r["chamfer"]) == 1 and r["steps"] >= 1 and r["steps_per_s"] > 0
        assert 0.0 < r["final_chamfer"] < 1.0  # world units of the generated scene (about 2.5 across)
    assert (tmp_path / "time_to_chamfer.png").stat().st_size > 0
    assert json.loads((tmp_path / "time_to_chamfer.json").read_text())["models"].keys() == result["models"].keys()
