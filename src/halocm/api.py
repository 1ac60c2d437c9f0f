"""The public Python entry point: `load_model(path)` → `Generator.sample(...)`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from halocm.checkpoint import SAMPLING_KEYS, load_checkpoint
from halocm.data.normalize import (
    NormStats,
    check_channel_keys,
    generated_target,
    normalize_condition,
    normalize_params,
)
from halocm.models import DataShapes, count_parameters, network_from_checkpoint
from halocm.residual import Residual
from halocm.runtime import resolve_device
from halocm.sampling import consistency_batch, make_generators, nfe, teacher_batch


@dataclass(frozen=True)
class SampleSettings:
    """How to sample: the multistep levels below σ_max, the maps per network call, the
    channels drawn as their conditional mean μ alone (docs/design.md §5), and the teacher's
    churn (docs/design.md §5)."""

    intermediate_sigmas: tuple[float, ...]
    batch_size: int
    mean_only: tuple[str, ...] = ()
    churn: float = 0.0
    churn_range: tuple[float, float] = (0.05, 50.0)

    @classmethod
    def of(cls, settings) -> SampleSettings:
        """From a config's `sample` section, its JSON form (a dict, as checkpoints and
        MLflow record it; those written before a setting existed lack it, and get the
        sampling they were written with: no mean-only channels, no churn) or itself."""
        if isinstance(settings, cls):
            return settings
        if not isinstance(settings, dict):
            settings = settings.model_dump()
        return cls(
            tuple(float(s) for s in settings["intermediate_sigmas"]),
            int(settings["batch_size"]),
            tuple(settings.get("mean_only", ())),
            float(settings.get("churn", 0.0)),
            tuple(float(s) for s in settings.get("churn_range", (0.05, 50.0))),
        )


class Generator:
    """A trained network plus everything needed to map physical DMO maps to hydro maps."""

    def __init__(self, ckpt: dict, device: torch.device, sample: SampleSettings):
        if ckpt["kind"] not in ("denoiser", "consistency"):
            raise ValueError(
                f"a {ckpt['kind']!r} checkpoint does not sample: load models/denoiser.pt or "
                "models/consistency.pt"
            )
        self.kind: str = ckpt["kind"]
        self.mode: str = ckpt["mode"]
        self.stats = NormStats.from_dict(ckpt["norm_stats"])
        self.shapes = DataShapes(**ckpt["shapes"])
        self.diffusion: dict[str, float] = dict(ckpt["diffusion"])
        self.sample_settings = sample
        self.device = device
        self.net = network_from_checkpoint(ckpt, weights="ema").to(device).eval()
        self.net.requires_grad_(False)
        self.residual = Residual.from_state(ckpt.get("residual"), device)
        self.mean_only = self._mean_only_channels(sample.mean_only)

    def _mean_only_channels(self, names: tuple[str, ...]) -> list[int]:
        """Indices of the channels drawn as μ alone; they need a mean network."""
        check_channel_keys("sample.mean_only", dict.fromkeys(names), self.channel_names)
        if names and self.residual.mean is None:
            raise ValueError(
                f"sample.mean_only: {list(names)} need a mean network, and this model has none "
                "(it was trained with mean.enabled: false)"
            )
        return [self.channel_names.index(name) for name in names]

    @property
    def channel_names(self) -> list[str]:
        return list(self.stats.channel_names)

    @property
    def n_parameters(self) -> int:
        """The generator's and, with a residual, the mean network's parameters."""
        mean = self.residual.mean
        return count_parameters(self.net) + (0 if mean is None else count_parameters(mean))

    def nfe(self, n_steps: int) -> int:
        return nfe(self.kind, n_steps)

    def check_inputs(self, condition: np.ndarray, params: np.ndarray | None) -> None:
        """One clear line for each way the input can be wrong."""
        s = self.shapes
        condition = np.asarray(condition)
        want = f"(N, {s.cond_channels}, {s.resolution}, {s.resolution})"
        if condition.ndim != 4:
            raise ValueError(f"condition: expected shape {want}, got {condition.shape}")
        if condition.shape[1] != s.cond_channels:
            raise ValueError(
                f"condition: {condition.shape[1]} channels, the model takes {s.cond_channels}"
            )
        if condition.shape[2:] != (s.resolution, s.resolution):
            raise ValueError(
                f"condition: maps of {condition.shape[2:]}, the model takes "
                f"{s.resolution}x{s.resolution}"
            )
        _check_values("condition", condition, nonnegative=True)
        if s.n_params == 0:
            return
        names = ", ".join(self.stats.param_names)
        if params is None:
            raise ValueError(f"params: required, shape (N, {s.n_params}) [{names}]")
        params = np.asarray(params)
        if params.shape != (condition.shape[0], s.n_params):
            raise ValueError(
                f"params: expected shape ({condition.shape[0]}, {s.n_params}) [{names}], "
                f"got {params.shape}"
            )
        _check_values("params", params, nonnegative=False)

    def sample(
        self,
        condition: np.ndarray,
        params: np.ndarray | None = None,
        n_steps: int = 1,
        n_realizations: int = 1,
        seed: int | None = None,
        *,
        indices: Sequence[int] | None = None,
        dtype=np.float32,
    ) -> np.ndarray:
        """Physical-unit maps shaped (N, R, C, H, W). Map n, realisation r draws its noise from
        (seed, indices[n], r) — indices default to 0..N−1 — whatever the batch size."""
        self.check_inputs(condition, params)
        if n_steps < 1 or n_realizations < 1:
            raise ValueError(f"n_steps={n_steps}, n_realizations={n_realizations}: must be ≥ 1")
        seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        cond = torch.as_tensor(
            normalize_condition(np.asarray(condition, np.float64), self.stats), dtype=torch.float32
        )
        par = (
            torch.as_tensor(
                normalize_params(np.asarray(params, np.float64), self.stats), dtype=torch.float32
            )
            if self.shapes.n_params
            else torch.zeros(cond.shape[0], 0)
        )
        return self.draw(
            cond,
            par,
            n_steps=n_steps,
            n_realizations=n_realizations,
            seed=seed,
            indices=indices,
            dtype=dtype,
        )

    def draw(
        self,
        cond_norm: torch.Tensor,
        params_norm: torch.Tensor,
        *,
        n_steps: int,
        n_realizations: int,
        seed: int,
        indices: Sequence[int] | None = None,
        dtype=np.float32,
    ) -> np.ndarray:
        """The sampling loop over batches of `batch_size` maps × realisations, for normalised
        inputs; returns physical maps (N, R, C, H, W), denormalised in `dtype`. A batch's
        conditional mean μ is computed once for all its realisations."""
        n = cond_norm.shape[0]
        indices = range(n) if indices is None else indices
        if len(indices) != n:
            raise ValueError(f"indices: {len(indices)} for {n} maps")
        batch = self.sample_settings.batch_size
        out = np.empty(
            (n, n_realizations, self.shapes.target_channels, *cond_norm.shape[-2:]), dtype=dtype
        )
        for lo in range(0, n, batch):
            hi = min(lo + batch, n)
            cond = cond_norm[lo:hi].to(self.device)
            par = params_norm[lo:hi].to(self.device)
            mu = self.residual.predict(cond, par)
            for r in range(n_realizations):
                y = self._sample_around(
                    mu,
                    cond,
                    par,
                    n_steps=n_steps,
                    seed=seed,
                    indices=indices[lo:hi],
                    realization=r,
                )
                out[lo:hi, r] = generated_target(
                    y.cpu().numpy().astype(dtype, copy=False), self.stats
                )
        return out

    def sample_normalized(self, cond, params, *, n_steps, seed, indices, realization=0):
        """One batch of normalised samples for normalised inputs (no batching, no units): the
        sampler draws the residual, decoded around the conditional mean (residual.py)."""
        cond, params = cond.to(self.device), params.to(self.device)
        mu = self.residual.predict(cond, params)
        return self._sample_around(
            mu, cond, params, n_steps=n_steps, seed=seed, indices=indices, realization=realization
        )

    def _sample_around(self, mu, cond, params, *, n_steps, seed, indices, realization):
        """sample_normalized with the batch's μ given (None for the identity residual), on
        inputs already on the device: `draw` predicts μ once for all realisations."""
        gens = make_generators(seed, indices, realization, self.device)
        out_channels, d = self.shapes.target_channels, self.diffusion
        net_cond = self.residual.generator_condition(cond, mu)
        if self.kind == "consistency":
            r = consistency_batch(
                self.net,
                net_cond,
                params,
                n_steps=n_steps,
                generators=gens,
                out_channels=out_channels,
                sigma_max=d["sigma_max"],
                intermediate_sigmas=self.sample_settings.intermediate_sigmas,
            )
        else:
            r = teacher_batch(
                self.net,
                net_cond,
                params,
                n_steps=n_steps,
                generators=gens,
                out_channels=out_channels,
                sigma_min=d["sigma_min"],
                sigma_max=d["sigma_max"],
                rho=d["rho"],
                churn=self.sample_settings.churn,
                churn_range=self.sample_settings.churn_range,
            )
        # A zero residual decodes to μ: what the condition nearly fixes (hydro dark matter)
        # keeps none of the generator's noise.
        r[:, self.mean_only] = 0.0
        return self.residual.decode(r, mu)


def _check_values(name: str, x: np.ndarray, *, nonnegative: bool) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{name}: NaN/inf at index {np.argwhere(bad)[0].tolist()}")
    if nonnegative and (x < 0).any():
        raise ValueError(f"{name}: negative mass at index {np.argwhere(x < 0)[0].tolist()}")


def load_model(
    path: str | Path, device: str = "auto", sample: SampleSettings | None = None
) -> Generator:
    """Load a denoiser or consistency checkpoint (weights_only) for sampling.

    `sample`: how to sample — a config's `sample` section, its dict form or SampleSettings;
    None uses the settings recorded with the checkpoint's config.
    """
    dev = resolve_device(device)
    ckpt = load_checkpoint(path, map_location=dev, need=SAMPLING_KEYS)
    return Generator(
        ckpt, dev, SampleSettings.of(ckpt["config"]["sample"] if sample is None else sample)
    )
