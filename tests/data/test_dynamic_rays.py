"""Time (and appearance) of a dynamic scene reach every ray: training batches through every cache
mode and the shared-memory slots, with and without workers, after a resume, per rank; eval rays and
whole eval images; rays made for rendering. Static scenes carry no extras."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from nerflite.cameras import generate_rays
from nerflite.data.datamanager import DataManager
from nerflite.data.dynamic import APPEARANCE, TIME, ViewTimes, attach_time, normalised_times
from nerflite.rays import RayBundle
from tests.data.test_datamanager import H, W, _cfg, tiny_scene

N_VIEWS = 6


def dynamic(scene, appearance: bool = True):
    """The scene with a distinct moment per view (not in view order) and appearance ids 10 * view + 3."""
    n = len(scene)
    times = torch.tensor([(7 * i % n) / (n - 1) for i in range(n)], dtype=torch.float32)
    ids = torch.arange(n, dtype=torch.int64) * 10 + 3 if appearance else None
    return replace(scene, times=times, appearance_ids=ids)


def check_extras(scene, rays: RayBundle, batch: dict) -> None:
    """Each ray's time and appearance are those of the view its ``indices`` name."""
    view = batch["indices"][:, 0]
    n = len(view)
    t = rays.extras[TIME]
    assert t.dtype == torch.float32 and t.shape == (n, 1)
    assert torch.equal(t[:, 0], scene.times[view])
    if scene.appearance_ids is not None:
        a = rays.extras[APPEARANCE]
        assert a.dtype == torch.int64 and a.shape == (n, 1)
        assert torch.equal(a[:, 0], scene.appearance_ids[view])
    else:
        assert APPEARANCE not in rays.extras
    assert torch.equal(rays.camera_indices[:, 0], view)


def _same_with_extras(a, b) -> bool:
    (ra, ba), (rb, bb) = a, b
    fields = ("origins", "directions", "viewdirs", "near", "far", "camera_indices")
    same = all(torch.equal(getattr(ra, f), getattr(rb, f)) for f in fields)
    same &= ra.extras.keys() == rb.extras.keys() and all(torch.equal(ra.extras[k], rb.extras[k]) for k in ra.extras)
    return same and all(torch.equal(ba[k], bb[k]) for k in ba)


@pytest.fixture
def scene(tmp_path):
    return dynamic(tiny_scene(tmp_path, n=N_VIEWS))


@pytest.mark.parametrize("cache,workers", [("ram", 0), ("ram", 2), ("disk", 2), ("compressed", 1), ("device", 0)])
def test_time_reaches_every_ray_of_every_training_batch(scene, cache, workers):
    ref_dm = DataManager(scene, _cfg(cache="ram", workers=0), "cpu")
    ref = [ref_dm.next_train(k) for k in range(6)]
    dm = DataManager(scene, _cfg(cache=cache, workers=workers), "cpu")
    got = [dm.next_train(k) for k in range(6)]
    dm.close()
    seen = set()
    for (rays, batch), r in zip(got, ref):
        check_extras(scene, rays, batch)
        assert _same_with_extras((rays, batch), r)
        seen |= set(batch["indices"][:, 0].tolist())
    assert len(seen) >= 3  # the batches span several views, hence several moments


def test_slots_carry_time_in_the_layout_not_by_pickling(scene):
    dm = DataManager(scene, _cfg(workers=1), "cpu")
    rays, batch = dm.next_train(0)
    ring = dm._stream.ring
    dm.close()
    assert ("extras", TIME, 1) in ring.float_fields and ("extras", APPEARANCE, 1) in ring.int_fields
    assert ring.write(0, rays, batch) is None  # nothing left to pickle
    check_extras(scene, *ring.unpack(*ring.read(0, None)))


def test_without_appearance_ids_only_time_travels(tmp_path):
    scene = dynamic(tiny_scene(tmp_path, n=N_VIEWS), appearance=False)
    dm = DataManager(scene, _cfg(workers=2), "cpu")
    rays, batch = dm.next_train(3)
    dm.close()
    check_extras(scene, rays, batch)


def test_resume_mid_stream_carries_the_same_times(scene):
    dm = DataManager(scene, _cfg(cache="disk", workers=2), "cpu")
    [dm.next_train(k) for k in range(4)]
    state = dm.state_dict()
    uninterrupted = [dm.next_train(k) for k in range(4, 10)]
    dm.close()
    resumed = DataManager(scene, _cfg(cache="disk", workers=1), "cpu")
    resumed.load_state_dict(state)
    again = [resumed.next_train(k) for k in range(4, 10)]
    resumed.close()
    for a, b in zip(uninterrupted, again):
        check_extras(scene, *b)
        assert _same_with_extras(a, b)


def test_each_rank_draws_its_own_rays_with_their_own_times(scene):
    batches = [DataManager(scene, _cfg(workers=0), "cpu", rank=r, world_size=2).next_train(2) for r in (0, 1)]
    for rays, batch in batches:
        check_extras(scene, rays, batch)
    assert not torch.equal(batches[0][1]["indices"], batches[1][1]["indices"])


def test_eval_rays_and_whole_eval_images_carry_their_views_time(scene):
    dm = DataManager(scene, _cfg(workers=0), "cpu")
    rays, batch = dm.next_eval(3)
    check_extras(scene, rays, batch)
    view, rays, batch = dm.next_eval_image(1)
    assert len(rays) == H * W and view in scene.split("val")
    check_extras(scene, rays, batch)
    assert torch.all(rays.extras[TIME] == scene.times[view])
    views = []
    for view, rays, batch in dm.iter_eval_images():
        check_extras(scene, rays, batch)
        views.append(view)
    assert views == scene.split("val")
    rays, batch = dm.eval_image(scene.split("train")[0])
    check_extras(scene, rays, batch)
    # chunks of a whole image (as the evaluator renders it) keep the per-ray extras aligned
    part = RayBundle.cat(list(rays.split(50)))
    assert torch.equal(part.extras[TIME], rays.extras[TIME])


def add_pixel_centres_and_read_time(rays, batch):
    """A custom ray processor: it sees the time already attached, and its own extras travel too."""
    batch["time_seen"] = rays.extras[TIME].clone()
    rays.extras["pixel_xy"] = batch["indices"][:, [2, 1]].float() + 0.5
    return rays, batch


def test_custom_ray_processor_sees_time_in_the_workers(scene):
    dm = DataManager(scene, _cfg(workers=2), "cpu", custom_ray_processor=add_pixel_centres_and_read_time)
    rays, batch = dm.next_train(1)
    dm.close()
    check_extras(scene, rays, batch)
    torch.testing.assert_close(batch["time_seen"], rays.extras[TIME])
    torch.testing.assert_close(rays.extras["pixel_xy"], batch["indices"][:, [2, 1]].float() + 0.5)


@pytest.mark.parametrize("workers", [0, 2])
def test_static_scene_rays_carry_no_extras(tmp_path, workers):
    scene = tiny_scene(tmp_path, n=N_VIEWS)
    assert not scene.is_dynamic and ViewTimes.of(scene) is None
    dm = DataManager(scene, _cfg(workers=workers), "cpu")
    rays, _ = dm.next_train(0)
    if workers:
        assert [g for g, _, _ in dm._stream.ring.float_fields + dm._stream.ring.int_fields].count("extras") == 0
    assert rays.extras == {} and dm.next_eval(0)[0].extras == {} and dm.next_eval_image(0)[1].extras == {}
    dm.close()


def test_attach_time_for_rays_made_from_cameras(scene):
    cams = scene.cameras
    y, x = torch.arange(5), torch.arange(5) + 2
    rays = generate_rays(cams, torch.full((5,), 2), y, x, scene.near, scene.far)
    fixed = attach_time(rays, 0.25)  # render every ray at T = 0.25
    assert fixed.extras[TIME].dtype == torch.float32 and fixed.extras[TIME].shape == (5, 1)
    assert torch.all(fixed.extras[TIME] == 0.25) and APPEARANCE not in fixed.extras and rays.extras == {}
    per_ray = attach_time(rays, torch.linspace(0, 1, 5), appearance_id=4)
    assert torch.equal(per_ray.extras[TIME][:, 0], torch.linspace(0, 1, 5))
    assert per_ray.extras[APPEARANCE].dtype == torch.int64 and per_ray.extras[APPEARANCE].tolist() == [[4]] * 5
    assert torch.equal(per_ray.origins, rays.origins)
    with pytest.raises(ValueError, match="one per ray"):
        attach_time(rays, torch.zeros(3))
    # a view's own moment, as the datamanager attaches it
    own = ViewTimes.of(scene).attach(rays, rays.camera_indices[:, 0])
    assert torch.all(own.extras[TIME] == scene.times[2]) and torch.all(own.extras[APPEARANCE] == 23)


def test_scene_checks_its_tables_and_normalised_times(tmp_path):
    scene = tiny_scene(tmp_path, n=N_VIEWS)
    with pytest.raises(ValueError, match="times must be float32"):
        replace(scene, times=torch.full((N_VIEWS,), 1.5))
    with pytest.raises(ValueError, match="times must be float32"):
        replace(scene, times=torch.zeros(N_VIEWS - 1))
    with pytest.raises(ValueError, match="appearance_ids must be int64"):
        replace(scene, times=torch.zeros(N_VIEWS), appearance_ids=torch.zeros(N_VIEWS))
    assert dynamic(scene).is_dynamic
    assert normalised_times([3, 5, 11, 7]).tolist() == [0.0, 0.25, 1.0, 0.5]
    assert normalised_times([4, 4]).tolist() == [0.0, 0.0]
