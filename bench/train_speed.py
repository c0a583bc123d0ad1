"""Steps per second, GPU memory and data-wait fraction of short real training runs (train.py's loop).

    python bench/train_speed.py --runs NAME=OVERRIDES ... [--steps N] [--out FILE]
    python bench/train_speed.py --scalars RUN     the same figures of a finished run's last log line

Each ``NAME=OVERRIDES`` is a label and a space-separated list of train.py overrides (e.g.
``instant="experiment=lego_fast dataset.path=DATA"``); models the config does not know (a label
whose ``model=`` is not registered) are reported as skipped. Every run trains ``--steps`` steps with
evals and the test split off and two log lines (the figures are the second half's, past warm-up
and first-step compilation), then its TensorBoard scalars give ``perf/step_ms``,
``perf/samples_per_s`` (models that count their samples), ``perf/data_wait_frac`` and
``perf/gpu_mem_peak_mb`` (when on a GPU). Ends with one JSON line.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from hydra import compose, initialize_config_dir  # noqa: E402

from nerflite.engine.config import MODEL_SCHEMAS  # noqa: E402
from nerflite.engine.registry import register_configs  # noqa: E402
from nerflite.engine.trainer import train  # noqa: E402

CONF = Path(__file__).resolve().parents[1] / "conf"


def compose_config(overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose("config", overrides=overrides)


def scalars(run_dir: Path) -> dict[str, float]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run_dir))
    acc.Reload()
    return {tag: acc.Scalars(tag)[-1].value for tag in acc.Tags()["scalars"]}


def figures(s: dict[str, float]) -> dict:
    """The figures of one run from its last logged scalars."""
    out = {
        "steps_per_s": round(1000.0 / s["perf/step_ms"], 3),
        "rays_per_s": round(s["perf/rays_per_s"], 1),
        "data_wait_frac": round(s["perf/data_wait_frac"], 4),
        "gpu_mem_mb": s.get("perf/gpu_mem_peak_mb"),
    }
    for key, name in (("perf/samples_per_s", "samples_per_s"), ("train/samples_per_ray", "samples_per_ray"),
                      ("train/occupied_frac", "occupied_frac"), ("train/rays_used", "rays_used")):
        if key in s:
            out[name] = round(s[key], 4)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", default=[], help="NAME=OVERRIDES (space-separated overrides)")
    ap.add_argument("--scalars", default=None, help="a finished run folder: print its last log line's figures")
    ap.add_argument("--steps", type=int, default=200, help="training steps per run")
    ap.add_argument("--out", default=None, help="also write the JSON here")
    args = ap.parse_args()
    if args.scalars:
        print(json.dumps(figures(scalars(Path(args.scalars)))))
        return
    results = {}
    for spec in args.runs:
        name, _, overrides = spec.partition("=")
        overrides = overrides.split()
        model = next((o.split("=", 1)[1] for o in overrides if o.startswith("model=")), None)
        if model is not None and model not in MODEL_SCHEMAS:
            results[name] = {"skipped": f"model {model!r} is not registered"}
            continue
        with tempfile.TemporaryDirectory() as tmp:
            cfg = compose_config([
                *overrides, f"output_root={tmp}", f"trainer.steps={args.steps}", "trainer.eval_every=0",
                f"trainer.log_every={max(1, args.steps // 2)}", f"trainer.ckpt_every={10 * args.steps}",
                "trainer.final_eval_images=1", "trainer.progress=false", "trainer.test_at_end=false",
            ])  # fmt: skip
            t0 = time.perf_counter()
            try:
                result = train(cfg)
            except Exception as e:  # one model's failure must not lose the others' figures
                results[name] = {"failed": f"{type(e).__name__}: {e}"[:300]}
                print(f"{name:14s} failed: {results[name]['failed']}", file=sys.stderr)
                continue
            wall = time.perf_counter() - t0
            s = scalars(result.run_dir)
        results[name] = {
            **figures(s),
            "final_psnr": round(result.eval.get("psnr", float("nan")), 3),
            "wall_s": round(wall, 1),
        }
        print(f"{name:14s} {results[name]}", file=sys.stderr)
    print(json.dumps({"runs": results, "steps": args.steps}))
    if args.out:
        Path(args.out).write_text(json.dumps({"runs": results, "steps": args.steps}, indent=1))


if __name__ == "__main__":
    main()
