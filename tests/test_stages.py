"""The stage functions (halocm.stages): each takes the Config and hands explicit values down;
nothing below them imports the Config."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import numpy as np
from conftest import tiny_config

from halocm.data import synthetic as S
from halocm.stages.generate import generate

SRC = Path(__file__).resolve().parents[1] / "src" / "halocm"

KEYS = {
    "condition",
    "target",
    "params",
    "param_names",
    "channel_names",
    "box_size",
    "group",
    "halo_mass",
    "r200",
}


def test_generate_writes_npz_and_figure(tmp_path):
    cfg = tiny_config(
        {
            "seed": 7,
            "paths": {"raw_dir": str(tmp_path / "raw"), "reports_dir": str(tmp_path / "rep")},
            "simulator": {
                "n_maps": 4,
                "resolution": 16,
                "n_truth_realizations": 2,
                "n_figure_maps": 2,
            },
        }
    )
    path = generate(cfg)
    assert path == tmp_path / "raw" / "synthetic.npz"
    with np.load(path, allow_pickle=False) as f:
        assert set(f.files) == KEYS | {"truth_realizations"}
        ref = S.simulate(cfg.simulator, 4, 7, 2)
        for key in f.files:
            np.testing.assert_array_equal(f[key], ref[key], err_msg=key)
    png = tmp_path / "rep" / "generated_cutouts.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [p for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]  # atomic writes


def test_only_the_edge_sees_the_config():
    """`grep -rnw Config src/halocm`: the config module, the stages, the CLI and the graph."""
    out = subprocess.run(
        ["grep", "-rlw", "--include=*.py", "Config", str(SRC)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    files = {Path(p).relative_to(SRC).as_posix() for p in out}
    allowed = re.compile(r"config\.py|stages/\w+\.py|cli\.py|pipeline\.py")
    assert files and {f for f in files if not allowed.fullmatch(f)} == set()
    assert {"config.py", "cli.py", "pipeline.py", "stages/train.py"} <= files
