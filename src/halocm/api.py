"""The public Python entry point: `load_model(path)` → `Generator.sample(...)`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from halocm.checkpoint import load_checkpoint
from halocm.config import Config, config_from_dict
from halocm.data.normalize import (
    NormStats,
    denormalize_target,
    normalize_condition,
    normalize_params,
)
from halocm.models import DataShapes, count_parameters, network_from_checkpoint
from halocm.runtime import resolve_device
from halocm.sampling import make_generators, nfe, sample_batch


class Generator:
    """A trained network plus everything needed to map physical DMO maps to hydro maps."""

    def __init__(self, ckpt: dict, device: torch.device):
        self.kind: str = ckpt["kind"]
        self.mode: str = ckpt["mode"]
        self.config: Config = config_from_dict(ckpt["config"], source="checkpoint config")
        self.stats = NormStats.from_dict(ckpt["norm_stats"])
        self.shapes = DataShapes(**ckpt["shapes"])
        self.device = device
        self.net = network_from_checkpoint(ckpt, weights="ema").to(device).eval()
        self.net.requires_grad_(False)

    @property
    def channel_names(self) -> list[str]:
        return list(self.stats.channel_names)

    @property
    def n_parameters(self) -> int:
        return count_parameters(self.net)

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
    ) -> np.ndarray:
        """Physical-unit maps shaped (N, R, C, H, W); map n, realisation r is the same for a
        given seed whatever the batch size."""
        self.check_inputs(condition, params)
        if n_steps < 1 or n_realizations < 1:
            raise ValueError(f"n_steps={n_steps}, n_realizations={n_realizations}: must be ≥ 1")
        seed = int(np.random.SeedSequence().entropy % 2**31) if seed is None else int(seed)
        cond = torch.as_tensor(
            normalize_condition(np.asarray(condition, np.float64), self.stats), dtype=torch.float32
        )
        n = cond.shape[0]
        par = (
            torch.as_tensor(
                normalize_params(np.asarray(params, np.float64), self.stats), dtype=torch.float32
            )
            if self.shapes.n_params
            else torch.zeros(n, 0)
        )
        out = np.empty(
            (n, n_realizations, self.shapes.target_channels, *cond.shape[-2:]), dtype=np.float32
        )
        batch = self.config.sample.batch_size
        for r in range(n_realizations):
            for lo in range(0, n, batch):
                idx = range(lo, min(lo + batch, n))
                y = self.sample_normalized(
                    cond[idx.start : idx.stop],
                    par[idx.start : idx.stop],
                    n_steps=n_steps,
                    seed=seed,
                    indices=idx,
                    realization=r,
                )
                out[idx.start : idx.stop, r] = denormalize_target(y.cpu().numpy(), self.stats)
        return out

    def sample_normalized(self, cond, params, *, n_steps, seed, indices, realization=0):
        """Normalised samples for normalised inputs (used by the benchmark and validation)."""
        cond, params = cond.to(self.device), params.to(self.device)
        gens = make_generators(seed, indices, realization, self.device)
        return sample_batch(
            self.net,
            self.kind,
            cond,
            params,
            n_steps=n_steps,
            cfg=self.config,
            generators=gens,
            out_channels=self.shapes.target_channels,
        )

    def paint(self, dmo, catalog, **kwargs):
        """Paint every halo of a whole DMO box (DESIGN.md §7): `paint_with_model(self, ...)`,
        whose keywords (box_size, n_steps, n_realizations, mass_min, ...) it takes."""
        from halocm.painting import paint_with_model

        return paint_with_model(self, dmo, catalog, **kwargs)


def _check_values(name: str, x: np.ndarray, *, nonnegative: bool) -> None:
    bad = ~np.isfinite(x)
    if bad.any():
        raise ValueError(f"{name}: NaN/inf at index {np.argwhere(bad)[0].tolist()}")
    if nonnegative and (x < 0).any():
        raise ValueError(f"{name}: negative mass at index {np.argwhere(x < 0)[0].tolist()}")


def load_model(path: str | Path, device: str = "auto") -> Generator:
    """Load a denoiser or consistency checkpoint (weights_only) for sampling."""
    dev = resolve_device(device)
    return Generator(load_checkpoint(path, map_location=dev), dev)
