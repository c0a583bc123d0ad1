"""Parity of nerflite's pure functions with the papers' equations, at small scale.

    python bench/parity.py

Runs every comparison of ``tests/test_parity.py`` (stratified samples, ``sample_pdf``
deterministic / with fixed draws / with a generator, NeRF eq. 3 compositing, NeuS eq. 13 opacity
with the annealed cosine, NeuS up-sampling and background samples): the same tiny synthetic rays
and seeds go through nerflite's vectorised function and through a loop transcribed from the
equation, in float64. Prints a table of the largest absolute difference per comparison against
its tolerance, then one JSON line (the last line): ``{"cases": {name: max_abs_diff}, "tolerance":
{...}, "failed": [...], "all_within_tolerance": bool}``. Exits 1 when a comparison fails.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from tests.test_parity import CASES  # noqa: E402


def main() -> int:
    diffs, tols = {}, {}
    print(f"{'comparison':32s} {'values':>7s} {'max |diff|':>11s} {'tolerance':>10s}  ok")
    for name, case in CASES.items():
        ours, ref, atol = case()
        diff = float((ours.double() - ref).abs().max()) if ref.numel() else 0.0
        diffs[name], tols[name] = diff, atol
        ok = ours.shape == ref.shape and diff <= atol
        print(f"{name:32s} {ref.numel():7d} {diff:11.3g} {atol:10.1g}  {'yes' if ok else 'NO'}")
    failed = [n for n in CASES if not diffs[n] <= tols[n]]
    print(json.dumps({"cases": diffs, "tolerance": tols, "failed": failed, "all_within_tolerance": not failed}))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
