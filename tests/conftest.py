"""Shared fixtures: telemetry off, the tiny test config (the product's params.yaml with tiny
sizes) and a tiny prepared project (16² maps, a tiny UNet)."""

from __future__ import annotations

import copy
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

TELEMETRY_OFF = {
    "DO_NOT_TRACK": "true",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DVC_NO_ANALYTICS": "1",
}
for _key, _value in TELEMETRY_OFF.items():
    os.environ.setdefault(_key, _value)

ROOT = Path(__file__).resolve().parents[1]
PRODUCT_PARAMS: dict = yaml.safe_load((ROOT / "params.yaml").read_text())


def merge(base: dict, update: dict) -> dict:
    """`base` with `update` merged in, section by section (neither is changed)."""
    out = copy.deepcopy(base)
    for key, value in update.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


# The product's params.yaml with only the sizes made tiny: tests run the product's settings
# (e.g. sigma_data 1.0, the optimiser, the learning rates) unless a test says otherwise.
TINY_PARAMS = merge(
    PRODUCT_PARAMS,
    {
        "seed": 0,
        "device": "cpu",
        "simulator": {
            "n_maps": 48,
            "resolution": 16,
            "n_truth_realizations": 1,
            "n_figure_maps": 2,
        },
        "model": {
            "base_channels": 8,
            "channel_mult": [1, 2],
            "attention_resolutions": [8],
            "embedding_dim": 32,
            "dropout": 0.1,
        },
        "mean": {
            "base_channels": 8,
            "channel_mult": [1, 2],
            "steps": 12,
            "batch_size": 8,
            "checkpoint_every": 4,
            "val_every": 6,
            "val_batches": 1,
        },
        "pretrain": {
            "steps": 30,
            "batch_size": 8,
            "checkpoint_every": 4,
            "val_every": 6,
            "val_batches": 1,
        },
        "train": {
            "steps": 12,
            "batch_size": 8,
            "checkpoint_every": 4,
            "val_every": 6,
            "val_batches": 1,
        },
        "ct": {"grid_levels": 10},
        "sample": {"batch_size": 16},
        "evaluate": {
            "n_maps": 8,
            "n_realizations": 2,
            "teacher_levels": 3,
            "sampling_steps": [1, 2],
        },
        "tracking": {"enabled": False},
    },
)


def tiny_config(update: dict | None = None):
    """The tiny test Config, with `update` merged in."""
    from halocm.config import config_from_dict

    return config_from_dict(merge(TINY_PARAMS, update or {}), source="tiny test config")


# `halocm tune` made tiny: merged into the tiny params.
TINY_TUNE = {
    "tune": {
        "trial_steps": 6,
        "report_every": 2,
        "prune_percentile": 10.0,
        "prune_startup_trials": 1,
    },
    "ct": {"search": {"grid_levels": {"low": 4, "high": 12, "log": True}}},
}


def write_params(directory: Path, update: dict | None = None) -> Path:
    """The tiny params.yaml (with `update` merged in), its paths inside `directory`."""
    path = directory / "params.yaml"
    raw = {
        **merge(TINY_PARAMS, update or {}),
        "paths": {
            "raw_dir": str(directory / "data/raw"),
            "processed_dir": str(directory / "data/processed"),
            "models_dir": str(directory / "models"),
            "metrics_dir": str(directory / "metrics"),
            "reports_dir": str(directory / "reports"),
        },
    }
    if raw.get("data", {}).get("path"):
        raw["data"]["path"] = str(directory / raw["data"]["path"])
    path.write_text(yaml.safe_dump(raw))
    return path


def write_tiny_npz(path: Path, n: int = 40, res: int = 16, seed: int = 0) -> Path:
    """A small external-format dataset: lognormal DMO maps and noisy hydro fractions."""
    rng = np.random.default_rng(seed)
    cond = np.exp(rng.normal(20.0, 1.0, (n, 1, res, res)))
    clump = np.exp(rng.normal(0.0, 0.3, (n, 1, res, res)))
    target = np.concatenate([0.84 * cond, 0.15 * cond * clump, 0.01 * cond], axis=1)
    np.savez(
        path,
        condition=cond,
        target=target,
        params=rng.uniform(0.2, 1.0, (n, 2)),
        param_names=np.array(["Omega_m", "sigma_8"]),  # the cosmic skip reads Omega_m
        group=np.arange(n) // 2,
        r200=np.full(n, 1.0),
    )
    return path


@pytest.fixture(scope="session")
def prepared(tmp_path_factory) -> Path:
    """A project directory with prepared data, a tiny mean network and a pretrained tiny
    denoiser."""
    from halocm.config import load_config
    from halocm.stages.prepare import prepare
    from halocm.stages.pretrain import pretrain
    from halocm.stages.regress import regress

    root = tmp_path_factory.mktemp("project")
    write_tiny_npz(root / "tiny.npz")
    params = write_params(root, {"data": {"source": "npz", "path": "tiny.npz"}})
    cfg = load_config(params)
    prepare(cfg)
    regress(cfg)
    pretrain(cfg)
    return root


@pytest.fixture
def project(prepared, tmp_path) -> Path:
    """A private copy of the prepared project, safe to modify."""
    dest = tmp_path / "project"
    shutil.copytree(prepared, dest)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    for key, value in params["paths"].items():
        params["paths"][key] = value.replace(str(prepared), str(dest))
    params["data"]["path"] = params["data"]["path"].replace(str(prepared), str(dest))
    (dest / "params.yaml").write_text(yaml.safe_dump(params))
    return dest
