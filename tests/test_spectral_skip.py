"""The spectral skip: the Wiener filter of the residuals' power per Fourier mode as c_skip."""

import torch

from halocm.checkpoint import load_checkpoint
from halocm.config import load_config
from halocm.diffusion.precond import (
    ConsistencyPrecond,
    EDMPrecond,
    residual_power,
    spectral_output_scale,
)
from halocm.nn.unet import UNet
from halocm.residual import Residual
from halocm.stages.pretrain import pretrain
from halocm.stages.train import train
from halocm.training import tensors_from_split

SIGMA_MIN, SIGMA_DATA = 0.002, 0.5
SIGMAS = torch.tensor([0.002, 0.05, 0.7, 3.0, 80.0], dtype=torch.float64)


def _unet(seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(
        in_channels=2, cond_channels=1, out_channels=2, n_params=3, resolution=8,
        base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,), embedding_dim=16,
    )  # fmt: skip
    for p in net.parameters():  # every weight random, the zero-init output conv included
        torch.nn.init.normal_(p, std=0.3)
    return net.double().eval()


def _pair(kind: str):
    """The scalar-skip and spectral-skip preconditioning of one backbone."""
    net = _unet()
    if kind == "edm":
        return EDMPrecond(net, SIGMA_DATA), EDMPrecond(net, SIGMA_DATA, spectral=True).double()
    return (
        ConsistencyPrecond(net, SIGMA_MIN, SIGMA_DATA),
        ConsistencyPrecond(net, SIGMA_MIN, SIGMA_DATA, spectral=True).double(),
    )


def _gaussian_field(n_maps: int, side: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Stationary Gaussian maps (n, 2, side, side) and their power per DFT mode (2, side, side):
    one channel red (P ∝ 1/(1 + (k/2)^4)), one nearly white."""
    k = torch.fft.fftfreq(side, d=1.0 / side, dtype=torch.float64)
    kk = (k[:, None] ** 2 + k[None, :] ** 2).sqrt()
    power = torch.stack([4.0 / (1 + (kk / 2) ** 4), 0.3 + 0.0 * kk])
    white = torch.randn(n_maps, 2, side, side, dtype=torch.float64,
                        generator=torch.Generator().manual_seed(seed))  # fmt: skip
    maps = torch.fft.ifft2(power.sqrt() * torch.fft.fft2(white, norm="ortho"), norm="ortho").real
    return maps, power


def test_a_white_spectrum_is_the_scalar_skip_exactly():
    x = torch.randn(5, 2, 8, 8, dtype=torch.float64)
    cond, params = torch.randn(5, 1, 8, 8).double(), torch.randn(5, 3).double()
    for kind in ("edm", "consistency"):
        scalar, spectral = _pair(kind)
        with torch.no_grad():
            a, b = scalar(x, SIGMAS, cond, params), spectral(x, SIGMAS, cond, params)
        torch.testing.assert_close(b, a, rtol=1e-10, atol=1e-10)


def test_the_boundary_condition_stays_bitwise_with_a_red_spectrum():
    _, power = _gaussian_field(1, 8, seed=0)
    f = ConsistencyPrecond(_unet(), SIGMA_MIN, SIGMA_DATA, spectral=True).double()
    f.skip_power.copy_(power)
    x = torch.randn(4, 2, 8, 8, dtype=torch.float64)
    cond, params = torch.randn(4, 1, 8, 8).double(), torch.randn(4, 3).double()
    with torch.no_grad():
        out = f(x, torch.tensor([SIGMA_MIN, 0.5, SIGMA_MIN, 3.0]), cond, params)
    assert torch.equal(out[[0, 2]], x[[0, 2]])
    assert not torch.allclose(out[[1, 3]], x[[1, 3]])


def test_the_power_of_gaussian_maps_is_estimated_per_mode():
    maps, power = _gaussian_field(4000, 8, seed=1)
    estimate = residual_power(maps).double()
    # Each mode's power is a mean of 4000 (or 2 × 2000, paired by symmetry) exponentials.
    assert ((estimate / power - 1).abs() < 6 * (2 / 4000) ** 0.5).all()


def test_with_no_network_output_the_spectral_skip_is_the_wiener_filter():
    # F ≡ 0: D(y + σz) is the skip alone. Its error per channel is the Wiener error
    # mean_k P σ²/(P + σ²) = c_out², so the EDM weight 1/c_out² gives the network a unit target;
    # the scalar skip's error, mean_k (1 − c)² P + c² σ², is larger.
    maps, power = _gaussian_field(2000, 8, seed=2)
    net = _unet()
    torch.nn.init.zeros_(net.conv_out.weight)
    torch.nn.init.zeros_(net.conv_out.bias)
    scalar = EDMPrecond(net, SIGMA_DATA)
    spectral = EDMPrecond(net, SIGMA_DATA, spectral=True).double()
    spectral.skip_power.copy_(power)
    cond, params = torch.zeros(2000, 1, 8, 8).double(), torch.zeros(2000, 3).double()
    for sigma in (0.1, 0.7, 3.0):
        noisy = maps + sigma * torch.randn_like(maps)
        with torch.no_grad():
            wiener = (spectral(noisy, sigma, cond, params) - maps).pow(2).mean((0, 2, 3))
            plain = (scalar(noisy, sigma, cond, params) - maps).pow(2).mean((0, 2, 3))
        s = torch.tensor([sigma], dtype=torch.float64)
        c_out2 = spectral_output_scale(power, s, s)[0] ** 2
        torch.testing.assert_close(wiener, c_out2, rtol=0.05, atol=0)
        c = SIGMA_DATA**2 / (sigma**2 + SIGMA_DATA**2)
        plain_theory = ((1 - c) ** 2 * power + c**2 * sigma**2).mean((-2, -1))
        torch.testing.assert_close(plain, plain_theory, rtol=0.05, atol=0)
        assert (c_out2 < plain_theory).all()


def test_the_stages_set_the_skip_from_the_training_residuals(project):
    cfg = load_config(
        project / "params.yaml",
        ["mean.enabled=true", "diffusion.spectral_skip=true", "train.steps=2", "pretrain.steps=2"],
    )
    pretrain(cfg)
    ckpt = load_checkpoint(train(cfg))
    assert ckpt["network"]["precond"]["spectral"] is True
    y, cond, params = tensors_from_split(cfg.paths.processed_dir / "train.npz", "cpu")
    residual = Residual.from_state(ckpt["residual"], torch.device("cpu"))
    expected = residual_power(residual.encode(y, residual.predict(cond, params)))
    torch.testing.assert_close(ckpt["ema"]["skip_power"], expected, rtol=1e-5, atol=1e-7)
