"""`make bench`: run every benchmark once with settings that fit a CPU machine (or a GPU when
one is visible) and print each benchmark's JSON line, then one combined JSON object.

    python bench/run_all.py [--data ../shared/data] [--device cpu|cuda]

The datamanager benchmark needs the real lego scene (skipped when absent); the model benchmarks
use synthetic rays and need no data. Run the scripts one by one for other settings.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent


def run(args: list[str]) -> dict | None:
    print("$ python", " ".join(args), flush=True)
    proc = subprocess.run([sys.executable, *args], cwd=HERE.parent, capture_output=True, text=True)
    print(proc.stdout, proc.stderr[-2000:] if proc.returncode else "", sep="", flush=True)
    if proc.returncode != 0:
        return {"error": f"exit code {proc.returncode}"}
    last = proc.stdout.strip().splitlines()[-1]
    return json.loads(last)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(HERE.parent.parent / "shared" / "data"))
    parser.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    args = parser.parse_args()
    import torch

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.startswith("cuda")
    results: dict[str, dict | None] = {}
    lego = Path(args.data) / "lego"
    if lego.is_dir():
        results["datamanager"] = run(["bench/datamanager.py", "--data", str(lego), "--cache", "ram",
                                      "--device", device, "--rays", "4096"])
    else:
        print(f"skipping the datamanager benchmark: {lego} not found")
    results["nerf"] = run(["bench/nerf.py", "--device", device, *([] if gpu else ["--steps", "2"])])
    results["neus"] = run(["bench/neus.py", "--device", device, *([] if gpu else ["--steps", "1", "--mesh-res", "64"])])
    results["parity"] = run(["bench/parity.py"])  # CPU, float64, seconds
    print(json.dumps(results))


if __name__ == "__main__":
    main()
