"""The newcomer's command line: every option explains itself (what, unit, default), `halocm
box` makes the inputs of `halocm paint`, and `halocm pipeline` takes tuned values or refuses
what it cannot run in one line."""

from __future__ import annotations

import numpy as np
import pandas as pd
import typer
from conftest import write_params
from typer.testing import CliRunner

from halocm.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_every_option_of_every_command_has_help():
    group = typer.main.get_command(app)
    missing = [
        f"halocm {name} {param.opts[0]}"
        for name, command in group.commands.items()
        for param in command.params
        if param.param_type_name == "option" and not (param.help or "").strip()
    ]
    assert not missing, f"options without help: {missing}"
    assert all(command.help for command in group.commands.values())


def test_box_writes_the_dmo_map_and_catalogue_that_paint_reads(tmp_path):
    params = write_params(tmp_path)
    result = _run(
        "box", "--params", params, "--out", tmp_path / "box", "--pixels", 64, "--halos", 5
    )
    assert result.exit_code == 0, result.output
    dmo = np.load(tmp_path / "box/dmo.npy")
    assert dmo.shape == (64, 64) and (dmo > 0).all()
    catalog = pd.read_csv(tmp_path / "box/halos.csv")
    assert len(catalog) == 5
    assert {"x", "y", "m200", "Omega_m", "sigma_8", "A_SN1", "A_AGN1"} <= set(catalog.columns)
    # The tiny cutouts are 6.25 Mpc/h over 16 pixels: 64 pixels span 25 Mpc/h.
    assert "--box-size 25 " in result.output and "halocm paint --model" in result.output
    assert (tmp_path / "box/truth.npz").is_file()


def test_pipeline_refuses_another_params_file_and_a_missing_overrides_file(tmp_path):
    result = _run("pipeline", "--params", tmp_path / "other.yaml")
    assert result.exit_code == 2
    assert "--set key=value or --set-file FILE" in result.output
    result = _run("pipeline", "--set-file", tmp_path / "missing.yaml")
    assert result.exit_code != 0 and len(result.output.strip().splitlines()) == 1
    assert "missing.yaml" in result.output
