"""Format detection prefers the format whose files are complete; the inspector agrees."""

from __future__ import annotations

import numpy as np
import pytest

from nerflite.data.inspect import main
from nerflite.data.parsers import PROBES, DatasetConfig, DatasetError, detect_format, load_scene
from tests.data.builders import K_TRUE, SCALE_MAT, forward_row, make_blender, make_llff, make_neus, neus_cams


def _inspect_format(capsys, root) -> tuple[int, str]:
    code = main([str(root), "--json"])
    out = capsys.readouterr()
    return code, (out.out.strip().splitlines()[-1] if code == 0 else out.err)


def test_dtu_folder_with_a_stray_poses_bounds_is_neus(tmp_path, capsys):
    make_neus(tmp_path, K_TRUE, neus_cams(3), SCALE_MAT)
    np.save(tmp_path / "poses_bounds.npy", np.ones((3, 17)))  # an LLFF conversion, without images/
    assert PROBES["llff"](tmp_path) == (True, False) and PROBES["neus"](tmp_path).complete
    assert detect_format(tmp_path) == "neus"
    scene = load_scene(DatasetConfig(path=str(tmp_path)))
    assert scene.format == "neus" and len(scene) == 3 and scene.has_masks
    code, line = _inspect_format(capsys, tmp_path)
    assert code == 0 and '"format": "neus"' in line


def test_two_complete_formats_stop_with_one_line_naming_both(tmp_path, capsys):
    make_neus(tmp_path, K_TRUE, neus_cams(3), SCALE_MAT)
    make_llff(tmp_path, [forward_row(x) for x in (-1.0, 0.0, 1.0)])  # poses_bounds.npy + images/
    with pytest.raises(DatasetError) as e:
        load_scene(DatasetConfig(path=str(tmp_path)))
    msg = str(e.value)
    assert "llff" in msg and "neus" in msg and "dataset.format=" in msg and "\n" not in msg
    assert load_scene(DatasetConfig(path=str(tmp_path), format="llff")).format == "llff"
    assert load_scene(DatasetConfig(path=str(tmp_path), format="neus")).format == "neus"
    code, err = _inspect_format(capsys, tmp_path)
    assert code == 1 and err.strip() == f"error: {msg}"
    assert main([str(tmp_path), "--format", "neus"]) == 0
    capsys.readouterr()


def test_blender_needs_its_frames_images_to_be_complete(tmp_path):
    make_blender(tmp_path, n=2)
    assert PROBES["blender"](tmp_path).complete
    make_llff(tmp_path, [forward_row(x) for x in (-1.0, 1.0)])
    with pytest.raises(DatasetError, match="blender and llff"):
        detect_format(tmp_path)
    for png in (tmp_path / "train").glob("*.png"):  # the frames' images gone: only llff is complete
        png.unlink()
    assert PROBES["blender"](tmp_path) == (True, False)
    assert detect_format(tmp_path) == "llff"


def test_only_camera_files_fall_back_to_the_parser_naming_what_is_missing(tmp_path):
    make_neus(tmp_path, K_TRUE, neus_cams(3), SCALE_MAT)
    for png in (tmp_path / "image").iterdir():
        png.unlink()
    (tmp_path / "image").rmdir()
    np.save(tmp_path / "poses_bounds.npy", np.ones((3, 17)))
    assert detect_format(tmp_path) == "llff"  # neither complete: the first camera file found, as before
    with pytest.raises(DatasetError, match="image folder is missing"):
        load_scene(DatasetConfig(path=str(tmp_path)))
