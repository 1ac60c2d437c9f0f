"""Configuration: params.yaml validates, overrides apply, bad values are one clear line, and
params.yaml is the only source of values (no pydantic field has a default)."""

from __future__ import annotations

import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

from halocm import config
from halocm.config import ConfigError, MethodSection, load_config, methods
from halocm.objectives import OBJECTIVES

PARAMS = Path(__file__).resolve().parents[1] / "params.yaml"


def test_the_shipped_params_file_is_valid_and_matches_the_documented_defaults():
    cfg = load_config(PARAMS)
    ct, d = cfg.ct, cfg.diffusion
    assert (ct.grid_levels, ct.target_ema, cfg.train.val_sampling_steps) == (18, 0.9, 1)
    assert (d.sigma_min, d.sigma_max, d.rho) == (0.002, 80.0, 7.0)
    assert d.sigma_data == 1.0  # the std of the z-scored data
    assert cfg.pretrain.enabled and cfg.train.mode == "ct" and cfg.method is cfg.ct
    assert cfg.optimizer.name == "radam" and cfg.ict.loss == "pseudo_huber"


def _models(cls: type[BaseModel], seen: set) -> set:
    """`cls` and every pydantic model its fields hold, at any depth."""
    seen.add(cls)
    for field in cls.model_fields.values():
        for arg in [field.annotation, *typing.get_args(field.annotation)]:
            for inner in [arg, *typing.get_args(arg)]:
                if isinstance(inner, type) and issubclass(inner, BaseModel) and inner not in seen:
                    _models(inner, seen)
    return seen


def test_no_pydantic_field_has_a_default():
    sections = _models(config.Config, set())
    assert {"Config", "Train", "CT", "SearchRange", "Tune"} <= {c.__name__ for c in sections}
    # Every model the module defines, reachable from Config or not.
    defined = {
        obj
        for obj in vars(config).values()
        if isinstance(obj, type)
        and issubclass(obj, BaseModel)
        and obj.__module__ == config.__name__
    }
    defaults = [
        f"{cls.__name__}.{name}"
        for cls in sections | defined
        for name, field in cls.model_fields.items()
        if not field.is_required()
    ]
    assert defaults == []


def test_a_missing_key_is_an_error_not_a_default(tmp_path):
    raw = yaml.safe_load(PARAMS.read_text())
    del raw["ct"]["target_ema"]
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(ConfigError, match=r"missing key 'ct.target_ema'"):
        load_config(path)


def test_every_method_section_has_its_objective_and_is_in_params_yaml():
    raw = yaml.safe_load(PARAMS.read_text())
    assert methods() == ("ct", "cd", "ict", "ect")
    assert set(methods()) == set(OBJECTIVES)
    assert all(m in raw for m in methods())
    assert all(issubclass(type(getattr(load_config(PARAMS), m)), MethodSection) for m in methods())


def test_overrides_are_parsed_as_yaml():
    cfg = load_config(
        PARAMS,
        [
            "ct.target_ema=0.99",
            "evaluate.sampling_steps=[1, 2]",
            "data.source=npz",
            "data.path=x.npz",
        ],
    )
    assert cfg.ct.target_ema == 0.99 and cfg.evaluate.sampling_steps == (1, 2)
    assert cfg.data.path == Path("x.npz")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("ct.target_ema=1.5", "ct.target_ema=1.5: Input should be less than 1"),
        ("train.mode=foo", "train.mode='foo': allowed: 'ct', 'cd', 'ict' or 'ect'"),
        ("train.bogus=1", "unknown key 'train.bogus'"),
        ("train.target_ema=0.9", "unknown key 'train.target_ema'"),  # a CT knob, not a loop's
        ("ict.grid_levels=10", "unknown key 'ict.grid_levels'"),  # iCT has no fixed grid
        ("data.source=npz", "data.path is required when data.source is 'npz'"),
        ("simulator.n_maps=abc", "simulator.n_maps='abc'"),
        ("data.split_fractions=[0.5, 0.5, 0.5]", "summing to 1"),
        ("data.softening={stars: 1.5}", "mass fractions in [0, 1) per target channel"),
        ("mean.tail={stars: 0}", "positive tail scales per target channel, got {'stars': 0.0}"),
        ("sample.intermediate_sigmas=[1, 2]", "strictly decreasing"),
        ("mean.enabled=false", "mean.enabled is false: enable it or set sample.mean_only=[]"),
        ("simulator.context_channels=true", "into the cutout only: it needs context_channels"),
        ("simulator.neighbour_density=0.5", "gives 172 neighbours per map on average; at most 16"),
        ("device=tpu", "device='tpu': allowed"),
        ("optimizer.name=sgd", "optimizer.name='sgd': allowed: 'adamw' or 'radam'"),
        ("nokeyvalue", "expected KEY=VALUE"),
        # A search space names the section's own knobs, with valid values only.
        ("ict.search.target_ema={low: 0.9, high: 0.99, log: false}", "'target_ema' is not one"),
        ("ct.search.loss=[l2, l1]", "ct: search.loss: 'l1': Input should be 'l2' or"),
        ("ct.search.target_ema={low: 0.9, high: 1.5, log: false}", "1.5: Input should be less"),
        ("ct.search.grid_levels={low: 80, high: 10, log: true}", "grid_levels: low must be < high"),
        ("ct.search.grid_levels={low: 10, high: 80}", "missing key 'ct.search.grid_levels.log'"),
        ("tune.lr={low: 0, high: 0.1, log: true}", "tune.lr: a log range needs low > 0"),
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
