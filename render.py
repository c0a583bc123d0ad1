"""Render a trained run: `python render.py run=outputs/<name>/<date_time> [path=orbit|spiral|test] ...`.

Writes PNG frames, MP4 videos and depth pictures (and metrics.json for path=test, a PLY mesh for
NeuS with mesh=true) under <run>/renders/. Options: conf/render.yaml and docs/usage.md.
"""

import sys

import hydra
from omegaconf import DictConfig

from nerflite.data.scene import DatasetError
from nerflite.engine.config import register_configs
from nerflite.engine.render import render

register_configs()


@hydra.main(version_base="1.3", config_path="conf", config_name="render")
def main(cfg: DictConfig) -> None:
    try:
        render(cfg)
    except (DatasetError, FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    main()
