"""The dataset inspector: summaries, warnings, and one clear line for each kind of bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nerflite.data.inspect import main
from tests.data.builders import (
    K_TRUE,
    SCALE_MAT,
    forward_row,
    make_blender,
    make_llff,
    make_neus,
    neus_cams,
    write_png,
)

REPO = Path(__file__).resolve().parents[2]


def run_main(capsys, *args) -> tuple[int, str, str]:
    code = main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def test_inspect_blender_json(tmp_path, capsys):
    make_blender(tmp_path, n=9, width=16, height=12, angle_x=0.8)
    code, out, err = run_main(capsys, tmp_path, "--json", "--workers", "2")
    assert code == 0 and err == ""
    rec = last_json(out)
    assert rec["format"] == "blender" and rec["n_images"] == {"train": 7, "val": 2, "test": 2}
    assert (rec["width"], rec["height"]) == (16, 12) and rec["channels"] == 4 and rec["masks"] is False
    assert rec["fx"] == pytest.approx(8 / np.tan(0.4), abs=1e-4) and rec["fx"] == rec["fy"]
    assert (rec["near"], rec["far"]) == (2.0, 6.0) and 0 < rec["radius"] < 2
    assert rec["warnings"] == [] and "warnings    none" in out
    code, out, _ = run_main(capsys, tmp_path, "--json", "--downscale", "2", "--format", "blender")
    rec = last_json(out)
    assert code == 0 and (rec["width"], rec["file_width"]) == (8, 16)
    assert rec["fx"] == pytest.approx(4 / np.tan(0.4), abs=1e-4)


def test_inspect_llff_and_neus_json(tmp_path, capsys):
    rig = [forward_row(x) for x in np.linspace(-1, 1, 9)]
    make_llff(tmp_path / "l", rig, width=64, height=48, focal=50.0, folders={"images_4": (16, 12)})
    code, out, _ = run_main(capsys, tmp_path / "l", "--json", "--downscale", "4")
    rec = last_json(out)
    assert code == 0 and rec["format"] == "llff" and rec["ndc"] and (rec["near"], rec["far"]) == (0.0, 1.0)
    assert (rec["width"], rec["height"], rec["fx"]) == (16, 12, 12.5) and rec["n_images"]["test"] == 2
    make_neus(tmp_path / "n", K_TRUE, neus_cams(4), SCALE_MAT)
    code, out, _ = run_main(capsys, tmp_path / "n", "--json")
    rec = last_json(out)
    assert code == 0 and rec["format"] == "neus" and rec["masks"] and rec["radius"] == 1.0
    assert rec["cx"] == 21.0 and rec["warnings"] == [] and "mean coverage" in out


def test_inspect_warns_about_suspicious_data(tmp_path, capsys):
    meta = make_blender(tmp_path, n=4, width=16, height=12, angle_x=0.8)["train"]
    m = np.array(meta["frames"][1]["transform_matrix"])
    m[:3, 2] *= -1  # camera 1 looks away from the centre
    m[:3, 0] *= -1
    meta["frames"][1]["transform_matrix"] = m.tolist()
    meta["camera_angle_x"] = 3.1  # ~178 degree field of view: focal does not fit the image size
    (tmp_path / "transforms_train.json").write_text(json.dumps(meta))
    write_png(tmp_path / "train" / "r_2.png", 32, 12, channels=4)  # one image of another size
    code, out, _ = run_main(capsys, tmp_path, "--json")
    warnings = "\n".join(last_json(out)["warnings"])
    assert code == 0
    assert "do not face the scene centre" in warnings and "views 1" in warnings
    assert "focal mismatch" in warnings
    assert "different sizes" in warnings and "WARNING" in out


def test_inspect_warns_about_a_camera_facing_backwards_in_forward_facing_data(tmp_path, capsys):
    rig = [forward_row(x) for x in np.linspace(-1, 1, 6)]
    rig[4] = np.concatenate([np.diag([-1.0, -1.0, 1.0]), rig[4][:, 3:]], axis=1)  # turned around: looks +z
    make_llff(tmp_path, rig)
    code, out, _ = run_main(capsys, tmp_path, "--json")
    warnings = last_json(out)["warnings"]
    assert code == 0 and len(warnings) == 1  # still forward-facing (5 of 6 views), the odd one named
    assert warnings[0].startswith("forward-facing capture (5 of 6 views within 45 deg of their mean direction; "
                                  "view(s) 4 look up to 180 deg away: damaged poses?): rays in NDC")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _corrupt(path: Path) -> None:
    """Valid header and end marker, garbage pixel data in between."""
    data = path.read_bytes()
    path.write_bytes(data[:60] + b"\0" * 300 + data[-12:])


def _npz_without_world_mat_0(root: Path) -> None:
    data = dict(np.load(root / "cameras_sphere.npz"))
    del data["world_mat_0"]
    np.savez(root / "cameras_sphere.npz", **data)


BAD = {
    "missing folder": ("blender", lambda r: None, "nowhere", "does not exist"),
    "missing image": ("blender", lambda r: (r / "train" / "r_2.png").unlink(), "r_2", "missing"),
    "truncated image": ("blender", lambda r: _truncate(r / "train" / "r_1.png"), "r_1.png", "truncated"),
    "corrupt image": ("llff", lambda r: _corrupt(r / "images" / "IMG_0002.png"), "IMG_0002.png", "decode"),
    "json without frames": ("blender", lambda r: (r / "transforms_train.json").write_text("{}"),
                            "transforms_train.json", "frames"),
    "poses_bounds shape": ("llff", lambda r: np.save(r / "poses_bounds.npy", np.zeros((3, 14))),
                           "poses_bounds.npy", "N x 17"),
    "npz without world_mat_0": ("neus", _npz_without_world_mat_0, "cameras_sphere.npz", "world_mat_0"),
    "mask count": ("neus", lambda r: (r / "mask" / "001.png").unlink(), "mask", "2 masks but 3 images"),
    "truncated mask": ("neus", lambda r: _truncate(r / "mask" / "002.png"), "002.png", "truncated"),
}


def _build(kind: str, root: Path) -> None:
    if kind == "blender":
        make_blender(root, n=3)
    elif kind == "llff":
        make_llff(root, [forward_row(x) for x in (-1.0, 0.0, 1.0)])
    else:
        make_neus(root, K_TRUE, neus_cams(3), SCALE_MAT)


@pytest.mark.parametrize("case", list(BAD))
def test_inspect_bad_input_one_line_naming_the_file(tmp_path, capsys, case):
    kind, breaks, names, says = BAD[case]
    root = tmp_path / "ds"
    _build(kind, root)
    breaks(root)
    target = tmp_path / "nowhere" if case == "missing folder" else root
    code, out, err = run_main(capsys, target, "--json")
    assert code == 1 and out == ""
    lines = err.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and says in lines[0], err
    assert "Traceback" not in err


def test_inspect_cli_subprocess_exit_code_and_message(tmp_path):
    make_llff(tmp_path, [forward_row(x) for x in (-1.0, 0.0, 1.0)])
    np.save(tmp_path / "poses_bounds.npy", np.zeros((3, 15)))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.run([sys.executable, "-m", "nerflite.data.inspect", str(tmp_path), "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=120)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0 and "Traceback" not in proc.stderr
    assert "poses_bounds.npy" in proc.stderr and "N x 17" in proc.stderr


# ----------------------------------------------------------------------------- real data (slow)


@pytest.mark.slow
def test_inspect_real_lego(shared_data, capsys):
    code, out, _ = run_main(capsys, shared_data("lego"), "--json")
    rec = last_json(out)
    assert code == 0 and rec["format"] == "blender" and rec["n_views"] == 100
    assert rec["n_images"] == {"train": 87, "val": 13, "test": 13}
    assert (rec["width"], rec["height"], rec["channels"]) == (800, 800, 4)
    assert rec["fx"] == pytest.approx(400 / np.tan(0.6911112070083618 / 2), abs=1e-4)
    assert (rec["near"], rec["far"]) == (2.0, 6.0) and rec["warnings"] == []


@pytest.mark.slow
@pytest.mark.parametrize("factor, size", [(4, (1008, 756)), (8, (504, 378))])
def test_inspect_real_fern(shared_data, capsys, factor, size):
    code, out, _ = run_main(capsys, shared_data("fern"), "--json", "--downscale", factor)
    rec = last_json(out)
    full = np.load(shared_data("fern") / "poses_bounds.npy")[0, 14]  # focal at 4032 px wide
    assert code == 0 and rec["format"] == "llff" and rec["n_views"] == 20
    assert rec["n_images"] == {"train": 17, "val": 3, "test": 3}
    assert (rec["width"], rec["height"]) == size and rec["ndc"]
    assert rec["fx"] == pytest.approx(full * size[0] / 4032, abs=1e-4)
    assert (rec["cx"], rec["cy"]) == (size[0] / 2, size[1] / 2) and rec["warnings"] == []


@pytest.mark.slow
def test_inspect_real_dtu(shared_data, capsys):
    code, out, _ = run_main(capsys, shared_data("dtu_scan65"), "--json")
    rec = last_json(out)
    assert code == 0 and rec["format"] == "neus" and rec["n_views"] == 49 and rec["masks"]
    assert (rec["width"], rec["height"]) == (1600, 1200) and rec["radius"] == 1.0
    assert rec["n_images"] == {"train": 42, "val": 7, "test": 7} and rec["warnings"] == []
    assert 2.5 < rec["near"] < rec["far"] < 6
