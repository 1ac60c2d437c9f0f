"""The UNet backbone F(x_in, c_noise, cond, params): shapes, embeddings, validation."""

import pytest
import torch
from conftest import tiny_config

from halocm.nn.unet import SelfAttention, UNet, build_unet

TINY = dict(base_channels=8, channel_mult=(1, 2), attention_resolutions=(4,), embedding_dim=16)


def _net(**kw) -> UNet:
    args = dict(in_channels=3, cond_channels=2, out_channels=3, n_params=4, resolution=8)
    return UNet(**{**args, **TINY, **kw})


def _randomise_output(net: UNet) -> None:
    # The output conv starts at zero; give it weights so F depends on its inputs.
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)


def test_shapes_with_cond_and_params():
    torch.manual_seed(0)
    net = _net()
    out = net(torch.randn(5, 3, 8, 8), torch.randn(5), torch.randn(5, 2, 8, 8), torch.randn(5, 4))
    assert out.shape == (5, 3, 8, 8)


@pytest.mark.parametrize("params", [None, torch.zeros(2, 0)])
def test_shapes_without_params(params):
    net = _net(n_params=0, out_channels=1)
    out = net(torch.randn(2, 3, 8, 8), torch.zeros(2), torch.randn(2, 2, 8, 8), params)
    assert out.shape == (2, 1, 8, 8)
    assert net.param_mlp is None


def test_without_cond_and_scalar_c_noise():
    net = _net(cond_channels=0, n_params=0)
    out = net(torch.randn(2, 3, 8, 8), torch.tensor(0.3), None, None)
    assert out.shape == (2, 3, 8, 8)


def test_output_conv_starts_at_zero():
    out = _net()(torch.randn(2, 3, 8, 8), torch.zeros(2), torch.randn(2, 2, 8, 8), torch.ones(2, 4))
    assert torch.count_nonzero(out) == 0


def test_output_depends_on_noise_cond_and_params():
    torch.manual_seed(1)
    net = _net(dropout=0.0)
    _randomise_output(net)
    x, c, p = torch.randn(2, 3, 8, 8), torch.randn(2, 2, 8, 8), torch.randn(2, 4)
    base = net(x, torch.zeros(2), c, p)
    assert not torch.allclose(base, net(x, torch.ones(2), c, p))
    assert not torch.allclose(base, net(x, torch.zeros(2), c + 1, p))
    assert not torch.allclose(base, net(x, torch.zeros(2), c, p + 1))


def test_embedding_is_float32_under_autocast():
    net = _net()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        emb = net.embed(torch.randn(3), torch.randn(3, 4))
        out = net(
            torch.randn(3, 3, 8, 8), torch.randn(3), torch.randn(3, 2, 8, 8), torch.randn(3, 4)
        )
    assert emb.dtype == torch.float32
    assert out.shape == (3, 3, 8, 8)


def test_dropout_only_in_training_mode():
    torch.manual_seed(2)
    net = _net(dropout=0.5)
    _randomise_output(net)
    args = (torch.randn(2, 3, 8, 8), torch.zeros(2), torch.randn(2, 2, 8, 8), torch.randn(2, 4))
    assert not torch.equal(net(*args), net(*args))
    net.eval()
    assert torch.equal(net(*args), net(*args))


def test_attention_at_listed_resolutions():
    # Levels at 8 and 4 px; attention at 4: one encoder block, two decoder blocks, the middle.
    net = _net(attention_resolutions=(4,))
    assert sum(isinstance(m, SelfAttention) for m in net.modules()) == 4
    net = _net(attention_resolutions=())
    assert sum(isinstance(m, SelfAttention) for m in net.modules()) == 1


def test_rejects_bad_shapes():
    with pytest.raises(ValueError, match="divisible"):
        _net(resolution=10, channel_mult=(1, 2, 2))
    net = _net()
    with pytest.raises(ValueError, match="cond"):
        net(torch.randn(1, 3, 8, 8), torch.zeros(1), torch.randn(1, 1, 8, 8), torch.randn(1, 4))
    with pytest.raises(ValueError, match="params"):
        net(torch.randn(1, 3, 8, 8), torch.zeros(1), torch.randn(1, 2, 8, 8), None)


def test_build_unet_takes_the_model_sections_knobs():
    cfg = tiny_config({"model": {"base_channels": 8, "channel_mult": [1, 2], "dropout": 0.0}})
    net = build_unet(
        in_channels=3,
        out_channels=3,
        cond_channels=1,
        n_params=2,
        resolution=16,
        **cfg.model.model_dump(),
    )
    assert net.conv_in.out_channels == 8 and net.out_channels == 3
    out = net(
        torch.randn(1, 3, 16, 16), torch.zeros(1), torch.randn(1, 1, 16, 16), torch.ones(1, 2)
    )
    assert out.shape == (1, 3, 16, 16)


def test_a_unet_without_noisy_input_is_a_conditional_regression():
    # The conditional mean's backbone: zero input channels, the condition alone.
    net = build_unet(
        in_channels=0,
        out_channels=3,
        cond_channels=1,
        n_params=2,
        resolution=16,
        **tiny_config({"model": {"base_channels": 8, "channel_mult": [1, 2]}}).model.model_dump(),
    )
    torch.nn.init.normal_(net.conv_out.weight, std=0.1)
    net.eval()  # no dropout: differences come from the condition alone
    cond = torch.randn(2, 1, 16, 16)
    out = net(torch.zeros(2, 0, 16, 16), torch.zeros(2), cond, torch.ones(2, 2))
    assert out.shape == (2, 3, 16, 16)
    other = net(torch.zeros(2, 0, 16, 16), torch.zeros(2), cond.flip(-1), torch.ones(2, 2))
    assert not torch.allclose(out, other)  # it reads the condition
