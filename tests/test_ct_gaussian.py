"""A tiny consistency-training run on Gaussian fields moves the model toward the exact map."""

from __future__ import annotations

import torch
from conftest import tiny_config
from gaussian import GaussianField

from halocm.models import DataShapes, build_network, network_spec
from halocm.objectives import build_objective
from halocm.training import Batches, TrainSettings, fit


@torch.no_grad()
def one_step_error(net, field: GaussianField, sigmas, n=64) -> float:
    """E mean_pix (f_θ(x0 + σz, σ) − f*(x0 + σz, σ))² over a few noise levels."""
    gen = torch.Generator().manual_seed(123)
    x0 = field.sample(n, generator=gen)
    exact = field.consistency()
    empty_c, empty_p = torch.zeros(n, 0, 8, 8), torch.zeros(n, 0)
    errors = []
    for s in sigmas:
        x = x0 + s * torch.randn(x0.shape, generator=gen)
        errors.append((net(x, s, empty_c, empty_p) - exact(x, s)).pow(2).mean().item())
    return sum(errors) / len(errors)


def test_ct_lowers_the_one_step_error_against_the_exact_consistency_map(tmp_path):
    torch.manual_seed(0)
    cfg = tiny_config(
        {
            "model": {
                "base_channels": 16,
                "channel_mult": [1, 2],
                "attention_resolutions": [],
                "embedding_dim": 32,
                "dropout": 0.0,
            },
            "ct": {"grid_levels": 10, "target_ema": 0.9, "loss": "l2", "schedule": "constant"},
        }
    )
    d = cfg.diffusion
    field = GaussianField.power_law(8)
    spec = network_spec(
        "consistency",
        cfg.model.model_dump(),
        DataShapes(1, 0, 0, 8),
        sigma_min=d.sigma_min,
        sigma_data=d.sigma_data,
    )
    net = build_network(spec)
    sigmas = [0.1, 0.5, 2.0, 10.0, 80.0]
    before = one_step_error(net.eval(), field, sigmas)

    x0 = field.sample(512, generator=torch.Generator().manual_seed(0))
    batches = Batches(x0, torch.zeros(512, 0, 8, 8), torch.zeros(512, 0), batch_size=32, seed=0)
    settings = TrainSettings(
        steps=150,
        lr=2e-3,
        optimizer="adamw",
        weight_decay=0.0,
        grad_clip=1.0,
        inference_ema=0.9,
        checkpoint_every=1000,
        val_every=1000,
        seed=0,
    )
    ema = fit(
        objective=build_objective(
            "ct",
            cfg.ct.fields(),
            student=net,
            teacher=None,
            sigma_min=d.sigma_min,
            sigma_max=d.sigma_max,
            rho=d.rho,
            total_steps=150,
        ),
        net=net,
        batches=batches,
        settings=settings,
        checkpoint_path=tmp_path / "ct.pt",
        checkpoint_extra={},
    )
    after = one_step_error(ema.eval(), field, sigmas)
    print(f"one-step error before {before:.4f}, after {after:.4f}")
    assert after < 0.5 * before, (before, after)
