"""The public API: load a checkpoint with weights_only, sample, reject bad input in one line."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from halocm import load_model
from halocm.api import SampleSettings
from halocm.config import load_config
from halocm.data.dataset import load_split
from halocm.data.normalize import denormalize_condition, denormalize_params
from halocm.stages.pretrain import pretrain
from halocm.stages.train import train


@pytest.fixture
def trained(project):
    cfg = load_config(project / "params.yaml", ["train.steps=2"])
    return load_model(train(cfg), device="cpu", sample=cfg.sample), cfg


def _inputs(gen, cfg, n=4):
    test = load_split(cfg.paths.processed_dir / "test.npz")
    cond = np.asarray(denormalize_condition(test["condition"][:n].astype(np.float64), gen.stats))
    params = np.asarray(denormalize_params(test["params"][:n].astype(np.float64), gen.stats))
    return cond, params


def test_sample_shape_units_and_nfe(trained):
    gen, cfg = trained
    cond, params = _inputs(gen, cfg)
    maps = gen.sample(cond, params, n_steps=2, n_realizations=3, seed=1)
    assert maps.shape == (4, 3, 3, 16, 16)
    assert np.isfinite(maps).all()
    assert gen.nfe(2) == 2 and gen.channel_names == ["dm_hydro", "gas", "stars"]
    assert not np.allclose(maps[:, 0], maps[:, 1])  # realisations differ


def test_a_sample_is_the_same_whatever_the_batch_size(trained):
    gen, cfg = trained
    cond, params = _inputs(gen, cfg)
    whole = gen.sample(cond, params, n_steps=2, n_realizations=2, seed=7)
    # Sampling settings are the caller's: the same checkpoint with 2 maps per network call.
    small = cfg.sample.model_copy(update={"batch_size": 2})
    small_gen = load_model(cfg.paths.models_dir / "consistency.pt", device="cpu", sample=small)
    assert small_gen.sample_settings.batch_size == 2
    batched = small_gen.sample(cond, params, n_steps=2, n_realizations=2, seed=7)
    alone = gen.sample(cond[3:4], params[3:4], n_steps=2, n_realizations=2, seed=7)
    # The same noise for map n whatever the batch; the network's float32 kernels may still
    # sum in another order for another batch shape (≈1e-6 relative), hence rtol, not equality.
    np.testing.assert_allclose(whole, batched, rtol=2e-5)
    # Map 3 sampled alone is map 0 of its own call: the noise follows the index in the call.
    assert not np.allclose(alone[0], whole[3], rtol=1e-2)
    np.testing.assert_array_equal(
        alone[0], gen.sample(cond[3:4], params[3:4], n_steps=2, n_realizations=2, seed=7)[0]
    )
    # ... unless the call names its index: then it is map 3 of the whole call.
    named = gen.sample(cond[3:4], params[3:4], n_steps=2, n_realizations=2, seed=7, indices=[3])
    np.testing.assert_allclose(named[0], whole[3], rtol=2e-5)


def test_sampling_settings_come_from_the_caller_or_else_the_checkpoint(trained):
    gen, cfg = trained
    path = cfg.paths.models_dir / "consistency.pt"
    assert gen.sample_settings == SampleSettings(cfg.sample.intermediate_sigmas, 16, ("dm_hydro",))
    other = SampleSettings((3.0, 1.0, 0.2), 3, ("dm_hydro",))
    assert load_model(path, device="cpu", sample=other).sample_settings == other
    recorded = load_model(path, device="cpu").sample_settings  # as trained: the tiny config's
    assert recorded == SampleSettings.of(cfg.sample)
    # A checkpoint's recorded settings from before `mean_only` and `churn` existed: no channel
    # is μ alone, and the teacher samples the deterministic ODE.
    old = {"intermediate_sigmas": [1.0, 0.5], "batch_size": 4}
    assert SampleSettings.of(old) == SampleSettings((1.0, 0.5), 4, (), 0.0)
    # Other levels, other multistep samples; the one-step sample does not use them.
    cond, params = _inputs(gen, cfg)
    regen = load_model(path, device="cpu", sample=other)
    one, one_other = (g.sample(cond, params, n_steps=1, seed=2) for g in (gen, regen))
    np.testing.assert_allclose(one, one_other, rtol=2e-5)
    two, two_other = (g.sample(cond, params, n_steps=2, seed=2) for g in (gen, regen))
    assert not np.allclose(two, two_other, rtol=1e-2)


def test_draw_is_the_one_sampling_loop_in_either_precision(trained):
    gen, cfg = trained
    test = load_split(cfg.paths.processed_dir / "test.npz")
    c = torch.as_tensor(test["condition"][:4], dtype=torch.float32)
    p = torch.as_tensor(test["params"][:4], dtype=torch.float32)
    single = gen.draw(c, p, n_steps=2, n_realizations=2, seed=1)
    double = gen.draw(c, p, n_steps=2, n_realizations=2, seed=1, dtype=np.float64)
    assert single.dtype == np.float32 and double.dtype == np.float64
    assert single.shape == double.shape == (4, 2, 3, 16, 16)
    np.testing.assert_allclose(single, double, rtol=1e-5)


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda c, p: (c[:, :, :8], p), r"condition: maps of \(8, 16\)"),
        (lambda c, p: (np.concatenate([c, c], 1), p), "condition: 2 channels, the model takes 1"),
        (lambda c, p: (c[0], p), r"condition: expected shape \(N, 1, 16, 16\)"),
        (lambda c, p: (np.where(np.arange(16) == 3, np.nan, c), p), "condition: NaN/inf at"),
        (lambda c, p: (-c, p), "condition: negative mass at index"),
        (lambda c, p: (c, None), r"params: required, shape \(N, 2\)"),
        (lambda c, p: (c, p[:, :1]), r"params: expected shape \(4, 2\)"),
    ],
)
def test_bad_input_is_one_clear_line(trained, mutate, message):
    gen, cfg = trained
    cond, params = mutate(*_inputs(gen, cfg))
    with pytest.raises(ValueError, match=message) as err:
        gen.sample(cond, params)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize(
    "names, message",
    [(("hi",), r"sample.mean_only: no target channel named \['hi'\]"), (("gas",), "mean network")],
)
def test_mean_only_names_channels_of_a_model_with_a_mean_network(project, names, message):
    plain = ["mean.enabled=false", "sample.mean_only=[]", "pretrain.steps=1", "train.steps=1"]
    cfg = load_config(project / "params.yaml", plain)
    pretrain(cfg)
    path = train(cfg)
    settings = cfg.sample.model_copy(update={"mean_only": names})
    with pytest.raises(ValueError, match=message) as err:
        load_model(path, device="cpu", sample=settings)
    assert "\n" not in str(err.value)


def test_the_benchmarks_timed_draw_is_the_draw_and_warming_up_changes_no_sample(trained):
    from halocm.evaluation.benchmark import load_test_set, timed_draw, warm_up

    gen, cfg = trained
    test = load_test_set(cfg.paths.processed_dir / "test.npz", gen.stats, 100)
    n = len(test.target)
    before = gen.draw(test.cond_norm, test.params_norm, n_steps=2, n_realizations=2, seed=3,
                      dtype=np.float64)  # fmt: skip
    warm_up(gen, test)
    samples, ms_per_map = timed_draw(gen, test, n_steps=2, n_realizations=2, seed=3)
    assert samples.dtype == np.float64 and samples.shape == (n, 2, 3, 16, 16)
    np.testing.assert_array_equal(samples, before)
    assert 0 < ms_per_map < 10_000


def test_draw_runs_the_mean_network_once_per_batch_for_all_realisations(trained):
    from halocm.data.normalize import generated_target

    gen, cfg = trained
    assert gen.residual.mean is not None  # the tiny config trains a mean network
    test = load_split(cfg.paths.processed_dir / "test.npz")
    c = torch.as_tensor(test["condition"][:4], dtype=torch.float32)
    p = torch.as_tensor(test["params"][:4], dtype=torch.float32)
    calls = []
    hook = gen.residual.mean.register_forward_hook(lambda *_: calls.append(1))
    try:
        maps = gen.draw(c, p, n_steps=1, n_realizations=3, seed=5)
    finally:
        hook.remove()
    assert len(calls) == 1  # 4 maps: one batch, three realisations
    # Each realisation is what sampling it alone gives, with μ predicted afresh.
    for r in range(3):
        alone = gen.sample_normalized(c, p, n_steps=1, seed=5, indices=range(4), realization=r)
        np.testing.assert_array_equal(maps[:, r], generated_target(alone.numpy(), gen.stats))
