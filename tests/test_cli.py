"""The command line: stages run end to end; failures are one line and exit code 2."""

from __future__ import annotations

import numpy as np
from typer.testing import CliRunner

from halocm.cli import app

runner = CliRunner()


def _run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _sample(model, condition, out, *extra):
    return _run("sample", "--model", model, "--condition", condition, "--out", out, *extra)


def test_train_then_sample_from_the_command_line(project, tmp_path):
    params = project / "params.yaml"
    result = _run("train", "--params", params, "--set", "train.steps=2")
    assert result.exit_code == 0, result.output
    assert "consistency.pt" in result.output
    cond = np.full((2, 1, 16, 16), 1e9)
    np.savez(tmp_path / "c.npz", condition=cond, params=np.full((2, 2), 0.5))
    out = tmp_path / "o.npz"
    result = _sample(
        project / "models/consistency.pt",
        tmp_path / "c.npz",
        out,
        "--steps",
        2,
        "--realizations",
        3,
    )
    assert result.exit_code == 0, result.output
    with np.load(out) as z:
        assert z["samples"].shape == (2, 3, 3, 16, 16)
        assert list(z["channel_names"]) == ["dm_hydro", "gas", "stars"]


def test_bad_config_value_is_one_line(project):
    result = _run("train", "--params", project / "params.yaml", "--set", "train.ema_decay=2")
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [
        f"halocm train: error: {project / 'params.yaml'}: train.ema_decay=2: "
        "Input should be less than 1"
    ]


def test_sample_with_wrong_channels_is_one_line(project, tmp_path):
    np.savez(tmp_path / "c.npz", condition=np.ones((2, 3, 16, 16)), params=np.ones((2, 2)))
    result = _sample(project / "models/denoiser.pt", tmp_path / "c.npz", tmp_path / "o.npz")
    assert result.exit_code == 2
    assert "condition: 3 channels, the model takes 1" in result.output
    assert not (tmp_path / "o.npz").exists()


def test_missing_files_are_one_line(project, tmp_path):
    result = _sample(tmp_path / "none.pt", tmp_path / "c.npz", tmp_path / "o.npz")
    assert result.exit_code == 2
    assert "none.pt: checkpoint not found" in result.output
    (tmp_path / "c.npz").write_text("not an npz")
    result = _sample(project / "models/denoiser.pt", tmp_path / "c.npz", tmp_path / "o.npz")
    assert result.exit_code == 2
    assert "c.npz: not a readable .npz" in result.output
