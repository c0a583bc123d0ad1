"""Shared pieces of the application tests: the real config, composed and shrunk."""

from __future__ import annotations

from pathlib import Path

from hydra import compose, initialize_config_dir

from nerflite.engine.registry import register_configs

CONF = Path(__file__).resolve().parents[2] / "conf"

# A NeRF small enough to train a few steps in well under a second on a CPU.
TINY_NERF = [
    "model.netdepth=2",
    "model.netwidth=16",
    "model.netdepth_fine=2",
    "model.netwidth_fine=16",
    "model.skips=[]",
    "model.multires=4",
    "model.multires_views=2",
    "model.n_samples=8",
    "model.n_importance=8",
    "model.chunk=512",
]
TINY_NEUS = [
    "model.sdf_layers=2",
    "model.sdf_width=16",
    "model.sdf_skips=[]",
    "model.feature_dim=16",
    "model.color_layers=1",
    "model.color_width=16",
    "model.n_samples=8",
    "model.n_importance=8",
    "model.up_sample_steps=1",
    "model.n_outside=0",
    "model.chunk=512",
    "model.bg_layers=2",
    "model.bg_width=16",
]
# A NeuS-instant (hash-grid SDF) of a few thousand parameters.
TINY_NEUS_INSTANT = [
    "model.n_levels=4",
    "model.log2_table_size=10",
    "model.base_resolution=4",
    "model.max_resolution=32",
    "model.start_levels=1",
    "model.level_every=2",
    "model.sdf_width=16",
    "model.feature_dim=7",
    "model.color_layers=1",
    "model.color_width=16",
    "model.n_samples=8",
    "model.n_importance=8",
    "model.n_candidates=16",
    "model.occ_resolution=16",
    "model.occ_every=2",
    "model.chunk=512",
]
TINY_RUN = [
    "datamanager.rays_per_batch=64",
    "datamanager.workers=0",
    "trainer.steps=6",
    "trainer.eval_every=3",
    "trainer.ckpt_every=3",
    "trainer.log_every=2",
    "trainer.progress=false",
    "trainer.device=cpu",
    "trainer.keep_ckpts=10",
    "trainer.mesh_res=16",
]


def compose_config(overrides: list[str], name: str = "config"):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=overrides)
# The instant model small enough for a few steps in about a second on a CPU.
TINY_INSTANT = [
    "model=instant",
    "model.n_levels=4",
    "model.log2_table_size=10",
    "model.base_resolution=4",
    "model.max_resolution=32",
    "model.hidden=16",
    "model.geo_features=7",
    "model.grid_resolution=8",
    "model.grid_update_every=2",
    "model.grid_warmup_steps=2",
    "model.steps_per_diagonal=32",
    "model.chunk=512",
]
