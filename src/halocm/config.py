"""Typed, validated configuration: params.yaml plus `--set a.b=value` overrides.

params.yaml is the only source of values: every field here is required, so a key missing from
the file is an error, never a silent second default. Each consistency method owns a section
(`ct`, `cd`, `ict`, `ect`); `train.mode` names the one that is read, and that section's
`search` says which of its own knobs `halocm tune` may vary.
"""

from __future__ import annotations

import itertools
import re
from pathlib import Path
from typing import Annotated, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)


class ConfigError(ValueError):
    """A bad configuration value; its message is one line naming key, value and what is allowed."""


class _Section(BaseModel):
    # No NaN or inf anywhere: `gt=0` alone accepts lr=.inf, and a non-finite knob only
    # fails later, as diverged training or NaN maps.
    model_config = ConfigDict(extra="forbid", validate_assignment=True, allow_inf_nan=False)


class Paths(_Section):
    raw_dir: Path
    processed_dir: Path
    models_dir: Path
    metrics_dir: Path
    reports_dir: Path


MAX_MEAN_NEIGHBOURS = 16  # the simulator's index layout holds 64 per map


class Simulator(_Section):
    n_maps: int = Field(ge=3)
    resolution: int = Field(ge=8, le=1024)
    box_size: float = Field(gt=0)
    projection_depth: float = Field(gt=0)
    log_mass_min: float = Field(ge=10.0, le=16.0)
    log_mass_max: float = Field(ge=10.0, le=16.0)
    context_channels: bool
    neighbour_density: float = Field(ge=0)
    n_truth_realizations: int = Field(ge=0)
    redraw_hidden: bool
    n_figure_maps: int = Field(ge=0)

    @model_validator(mode="after")
    def _mass_range(self) -> Simulator:
        if self.log_mass_max < self.log_mass_min:
            raise ValueError("log_mass_max must be >= log_mass_min")
        return self

    @model_validator(mode="after")
    def _neighbours(self) -> Simulator:
        if self.neighbour_density > 0 and self.context_channels:
            raise ValueError(
                "neighbour_density > 0 paints neighbours into the cutout only: it needs "
                "context_channels: false"
            )
        if self.mean_neighbours > MAX_MEAN_NEIGHBOURS:
            raise ValueError(
                f"neighbour_density={self.neighbour_density:g} gives {self.mean_neighbours:.0f} "
                f"neighbours per map on average; at most {MAX_MEAN_NEIGHBOURS} are allowed"
            )
        return self

    @property
    def neighbour_reach(self) -> int:
        """Pixels: a host's 2n stamp centred |d| < reach from the cutout centre overlaps it."""
        return self.resolution // 2 + self.resolution

    @property
    def mean_neighbours(self) -> float:
        """The mean count of other hosts whose 2n stamps reach a cutout: the density times
        the (2 reach − 1)² pixels their centres may sit on (docs/design.md §3)."""
        pixel = self.box_size / self.resolution
        return self.neighbour_density * ((2 * self.neighbour_reach - 1) * pixel) ** 2


class Data(_Section):
    source: Literal["synthetic", "npz", "camels_cmd"]
    path: Path | None
    camels_suite: str
    camels_set: str
    crop: int = Field(ge=8)
    split_fractions: tuple[float, float, float]
    softening: dict[str, float]

    @field_validator("softening")
    @classmethod
    def _softening(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {name: f for name, f in v.items() if not 0.0 <= f < 1.0}
        if bad:
            raise ValueError(f"mass fractions in [0, 1) per target channel, got {bad}")
        return v

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
    base_channels: int = Field(ge=4)
    channel_mult: tuple[int, ...]
    num_res_blocks: int = Field(ge=1)
    attention_resolutions: tuple[int, ...]
    dropout: float = Field(ge=0.0, lt=1.0)
    embedding_dim: int = Field(ge=8)


class Diffusion(_Section):
    sigma_min: float = Field(gt=0)
    sigma_max: float = Field(gt=0)
    sigma_data: float = Field(gt=0)
    rho: float = Field(gt=0)

    @model_validator(mode="after")
    def _order(self) -> Diffusion:
        if self.sigma_max <= self.sigma_min:
            raise ValueError("sigma_max must be > sigma_min")
        return self


class Optimizer(_Section):
    """Shared by pretraining and consistency training."""

    name: Literal["adamw", "radam"]
    weight_decay: float = Field(ge=0)
    grad_clip: float = Field(gt=0)


class Mean(_Section):
    """The conditional-mean network E[target | condition] (a regression UNet, MSE): the
    generators model the standardised residual around it (CorrDiff, Mardani et al. 2024)."""

    enabled: bool
    base_channels: int = Field(ge=4)
    channel_mult: tuple[int, ...]
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    inference_ema: float = Field(ge=0, lt=1)
    inference_ema_warmup: float = Field(gt=1)
    augment: bool
    checkpoint_every: int = Field(ge=1)
    val_every: int = Field(ge=1)
    val_batches: int = Field(ge=1)
    tail: dict[str, float]
    cosmic_skip: bool
    smooth_skip: bool
    condition_generators: bool

    @field_validator("tail")
    @classmethod
    def _tail(cls, v: dict[str, float]) -> dict[str, float]:
        bad = {name: b for name, b in v.items() if not b > 0}
        if bad:
            raise ValueError(f"positive tail scales per target channel, got {bad}")
        return v


class Pretrain(_Section):
    """EDM denoising pretraining (Karras et al. 2022): the CD teacher and the warm start."""

    enabled: bool
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    p_mean: float
    p_std: float = Field(gt=0)
    uniform_fraction: float = Field(ge=0, le=1)
    inference_ema: float = Field(ge=0, lt=1)
    inference_ema_warmup: float = Field(gt=1)
    augment: bool
    checkpoint_every: int = Field(ge=1)
    val_every: int = Field(ge=1)
    val_batches: int = Field(ge=1)


class Train(_Section):
    """The consistency training loop; the method's own knobs live in its section."""

    mode: str
    steps: int = Field(ge=1)
    batch_size: int = Field(ge=1)
    lr: float = Field(gt=0)
    inference_ema: float = Field(ge=0, lt=1)
    inference_ema_warmup: float = Field(gt=1)
    warm_start: bool
    denoising_warmup: int = Field(ge=0)
    val_sampling_steps: int = Field(ge=1)
    augment: bool
    checkpoint_every: int = Field(ge=1)
    val_every: int = Field(ge=1)
    val_batches: int = Field(ge=1)


class SearchRange(_Section):
    """A tuned range; `log` samples it log-uniformly."""

    low: int | float
    high: int | float
    log: bool

    @model_validator(mode="after")
    def _ordered(self) -> SearchRange:
        if not self.low < self.high:
            raise ValueError("low must be < high")
        if self.log and self.low <= 0:
            raise ValueError("a log range needs low > 0")
        return self


Loss = Literal["l2", "pseudo_huber"]
SearchSpace = dict[str, SearchRange | list]


class MethodSection(_Section):
    """A consistency method's knobs. `search` maps some of them to a range or a list of
    choices for `halocm tune`; every bound and choice must be a valid value of its knob."""

    loss: Loss
    search: SearchSpace

    @model_validator(mode="after")
    def _search_own_fields(self) -> MethodSection:
        knobs = [name for name in type(self).model_fields if name != "search"]
        for key, space in self.search.items():
            if key not in knobs:
                raise ValueError(f"{key!r} is not one of its knobs: {', '.join(knobs)}")
            field = type(self).model_fields[key]
            check = TypeAdapter(
                Annotated[field.annotation, *field.metadata] if field.metadata else field.annotation
            )
            values = [space.low, space.high] if isinstance(space, SearchRange) else space
            if not values:
                raise ValueError(f"search.{key}: an empty list of choices")
            for value in values:
                try:
                    check.validate_python(value)
                except ValidationError as err:
                    msg = err.errors()[0]["msg"]
                    raise ValueError(f"search.{key}: {value!r}: {msg}") from None
        return self

    def fields(self) -> dict:
        """The knobs as plain values (without `search`): an objective's constructor keywords."""
        return {name: getattr(self, name) for name in type(self).model_fields if name != "search"}


class CT(MethodSection):
    """Consistency training with an EMA target (Song et al. 2023, Alg. 3)."""

    grid_levels: int = Field(ge=2)
    target_ema: float = Field(ge=0, lt=1)
    schedule: Literal["constant", "adaptive"]
    s0: int = Field(ge=2)
    s1: int = Field(ge=2)
    mu0: float = Field(gt=0, lt=1)


class CD(MethodSection):
    """Consistency distillation from the pretrained denoiser (Song et al. 2023, Alg. 2)."""

    grid_levels: int = Field(ge=2)
    target_ema: float = Field(ge=0, lt=1)
    solver: Literal["heun", "euler"]


class ICT(MethodSection):
    """Improved consistency training (Song & Dhariwal 2023)."""

    p_mean: float
    p_std: float = Field(gt=0)
    n_min: int = Field(ge=2)
    n_max: int = Field(ge=2)


class ECT(MethodSection):
    """Easy consistency tuning from the denoiser (Geng et al. 2024)."""

    stages: int = Field(ge=1)
    q: float = Field(gt=1)
    p_mean: float
    p_std: float = Field(gt=0)


class Sample(_Section):
    """Sampling settings, read when sampling (evaluate, sample, paint, register)."""

    intermediate_sigmas: tuple[float, ...]
    batch_size: int = Field(ge=1)
    mean_only: tuple[str, ...]  # channels drawn as the mean network's μ alone
    churn: float = Field(ge=0)  # the teacher's S_churn (Karras et al. 2022, Alg. 2)
    churn_range: tuple[float, float]  # (S_tmin, S_tmax): the levels that get churn

    @field_validator("churn_range")
    @classmethod
    def _range(cls, v: tuple[float, float]) -> tuple[float, float]:
        if not 0 <= v[0] < v[1]:
            raise ValueError("[S_tmin, S_tmax] with 0 <= S_tmin < S_tmax")
        return v

    @field_validator("intermediate_sigmas")
    @classmethod
    def _decreasing(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        if any(b >= a for a, b in itertools.pairwise(v)) or any(s <= 0 for s in v):
            raise ValueError("positive and strictly decreasing")
        return v


class Evaluate(_Section):
    # The consistency model's rows: without any, the benchmark would score the teacher alone.
    sampling_steps: tuple[Annotated[int, Field(ge=1)], ...] = Field(min_length=1)
    teacher_levels: int = Field(ge=2)
    n_maps: int = Field(ge=1)
    n_realizations: int = Field(ge=2)
    teacher_realizations: int = Field(ge=1)


class Tracking(_Section):
    enabled: bool
    tracking_uri: str | None
    artifact_root: Path
    experiment: str
    model_name: str
    gate_sampling_steps: int = Field(ge=1)
    gate_max_pk_err: float = Field(gt=0)
    gate_max_rk_err: float = Field(gt=0)
    gate_max_mass_bias: float = Field(gt=0)


class Tune(_Section):
    n_trials: int = Field(ge=1)
    storage: str | None
    study_name: str
    trial_steps: int = Field(ge=1)
    report_every: int = Field(ge=1)
    lr: SearchRange
    prune_percentile: float = Field(gt=0, lt=100)
    prune_startup_trials: int = Field(ge=0)
    output: Path

    @field_validator("lr")
    @classmethod
    def _lr_range(cls, v: SearchRange) -> SearchRange:
        # Checked here, before any trial runs: a bound train.lr refuses would fail trials.
        if v.low <= 0:
            raise ValueError(f"low={v.low!r}: a learning rate must be > 0")
        return v


class Paint(_Section):
    sampling_steps: int = Field(ge=1)
    realizations: int = Field(ge=1)
    mass_min: float = Field(gt=0)
    batch_size: int = Field(ge=1)


class Config(_Section):
    seed: int
    device: Literal["cpu", "cuda", "auto"]
    paths: Paths
    simulator: Simulator
    data: Data
    model: Model
    diffusion: Diffusion
    optimizer: Optimizer
    mean: Mean
    pretrain: Pretrain
    train: Train
    ct: CT
    cd: CD
    ict: ICT
    ect: ECT
    sample: Sample
    evaluate: Evaluate
    tracking: Tracking
    tune: Tune
    paint: Paint

    @model_validator(mode="after")
    def _mode_names_a_method(self) -> Config:
        allowed = methods(type(self))
        if self.train.mode not in allowed:
            names = [repr(m) for m in allowed]
            raise ValueError(
                f"train.mode={self.train.mode!r}: allowed: {', '.join(names[:-1])} or {names[-1]}"
            )
        return self

    @model_validator(mode="after")
    def _mean_only_needs_the_mean(self) -> Config:
        if self.sample.mean_only and not self.mean.enabled:
            raise ValueError(
                f"sample.mean_only={list(self.sample.mean_only)} draws those channels as the "
                "mean network's μ, and mean.enabled is false: enable it or set "
                "sample.mean_only=[]"
            )
        return self

    @property
    def method(self) -> MethodSection:
        """The section of the method that `train.mode` names."""
        return getattr(self, self.train.mode)

    def to_dict(self) -> dict:
        """Plain JSON/YAML-safe containers (paths as strings): for checkpoints and MLflow."""
        return self.model_dump(mode="json")


def methods(config: type[Config] | None = None) -> tuple[str, ...]:
    """The consistency methods: the sections of `config` (Config) that are MethodSections."""
    return tuple(
        name
        for name, field in (config or Config).model_fields.items()
        if isinstance(field.annotation, type) and issubclass(field.annotation, MethodSection)
    )


def load_config(path: str | Path = "params.yaml", overrides: list[str] | None = None) -> Config:
    """Read `path`, apply `a.b=value` overrides (values parsed as YAML), validate."""
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{path}: params file not found")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
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
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. ct.target_ema=0.99")
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


def override(key: str, value) -> str:
    """`key=value` with the value written as YAML (what `--set` and `dvc exp run -S` read)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=10**6)
    return f"{key}={text.removesuffix(chr(10)).removesuffix('...').strip()}"


def read_overrides(path: str | Path) -> list[str]:
    """The `key=value` overrides of a file that maps dotted keys to values (the file
    `halocm tune` writes: `ct.target_ema: 0.97`)."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict) or not all(isinstance(k, str) for k in raw):
        raise ConfigError(f"{path}: expected a mapping of dotted keys, e.g. `train.lr: 0.0003`")
    return [override(key, value) for key, value in raw.items()]


# Union members that pydantic names in an error's location (`high.int`), not keys.
_TYPE_NAMES = {"int", "float", "str", "bool", "list", "dict", "tuple", "none"}


def _one_line(err: ValidationError, raw: dict, source: str) -> str:
    first = err.errors()[0]
    # Keys only: not list positions, nor the union members pydantic names (`list[any]`, ...).
    loc = [
        p
        for p in first["loc"]
        if isinstance(p, str) and re.fullmatch(r"[a-z_][a-z0-9_]*", p) and p not in _TYPE_NAMES
    ]
    key = ".".join(loc)
    msg = first["msg"].removeprefix("Value error, ")
    if not loc:  # a check across sections; its message names the key itself
        return f"{source}: {msg}"
    if first["type"] == "extra_forbidden":
        return f"{source}: unknown key {key!r}"
    if first["type"] == "missing":
        return f"{source}: missing key {key!r} (params.yaml sets every key)"
    if first["type"] == "literal_error":
        msg = "allowed: " + msg.removeprefix("Input should be ")
    value = _lookup(raw, loc)
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
