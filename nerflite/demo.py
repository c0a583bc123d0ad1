"""`make demo` / `python -m nerflite.demo`: the whole application in a few minutes on a CPU.

1. generates the synthetic scene (a textured box, sphere and torus, in the Blender format) under
   data/synthetic/ on first use,
2. trains the fast model on it (``model=instant``: hash grid + occupancy grid, the
   ``synthetic_instant`` preset; ``--model nerf`` trains the default small NeRF instead, as
   ``python train.py`` with no arguments does). Measured on this scene (one thread of a busy 2-core
   CPU, held-out PSNR after 10 / 30 / 60 CPU s): instant 13.2 / 21.1 / 22.7 dB, NeRF
   17.2 / 20.0 / 21.5 dB: the fast model gives the better picture from half a minute on,
3. renders an orbit video around the scene and the held-out test views with their metrics,
4. prints where the run, the video and the TensorBoard logs are.

``--dynamic`` does the same with a scene that moves (a sliding sphere, a turning box, a growing
torus, generated in the D-NeRF format: each view another moment) and the fast dynamic model
(``model=dynamic_instant``; ``--model dnerf`` the reference D-NeRF); the video orbits the scene
while time runs ("spin and play"), the test views are rendered at their own moments.

Options: ``--model instant|nerf|dynamic_instant|dnerf``, ``--dynamic``, ``--steps N`` (default: the
config's), ``--frames N`` of the orbit, and any further ``key=value`` config overrides, e.g.
``python -m nerflite.demo trainer.device=cuda``.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from hydra import compose, initialize_config_dir

from nerflite.engine.registry import register_configs
from nerflite.utils.cli import ArgumentParser

CONF = Path(__file__).resolve().parents[1] / "conf"


def _compose(name: str, overrides: list[str]):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=overrides)


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=None, help="training steps (default: the config's)")
    parser.add_argument("--frames", type=int, default=60, help="frames of the orbit video")
    parser.add_argument("--model", default=None, choices=["instant", "nerf", "dynamic_instant", "dnerf"],
                        help="model to train (default: instant, or dynamic_instant with --dynamic)")
    parser.add_argument("--dynamic", action="store_true", help="a moving scene and a dynamic model")
    parser.add_argument("overrides", nargs="*", help="config overrides, key=value")
    args = parser.parse_args(argv)

    from nerflite.engine.render import render
    from nerflite.engine.trainer import train

    model = args.model or ("dynamic_instant" if args.dynamic else "instant")
    dynamic = args.dynamic or model in ("dynamic_instant", "dnerf")
    name = "demo_dynamic" if dynamic else "demo"
    scene = ["dataset.synthetic.format=dnerf"] if dynamic else []
    overrides = [f"model={model}", f"name={name}", *scene, *args.overrides]
    if args.steps is not None:
        overrides.append(f"trainer.steps={args.steps}")
    cfg = _compose("config", overrides)
    what = "moving " if dynamic else ""
    print(f"nerflite demo: {cfg.trainer.steps} steps of {model} on the {what}synthetic scene in {cfg.dataset.path}")
    t0 = time.perf_counter()
    result = train(cfg)
    t_train = time.perf_counter() - t0
    run = result.run_dir

    orbit = render(_compose("render", [f"run={run}", "path=orbit", f"frames={args.frames}", "fps=30"]))
    test = render(_compose("render", [f"run={run}", "path=test", "video=false"]))
    metrics = json.loads((test / "metrics.json").read_text())["mean"]
    total = time.perf_counter() - t0

    logdir = run.parent
    print(
        f"""
done in {total / 60:.1f} min (training {t_train / 60:.1f} min, {result.step} steps)
  held-out views: PSNR {metrics["psnr"]:.2f} dB, SSIM {metrics["ssim"]:.3f}   ({test / "metrics.json"})
  run folder:     {run}   (config.yaml, checkpoints/, eval/)
  orbit video:    {orbit / "rgb.mp4"}   (depth: {orbit / "depth.mp4"})
  TensorBoard:    tensorboard --logdir {logdir}   then open http://localhost:6006
  render again:   python render.py run={run} path=orbit frames=120
  resume:         python train.py model={model} name={name}{" " + scene[0] if scene else ""} resume=true \
trainer.steps={result.step * 2}"""
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
