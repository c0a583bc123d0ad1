"""Hydra registration: the config schemas into Hydra's ConfigStore and the run-folder resolver.

Its own module so that the schemas (``config.py``) and the run folders (``runs.py``, which reads a
resumed run's config against the schemas) import one way: config <- runs <- registry.
"""

from __future__ import annotations

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from nerflite.engine.config import MODEL_SCHEMAS, RenderConfig, TrainConfig
from nerflite.engine.runs import hydra_run_dir


def register_configs() -> None:
    """Register the schemas with Hydra's ConfigStore and the run-folder resolver (idempotent)."""
    if not OmegaConf.has_resolver("nerflite_run_dir"):
        OmegaConf.register_new_resolver("nerflite_run_dir", hydra_run_dir, use_cache=True)
    cs = ConfigStore.instance()
    cs.store(name="train_schema", node=TrainConfig)
    cs.store(name="render_schema", node=RenderConfig)
    for name, schema in MODEL_SCHEMAS.items():  # conf/model/<name>.yaml starts from these
        cs.store(group="schema/model", name=name, node=schema)
