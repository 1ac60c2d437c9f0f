"""Preconditioning: coefficients against their formulas and the boundary f(x, σ_min) = x."""

import math

import pytest
import torch

from halocm.diffusion.precond import (
    ConsistencyPrecond,
    EDMPrecond,
    consistency_coefficients,
    edm_coefficients,
)
from halocm.nn.unet import UNet

SIGMA_MIN, SIGMA_DATA = 0.002, 0.5
SIGMAS = [0.002, 0.01, 0.3, 1.0, 7.5, 80.0]


def _random_unet() -> UNet:
    torch.manual_seed(0)
    net = UNet(
        in_channels=2, cond_channels=1, out_channels=2, n_params=3, resolution=8,
        base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,), embedding_dim=16,
    )  # fmt: skip
    for p in net.parameters():  # Every weight random, the zero-init output conv included.
        torch.nn.init.normal_(p, std=0.3)
    return net.eval()


class Recorder(torch.nn.Module):
    """F(x_in, c_noise) = 2 x_in + c_noise, recording what it was given."""

    def forward(self, x_in, c_noise, cond, params):
        self.x_in, self.c_noise, self.cond, self.params = x_in, c_noise, cond, params
        return 2 * x_in + c_noise[:, None, None, None]


def test_edm_coefficients_match_karras_table_1():
    for s in SIGMAS:
        c_skip, c_out, c_in, c_noise = edm_coefficients(torch.tensor([s], dtype=torch.float64), 0.5)
        assert c_skip.item() == pytest.approx(0.25 / (s**2 + 0.25), rel=1e-12)
        assert c_out.item() == pytest.approx(s * 0.5 / math.sqrt(s**2 + 0.25), rel=1e-12)
        assert c_in.item() == pytest.approx(1 / math.sqrt(s**2 + 0.25), rel=1e-12)
        assert c_noise.item() == pytest.approx(math.log(s) / 4, rel=1e-12)


def test_consistency_coefficients_match_song_appendix_c():
    for s in SIGMAS:
        sig = torch.tensor([s], dtype=torch.float64)
        c_skip, c_out, c_in, c_noise = consistency_coefficients(sig, SIGMA_MIN, SIGMA_DATA)
        assert c_skip.item() == pytest.approx(0.25 / ((s - 0.002) ** 2 + 0.25), rel=1e-12)
        assert c_out.item() == pytest.approx(0.5 * (s - 0.002) / math.sqrt(s**2 + 0.25), abs=1e-15)
        assert c_in.item() == pytest.approx(1 / math.sqrt(s**2 + 0.25), rel=1e-12)
        # Same c_noise as EDM, so a denoiser's weights transfer unchanged.
        assert c_noise.item() == edm_coefficients(sig, SIGMA_DATA)[3].item()


def test_consistency_coefficients_at_sigma_min_are_exact():
    c_skip, c_out, _, _ = consistency_coefficients(torch.tensor([0.002]), SIGMA_MIN, SIGMA_DATA)
    assert c_skip.item() == 1.0 and c_out.item() == 0.0


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_boundary_condition_is_bitwise_with_a_random_unet(dtype):
    f = ConsistencyPrecond(_random_unet(), SIGMA_MIN, SIGMA_DATA)
    x = torch.randn(4, 2, 8, 8, dtype=dtype)
    cond, params = torch.randn(4, 1, 8, 8), torch.randn(4, 3)
    with torch.no_grad():
        assert torch.equal(f(x, SIGMA_MIN, cond, params), x)
        assert torch.equal(f(x, torch.full((4,), SIGMA_MIN), cond, params), x)
        # Per-sample σ: only the rows at σ_min are returned unchanged.
        mixed = f(x, torch.tensor([SIGMA_MIN, 0.5, SIGMA_MIN, 3.0]), cond, params)
    assert torch.equal(mixed[[0, 2]], x[[0, 2]])
    assert not torch.allclose(mixed[[1, 3]], x[[1, 3]])


def test_precond_composes_skip_out_in_and_noise():
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    sigma = torch.tensor([0.05, 0.7, 20.0], dtype=torch.float64)
    cond, params = torch.randn(3, 1, 4, 4), torch.randn(3, 2)
    for precond, coef in [
        (EDMPrecond(Recorder(), SIGMA_DATA), edm_coefficients(sigma, SIGMA_DATA)),
        (
            ConsistencyPrecond(Recorder(), SIGMA_MIN, SIGMA_DATA),
            consistency_coefficients(sigma, SIGMA_MIN, SIGMA_DATA),
        ),
    ]:
        c_skip, c_out, c_in, c_noise = (c[:, None, None, None] for c in coef)
        out = precond(x, sigma, cond, params)
        expected = c_skip * x + c_out * (2 * c_in * x + c_noise)
        torch.testing.assert_close(out, expected, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(precond.net.x_in, c_in * x)
        assert precond.net.cond is cond and precond.net.params is params


def test_scalar_sigma_broadcasts():
    net = _random_unet()
    x, cond, params = torch.randn(3, 2, 8, 8), torch.randn(3, 1, 8, 8), torch.randn(3, 3)
    for precond in (EDMPrecond(net, SIGMA_DATA), ConsistencyPrecond(net, SIGMA_MIN, SIGMA_DATA)):
        with torch.no_grad():
            a = precond(x, 0.8, cond, params)
            b = precond(x, torch.full((3,), 0.8), cond, params)
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="sigma"):
        precond(x, torch.ones(2), cond, params)


def test_edm_with_untrained_net_is_c_skip_x():
    net = UNet(
        in_channels=1, cond_channels=0, out_channels=1, n_params=0, resolution=8,
        base_channels=8, channel_mult=(1,), attention_resolutions=(), embedding_dim=16,
    )  # fmt: skip
    x = torch.randn(2, 1, 8, 8)
    out = EDMPrecond(net, SIGMA_DATA)(x, torch.tensor([0.1, 10.0]), None, None)
    c_skip = 0.25 / (torch.tensor([0.1, 10.0]) ** 2 + 0.25)
    torch.testing.assert_close(out, c_skip[:, None, None, None] * x)
