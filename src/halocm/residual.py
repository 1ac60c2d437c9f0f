"""The residual parametrisation: generators model r = (y − μ(c)) / s around a conditional mean.

μ(c, θ) ≈ E[y | c, θ] is a regression UNet trained by MSE (the `regress` stage, in normalised
units y); s is the per-channel standard deviation of the training residuals, so that r has
unit variance per channel, as σ_data = 1 assumes. What is nearly a function of the condition
(hydro dark matter) leaves a small residual: a generator's errors on it are scaled down by s,
and its capacity goes to what is random (CorrDiff, Mardani et al. 2024). Without a mean
network the parametrisation is the identity: r = y.

A channel with a tail scale b > 0 is modelled as u = b asinh(r / b) instead of r: linear for
|r| ≪ b, logarithmic beyond, so that rare spikes many s above the mean (satellites' stars)
are a few units from it rather than twenty (docs/design.md §5).

When the residual conditions the generators, they see μ beside the condition: much of a
residual's structure follows μ (the central galaxy's mass scatter scales the whole stellar
profile μ predicts), and the generators need not learn μ again from the DMO map.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
from torch import nn

from halocm.models import DataShapes, build_network, network_from_checkpoint

# Maps per pass of the mean network when predicting whole splits.
PREDICT_BATCH = 256


@dataclass
class Residual:
    """μ (a frozen ConditionalMean, or None for the identity), the scale s (C,) and the tail
    scales b (C,; 0 where a channel's residual is modelled as is)."""

    mean: nn.Module | None
    scale: torch.Tensor
    spec: dict | None = None  # the mean network's spec, to store it in checkpoints
    tail: torch.Tensor | None = None
    # The largest |u| of the training residuals per channel: a sample's tail is clipped there,
    # since sinh turns an untrained network's large output into an overflow.
    tail_limit: torch.Tensor | None = None
    # The generators take μ as extra condition channels (`mean.condition_generators`).
    conditions: bool = False

    @classmethod
    def identity(cls) -> Residual:
        return cls(None, torch.ones(0))

    @torch.no_grad()
    def predict(self, cond: torch.Tensor, params: torch.Tensor) -> torch.Tensor | None:
        """μ for normalised inputs, in batches; None for the identity."""
        if self.mean is None:
            return None
        parts = [
            self.mean(cond[lo : lo + PREDICT_BATCH], params[lo : lo + PREDICT_BATCH])
            for lo in range(0, cond.shape[0], PREDICT_BATCH)
        ]
        return torch.cat(parts).float()

    def generator_condition(self, cond: torch.Tensor, mu: torch.Tensor | None) -> torch.Tensor:
        """What the generators are conditioned on: the condition, and μ when they see it."""
        if not self.conditions or mu is None:
            return cond
        return torch.cat([cond, mu.to(cond.dtype)], dim=1)

    def generator_shapes(self, shapes: DataShapes) -> DataShapes:
        """The data's shapes as the generator networks see them (μ's channels added)."""
        if not self.conditions or self.mean is None:
            return shapes
        return replace(shapes, cond_channels=shapes.cond_channels + shapes.target_channels)

    def encode(self, y: torch.Tensor, mu: torch.Tensor | None) -> torch.Tensor:
        """Normalised maps → standardised residuals."""
        if mu is None:
            return y
        r = (y - mu) / self._per_channel(self.scale, y)
        if self.tail is None:
            return r
        tailed, b = self._tail_scales(r)
        return torch.where(tailed, b * torch.asinh(r / b), r)

    def decode(self, u: torch.Tensor, mu: torch.Tensor | None) -> torch.Tensor:
        """Standardised residuals → normalised maps."""
        if mu is None:
            return u
        r = u
        if self.tail is not None:
            tailed, b = self._tail_scales(u)
            if self.tail_limit is not None:
                limit = self._per_channel(self.tail_limit, u)
                u = torch.clamp(u, -limit, limit)
            r = torch.where(tailed, b * torch.sinh(u / b), r)
        return mu.to(r.dtype) + r * self._per_channel(self.scale, r)

    def _tail_scales(self, like: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(channel has a tail, b with 1 where it has none: safe to divide by)."""
        b = self._per_channel(self.tail, like)
        tailed = b > 0
        return tailed, torch.where(tailed, b, 1.0)

    @staticmethod
    def _per_channel(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return values.to(device=like.device, dtype=like.dtype)[:, None, None]

    def state(self) -> dict | None:
        """Tensors and plain containers for a checkpoint (None for the identity)."""
        if self.mean is None:
            return None
        return {
            "network": self.spec,
            "weights": self.mean.state_dict(),
            "scale": [float(s) for s in self.scale],
            "tail": None if self.tail is None else [float(b) for b in self.tail],
            "tail_limit": None if self.tail_limit is None else [float(v) for v in self.tail_limit],
            "conditions": self.conditions,
        }

    @classmethod
    def from_state(cls, state: dict | None, device: torch.device) -> Residual:
        if state is None:
            return cls.identity()
        mean = build_network(state["network"])
        mean.load_state_dict(state["weights"])
        mean = mean.to(device).eval().requires_grad_(False)
        tail, limit = state.get("tail"), state.get("tail_limit")
        return cls(
            mean,
            torch.tensor(state["scale"], dtype=torch.float32),
            state["network"],
            None if tail is None else torch.tensor(tail, dtype=torch.float32),
            None if limit is None else torch.tensor(limit, dtype=torch.float32),
            # Checkpoints written before the switch existed: the generators never saw μ.
            bool(state.get("conditions", False)),
        )


def fit_scale(y: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation of y − μ over maps and pixels (C,)."""
    return (y - mu).double().std(dim=(0, 2, 3)).float()


def fit_residual(
    mean_ckpt: dict,
    y: torch.Tensor,
    cond: torch.Tensor,
    params: torch.Tensor,
    tail: torch.Tensor | None = None,
    conditions: bool = False,
):
    """The residual around a trained mean network (its checkpoint's inference EMA), with s
    fitted on the training maps y (normalised) and their inputs, tail scales b (C,), and
    whether the generators see μ."""
    mean = network_from_checkpoint(mean_ckpt, weights="ema").to(y.device)
    residual = Residual(
        mean.eval().requires_grad_(False),
        torch.ones(y.shape[1]),
        mean_ckpt["network"],
        tail,
        conditions=conditions,
    )
    mu = residual.predict(cond, params)
    residual.scale = fit_scale(y, mu)
    if tail is not None:
        residual.tail_limit = residual.encode(y, mu).abs().amax(dim=(0, 2, 3)).float()
    return residual
