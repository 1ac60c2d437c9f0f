"""The residual parametrisation: generators model r = (y − μ(c)) / s around a conditional mean.

μ(c, θ) ≈ E[y | c, θ] is a regression UNet trained by MSE (the `regress` stage, in normalised
units y); s is the per-channel standard deviation of the training residuals, so that r has
unit variance per channel, as σ_data = 1 assumes. What is nearly a function of the condition
(hydro dark matter) leaves a small residual: a generator's errors on it are scaled down by s,
and its capacity goes to what is random (CorrDiff, Mardani et al. 2024). Without a mean
network the parametrisation is the identity: r = y.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from halocm.models import build_network, network_from_checkpoint

# Maps per pass of the mean network when predicting whole splits.
PREDICT_BATCH = 256


@dataclass
class Residual:
    """μ (a frozen ConditionalMean, or None for the identity) and the scale s (C,)."""

    mean: nn.Module | None
    scale: torch.Tensor
    spec: dict | None = None  # the mean network's spec, to store it in checkpoints

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

    def encode(self, y: torch.Tensor, mu: torch.Tensor | None) -> torch.Tensor:
        """Normalised maps → standardised residuals."""
        if mu is None:
            return y
        return (y - mu) / self._scale(y)

    def decode(self, r: torch.Tensor, mu: torch.Tensor | None) -> torch.Tensor:
        """Standardised residuals → normalised maps."""
        if mu is None:
            return r
        return mu.to(r.dtype) + r * self._scale(r)

    def _scale(self, like: torch.Tensor) -> torch.Tensor:
        return self.scale.to(device=like.device, dtype=like.dtype)[:, None, None]

    def state(self) -> dict | None:
        """Tensors and plain containers for a checkpoint (None for the identity)."""
        if self.mean is None:
            return None
        return {
            "network": self.spec,
            "weights": self.mean.state_dict(),
            "scale": [float(s) for s in self.scale],
        }

    @classmethod
    def from_state(cls, state: dict | None, device: torch.device) -> Residual:
        if state is None:
            return cls.identity()
        mean = build_network(state["network"])
        mean.load_state_dict(state["weights"])
        mean = mean.to(device).eval().requires_grad_(False)
        return cls(mean, torch.tensor(state["scale"], dtype=torch.float32), state["network"])


def fit_scale(y: torch.Tensor, mu: torch.Tensor) -> torch.Tensor:
    """Per-channel standard deviation of y − μ over maps and pixels (C,)."""
    return (y - mu).double().std(dim=(0, 2, 3)).float()


def fit_residual(mean_ckpt: dict, y: torch.Tensor, cond: torch.Tensor, params: torch.Tensor):
    """The residual around a trained mean network (its checkpoint's inference EMA), with s
    fitted on the training maps y (normalised) and their inputs."""
    mean = network_from_checkpoint(mean_ckpt, weights="ema").to(y.device)
    residual = Residual(
        mean.eval().requires_grad_(False), torch.ones(y.shape[1]), mean_ckpt["network"]
    )
    residual.scale = fit_scale(y, residual.predict(cond, params))
    return residual
