"""Train a NeRF or NeuS: `python train.py [experiment=lego dataset.path=...] [key=value ...]`.

With no arguments it trains the embedded default (a generated synthetic scene with a small NeRF).
The configuration lives in conf/ (see docs/usage.md); this file only hands it to
`nerflite.engine.trainer.train`. Errors end in one `error: ...` line (NERFLITE_DEBUG=1: traceback).
"""

import os
import sys

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nerflite.engine.cli import EntryPoint
from nerflite.engine.registry import register_configs
from nerflite.engine.trainer import train
from nerflite.viewer.config import expand_shorthand

register_configs()
entry = EntryPoint()


@hydra.main(version_base="1.3", config_path="conf", config_name="config")
@entry.job
def main(cfg: DictConfig) -> float | None:
    overrides = list(HydraConfig.get().overrides.task)  # applied to the run's own config on resume
    result = train(cfg, overrides=overrides)
    if int(os.environ.get("RANK", "0")) == 0:
        print(f"run: {result.run_dir.resolve()}")
    return result.eval.get("psnr")  # the value a multirun sweeper optimises


if __name__ == "__main__":
    sys.argv = expand_shorthand(sys.argv)  # viewer=true means viewer.enabled=true
    if int(os.environ.get("RANK", "0")) > 0:  # under torchrun, rank 0 alone makes the run folder
        sys.argv += ["hydra.run.dir=.", "hydra.output_subdir=null", "hydra/job_logging=disabled"]
    entry.run(main)
