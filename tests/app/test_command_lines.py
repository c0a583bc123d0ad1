"""A wrong key, type or value on the command line of any nerflite command ends in one line naming
the key or argument (exit status 1), as train.py's do: render.py, python -m nerflite.view and the
argparse tools (process, inspect, synthetic, geometry)."""

from __future__ import annotations

import pytest

from tests.app.test_errors import error_line, run_cli


def test_a_wrong_type_for_the_viewer_or_render_py_names_the_key():
    line = error_line(run_cli("-m", "nerflite.view", "run=outputs/x", "port=abc"))
    assert line == "error: port=abc: Value 'abc' of type 'str' could not be converted to Integer"
    line = error_line(run_cli("render.py", "run=outputs/x", "frames=abc"))
    assert "frames=abc" in line and "could not be converted to Integer" in line


@pytest.mark.parametrize("args, line", [
    (["run=x", "portz=3"], "portz=3: Key 'portz' not in 'ViewConfig' (keys: host, port, budget,"),
    (["run=x", "max_res=1.5"], "max_res=1.5: Value '1.5' of type 'float' could not be converted to Integer"),
    (["run=x", "port=[1"], "port=[1: not a value (while parsing a flow sequence)"),
    (["run=x", "budget=2"], "budget must be in (0, 1), got 2.0"),  # the command's key, without `viewer.`
])
def test_every_viewer_argument_error_names_the_argument(args, line, capsys):
    from nerflite.view import main

    assert main(args) == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(f"error: {line}"), err


@pytest.mark.parametrize("module, argv, says", [
    ("nerflite.data.process.__main__", ["photos", "--out", "d", "--frames", "abc"],
     "error: argument --frames: invalid int value: 'abc' (python -m nerflite.data.process --help lists the options)"),
    ("nerflite.data.inspect", [], "error: the following arguments are required: path"),
    ("nerflite.data.inspect", ["d", "--downscale", "half"], "error: argument --downscale: invalid float value: 'half'"),
    ("nerflite.data.synthetic.__main__", ["--format", "obj", "--out", "d"], "error: argument --format: invalid choice"),
    ("nerflite.geometry", ["a.ply", "b.ply", "--max-dist", "far"], "error: argument --max-dist: invalid float value"),
])
def test_the_argparse_tools_end_a_bad_command_line_in_one_line(module, argv, says, capsys):
    import importlib

    with pytest.raises(SystemExit) as done:
        importlib.import_module(module).main(argv)
    assert done.value.code == 1
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(says), err


@pytest.mark.parametrize("dataset, model, why", [
    ("colmap", "dnerf", "dynamic models need a time per frame"),
    ("llff", "dynamic_instant", "dynamic models need a time per frame"),
    ("nerfies", "neus", "NeuS reconstructs a static surface"),
])
def test_a_model_that_does_not_train_on_the_dataset_says_so_in_one_line(dataset, model, why):
    line = error_line(run_cli("train.py", f"dataset={dataset}", f"model={model}"))
    assert line.startswith(f"error: model={model} does not train on dataset={dataset} "
                           f"(no conf/preset/{dataset}_{model}.yaml): {why}"), line
