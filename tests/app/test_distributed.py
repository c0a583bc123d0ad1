"""Two-process DDP training on the CPU (gloo), as torchrun would start it."""

import os
import socket

import torch
import torch.multiprocessing as mp

from nerflite.engine import checkpoint as ckpt
from tests.app.helpers import TINY_NERF, TINY_RUN, compose_config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _worker(rank: int, world: int, port: int, scene: str, out: str) -> None:
    os.environ.update(
        RANK=str(rank),
        LOCAL_RANK=str(rank),
        WORLD_SIZE=str(world),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    torch.set_num_threads(1)
    from nerflite.engine import trainer as trainer_mod

    seen = {}
    real_dm, real_model = trainer_mod.build_datamanager, trainer_mod.build_model

    def recording_dm(*args, **kwargs):
        dm = real_dm(*args, **kwargs)
        next_train = dm.next_train

        def wrapped(step):
            rays, batch = next_train(step)
            seen.setdefault("indices", batch["indices"].clone())
            return rays, batch

        dm.next_train = wrapped
        return dm

    def recording_model(*args, **kwargs):
        seen["model"] = real_model(*args, **kwargs)
        return seen["model"]

    trainer_mod.build_datamanager, trainer_mod.build_model = recording_dm, recording_model
    cfg = compose_config(
        [
            f"dataset.path={scene}",
            f"output_root={out}/outputs",
            *TINY_NERF,
            *TINY_RUN,
            "trainer.eval_every=0",
            "trainer.final_eval_images=1",
        ]
    )
    result = trainer_mod.train(cfg)
    torch.save(
        {"params": seen["model"].state_dict(), "indices": seen["indices"], "run": str(result.run_dir)},
        f"{out}/rank{rank}.pt",
    )


def test_two_process_gloo_training_keeps_ranks_in_sync(tiny_scene, tmp_path):
    scene = tiny_scene("blender")
    mp.spawn(_worker, args=(2, _free_port(), str(scene), str(tmp_path)), nprocs=2, join=True)
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    # Each rank drew its own rays ...
    assert r0["indices"].shape == r1["indices"].shape
    assert not torch.equal(r0["indices"], r1["indices"])
    # ... yet averaged gradients kept every parameter identical, and training moved them.
    for name, p0 in r0["params"].items():
        torch.testing.assert_close(p0, r1["params"][name], rtol=0, atol=0)
    # Rank 0 alone wrote checkpoints and TensorBoard events (both ranks agree on the run folder).
    assert r0["run"] == r1["run"]
    run = tmp_path / "outputs"
    assert len(list(run.rglob("events.out.tfevents.*"))) == 1
    state = torch.load(ckpt.latest(r0["run"]), weights_only=True)
    assert state["step"] == 6
    changed = any(not torch.equal(state["model"][k], v) for k, v in _initial_params(scene).items())
    assert changed


def _initial_params(scene):
    from nerflite.engine.setup import build_model, build_scene, seed_everything

    cfg = compose_config([f"dataset.path={scene}", *TINY_NERF])
    seed_everything(cfg.seed)
    return build_model(cfg.model, build_scene(cfg.dataset)).state_dict()
