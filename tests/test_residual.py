"""The residual parametrisation: generators model (y − μ(c))/s around a conditional mean."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from gaussian import GaussianField, ring_average, ring_power

from halocm.api import load_model
from halocm.checkpoint import CheckpointError, load_checkpoint
from halocm.config import load_config
from halocm.data.dataset import load_split
from halocm.data.halos import OMEGA_B
from halocm.data.normalize import fit_stats, normalize_condition, normalize_params, normalize_target
from halocm.data.sources import RawData
from halocm.diffusion.samplers import consistency_sample
from halocm.errors import BadInput
from halocm.models import (
    SKIP_WIDTHS,
    DataShapes,
    build_network,
    gaussian_blur,
    network_spec,
    skip_fractions,
)
from halocm.residual import Residual, fit_scale
from halocm.stages.pretrain import pretrain
from halocm.stages.residuals import check_same_residual, tail_scales
from halocm.stages.train import train
from halocm.training import tensors_from_split


class Constant(torch.nn.Module):
    """A 'mean network' that always answers μ."""

    def __init__(self, mu: torch.Tensor):
        super().__init__()
        self.mu = mu

    def forward(self, cond, params):
        return self.mu.expand(cond.shape[0], *self.mu.shape)


def test_encode_and_decode_are_inverse_and_the_identity_is_exact():
    y = torch.randn(5, 3, 8, 8)
    mu = torch.randn(5, 3, 8, 8)
    residual = Residual(Constant(mu[0]), torch.tensor([0.01, 0.5, 2.0]))
    r = residual.encode(y, mu)
    torch.testing.assert_close(residual.decode(r, mu), y, rtol=0, atol=1e-5)
    # Each channel of the residual has the scale's units removed.
    torch.testing.assert_close(r[:, 0] * 0.01, y[:, 0] - mu[:, 0])
    identity = Residual.identity()
    assert identity.predict(y, None) is None
    assert identity.encode(y, None) is y and identity.decode(y, None) is y
    assert identity.state() is None


def test_a_tail_scale_models_the_residual_as_b_asinh_r_over_b():
    mu = torch.zeros(1, 2, 1, 3)
    residual = Residual(Constant(mu[0]), torch.tensor([1.0, 0.5]), tail=torch.tensor([0.0, 2.0]))
    # r = 2 sinh(1.5) is u = 3 exactly; small r stay nearly unchanged; channel 0 has no tail.
    r = torch.tensor([2.0 * torch.sinh(torch.tensor(1.5)).item(), 0.01, -20.0])
    y = torch.stack([r, 0.5 * r])[None, :, None]
    u = residual.encode(y, mu)
    torch.testing.assert_close(u[0, 0, 0], r)
    expected = torch.tensor([3.0, 0.01, -2.0 * torch.asinh(torch.tensor(10.0)).item()])
    torch.testing.assert_close(u[0, 1, 0], expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(residual.decode(u, mu), y, rtol=1e-5, atol=1e-6)
    assert residual.state()["tail"] == [0.0, 2.0]
    # Samples are clipped at the training residuals' largest |u|: no sinh overflow.
    residual.tail_limit = torch.tensor([0.0, 3.0])
    wild = torch.full((1, 2, 1, 3), 400.0)
    decoded = residual.decode(wild, mu)
    assert decoded[0, 0].eq(400.0).all()  # no tail: no clipping
    torch.testing.assert_close(
        decoded[0, 1], torch.full((1, 3), 0.5 * 2.0 * float(torch.sinh(torch.tensor(1.5))))
    )


def test_tail_scales_are_per_channel_and_an_unknown_channel_is_refused():
    names = ["dm_hydro", "gas", "stars"]
    assert tail_scales({}, names) is None
    assert tail_scales({"stars": 2.0}, names).tolist() == [0.0, 0.0, 2.0]
    with pytest.raises(ValueError, match=r"mean.tail: no target channel named \['star'\]"):
        tail_scales({"star": 2.0}, names)


def test_a_teacher_with_another_tail_or_view_of_mu_is_refused():
    plain = Residual(Constant(torch.zeros(1, 4, 4)), torch.ones(1))
    tailed = Residual(Constant(torch.zeros(1, 4, 4)), torch.ones(1), tail=torch.tensor([2.0]))
    seeing = Residual(Constant(torch.zeros(1, 4, 4)), torch.ones(1), conditions=True)
    state = plain.state()
    check_same_residual({"residual": state}, plain, "denoiser.pt")
    for other in (tailed, seeing):
        with pytest.raises(ValueError, match="pretrained with another mean network"):
            check_same_residual({"residual": state}, other, "denoiser.pt")
    # A checkpoint written before the switch existed has generators that never saw μ.
    del state["conditions"]
    check_same_residual({"residual": state}, plain, "denoiser.pt")


def test_the_generators_see_mu_beside_the_condition():
    mu, cond = torch.randn(2, 3, 4, 4), torch.randn(2, 1, 4, 4)
    seeing = Residual(Constant(mu[0]), torch.ones(3), conditions=True)
    blind = Residual(Constant(mu[0]), torch.ones(3))
    torch.testing.assert_close(seeing.generator_condition(cond, mu), torch.cat([cond, mu], 1))
    assert blind.generator_condition(cond, mu) is cond
    shapes = DataShapes(target_channels=3, cond_channels=1, n_params=2, resolution=4)
    assert seeing.generator_shapes(shapes) == dataclasses.replace(shapes, cond_channels=4)
    assert blind.generator_shapes(shapes) == shapes
    # Without a mean network there is no μ to see.
    identity = Residual.identity()
    identity.conditions = True
    assert identity.generator_condition(cond, None) is cond
    assert identity.generator_shapes(shapes) == shapes


def test_the_scale_standardises_the_training_residual_per_channel():
    y = torch.randn(40, 3, 8, 8) * torch.tensor([0.1, 1.0, 3.0])[:, None, None] + 5.0
    scale = fit_scale(y, torch.full_like(y, 5.0))
    torch.testing.assert_close(scale, torch.tensor([0.1, 1.0, 3.0]), rtol=0.05, atol=0)


def test_one_step_samples_of_a_gaussian_residual_have_the_known_mean_and_power():
    # r ~ N(0, C), y = μ + s r. The exact consistency map's one-step sample f(σ_max z, σ_max)
    # has per-mode power a²(σ_max) σ_max² = (P + σ_min²) σ_max²/(P + σ_max²) (docs/design.md
    # §5): decoded samples have mean μ and, divided by s, that power.
    field = GaussianField.power_law(16)
    mu = torch.randn(1, 16, 16)
    residual = Residual(Constant(mu), torch.tensor([0.3]))
    n = 2000
    z = torch.randn(n, 1, 16, 16, generator=torch.Generator().manual_seed(0))
    r = consistency_sample(field.consistency(), z, [80.0], cond=None, params=None)
    y = residual.decode(r, residual.predict(torch.zeros(n, 1, 16, 16), torch.zeros(n, 0)))
    # The pixel std of r is ≈ 0.5 (variance 0.25): 5 standard errors of the mean.
    torch.testing.assert_close(y.mean(0), mu, rtol=0, atol=5 * 0.3 * 0.5 / n**0.5)
    _, power, stderr = ring_power((y - mu).double() / 0.3)
    expected = ring_average(field.a(80.0) ** 2 * 80.0**2)
    assert ((power - expected).abs() < 5 * stderr).all()


def test_the_pipeline_models_the_residual_and_the_generator_decodes_it(project):
    cfg = load_config(
        project / "params.yaml",
        ["mean.enabled=true", "mean.condition_generators=true", "train.steps=2"],
    )
    pretrain(cfg)
    ckpt = load_checkpoint(train(cfg))
    state = ckpt["residual"]
    assert state is not None and state["network"]["kind"] == "mean"
    # The generator sees μ's channels beside the condition (mean.condition_generators).
    assert state["conditions"] is True
    # The scale is the std of the training residual around the mean network's prediction.
    y, cond, params = tensors_from_split(cfg.paths.processed_dir / "train.npz", "cpu")
    mean = Residual.from_state(state, torch.device("cpu"))
    assert mean.conditions
    assert ckpt["network"]["unet"]["cond_channels"] == cond.shape[1] + y.shape[1]
    torch.testing.assert_close(
        mean.scale, fit_scale(y, mean.predict(cond, params)), rtol=1e-5, atol=0
    )
    # A sample is the mean network's prediction plus the scaled residual the model draws.
    gen = load_model(cfg.paths.models_dir / "consistency.pt", device="cpu", sample=cfg.sample)
    test = load_split(cfg.paths.processed_dir / "test.npz")
    c = torch.as_tensor(test["condition"][:3])
    p = torch.as_tensor(test["params"][:3])
    out = gen.sample_normalized(c, p, n_steps=1, seed=0, indices=range(3))
    # The same draw decoded with unit scales and no tail is μ + r: the residual itself.
    gen.residual = dataclasses.replace(gen.residual, scale=torch.ones(3), tail=None)
    mu = mean.predict(c, p)
    r = gen.sample_normalized(c, p, n_steps=1, seed=0, indices=range(3)) - mu
    torch.testing.assert_close(out, mean.decode(r, mu))


def test_a_mean_only_channel_is_mu_and_the_others_are_untouched(project):
    cfg = load_config(
        project / "params.yaml", ["mean.enabled=true", "train.warm_start=false", "train.steps=2"]
    )
    path = train(cfg)
    test = load_split(cfg.paths.processed_dir / "test.npz")
    c, p = torch.as_tensor(test["condition"][:3]), torch.as_tensor(test["params"][:3])

    def one_step(mean_only):
        settings = cfg.sample.model_copy(update={"mean_only": mean_only})
        gen = load_model(path, device="cpu", sample=settings)
        return gen, gen.sample_normalized(c, p, n_steps=1, seed=0, indices=range(3))

    _, drawn = one_step(())
    gen, dm_as_mu = one_step(("dm_hydro",))
    torch.testing.assert_close(dm_as_mu[:, 0], gen.residual.predict(c, p)[:, 0])
    assert not torch.allclose(drawn[:, 0], dm_as_mu[:, 0])
    torch.testing.assert_close(dm_as_mu[:, 1:], drawn[:, 1:])


def test_a_denoiser_of_another_residual_is_refused(project):
    # A denoiser that models the residual cannot warm-start a model of y itself.
    pretrain(load_config(project / "params.yaml", ["mean.enabled=true"]))
    cfg = load_config(
        project / "params.yaml", ["mean.enabled=false", "sample.mean_only=[]", "train.steps=1"]
    )
    with pytest.raises(ValueError, match="pretrained with another mean network"):
        train(cfg)


def test_the_mean_network_starts_from_the_least_squares_affine_map():
    shapes = DataShapes(target_channels=2, cond_channels=1, n_params=0, resolution=8)
    model = {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
             "attention_resolutions": [], "dropout": 0.0, "embedding_dim": 16}  # fmt: skip
    mean = build_network(network_spec("mean", model, shapes, sigma_min=0.002, sigma_data=1.0))
    cond = torch.randn(10, 1, 8, 8)
    target = torch.cat([2.0 * cond + 1.0, -0.5 * cond], dim=1)
    mean.fit_affine(target, cond, None)
    # The UNet's output layer starts at zero: the prediction is the affine fit, here exact.
    torch.testing.assert_close(mean(cond, None), target, rtol=0, atol=1e-5)


TINY_MEAN = {"base_channels": 8, "channel_mult": [1, 2], "num_res_blocks": 1,
             "attention_resolutions": [], "dropout": 0.0, "embedding_dim": 16}  # fmt: skip


def field_without_halos(omega_m: np.ndarray):
    """RawData whose hydro maps are the DMO map split by the cosmic fractions exactly: dm_hydro
    (1 − Ωb/Ωm) × DMO, gas Ωb/Ωm × DMO, and stars unrelated to it."""
    rng = np.random.default_rng(0)
    n = len(omega_m)
    dmo = 10 ** rng.normal(11.0, 0.5, size=(n, 1, 8, 8))
    f_b = (OMEGA_B / omega_m)[:, None, None, None]
    stars = 10 ** rng.normal(8.0, 1.0, size=(n, 1, 8, 8))
    params = np.stack([omega_m, rng.uniform(0.6, 1.0, n)], axis=1)
    return RawData(
        condition=dmo,
        target=np.concatenate([(1 - f_b) * dmo, f_b * dmo, stars], axis=1),
        params=params,
        param_names=["Omega_m", "sigma_8"],
        channel_names=["dm_hydro", "gas", "stars"],
        group=np.arange(n),
        box_size=6.25,
        origin="test",
        condition_names=["dmo"],
    )


def cosmic_spec(raw: RawData) -> dict:
    """The spec of a tiny mean network with the cosmic skip, for `raw`."""
    shapes = DataShapes.from_arrays(raw.target, raw.condition, raw.params)
    return network_spec("mean", TINY_MEAN, shapes, sigma_min=0.002, sigma_data=1.0,
                        stats=fit_stats(raw).to_dict())  # fmt: skip


def cosmic_mean(raw: RawData):
    """A tiny mean network with the cosmic skip, fitted to `raw`; its normalised tensors."""
    stats = fit_stats(raw)
    as_tensor = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    cond = as_tensor(normalize_condition(raw.condition, stats))
    target = as_tensor(normalize_target(raw.target, stats))
    params = as_tensor(normalize_params(raw.params, stats))
    return build_network(cosmic_spec(raw)), target, cond, params


def test_the_cosmic_skip_splits_a_field_without_halos_exactly_at_every_omega_m():
    raw = field_without_halos(np.linspace(0.1, 0.5, 12))
    mean, target, cond, params = cosmic_mean(raw)
    mean.fit_affine(target, cond, params)
    # f_b runs from 0.49 to 0.10: dm_hydro's log offset moves by 0.25 dex across the maps,
    # and the skip holds it before any training (the UNet's output starts at zero).
    with torch.no_grad():
        mu = mean(cond, params)
    torch.testing.assert_close(mu[:, :2], target[:, :2], rtol=0, atol=1e-4)
    torch.testing.assert_close(mean.slope[:2], torch.ones(2), rtol=0, atol=1e-4)
    # The plain skip, one affine map of the DMO channel for all Ωm, cannot.
    plain = build_network(network_spec("mean", TINY_MEAN, DataShapes(3, 1, 2, 8),
                                       sigma_min=0.002, sigma_data=1.0))  # fmt: skip
    plain.fit_affine(target, cond, params)
    with torch.no_grad():
        assert (plain(cond, params)[:, 0] - target[:, 0]).abs().max() > 0.3


def test_each_channel_takes_the_skip_width_that_fits_it_best():
    # Gas that is the cosmic share of the DMO map smoothed by 2 pixels: least squares picks
    # width 2 for it and none for the hydro dark matter, and the fit is exact before training.
    raw = field_without_halos(np.linspace(0.1, 0.5, 12))
    dmo = torch.as_tensor(raw.condition)
    gas = (OMEGA_B / raw.params[:, 0])[:, None, None, None] * gaussian_blur(dmo, 2.0).numpy()
    raw = dataclasses.replace(raw, target=raw.target.copy())
    raw.target[:, 1:2] = gas
    mean, target, cond, params = cosmic_mean(raw)
    mean.fit_affine(target, cond, params, widths=SKIP_WIDTHS)
    assert mean.skip_width[:2].tolist() == [0.0, 2.0]  # the stars are unrelated to the DMO map
    with torch.no_grad():
        torch.testing.assert_close(mean(cond, params)[:, :2], target[:, :2], rtol=0, atol=1e-4)
    unsmoothed = cosmic_mean(raw)[0]
    unsmoothed.fit_affine(target, cond, params)  # mean.smooth_skip=false: the width 0 only
    assert unsmoothed.skip_width.tolist() == [0.0, 0.0, 0.0]


def test_the_skip_blur_is_a_normalised_gaussian_of_the_given_width():
    point = torch.zeros(1, 1, 33, 33, dtype=torch.float64)
    point[..., 16, 16] = 1.0
    blurred = gaussian_blur(point, 2.0)[0, 0]
    offsets = torch.arange(33, dtype=torch.float64) - 16
    assert blurred.sum().item() == pytest.approx(1.0, abs=1e-12)
    assert blurred.min().item() >= 0.0  # a mass map stays positive
    # Second moment along each axis: the width squared, 1.2% less for a kernel cut at 3 widths
    # and sampled on pixels.
    assert (blurred.sum(0) * offsets**2).sum().item() == pytest.approx(4.0 * 0.988, rel=1e-3)
    assert (blurred.sum(1) * offsets**2).sum().item() == pytest.approx(4.0 * 0.988, rel=1e-3)
    torch.testing.assert_close(gaussian_blur(point, 0.0), point)


def test_a_mean_network_saved_before_the_skip_widths_loads_with_none(tmp_path):
    raw = field_without_halos(np.linspace(0.1, 0.5, 4))
    mean = cosmic_mean(raw)[0]
    state = {k: v for k, v in mean.state_dict().items() if k != "skip_width"}
    mean.skip_width.fill_(2.0)
    mean.load_state_dict(state)
    assert mean.skip_width.tolist() == [0.0, 0.0, 0.0]
    # The checkpoint's check lets that one tensor be absent (the stages load mean.pt through
    # it), and no other.
    ckpt = {"kind": "mean", "network": cosmic_spec(raw), "ema": state, "model": state}
    torch.save(ckpt, tmp_path / "mean.pt")
    assert load_checkpoint(tmp_path / "mean.pt", kind="mean")["ema"].keys() == state.keys()
    del state["slope"]
    torch.save(ckpt, tmp_path / "mean.pt")
    with pytest.raises(CheckpointError, match="tensor 'slope' missing"):
        load_checkpoint(tmp_path / "mean.pt", kind="mean")


def test_the_cosmic_skip_takes_each_channels_share_of_the_dmo_mass():
    f_b = OMEGA_B / 0.245
    shares = skip_fractions(torch.tensor([0.245]), ["dm_hydro", "gas", "stars"])
    torch.testing.assert_close(shares, torch.tensor([[1 - f_b, f_b, 1.0]]))


def test_the_cosmic_skip_needs_omega_m():
    raw = field_without_halos(np.linspace(0.1, 0.5, 4))
    raw = dataclasses.replace(raw, params=raw.params[:, 1:], param_names=["sigma_8"])
    with pytest.raises(BadInput, match=r"needs the parameter Omega_m.*mean\.cosmic_skip=false"):
        cosmic_mean(raw)
