"""The command line: stages run end to end; failures are one line and exit code 2."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from halocm.cli import app
from halocm.config import load_config
from halocm.pipeline import STAGES, dvc_yaml

ROOT = Path(__file__).resolve().parents[1]

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
    result = _run("train", "--params", project / "params.yaml", "--set", "ct.target_ema=2")
    assert result.exit_code == 2
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert lines == [
        f"halocm train: error: {project / 'params.yaml'}: ct.target_ema=2: "
        "Input should be less than 1"
    ]


def test_the_stage_commands_are_the_stage_graphs():
    names = {c.name for c in app.registered_commands}
    assert set(STAGES) <= names
    for name, stage in STAGES.items():
        result = _run(name, "--help")
        assert result.exit_code == 0
        assert ("--resume" in result.output) == stage.resumable, name


def test_dvc_yaml_command_writes_the_generated_file(tmp_path):
    out = tmp_path / "dvc.yaml"
    result = _run("dvc-yaml", "--params", ROOT / "params.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    assert out.read_text() == dvc_yaml(load_config(ROOT / "params.yaml"))


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
