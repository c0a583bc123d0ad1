"""model=neus_instant through the application: compose, train with checkpoints, resume exactly,
render.py with a mesh; the saved step brings back the progressive levels on load."""

from __future__ import annotations

import shutil

import numpy as np
import torch
from plyfile import PlyData

from nerflite.engine import checkpoint as ckpt
from nerflite.engine.render import load_run, render
from nerflite.engine.trainer import train
from tests.app.helpers import TINY_NEUS_INSTANT, TINY_RUN, compose_config


def test_neus_instant_trains_resumes_and_renders_a_mesh(tiny_scene, tmp_path, one_thread):
    def cfg(*extra):
        return compose_config(
            ["model=neus_instant", f"dataset.path={tiny_scene('neus')}", f"output_root={tmp_path}",
             *TINY_NEUS_INSTANT, *TINY_RUN, *extra]
        )

    composed = cfg()
    assert composed.name == "synthetic_neus_instant" and composed.model.name == "neus_instant"
    full = train(composed)
    assert full.step == 6 and np.isfinite(full.losses).all()
    state = torch.load(ckpt.latest(full.run_dir), weights_only=True)
    assert "occupancy" in state["model"] and int(state["step"]) == 6
    assert 0.0 < state["model"]["occupancy"].float().mean() < 1.0  # recomputed from the SDF in training

    # resumed from step 3 it takes exactly the same steps
    cut = tmp_path / "cut"
    shutil.copytree(full.run_dir, cut)
    for p in ckpt.list_checkpoints(cut / "checkpoints")[1:]:
        p.unlink()
    resumed = train(cfg(f"resume={cut}"))
    assert resumed.step == 6 and resumed.losses == full.losses[3:]

    # render.py's loader restores the step-derived state: the checkpoint of step 3 -> levels 1 + 3 // 2 = 2 of 4
    first = ckpt.list_checkpoints(full.run_dir / "checkpoints")[0]
    _, _, model, _ = load_run(full.run_dir, first, torch.device("cpu"))
    assert model.step == 3 and model.sdf_field.encoding.n_active_levels == 2
    _, _, model, _ = load_run(full.run_dir, None, torch.device("cpu"))
    assert model.step == 6 and model.sdf_field.encoding.n_active_levels == 4
    out = render(
        compose_config(
            [f"run={full.run_dir}", "path=orbit", "frames=2", "mesh=true", "mesh_res=24", "video=false",
             f"out={tmp_path / 'r'}"],
            name="render",
        )
    )
    assert len(list((out / "rgb").glob("*.png"))) == 2 and len(list((out / "normals").glob("*.png"))) == 2
    ply = PlyData.read(str(out / "mesh.ply"))
    assert ply["vertex"].count > 100 and ply["face"].count > 100
