"""Render a trained run: `python render.py run=outputs/<name>/<date_time> [path=orbit|spiral|test|train] ...`.

Writes PNG frames, MP4 videos and depth pictures (and metrics.json for path=test, a PLY mesh for
NeuS with mesh=true) under <run>/renders/. Scenes that move: time=play|T, appearance=ID
(docs/dynamic.md). Options: conf/render.yaml and docs/usage.md.
Errors end in one `error: ...` line (NERFLITE_DEBUG=1: traceback).
"""

import hydra
from omegaconf import DictConfig, OmegaConf

from nerflite.engine.cli import EntryPoint
from nerflite.engine.registry import register_configs
from nerflite.engine.render import render

register_configs()
entry = EntryPoint()


@hydra.main(version_base="1.3", config_path="conf", config_name="render")
@entry.job
def main(cfg: DictConfig) -> None:
    if OmegaConf.is_missing(cfg, "run"):
        raise ValueError("run: missing; give the run folder: python render.py run=outputs/<name>/<date_time>")
    render(cfg)


if __name__ == "__main__":
    entry.run(main)
