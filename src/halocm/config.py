"""Typed, validated configuration: params.yaml plus `--set a.b=value` overrides."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator


class ConfigError(ValueError):
    """A bad configuration value; its message is one line naming key, value and what is allowed."""


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True)


class Paths(_Section):
    raw_dir: Path = Path("data/raw")
    processed_dir: Path = Path("data/processed")
    models_dir: Path = Path("models")
    metrics_dir: Path = Path("metrics")
    reports_dir: Path = Path("reports")


class Simulator(_Section):
    n_maps: int = Field(3000, ge=3)
    resolution: int = Field(32, ge=8, le=1024)
    box_size: float = Field(6.25, gt=0)
    projection_depth: float = Field(6.25, gt=0)
    log_mass_min: float = Field(12.5, ge=10.0, le=16.0)
    log_mass_max: float = Field(14.5, ge=10.0, le=16.0)
    context_channels: bool = False
    n_truth_realizations: int = Field(2, ge=0)
    n_figure_maps: int = Field(4, ge=0)

    @model_validator(mode="after")
    def _mass_range(self) -> Simulator:
        if self.log_mass_max < self.log_mass_min:
            raise ValueError("log_mass_max must be >= log_mass_min")
        return self


class Data(_Section):
    source: Literal["synthetic", "npz", "camels_cmd"] = "synthetic"
    path: Path | None = None
    camels_suite: str = "IllustrisTNG"
    camels_set: str = "LH"
    crop: int = Field(32, ge=8)
    split_fractions: tuple[float, float, float] = (0.8, 0.1, 0.1)

    @field_validator("split_fractions")
    @classmethod
    def _fractions(cls, v: tuple[float, float, float]) -> tuple[float, float, float]:
        if any(f <= 0 for f in v) or abs(sum(v) - 1.0) > 1e-6:
            raise ValueError("three positive fractions summing to 1 (train, val, test)")
        return v

    @model_validator(mode="after")
    def _path_needed(self) -> Data:
        if self.source != "synthetic" and self.path is None:
            raise ValueError(f"data.path is required when data.source is {self.source!r}")
        return self


class Model(_Section):
    base_channels: int = Field(32, ge=4)
    channel_mult: tuple[int, ...] = (1, 2, 2)
    num_res_blocks: int = Field(1, ge=1)
    attention_resolutions: tuple[int, ...] = (8,)
    dropout: float = Field(0.1, ge=0.0, lt=1.0)
    embedding_dim: int = Field(128, ge=8)


class Diffusion(_Section):
    sigma_min: float = Field(0.002, gt=0)
    sigma_max: float = Field(80.0, gt=0)
    sigma_data: float = Field(0.5, gt=0)
    rho: float = Field(7.0, gt=0)

    @model_validator(mode="after")
    def _order(self) -> Diffusion:
        if self.sigma_max <= self.sigma_min:
            raise ValueError("sigma_max must be > sigma_min")
        return self


class Pretrain(_Section):
    enabled: bool = True
    steps: int = Field(3000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(5e-4, gt=0)
    p_mean: float = -1.2
    p_std: float = Field(1.2, gt=0)
    ema_decay: float = Field(0.999, ge=0, lt=1)


class Train(_Section):
    mode: Literal["ct", "ict", "cd", "ect"] = "ct"
    steps: int = Field(2000, ge=1)
    batch_size: int = Field(64, ge=1)
    lr: float = Field(2e-4, gt=0)
    optimizer: Literal["adamw", "radam"] = "radam"
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    ct_n_steps: int = Field(18, ge=2)
    ema_decay: float = Field(0.999, ge=0, lt=1)
    inference_ema_decay: float = Field(0.999, ge=0, lt=1)
    n_sampling_steps: int = Field(1, ge=1)
    loss: Literal["l2", "pseudo_huber"] = "l2"
    warm_start: bool = True
    denoising_warmup: int = Field(0, ge=0)
    schedule: Literal["constant", "adaptive"] = "constant"
    s0: int = Field(2, ge=2)
    s1: int = Field(150, ge=2)
    mu0: float = Field(0.9, gt=0, lt=1)
    ict_p_mean: float = -1.1
    ict_p_std: float = Field(2.0, gt=0)
    ict_n_min: int = Field(10, ge=2)
    ict_n_max: int = Field(1280, ge=2)
    cd_solver: Literal["heun", "euler"] = "heun"
    ect_stages: int = Field(8, ge=1)
    ect_q: float = Field(2.0, gt=1)
    ect_p_mean: float = -1.1
    ect_p_std: float = Field(2.0, gt=0)
    checkpoint_every: int = Field(500, ge=1)
    val_every: int = Field(250, ge=1)
    val_batches: int = Field(4, ge=1)


class Sample(_Section):
    intermediate_sigmas: tuple[float, ...] = (2.5, 0.8, 0.3, 0.1, 0.04, 0.015, 0.006)
    batch_size: int = Field(256, ge=1)

    @field_validator("intermediate_sigmas")
    @classmethod
    def _decreasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(b >= a for a, b in itertools.pairwise(v)) or any(s <= 0 for s in v):
            raise ValueError("positive and strictly decreasing")
        return v


class Evaluate(_Section):
    steps: tuple[int, ...] = (1, 2, 4, 8)
    teacher_steps: int = Field(18, ge=2)
    n_maps: int = Field(200, ge=1)
    n_realizations: int = Field(8, ge=2)
    timing_repeats: int = Field(5, ge=1)
    timing_batch: int = Field(64, ge=1)


class Tracking(_Section):
    enabled: bool = True
    tracking_uri: str | None = None
    artifact_root: Path = Path("mlartifacts")
    experiment: str = "halocm"
    model_name: str = "halocm-consistency"
    gate_steps: int = Field(2, ge=1)
    gate_max_pk_err: float = Field(0.5, gt=0)
    gate_max_rk_err: float = Field(0.5, gt=0)


class Tune(_Section):
    n_trials: int = Field(8, ge=1)
    storage: str | None = None
    study_name: str = "halocm"
    train_steps: int = Field(300, ge=1)
    report_every: int = Field(100, ge=1)
    ema_decay: tuple[float, float] = (0.9, 0.9999)
    ct_n_steps: tuple[int, int] = (10, 80)
    lr: tuple[float, float] = (1e-4, 1e-3)
    losses: tuple[Literal["l2", "pseudo_huber"], ...] = ("l2", "pseudo_huber")
    prune_percentile: float = Field(50.0, gt=0, lt=100)
    prune_startup_trials: int = Field(2, ge=0)
    output: Path = Path("params.tuned.yaml")


class Paint(_Section):
    steps: int = Field(1, ge=1)
    realizations: int = Field(1, ge=1)
    mass_min: float = Field(1e13, gt=0)
    batch_size: int = Field(128, ge=1)


class Config(_Section):
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "auto"
    paths: Paths = Paths()
    simulator: Simulator = Simulator()
    data: Data = Data()
    model: Model = Model()
    diffusion: Diffusion = Diffusion()
    pretrain: Pretrain = Pretrain()
    train: Train = Train()
    sample: Sample = Sample()
    evaluate: Evaluate = Evaluate()
    tracking: Tracking = Tracking()
    tune: Tune = Tune()
    paint: Paint = Paint()

    def to_dict(self) -> dict:
        """Plain JSON/YAML-safe containers (paths as strings): for checkpoints and MLflow."""
        return self.model_dump(mode="json")


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Read `path`, apply `a.b=value` overrides (values parsed as YAML), validate."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from err
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    for item in overrides or []:
        apply_override(raw, item)
    return config_from_dict(raw, source=str(path))


def config_from_dict(raw: dict, source: str = "config") -> Config:
    try:
        return Config.model_validate(raw)
    except ValidationError as err:
        raise ConfigError(_one_line(err, raw, source)) from None


def apply_override(raw: dict, item: str) -> None:
    """Set `a.b.c=value` in the nested dict `raw`; the value is parsed as YAML."""
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. train.ema_decay=0.99")
    node = raw
    parts = key.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {item!r}: {part!r} is not a section")
    try:
        node[parts[-1]] = yaml.safe_load(value)
    except yaml.YAMLError:
        node[parts[-1]] = value


def _one_line(err: ValidationError, raw: dict, source: str) -> str:
    first = err.errors()[0]
    loc = [str(p) for p in first["loc"] if not isinstance(p, int)]
    key = ".".join(loc) or "<top>"
    value = _lookup(raw, loc)
    msg = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}"
    if first["type"] == "literal_error":
        msg = "allowed: " + msg.removeprefix("Input should be ")
    if isinstance(value, dict):
        return f"{source}: {key}: {msg}"
    return f"{source}: {key}={value!r}: {msg}"


def _lookup(raw: dict, loc: list[str]):
    node = raw
    for part in loc:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
