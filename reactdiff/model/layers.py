"""Building blocks of the temporal U-Net: embeddings, adaptive-norm residual blocks, attention, resampling.

Tensors inside the U-Net are channel-first (B, C, L); attention works on (B, heads, L, head_dim).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class FourierEmbedding(nn.Module):
    """Random Fourier features of a scalar (c_noise = ln(sigma)/4), as in EDM; fixed, not trained."""

    def __init__(self, dim: int, scale: float = 16.0) -> None:
        super().__init__()
        self.register_buffer("freqs", torch.randn(dim // 2) * scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # angles in fp32; the features in the input's dtype, the compute dtype (the Denoiser casts sigma to it).
        # Not the buffer's: DeepSpeed's bf16/fp16 engines cast parameters only and leave buffers in fp32.
        angles = 2 * math.pi * x.float()[:, None] * self.freqs.float()[None]
        return torch.cat([angles.cos(), angles.sin()], dim=1).to(x.dtype)


def sinusoidal_positions(t: torch.Tensor, dim: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Sinusoidal encoding of (possibly negative, fractional) frame times t (..., ) -> (..., dim), computed in fp32
    and returned as `dtype` (the activations' dtype: adding fp32 encodings would promote bf16 activations)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
    angles = t.float()[..., None] * freqs
    return torch.cat([angles.sin(), angles.cos()], dim=-1).to(dtype)


def group_norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, channels // 4) if channels >= 8 else 1, channels)


class ResBlock(nn.Module):
    """conv -> adaptive group norm (scale/shift from the sigma embedding) -> conv, with a residual path.

    With `film_dim` > 0 a frame-aligned condition (B, film_dim, L) adds its own per-frame scale/shift to the
    sigma embedding's (zero-initialised: the block starts as without it)."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, dropout: float = 0.0, film_dim: int = 0) -> None:
        super().__init__()
        self.film = nn.Conv1d(film_dim, 2 * c_out, 1) if film_dim else None
        if self.film is not None:
            nn.init.zeros_(self.film.weight)
            nn.init.zeros_(self.film.bias)
        self.norm1, self.conv1 = group_norm(c_in), nn.Conv1d(c_in, c_out, 3, padding=1)
        self.emb = nn.Linear(emb_dim, 2 * c_out)
        self.norm2, self.conv2 = group_norm(c_out), nn.Conv1d(c_out, c_out, 3, padding=1)
        self.dropout = nn.Dropout(dropout)
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, film: torch.Tensor | None = None) -> torch.Tensor:
        """film: the frame-aligned condition at this block's length (blocks built with film_dim need it)."""
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None].chunk(2, dim=1)
        if self.film is not None:
            frame_scale, frame_shift = self.film(film.to(h.dtype)).chunk(2, dim=1)
            scale, shift = scale + frame_scale, shift + frame_shift
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.dropout(F.silu(h)))
        return self.skip(x) + h


class Attention(nn.Module):
    """Multi-head attention of U-Net features (queries) over themselves or over context tokens.

    Queries and keys get sinusoidal encodings of their frame times, so attention knows which speaker frame is
    simultaneous with which listener frame. Dropout applies in training only.
    """

    def __init__(self, channels: int, heads: int, context_dim: int | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        if channels % heads:
            raise ValueError(f"attention channels {channels} not divisible by heads {heads}")
        self.heads, self.dropout = heads, dropout
        self.norm = group_norm(channels)
        self.q = nn.Linear(channels, channels)
        kv_dim = context_dim or channels
        self.kv_norm = nn.LayerNorm(kv_dim) if context_dim else nn.Identity()
        self.kv = nn.Linear(kv_dim, 2 * channels)
        self.out = nn.Linear(channels, channels)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def _split(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, C) -> (B, heads, L, C/heads)
        b, n, c = x.shape
        return x.view(b, n, self.heads, c // self.heads).transpose(1, 2)

    def context_kv(self, context: torch.Tensor, context_times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the context tokens: fixed for a whole window, so samplers compute them once per window."""
        k, v = self.kv(self.kv_norm(context)).chunk(2, dim=-1)
        return self._split(k + sinusoidal_positions(context_times, k.shape[-1], k.dtype)), self._split(v)

    def forward(self, x: torch.Tensor, times: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor] | None = None,
                mask: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, C, L) at frame `times` (L,). Self-attention, or cross-attention to `kv` (from context_kv) where
        `mask` (B, N) marks real context tokens."""
        b, c, n = x.shape
        pos = sinusoidal_positions(times, c, x.dtype)[None]
        h = self.norm(x).transpose(1, 2)  # (B, L, C)
        q = self._split(self.q(h + pos))
        if kv is None:
            k, v = (self._split(t) for t in self.kv(h + pos).chunk(2, dim=-1))
            attn_mask = None
        else:
            k, v = kv
            attn_mask = None if mask is None else mask[:, None, None, :]
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attn_mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        out = out.transpose(1, 2).reshape(b, n, c)  # heads back next to each other, per time step
        return x + self.out(out).transpose(1, 2)


class Downsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class Upsample(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv1d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor, length: int) -> torch.Tensor:
        return self.conv(F.interpolate(x, size=length, mode="nearest"))
