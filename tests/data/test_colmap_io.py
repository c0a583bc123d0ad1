"""COLMAP model files: write -> read round trips in both forms, bin <-> txt equivalence, and one clear
error per malformed file."""

from __future__ import annotations

import struct

import numpy as np
import pytest

from nerflite.data.parsers import colmap_io as cio
from nerflite.data.parsers.colmap_write import write_model
from nerflite.data.scene import DatasetError


def _model(seed: int = 0) -> cio.Model:
    """Every camera model once, images with keypoints (some without a 3D point), points with tracks."""
    rng = np.random.default_rng(seed)
    cameras = {}
    for k, (name, (_, n)) in enumerate(cio.CAMERA_MODELS.items()):
        cid = 3 * k + 2  # ids are not contiguous
        w, h = (int(v) for v in rng.integers(10, 5000, size=2))
        cameras[cid] = cio.Camera(cid, name, w, h, rng.normal(size=n))
    images = {}
    cam_ids = list(cameras)
    for i in range(5):
        k = int(rng.integers(0, 40)) if i else 0  # the first image has no keypoints
        q = rng.normal(size=4)
        ids = rng.integers(1, 100, size=k)
        ids[::3] = -1
        images[10 + 7 * i] = cio.Image(10 + 7 * i, q / np.linalg.norm(q), rng.normal(size=3), cam_ids[i % len(cam_ids)],
                                       f"sub/img_{i}.jpg", rng.uniform(0, 3000, size=(k, 2)), ids.astype(np.int64))
    m = 30
    lengths = rng.integers(0, 5, size=m)
    track = np.stack([rng.choice(list(images), size=lengths.sum()), rng.integers(0, 40, size=lengths.sum())], 1)
    points = cio.Points3D(rng.permutation(1000)[:m].astype(np.int64), rng.normal(size=(m, 3)),
                          rng.integers(0, 256, size=(m, 3)).astype(np.uint8), rng.uniform(0, 2, size=m),
                          track.astype(np.int64), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
    return cio.Model(cameras, images, points)


def _assert_models_equal(a: cio.Model, b: cio.Model) -> None:
    assert list(a.cameras) == list(b.cameras)
    for k, c in a.cameras.items():
        d = b.cameras[k]
        assert (c.id, c.model, c.width, c.height) == (d.id, d.model, d.width, d.height)
        np.testing.assert_array_equal(c.params, d.params)
    assert list(a.images) == list(b.images)
    for k, im in a.images.items():
        jm = b.images[k]
        assert (im.id, im.camera_id, im.name) == (jm.id, jm.camera_id, jm.name)
        for f in ("qvec", "tvec", "xys", "point3D_ids"):
            np.testing.assert_array_equal(getattr(im, f), getattr(jm, f), err_msg=f)
        assert jm.point3D_ids.dtype == np.int64 and jm.xys.shape == (len(jm.point3D_ids), 2)
    for f in ("ids", "xyz", "rgb", "error", "track", "offsets"):
        np.testing.assert_array_equal(getattr(a.points, f), getattr(b.points, f), err_msg=f)


@pytest.mark.parametrize("ext", [".bin", ".txt"])
def test_write_read_round_trip_is_exact(tmp_path, ext):
    model = _model()
    write_model(model, tmp_path, ext)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f + ext for f in cio.FILES)
    _assert_models_equal(model, cio.read_model(tmp_path))


def test_bin_and_txt_describe_the_same_model(tmp_path):
    model = _model(seed=1)
    write_model(model, tmp_path / "bin", ".bin")
    from_bin = cio.read_model(tmp_path / "bin")
    write_model(from_bin, tmp_path / "txt", ".txt")  # bin -> txt conversion
    from_txt = cio.read_model(tmp_path / "txt")
    _assert_models_equal(from_bin, from_txt)
    write_model(from_txt, tmp_path / "bin2", ".bin")  # and back, byte for byte
    for f in cio.FILES:
        assert (tmp_path / "bin" / f"{f}.bin").read_bytes() == (tmp_path / "bin2" / f"{f}.bin").read_bytes()
    # with both forms in one folder, the binary one is read (as COLMAP does)
    write_model(_model(seed=2), tmp_path / "bin", ".txt")
    _assert_models_equal(from_bin, cio.read_model(tmp_path / "bin"))


def test_binary_layout_matches_the_documented_format(tmp_path):
    """Hand-packed bytes of COLMAP's documented layout read back as written."""
    cams = struct.pack("<Q", 1) + struct.pack("<IiQQ", 7, 4, 640, 480) + struct.pack("<8d", 500, 510, 320, 240,
                                                                                       -0.1, 0.01, 0.001, 0.002)
    imgs = struct.pack("<Q", 1) + struct.pack("<I7dI", 3, 1, 0, 0, 0, 0.5, -0.5, 2.0, 7) + b"a b.png\0"
    imgs += struct.pack("<Q", 2) + struct.pack("<2dq", 10.5, 20.25, 42) + struct.pack("<2dq", 1.0, 2.0, -1)
    pts = struct.pack("<Q", 1) + struct.pack("<Q3d3BdQ", 42, 1.0, 2.0, 3.0, 10, 20, 30, 0.7, 1)
    pts += struct.pack("<ii", 3, 0)
    for name, data in (("cameras", cams), ("images", imgs), ("points3D", pts)):
        (tmp_path / f"{name}.bin").write_bytes(data)
    m = cio.read_model(tmp_path)
    assert m.cameras[7].model == "OPENCV" and m.cameras[7].params[4] == -0.1 and m.cameras[7].width == 640
    im = m.images[3]
    assert im.name == "a b.png" and im.camera_id == 7 and im.tvec.tolist() == [0.5, -0.5, 2.0]
    assert im.point3D_ids.tolist() == [42, -1] and im.xys[0].tolist() == [10.5, 20.25]
    assert m.points.ids.tolist() == [42] and m.points.rgb.tolist() == [[10, 20, 30]]
    assert m.points.track.tolist() == [[3, 0]] and m.points.error.tolist() == [0.7]


def test_quaternions_round_trip_and_match_colmap_convention():
    rng = np.random.default_rng(3)
    for _ in range(50):
        q = rng.normal(size=4)
        q = q / np.linalg.norm(q) * np.sign(q[0])
        R = cio.qvec_to_rotmat(q)
        np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-12)
        np.testing.assert_allclose(cio.rotmat_to_qvec(R), q, atol=1e-12)
    # 90 degrees about z: (w, x, y, z) = (cos 45, 0, 0, sin 45) maps x to y
    R = cio.qvec_to_rotmat(np.array([np.cos(np.pi / 4), 0, 0, np.sin(np.pi / 4)]))
    np.testing.assert_allclose(R @ [1, 0, 0], [0, 1, 0], atol=1e-12)


@pytest.mark.parametrize("name", cio.FILES)
def test_truncated_binary_file_is_one_clear_error(tmp_path, name):
    write_model(_model(), tmp_path, ".bin")
    path = tmp_path / f"{name}.bin"
    path.write_bytes(path.read_bytes()[: len(path.read_bytes()) * 2 // 3])
    with pytest.raises(DatasetError, match="truncated") as e:
        cio.read_model(tmp_path)
    assert e.value.path == path


def test_malformed_files_name_file_and_problem(tmp_path):
    write_model(_model(), tmp_path, ".txt")
    cams = tmp_path / "cameras.txt"
    good = cams.read_text()
    cams.write_text(good.replace(" PINHOLE ", " PINHOL "))
    with pytest.raises(DatasetError, match="unknown camera model 'PINHOL'"):
        cio.read_model(tmp_path)
    line = next(ln for ln in good.splitlines() if " OPENCV " in ln)
    cams.write_text(good.replace(line, line.rsplit(" ", 1)[0]))
    with pytest.raises(DatasetError, match="OPENCV needs 8 parameters, found 7") as e:
        cio.read_model(tmp_path)
    assert e.value.path == cams
    cams.write_text(good.replace(" PINHOLE ", " PINHOLE x"))
    with pytest.raises(DatasetError, match="line"):
        cio.read_model(tmp_path)
    cams.write_text(good)
    (tmp_path / "images.txt").unlink()
    with pytest.raises(DatasetError, match="images file is missing") as e:
        cio.read_model(tmp_path)
    assert e.value.path == tmp_path / "images.txt"
    with pytest.raises(DatasetError, match="cameras file is missing"):
        cio.read_model(tmp_path / "nothing")
    b = tmp_path / "b"
    write_model(_model(), b, ".bin")
    data = bytearray((b / "cameras.bin").read_bytes())
    data[12:16] = struct.pack("<i", 99)  # model id of the first camera
    (b / "cameras.bin").write_bytes(bytes(data))
    with pytest.raises(DatasetError, match="unknown camera model id 99"):
        cio.read_model(b)
