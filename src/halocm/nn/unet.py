"""Conditional UNet backbone F(x_in, c_noise, cond, params).

The backbone knows nothing of σ: preconditioning (diffusion/precond.py) scales its input by
c_in, hands it c_noise = ¼ ln σ, and mixes its output with c_skip/c_out. The layout follows
the ADM UNet (Dhariwal & Nichol 2021) that EDM also uses: GroupNorm-SiLU-conv residual blocks
with the embedding injected as a per-channel scale and shift, self-attention at the listed
feature-map sides, skip connections between encoder and decoder.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# Angular frequencies of the noise embedding span periods from ~6 down to ~0.025 in
# c_noise = ¼ ln σ, i.e. the finest features separate σ values about 10% apart.
_FREQ_MIN, _FREQ_MAX = 1.0, 256.0
_HEAD_DIM = 32


def _group_norm(channels: int) -> nn.GroupNorm:
    # Up to 32 groups, always a divisor of the channel count (tiny test nets have 4-8 channels).
    return nn.GroupNorm(math.gcd(32, channels), channels, eps=1e-6)


class NoiseEmbedding(nn.Module):
    """Deterministic sinusoidal features of c_noise, always evaluated in float32."""

    def __init__(self, dim: int):
        super().__init__()
        half = dim // 2
        freqs = torch.exp(torch.linspace(math.log(_FREQ_MIN), math.log(_FREQ_MAX), half))
        # Not persistent: a function of `dim`, so checkpoints need not carry it.
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, c_noise: Tensor) -> Tensor:
        angles = c_noise.float()[:, None] * self.freqs.float()[None, :]
        return torch.cat([angles.cos(), angles.sin()], dim=1)


class ResBlock(nn.Module):
    """GroupNorm → SiLU → conv, embedding as scale/shift of the second norm, dropout, conv."""

    def __init__(self, in_ch: int, out_ch: int, emb_dim: int, dropout: float):
        super().__init__()
        self.norm1 = _group_norm(in_ch)
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * out_ch)
        self.norm2 = _group_norm(out_ch)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1)
        self.skip = nn.Conv2d(in_ch, out_ch, 1) if in_ch != out_ch else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = F.silu(self.norm2(h) * (1 + scale) + shift)
        h = self.conv2(self.dropout(h))
        return self.skip(x) + h


class SelfAttention(nn.Module):
    """Multi-head self-attention over all pixels, residual; heads of 32 channels when possible."""

    def __init__(self, channels: int):
        super().__init__()
        self.heads = channels // _HEAD_DIM if channels % _HEAD_DIM == 0 else 1
        self.norm = _group_norm(channels)
        self.qkv = nn.Conv2d(channels, 3 * channels, 1)
        self.proj = nn.Conv2d(channels, channels, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        qkv = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w)
        # scaled_dot_product_attention wants (batch, heads, tokens, head_dim).
        q, k, v = (t.transpose(-1, -2) for t in qkv.unbind(1))
        out = F.scaled_dot_product_attention(q, k, v)
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class Downsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Stage(nn.Module):
    """One resolution's residual block, followed by attention where listed."""

    def __init__(self, in_ch, out_ch, emb_dim, dropout, attention: bool):
        super().__init__()
        self.res = ResBlock(in_ch, out_ch, emb_dim, dropout)
        self.attn = SelfAttention(out_ch) if attention else nn.Identity()

    def forward(self, x: Tensor, emb: Tensor) -> Tensor:
        return self.attn(self.res(x, emb))


class UNet(nn.Module):
    """F(x_in, c_noise, cond, params) -> (B, out_channels, H, W).

    `cond` (B, Cc, H, W) is concatenated to `x_in`; `c_noise` (B,) enters through a float32
    sinusoidal embedding and an MLP; `params` (B, P) through an MLP added to that embedding.
    The output convolution starts at zero, so an untrained net contributes nothing and the
    preconditioned model starts as D = c_skip x.
    """

    def __init__(
        self,
        *,
        in_channels: int,
        cond_channels: int,
        out_channels: int,
        n_params: int,
        resolution: int,
        base_channels: int = 32,
        channel_mult: tuple[int, ...] = (1, 2, 2),
        num_res_blocks: int = 1,
        attention_resolutions: tuple[int, ...] = (8,),
        dropout: float = 0.1,
        embedding_dim: int = 128,
    ):
        super().__init__()
        n_levels = len(channel_mult)
        if n_levels < 1 or resolution % 2 ** (n_levels - 1):
            raise ValueError(
                f"resolution {resolution} must be divisible by 2^{n_levels - 1} "
                f"for channel_mult={tuple(channel_mult)}"
            )
        self.in_channels, self.cond_channels = in_channels, cond_channels
        self.out_channels, self.n_params = out_channels, n_params
        self.resolution = resolution
        emb = embedding_dim

        # Embeddings of the noise level and of the scalar parameters.
        self.noise_features = NoiseEmbedding(emb)
        self.noise_mlp = nn.Sequential(
            nn.Linear(2 * (emb // 2), emb), nn.SiLU(), nn.Linear(emb, emb)
        )
        self.param_mlp = (
            nn.Sequential(nn.Linear(n_params, emb), nn.SiLU(), nn.Linear(emb, emb))
            if n_params > 0
            else None
        )

        # Encoder: record every feature map's channels for the decoder's skips.
        self.conv_in = nn.Conv2d(in_channels + cond_channels, base_channels, 3, padding=1)
        self.down = nn.ModuleList()
        skips, ch, res = [base_channels], base_channels, resolution
        for level, mult in enumerate(channel_mult):
            out = base_channels * mult
            for _ in range(num_res_blocks):
                attn = res in attention_resolutions
                self.down.append(_Stage(ch, out, emb, dropout, attn))
                ch = out
                skips.append(ch)
            if level < n_levels - 1:
                self.down.append(Downsample(ch))
                skips.append(ch)
                res //= 2

        self.mid = nn.ModuleList(
            [ResBlock(ch, ch, emb, dropout), SelfAttention(ch), ResBlock(ch, ch, emb, dropout)]
        )

        # Decoder: one more block per level than the encoder, each eating one skip.
        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            out = base_channels * mult
            for _ in range(num_res_blocks + 1):
                attn = res in attention_resolutions
                self.up.append(_Stage(ch + skips.pop(), out, emb, dropout, attn))
                ch = out
            if level > 0:
                self.up.append(Upsample(ch))
                res *= 2

        self.norm_out = _group_norm(ch)
        self.conv_out = nn.Conv2d(ch, out_channels, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def embed(self, c_noise: Tensor, params: Tensor | None) -> Tensor:
        """Noise (+ parameter) embedding (B, embedding_dim), in float32 even under autocast."""
        with torch.autocast(device_type=c_noise.device.type, enabled=False):
            weight_dtype = self.noise_mlp[0].weight.dtype
            emb = self.noise_mlp(self.noise_features(c_noise).to(weight_dtype))
            if self.param_mlp is not None:
                emb = emb + self.param_mlp(params.to(weight_dtype))
        return emb

    def forward(
        self, x_in: Tensor, c_noise: Tensor, cond: Tensor | None, params: Tensor | None
    ) -> Tensor:
        c_noise = torch.as_tensor(c_noise, device=x_in.device)
        if c_noise.ndim == 0:
            c_noise = c_noise.expand(x_in.shape[0])
        self._check_inputs(x_in, cond, params)
        emb = self.embed(c_noise, params)

        # Inputs follow the weights' precision (a float64 caller may drive a float32 net).
        dtype = self.conv_in.weight.dtype
        h = torch.cat([x_in, cond], dim=1) if self.cond_channels else x_in
        h = self.conv_in(h.to(dtype))
        hs = [h]
        for layer in self.down:
            h = layer(h, emb) if isinstance(layer, _Stage) else layer(h)
            hs.append(h)
        for layer in self.mid:
            h = layer(h, emb) if isinstance(layer, ResBlock) else layer(h)
        for layer in self.up:
            if isinstance(layer, _Stage):
                h = layer(torch.cat([h, hs.pop()], dim=1), emb)
            else:
                h = layer(h)
        return self.conv_out(F.silu(self.norm_out(h)))

    def _check_inputs(self, x_in: Tensor, cond: Tensor | None, params: Tensor | None) -> None:
        if x_in.shape[1] != self.in_channels:
            raise ValueError(f"x_in has {x_in.shape[1]} channels, expected {self.in_channels}")
        n_cond = 0 if cond is None else cond.shape[1]
        if n_cond != self.cond_channels:
            raise ValueError(f"cond has {n_cond} channels, expected {self.cond_channels}")
        n_par = 0 if params is None else params.shape[-1]
        if n_par != self.n_params:
            raise ValueError(f"params has {n_par} columns, expected {self.n_params}")


def build_unet(
    *,
    in_channels: int,
    out_channels: int,
    cond_channels: int,
    n_params: int,
    resolution: int,
    base_channels: int,
    channel_mult: list[int] | tuple[int, ...],
    num_res_blocks: int,
    attention_resolutions: list[int] | tuple[int, ...],
    dropout: float,
    embedding_dim: int,
) -> UNet:
    """The UNet of a network spec (models.network_spec): channel counts and resolution come
    from the data, the size knobs from the `model` section."""
    return UNet(
        in_channels=in_channels,
        cond_channels=cond_channels,
        out_channels=out_channels,
        n_params=n_params,
        resolution=resolution,
        base_channels=base_channels,
        channel_mult=tuple(channel_mult),
        num_res_blocks=num_res_blocks,
        attention_resolutions=tuple(attention_resolutions),
        dropout=dropout,
        embedding_dim=embedding_dim,
    )
