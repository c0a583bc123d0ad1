"""LLFF 360-degree object captures with a masks/ folder: one mask per image, matched by file stem."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from nerflite.data.datamanager import DataManager, DataManagerConfig
from nerflite.data.parsers import DatasetConfig, DatasetError, load_scene
from tests.data.builders import forward_row, make_llff

W, H = 64, 48


def _write_mask(path, k: int) -> None:
    """Mask k: the left ``8 * (k + 1)`` columns inside."""
    path.parent.mkdir(parents=True, exist_ok=True)
    m = np.zeros((H, W), np.uint8)
    m[:, : 8 * (k + 1)] = 255
    assert cv2.imwrite(str(path), m)


def _llff_with_masks(root, names=None):
    make_llff(root, [forward_row(x) for x in (-1.0, 0.0, 1.0)], width=W, height=H)  # images/IMG_000k.png
    for k, name in enumerate(names or [f"IMG_{k:04d}.png" for k in range(3)]):
        _write_mask(root / "masks" / name, k)


def test_llff_masks_are_read_by_stem_and_reach_the_batches(tmp_path):
    _llff_with_masks(tmp_path, ["IMG_0000.png", "IMG_0001.bmp", "IMG_0002.jpg.png"])  # any image extension
    scene = load_scene(DatasetConfig(path=str(tmp_path), llffhold=0))
    assert scene.has_masks and [p.name for p in scene.mask_paths] == ["IMG_0000.png", "IMG_0001.bmp",
                                                                       "IMG_0002.jpg.png"]
    dm = DataManager(scene, DataManagerConfig(workers=0), "cpu")
    for k in range(3):
        _, batch = dm.eval_image(k)
        inside = batch["mask"].reshape(H, W)
        assert inside[:, : 8 * (k + 1)].all() and not inside[:, 8 * (k + 1):].any()
    dm.close()
    assert not load_scene(DatasetConfig(path=str(tmp_path), masks=False)).has_masks


def test_llff_masks_follow_images_when_a_downscaled_folder_renamed_them(tmp_path):
    make_llff(tmp_path, [forward_row(x) for x in (-1.0, 0.0, 1.0)], width=W, height=H,
              folders={"images": (W, H)})
    for k in range(3):  # images_2/ as LLFF's tools write it: image000.png ...
        (tmp_path / "images_2").mkdir(exist_ok=True)
        img = cv2.imread(str(tmp_path / "images" / f"IMG_{k:04d}.png"))
        cv2.imwrite(str(tmp_path / "images_2" / f"image{k:03d}.png"), cv2.resize(img, (W // 2, H // 2)))
        _write_mask(tmp_path / "masks" / f"IMG_{k:04d}.png", k)
    scene = load_scene(DatasetConfig(path=str(tmp_path), downscale=2))
    assert scene.metadata["image_folder"] == "images_2"
    assert [p.name for p in scene.mask_paths] == [f"IMG_{k:04d}.png" for k in range(3)]


@pytest.mark.parametrize("case,names,says", [
    ("missing", ["IMG_0000.png", "IMG_0001.png"], "no mask for image IMG_0002"),
    ("extra", ["IMG_0000.png", "IMG_0001.png", "IMG_0002.png", "IMG_0009.png"], "IMG_0009.png"),
    ("misnamed", ["IMG_0000.png", "IMG_0001.png", "img_2.png"], "no mask for image IMG_0002"),
])
def test_llff_mask_mismatch_is_one_line_naming_the_folder(tmp_path, case, names, says):
    _llff_with_masks(tmp_path, names)
    with pytest.raises(DatasetError) as e:
        load_scene(DatasetConfig(path=str(tmp_path)))
    assert "masks" in str(e.value) and says in str(e.value) and "\n" not in str(e.value)
    assert not load_scene(DatasetConfig(path=str(tmp_path), masks=False)).has_masks  # ignored when off
