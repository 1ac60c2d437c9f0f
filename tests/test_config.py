"""Configuration: params.yaml validates, overrides apply, bad values are one clear line."""

from __future__ import annotations

from pathlib import Path

import pytest

from halocm.config import ConfigError, load_config

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_the_shipped_params_file_is_valid_and_matches_the_documented_defaults():
    cfg = load_config(PARAMS)
    t, d = cfg.train, cfg.diffusion
    assert (t.ct_n_steps, t.ema_decay, t.n_sampling_steps) == (18, 0.999, 1)
    assert (d.sigma_min, d.sigma_max, d.rho) == (0.002, 80.0, 7.0)
    assert d.sigma_data == 1.0  # the std of the z-scored data
    assert cfg.pretrain.enabled and t.mode == "ct"


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(
        PARAMS,
        ["train.ema_decay=0.99", "evaluate.steps=[1, 2]", "data.source=npz", "data.path=x.npz"],
    )
    assert cfg.train.ema_decay == 0.99 and cfg.evaluate.steps == (1, 2)
    assert cfg.data.path == Path("x.npz")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.ema_decay=1.5", "train.ema_decay=1.5: Input should be less than 1"),
        ("train.mode=foo", "train.mode='foo': allowed: 'ct', 'ict', 'cd' or 'ect'"),
        ("train.bogus=1", "unknown key 'train.bogus'"),
        ("data.source=npz", "data.path is required when data.source is 'npz'"),
        ("simulator.n_maps=abc", "simulator.n_maps='abc'"),
        ("data.split_fractions=[0.5, 0.5, 0.5]", "summing to 1"),
        ("sample.intermediate_sigmas=[1, 2]", "strictly decreasing"),
        ("device=tpu", "device='tpu': allowed"),
        ("nokeyvalue", "expected KEY=VALUE"),
    ],
)
def test_bad_values_name_key_value_and_what_is_allowed(override, message):
    with pytest.raises(ConfigError) as err:
        load_config(PARAMS, [override])
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_or_broken_params_file(tmp_path):
    with pytest.raises(ConfigError, match="params file not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
