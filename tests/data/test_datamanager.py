import math
import os
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import psutil
import pytest
import torch

from nerflite.cameras import Cameras, generate_rays, ndc_rays, project
from nerflite.data.datamanager import DataManager, DataManagerConfig
from nerflite.data.scene import DatasetError, Scene

H, W = 12, 16


def _look_at(eye: torch.Tensor) -> torch.Tensor:
    """OpenCV camera-to-world [3, 4] at ``eye`` looking at the origin (y down)."""
    z = -eye / eye.norm()
    x = torch.linalg.cross(z, torch.tensor([0.0, 0.0, 1.0]))
    x = x / x.norm()
    y = torch.linalg.cross(z, x)
    return torch.cat([torch.stack([x, y, z], 1), eye[:, None]], 1)


def tiny_scene(root: Path, n: int = 6, masks: bool = False, rgba: bool = True, ndc: bool = False,
               size: tuple[int, int] = (H, W), replicate: int = 1, seed: int = 0) -> Scene:
    """``n`` random views of a sphere rig, written as PNGs into ``root`` (RGBA with random alpha)."""
    h, w = size
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    paths, mpaths = [], []
    for i in range(n):
        img = rng.integers(0, 256, (h, w, 4 if rgba else 3), dtype=np.uint8)
        cv2.imwrite(str(root / f"r_{i}.png"), img)
        paths.append(root / f"r_{i}.png")
        if masks:
            m = (rng.random((h, w)) < 0.4).astype(np.uint8) * 255
            cv2.imwrite(str(root / f"m_{i}.png"), m)
            mpaths.append(root / f"m_{i}.png")
    angles = torch.arange(n, dtype=torch.float32) * 2 * math.pi / n
    eyes = torch.stack([4 * torch.cos(angles), 4 * torch.sin(angles), torch.full((n,), 1.0)], -1)
    c2w = torch.stack([_look_at(e) for e in eyes])
    f = 0.8 * w
    cams = Cameras(torch.full((n,), f), torch.full((n,), f * 1.1), torch.full((n,), w / 2 + 0.3),
                   torch.full((n,), h / 2 - 0.2), torch.full((n,), w), torch.full((n,), h), c2w)
    idx = list(range(n)) * replicate
    views = list(range(n * replicate))
    return Scene(
        format="blender", root=root, image_paths=[paths[i] for i in idx],
        cameras=Cameras.cat([cams[i] for i in idx]),
        splits={"train": [v for v in views if v % 3], "val": [v for v in views if v % 3 == 0], "test": []},
        near=2.0, far=6.0, mask_paths=[mpaths[i] for i in idx] if masks else None,
        background=(1.0, 0.5, 0.0), ndc=ndc,
    )


def _cfg(**kw) -> DataManagerConfig:
    base = dict(rays_per_batch=64, workers=0, images_per_chunk=2, chunk_reuse=2, prefetch=2, seed=7, worker_timeout=20)
    base.update(kw)
    return DataManagerConfig(**base)


def _batches(dm: DataManager, steps) -> list:
    return [dm.next_train(s) for s in steps]


def _same(a, b) -> bool:
    (ra, ba), (rb, bb) = a, b
    fields = ("origins", "directions", "viewdirs", "near", "far", "camera_indices")
    same_rays = all(torch.equal(getattr(ra, f), getattr(rb, f)) for f in fields)
    return same_rays and ba.keys() == bb.keys() and all(torch.equal(ba[k], bb[k]) for k in ba)


def _expected_rgb(scene: Scene, indices: torch.Tensor) -> torch.Tensor:
    """Read each pixel straight from its file and composite by hand (loop reference)."""
    out = []
    for v, y, x in indices.tolist():
        px = cv2.imread(str(scene.image_paths[v]), cv2.IMREAD_UNCHANGED)[y, x].astype(np.float64) / 255
        rgb, a = px[2::-1], (px[3] if px.shape[0] == 4 else 1.0)
        out.append(rgb * a + np.array(scene.background) * (1 - a))
    return torch.tensor(np.array(out), dtype=torch.float32)


@pytest.mark.parametrize("cache", ["ram", "disk"])
def test_each_rays_ground_truth_is_the_pixel_it_projects_to(tmp_path, cache):
    scene = tiny_scene(tmp_path)
    dm = DataManager(scene, _cfg(cache=cache, workers=1), "cpu")
    try:
        rays, batch = dm.next_train(3)
    finally:
        dm.close()
    idx = batch["indices"]
    assert batch["rgb"].shape == (64, 3) and batch["rgb"].dtype == torch.float32 and idx.dtype == torch.int64
    assert torch.equal(rays.camera_indices[:, 0], idx[:, 0])
    assert set(idx[:, 0].tolist()) <= set(scene.split("train"))
    xy, depth = project(scene.cameras, idx[:, 0], rays.points(torch.full((64, 1), 3.0))[:, 0])
    torch.testing.assert_close(xy, idx[:, [2, 1]].float() + 0.5, atol=1e-3, rtol=0)
    assert bool((depth > 0).all())
    torch.testing.assert_close(batch["rgb"], _expected_rgb(scene, idx), atol=1e-6, rtol=0)
    assert float(rays.near[0]) == 2.0 and float(rays.far[0]) == 6.0


def test_ndc_scene_gets_ndc_rays_of_the_first_camera(tmp_path):
    scene = tiny_scene(tmp_path, rgba=False, ndc=True)
    dm = DataManager(scene, _cfg(), "cpu")
    rays, batch = dm.next_train(0)
    idx = batch["indices"]
    c = scene.cameras
    world = generate_rays(c, idx[:, 0], idx[:, 1], idx[:, 2], 2.0, 6.0)
    ref = ndc_rays(world, float(c.fx[0]), float(c.fy[0]), W, H)
    torch.testing.assert_close(rays.origins, ref.origins)
    torch.testing.assert_close(rays.far, ref.far)
    torch.testing.assert_close(batch["rgb"], _expected_rgb(scene, idx), atol=1e-6, rtol=0)


def test_batches_reproducible_and_identical_for_0_1_2_workers(tmp_path):
    scene = tiny_scene(tmp_path)
    runs = []
    for workers in (0, 1, 2):
        dm = DataManager(scene, _cfg(cache="disk", workers=workers), "cpu")
        runs.append(_batches(dm, range(7)))
        dm.close()
    for k in range(7):
        assert _same(runs[0][k], runs[1][k]) and _same(runs[0][k], runs[2][k])
    assert not torch.equal(runs[0][0][1]["indices"], runs[0][1][1]["indices"])
    other = DataManager(scene, _cfg(seed=8), "cpu")
    assert not torch.equal(other.next_train(0)[1]["indices"], runs[0][0][1]["indices"])


def test_every_cache_mode_gives_the_same_batches(tmp_path):
    scene = tiny_scene(tmp_path, masks=True)
    ref = None
    for cache in ("ram", "compressed", "disk", "device"):
        dm = DataManager(scene, _cfg(cache=cache), "cpu")
        got = _batches(dm, range(5))
        dm.close()
        assert got[0][1]["mask"].shape == (64, 1)
        ref = ref or got
        assert all(_same(a, b) for a, b in zip(ref, got)), cache


def test_resume_from_state_dict_reproduces_the_next_10_batches(tmp_path):
    scene = tiny_scene(tmp_path)
    dm = DataManager(scene, _cfg(cache="disk", workers=2), "cpu")
    first = _batches(dm, range(5))
    state = dm.state_dict()
    uninterrupted = _batches(dm, range(5, 15))
    dm.close()
    assert state["next_step"] == 5 and first
    resumed = DataManager(scene, _cfg(cache="disk", workers=1), "cpu")
    resumed.load_state_dict(state)
    again = _batches(resumed, range(state["next_step"], state["next_step"] + 10))
    resumed.close()
    assert all(_same(a, b) for a, b in zip(uninterrupted, again))


def test_ranks_draw_different_streams(tmp_path):
    scene = tiny_scene(tmp_path)
    streams = [_batches(DataManager(scene, _cfg(), "cpu", rank=r, world_size=2), range(4)) for r in (0, 1)]
    for a in streams[0]:
        for b in streams[1]:
            assert not torch.equal(a[1]["indices"], b[1]["indices"])


def _gloo_rank(rank: int, world: int, root: str, port: int, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    scene = tiny_scene(Path(root), seed=0) if rank == 0 else None
    dist.barrier()
    scene = tiny_scene(Path(root) / "copy", seed=0) if scene is None else scene  # same pixels, own files
    dm = DataManager(scene, _cfg(workers=1), "cpu", rank=dist.get_rank(), world_size=dist.get_world_size())
    idx = torch.stack([dm.next_train(s)[1]["indices"] for s in range(3)])  # [3, n, 3]
    dm.close()
    gathered = [torch.zeros_like(idx) for _ in range(world)]
    dist.all_gather(gathered, idx)
    if rank == 0:
        torch.save(gathered, out)
    dist.destroy_process_group()


def test_two_gloo_ranks_never_draw_the_same_batch(tmp_path):
    import socket

    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = str(tmp_path / "gathered.pt")
    args = (2, str(tmp_path), port, out)
    # spawn: fresh processes (forking the test process, with its threads, can inherit a held lock)
    mp.start_processes(_gloo_rank, args=args, nprocs=2, join=True, start_method="spawn")
    r0, r1 = torch.load(out)
    for a in r0:
        for b in r1:
            assert not torch.equal(a, b)


@pytest.mark.parametrize("mode,fraction", [("fraction", 0.25), ("inside", 1.0)])
def test_mask_aware_sampling_respects_the_mask(tmp_path, mode, fraction):
    scene = tiny_scene(tmp_path, masks=True)
    cfg = _cfg(cache="ram", mask_sampling=mode, mask_fraction=fraction, rays_per_batch=400)
    dm = DataManager(scene, cfg, "cpu")
    for step in range(3):
        _, batch = dm.next_train(step)
        assert float(batch["mask"].sum()) == round(400 * fraction)
        for (v, y, x), m in zip(batch["indices"].tolist(), batch["mask"][:, 0].tolist()):
            ref = cv2.imread(str(scene.mask_paths[v]), cv2.IMREAD_UNCHANGED)[y, x] > 127
            assert ref == bool(m)


def test_eval_uses_the_eval_split_and_whole_images(tmp_path):
    scene = tiny_scene(tmp_path, masks=True)
    dm = DataManager(scene, _cfg(workers=1), "cpu")
    rays, batch = dm.next_eval(0)
    assert set(batch["indices"][:, 0].tolist()) <= set(scene.split("val"))
    assert dm._stream is None  # eval never starts (or reads) the train stream
    view, rays, batch = dm.next_eval_image(5)
    assert view in scene.split("val") and batch["image_hw"] == (H, W) and len(rays) == H * W
    img = cv2.imread(str(scene.image_paths[view]), cv2.IMREAD_UNCHANGED).astype(np.float64) / 255
    a = img[..., 3:]
    ref = img[..., 2::-1] * a + np.array(scene.background) * (1 - a)
    ref = torch.tensor(ref, dtype=torch.float32)
    torch.testing.assert_close(batch["rgb"].view(H, W, 3), ref, atol=1e-6, rtol=0)
    assert batch["mask"].shape == (H * W, 1)
    assert [v for v, _, _ in dm.iter_eval_images()] == scene.split("val")
    dm.close()


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("cache,workers", [("disk", 2), ("compressed", 1), ("ram", 0)])
def test_corrupt_png_raises_dataset_error_naming_the_file(tmp_path, cache, workers):
    scene = tiny_scene(tmp_path)
    bad = scene.image_paths[scene.split("train")[2]]
    _truncate(bad)
    with pytest.raises(DatasetError, match=str(bad.name)) as info:
        dm = DataManager(scene, _cfg(cache=cache, workers=workers, images_per_chunk=None), "cpu")
        dm.next_train(0)
    assert info.value.path == bad and "truncated" in str(info.value)


def test_garbage_png_in_a_later_chunk_surfaces_from_the_worker(tmp_path):
    scene = tiny_scene(tmp_path)
    bad = scene.image_paths[scene.split("train")[-1]]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 100 + b"IEND\xaeB`\x82")
    dm = DataManager(scene, _cfg(cache="disk", workers=2, images_per_chunk=1, chunk_reuse=1), "cpu")
    with pytest.raises(DatasetError, match=bad.name):
        for step in range(40):
            dm.next_train(step)
    dm.close()


def _sleep_forever_in_workers(rays, batch):
    """A custom ray processor that never returns inside a data worker (a stuck worker)."""
    from torch.utils.data import get_worker_info

    if get_worker_info() is not None:
        time.sleep(3600)
    return rays, batch


def test_stuck_worker_surfaces_as_an_error_within_seconds(tmp_path):
    scene = tiny_scene(tmp_path)
    dm = DataManager(scene, _cfg(cache="disk", workers=1, worker_timeout=2), "cpu",
                     custom_ray_processor=_sleep_forever_in_workers)
    start = time.monotonic()
    with pytest.raises(RuntimeError, match="stuck"):
        dm.next_train(0)
    assert time.monotonic() - start < 15.0
    dm.close()


_KILL_SCRIPT = """
import os, signal, sys, time
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from test_datamanager import tiny_scene, _cfg
from nerflite.data.datamanager import DataManager
dm = DataManager(tiny_scene(Path(sys.argv[1])), _cfg(cache="disk", workers=2), "cpu")
dm.next_train(0)
os.kill(dm.worker_pids()[0], signal.SIGKILL)
start = time.monotonic()
try:
    for step in range(1, 10_000):
        dm.next_train(step)
except RuntimeError as e:
    print("surfaced after %.1f s: %s" % (time.monotonic() - start, e))
    sys.exit(0)
sys.exit(1)
"""


@pytest.mark.slow
def test_killed_worker_surfaces_within_seconds(tmp_path):
    # in a subprocess with a hard limit: a worker killed at an unlucky instant (while it holds a
    # DataLoader-internal lock) can block torch's own shutdown, which must not hang the suite
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-c", _KILL_SCRIPT, str(tmp_path), str(Path(__file__).parent)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    seconds = float(proc.stdout.split("surfaced after ")[1].split(" s")[0])
    assert seconds < 10.0, proc.stdout
    assert "worker" in proc.stdout.lower()


def test_disk_memory_stays_bounded_on_a_replicated_dataset(tmp_path):
    # 1000 views of 256x256 RGBA (256 MB if all were decoded); disk mode holds one chunk per worker
    scene = tiny_scene(tmp_path, n=20, size=(256, 256), replicate=50)
    proc = psutil.Process()
    dm = DataManager(scene, _cfg(cache="disk", images_per_chunk=4, chunk_reuse=1, rays_per_batch=256), "cpu")
    dm.next_train(0)
    base = proc.memory_info().rss
    for step in range(1, 120):
        dm.next_train(step)
    grown = (proc.memory_info().rss - base) / 2**20
    assert dm.cache.nbytes() == 0
    assert grown < 64, f"disk mode grew by {grown:.0f} MB over 120 chunks"
    dm.close()


@pytest.mark.slow
@pytest.mark.parametrize("name", ["lego", "fern", "dtu_scan65"])
def test_real_datasets_through_the_parsers(shared_data, name):
    from nerflite.data.images import read_image, read_mask
    from nerflite.data.parsers import DatasetConfig, load_scene

    scene = load_scene(DatasetConfig(path=str(shared_data(name))))
    dm = DataManager(scene, DataManagerConfig(rays_per_batch=512, cache="disk", workers=2, seed=1), "cpu")
    try:
        for step in range(3):
            rays, batch = dm.next_train(step)
            assert len(rays) == 512 and batch["rgb"].shape == (512, 3)
            assert float(batch["rgb"].min()) >= 0.0 and float(batch["rgb"].max()) <= 1.0
            assert ("mask" in batch) == scene.has_masks
        idx = batch["indices"][:16]
        c = scene.cameras
        world = generate_rays(c, idx[:, 0], idx[:, 1], idx[:, 2], scene.near, scene.far)
        if scene.ndc:
            ref = ndc_rays(world, float(c.fx[0]), float(c.fy[0]), int(c.width[0]), int(c.height[0]))
            torch.testing.assert_close(rays.origins[:16], ref.origins.float(), atol=1e-5, rtol=1e-5)
        else:
            xy, _ = project(c, idx[:, 0], rays.points(torch.full((512, 1), 1.0))[:16, 0].to(c.fx.dtype))
            torch.testing.assert_close(xy.float(), idx[:, [2, 1]].float() + 0.5, atol=2e-2, rtol=0)
        for (v, y, x), rgb in zip(idx.tolist(), batch["rgb"][:16]):
            size = (int(c.width[v]), int(c.height[v]))
            px = torch.from_numpy(read_image(scene.image_paths[v], size)[y, x].astype("float32")) / 255
            if px.shape[0] == 4:
                px = px[:3] * px[3] + torch.tensor(scene.background) * (1 - px[3])
            torch.testing.assert_close(rgb, px, atol=1e-5, rtol=0)
        if scene.has_masks:
            v, y, x = idx[0].tolist()
            size = (int(c.width[v]), int(c.height[v]))
            assert bool(batch["mask"][0, 0]) == bool(read_mask(scene.mask_paths[v], size)[y, x])
        view, rays, batch = dm.next_eval_image(0)
        h, w = batch["image_hw"]
        assert (h, w) == (int(c.height[view]), int(c.width[view])) and batch["rgb"].shape == (h * w, 3)
    finally:
        dm.close()


@pytest.mark.slow
def test_real_lego_every_cache_mode_gives_the_same_batches(shared_data):
    from nerflite.data.parsers import DatasetConfig, load_scene

    scene = load_scene(DatasetConfig(path=str(shared_data("lego"))))
    ref = None
    for cache, workers in (("ram", 2), ("compressed", 1), ("disk", 2), ("device", 0)):
        cfg = DataManagerConfig(rays_per_batch=1024, cache=cache, workers=workers, images_per_chunk=4, chunk_reuse=2)
        dm = DataManager(scene, cfg, "cpu")
        got = _batches(dm, range(5))
        dm.close()
        ref = ref or got
        assert all(_same(a, b) for a, b in zip(ref, got)), cache


def add_pixel_centres(rays, batch):
    """A custom ray processor (module level, so it pickles into workers)."""
    idx = batch["indices"]
    rays.extras["pixel_xy"] = idx[:, [2, 1]].float() + 0.5  # [n, 2]
    batch["weight"] = torch.ones(len(rays), 1)
    return rays, batch


def test_custom_ray_processor_runs_in_the_workers_and_its_extras_arrive(tmp_path):
    scene = tiny_scene(tmp_path)
    dm = DataManager(scene, _cfg(workers=2), "cpu", custom_ray_processor=add_pixel_centres)
    rays, batch = dm.next_train(1)
    dm.close()
    torch.testing.assert_close(rays.extras["pixel_xy"], batch["indices"][:, [2, 1]].float() + 0.5)
    assert batch["weight"].shape == (64, 1)
    assert len(rays[:5].extras["pixel_xy"]) == 5


def test_an_unexpected_step_restarts_the_stream_there(tmp_path):
    scene = tiny_scene(tmp_path)
    dm = DataManager(scene, _cfg(cache="disk", workers=2), "cpu")
    _batches(dm, range(3))
    jumped = dm.next_train(10)
    fresh = DataManager(scene, _cfg(cache="disk", workers=0), "cpu")
    assert _same(jumped, fresh.next_train(10))
    assert dm.state_dict()["next_step"] == 11
    dm.close()


@pytest.fixture(scope="module")
def synthetic_scenes(tmp_path_factory):
    from nerflite.data.synthetic import generate

    root = tmp_path_factory.mktemp("synthetic")
    return {fmt: generate(fmt, root / fmt, views=6, size=24) for fmt in ("blender", "llff", "neus")}


@pytest.mark.parametrize("fmt", ["blender", "llff", "neus"])
def test_synthetic_formats_through_the_parsers(synthetic_scenes, fmt):
    from nerflite.data.images import read_image
    from nerflite.data.parsers import DatasetConfig, load_scene

    scene = load_scene(DatasetConfig(path=str(synthetic_scenes[fmt])))
    dm = DataManager(scene, _cfg(cache="disk", workers=1, rays_per_batch=128), "cpu")
    rays, batch = dm.next_train(0)
    dm.close()
    assert ("mask" in batch) == scene.has_masks == (fmt == "neus")
    idx, c = batch["indices"], scene.cameras
    world = generate_rays(c, idx[:, 0], idx[:, 1], idx[:, 2], scene.near, scene.far)
    if scene.ndc:
        world = ndc_rays(world, float(c.fx[0]), float(c.fy[0]), int(c.width[0]), int(c.height[0]))
    torch.testing.assert_close(rays.directions, world.directions.float())
    for (v, y, x), rgb in zip(idx[:20].tolist(), batch["rgb"][:20]):
        px = torch.from_numpy(read_image(scene.image_paths[v], (int(c.width[v]), int(c.height[v])))[y, x]) / 255
        if px.shape[0] == 4:
            px = px[:3] * px[3] + torch.tensor(scene.background) * (1 - px[3])
        torch.testing.assert_close(rgb, px.float(), atol=1e-5, rtol=0)


@pytest.mark.parametrize("fmt", ["blender", "neus"])
def test_rays_of_a_whole_image_pass_through_the_true_surface_points(synthetic_scenes, fmt):
    """Ground-truth correspondences of the synthetic scenes: the ray built for a pixel centre
    passes through the surface point seen there."""
    from nerflite.data.parsers import DatasetConfig, load_scene

    root = synthetic_scenes[fmt]
    scene = load_scene(DatasetConfig(path=str(root)))
    corr = np.load(root / "gt_correspondences.npz")
    dm = DataManager(scene, _cfg(), "cpu")
    names = [str(p.relative_to(root)) for p in scene.image_paths]
    checked = 0
    for name in sorted(set(corr["image"].tolist())):
        view = names.index(name)
        rays, batch = dm.eval_image(view)
        h, w = batch["image_hw"]
        sel = np.nonzero((corr["image"] == name) & np.all(np.abs(corr["xy"] % 1 - 0.5) < 1e-9, axis=1))[0]
        if len(sel) == 0:
            continue
        xy = torch.from_numpy(corr["xy"][sel] - 0.5).long()  # [m, 2] pixel (x, y)
        pts = torch.from_numpy(corr["points"][sel])  # [m, 3] dataset frame
        to_scene = torch.linalg.inv(torch.as_tensor(scene.metadata["world_from_scene"], dtype=torch.float64))
        pts = pts @ to_scene[:3, :3].T + to_scene[:3, 3]
        r = rays[xy[:, 1] * w + xy[:, 0]]
        o, d = r.origins.double(), r.directions.double()
        off = (pts - o) - ((pts - o) * d).sum(-1, keepdim=True) * d  # [m, 3] distance to the ray
        assert float(off.norm(dim=-1).max()) < 1e-4 * float((pts - o).norm(dim=-1).max())
        checked += len(sel)
    assert checked >= 20


def test_config_is_a_structured_omegaconf_schema_and_bad_values_name_the_key(tmp_path):
    from omegaconf import OmegaConf

    cfg = OmegaConf.structured(DataManagerConfig)
    cfg.merge_with({"rays_per_batch": 32, "images_per_chunk": 2, "cache": "disk", "workers": 0})
    with DataManager(tiny_scene(tmp_path), OmegaConf.to_object(cfg), "cpu") as dm:
        assert dm.next_train(0)[1]["rgb"].shape == (32, 3)
    with pytest.raises(ValueError, match="chunk_reuse"):
        DataManager(tiny_scene(tmp_path / "b"), _cfg(chunk_reuse=0), "cpu")
    with pytest.raises(ValueError, match="cache must be auto"):
        DataManager(tiny_scene(tmp_path / "c"), _cfg(cache="gpu"), "cpu")


def test_ram_cache_is_one_shared_uint8_copy(tmp_path):
    scene = tiny_scene(tmp_path)
    with DataManager(scene, _cfg(cache="ram", workers=2), "cpu") as dm:
        pixels = dm.cache.full.pixels
        assert pixels.dtype == torch.uint8 and pixels.is_shared()
        assert dm.cache.nbytes() == len(scene.split("train")) * H * W * 4
        dm.next_train(0)


def test_decode_threads_have_really_ended_when_the_pool_exits():
    # a worker forked while a decode thread still runs its native exit (OpenCV's TLS destructor holds a
    # process-wide mutex) inherits that mutex locked and deadlocks in its first cv2 call
    from nerflite.data.cache import decode_threads

    png = cv2.imencode(".png", np.zeros((4, 4, 3), np.uint8))[1]
    for _ in range(20):
        with decode_threads(2) as ex:
            tids = list(ex.map(lambda _: (cv2.imdecode(png, cv2.IMREAD_UNCHANGED), threading.get_native_id())[1],
                               range(4)))
        assert not [t for t in set(tids) if os.path.exists(f"/proc/self/task/{t}")]


def test_fork_right_after_decoding_in_the_training_process_never_hangs(tmp_path):
    # decode with threads in this process (workers=0), then fork workers at once, many times; a hang
    # fails within the 5 s worker timeout instead of stalling the suite
    scene = tiny_scene(tmp_path)
    start = time.monotonic()
    for cycle in range(12):
        DataManager(scene, _cfg(cache="disk", workers=0, worker_timeout=5), "cpu").next_train(cycle)
        with DataManager(scene, _cfg(cache="disk", workers=1 + cycle % 2, worker_timeout=5), "cpu") as dm:
            for s in range(cycle, cycle + 3):
                dm.next_train(s)
    assert time.monotonic() - start < 60


def test_cache_auto_puts_images_on_the_gpu_when_they_take_a_small_share_of_it(monkeypatch):
    from nerflite.data import cache as cache_mod

    gb = 10**9
    monkeypatch.setattr(cache_mod.torch.cuda, "mem_get_info", lambda device: (100 * gb, 140 * gb))
    monkeypatch.setattr(cache_mod.psutil, "virtual_memory", lambda: type("VM", (), {"available": 64 * gb})())
    cuda = torch.device("cuda", 0)
    lego = 100 * 800 * 800 * 4  # 256 MB
    mode, why = cache_mod.choose_cache(lego, cuda, share=0.25)
    assert mode == "device" and "0.26 GB" in why and "cuda:0" in why
    assert cache_mod.choose_cache(40 * gb, cuda, share=0.25)[0] == "ram"  # over 25% of 140 GB, but not 80% of free
    assert cache_mod.choose_cache(lego, cuda, share=0.0)[0] == "ram"  # device_share=0: never the GPU
    assert cache_mod.choose_cache(lego, torch.device("cpu"), share=0.25)[0] == "ram"
    assert cache_mod.choose_cache(60 * gb, torch.device("cpu"), share=0.25)[0] == "compressed"  # > 80% of free RAM


def test_cache_auto_on_the_cpu_is_ram_and_says_so(tmp_path):
    scene = tiny_scene(tmp_path)
    dm = DataManager(scene, _cfg(cache="auto", workers=0), "cpu")
    try:
        assert dm.cache.mode == "ram" and dm.cache_note.startswith("datamanager: cache=auto -> ram")
    finally:
        dm.close()
    with pytest.raises(ValueError, match="cache must be auto"):
        DataManager(scene, _cfg(cache="gpu"), "cpu")


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_device_cache_batches_are_queued_without_waiting_for_the_gpu(tmp_path):
    """cache=device builds rays in the training process; a pageable copy there would make the host
    wait for the previous step's GPU work at every batch (measured as 'data wait')."""
    scene = tiny_scene(tmp_path)  # RGBA: the background is composited on the device
    dm = DataManager(scene, _cfg(cache="device", workers=0), "cuda")
    try:
        dm.next_train(0)  # the stream's start (and the background's one copy)
        torch.cuda.set_sync_debug_mode("error")
        for k in range(1, 4):
            rays, batch = dm.next_train(k)
        torch.cuda.set_sync_debug_mode(0)
        assert rays.origins.is_cuda and batch["rgb"].is_cuda
    finally:
        torch.cuda.set_sync_debug_mode(0)
        dm.close()
