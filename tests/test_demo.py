"""The demo writes the three synthetic scenes once and reports where they are."""

from __future__ import annotations

import nerflite.demo as demo
from nerflite.data.synthetic import FORMATS, generate


def test_demo_generates_each_scene_once(tmp_path, monkeypatch, capsys):
    made = []

    def small(fmt, out):
        made.append(fmt)
        return generate(fmt, out, views=4, size=24)

    monkeypatch.setattr(demo, "generate", small)
    assert demo.main(["--root", str(tmp_path)]) == 0
    assert made == list(FORMATS)
    for fmt in FORMATS:
        assert (tmp_path / fmt / "gt_points.ply").is_file()
    first = capsys.readouterr().out
    assert all(str((tmp_path / fmt).resolve()) in first for fmt in FORMATS)
    assert demo.main(["--root", str(tmp_path)]) == 0  # second run: nothing regenerated
    assert made == list(FORMATS)
    assert capsys.readouterr().out.count("already present") == 3
