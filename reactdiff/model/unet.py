"""The temporal 1-D U-Net: listener 3DMM window in, denoiser output F out (EDM's raw network).

    in conv -> [ResBlock (+ cross-attn to the speaker context) (+ self-attn at low resolution)] x depth, downsample
            -> middle (res, self-attn, cross-attn, res)
            -> mirrored up path with skip connections -> out conv (zero-initialised)
All residual blocks are modulated by a Fourier embedding of c_noise (adaptive group norm).
With `aligned_speaker`, the speaker's 3DMM and audio features of the window's own frames also enter the input
convolution, frame by frame next to the noisy listener window: a reaction a few frames after the speaker's cue is
then a short convolution away (cross-attention alone must learn the lag from position encodings). So does the last
known listener frame, repeated over the window (zeros = the mean face at the clip start), and a linear map of that
frame is added to the output: the group norms in front of the output convolution remove each sample's constant
level, so without it the network cannot continue the listener's pose from the previous window at high noise,
where the window's level is decided (measured: predicted window means with 1/8 of the data's spread).

With `speaker_filter` F > 0 the aligned speaker streams first pass a learned causal filter of F frames (a Conv1d
over [history, window], so frame t sees the speaker's frames t-F+1..t): a listener answers a cue 8-12 frames late,
further back than the U-Net's full-resolution convolutions reach, and at the window start the cue lies in the
history that the aligned input otherwise never sees.

The aligned speaker streams are scaled first (`aligned_norm`): `frame` is one LayerNorm per frame over the 3DMM and
audio channels together, as models up to v20 were trained; `stream` leaves the 3DMM channels as the data's
normalisation made them and LayerNorms the audio features on their own (StreamNorm: why); `face_and_frame` puts
the unscaled 3DMM channels next to `frame`'s.

With `speaker_film` the aligned streams (filtered speaker + last frame) also scale and shift every residual block's
features frame by frame (FiLM next to the sigma embedding's adaptive norm): the denoiser's optimal output for a
reaction whose moment is cued but whose shape is not (a nod of its own phase, speed and length after a phrase
end) is a gain on the noisy window that depends on the speaker, a product the input concatenation can express
only through many nonlinear layers. Measured (README, "Nods after phrase ends"): the learned gain stays what it is
without FiLM, the marginal spectrum's c_skip, because the loss pays ~0.06% for it; so it is off by default.

With `band_gate` (band edges in cycles per frame) the aligned streams and the noise level also set per-frame gains
on the noisy input's temporal-frequency bands, added to the output (band_gate.py): that gain with parameters of
its own.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F
from torch import nn

from .band_gate import BandGate
from .context import ContextEncoder
from .layers import Attention, Downsample, FourierEmbedding, ResBlock, Upsample, group_norm


@dataclasses.dataclass(frozen=True)
class UNetShape:
    channels: tuple[int, ...]
    depths: tuple[int, ...]
    heads: int
    context_dim: int
    context_layers: int
    self_attention_levels: int  # the lowest N resolutions get self-attention (the middle block always has it)
    emb_mult: int = 2  # sigma-embedding width = emb_mult x channels[0]
    dropout: float = 0.0


PRESETS = {
    "tiny": UNetShape((32, 64), (1, 1), heads=2, context_dim=32, context_layers=1, self_attention_levels=1),
    "small": UNetShape((64, 128, 256), (1, 2, 2), heads=4, context_dim=128, context_layers=1,
                       self_attention_levels=1),
    # the paper's size: channels 128/256/512, depths 2/4/4 (~47 M parameters with the context encoder)
    "paper": UNetShape((128, 256, 512), (2, 4, 4), heads=8, context_dim=256, context_layers=2,
                       self_attention_levels=0),
}


class Level(nn.Module):
    """One U-Net block: a residual block, then cross-attention to the context, then optional self-attention."""

    def __init__(self, c_in: int, c_out: int, emb_dim: int, shape: UNetShape, self_attention: bool,
                 film_dim: int = 0) -> None:
        super().__init__()
        self.res = ResBlock(c_in, c_out, emb_dim, shape.dropout, film_dim)
        self.cross = Attention(c_out, shape.heads, context_dim=shape.context_dim, dropout=shape.dropout)
        self.self_attn = Attention(c_out, shape.heads, dropout=shape.dropout) if self_attention else None

    def forward(self, x, emb, times, cache):
        x = self.res(x, emb, film_at(cache, x.shape[2]))
        x = self.cross(x, times, cache["kv"][self], cache["mask"])
        if self.self_attn is not None:
            x = self.self_attn(x, times)
        return x


def film_at(cache: dict, length: int) -> torch.Tensor | None:
    """The frame-aligned FiLM condition at a resolution of `length` positions (None without speaker_film)."""
    film = cache.get("film")
    return None if film is None else film[length]


class StreamNorm(nn.Module):
    """The aligned speaker streams scaled each on its own: the 3DMM channels as the data's normalisation left them
    (z-scored: unit spread per channel), the audio features (unscaled: log-mel values run from -14 in silence to ~5)
    LayerNormed over their own channels. One LayerNorm over both would divide every 3DMM channel by the audio's
    per-frame spread and shift it by its level, so a speaker's smile would reach the filter modulated by the
    syllables spoken over it."""

    def __init__(self, fv_dim: int, audio_dim: int) -> None:
        super().__init__()
        self.fv_dim = fv_dim
        self.audio = nn.LayerNorm(audio_dim) if audio_dim else None

    def forward(self, spk: torch.Tensor) -> torch.Tensor:
        if self.audio is None:
            return spk
        return torch.cat([spk[..., :self.fv_dim], self.audio(spk[..., self.fv_dim:])], -1)


class FaceAndFrameNorm(nn.LayerNorm):
    """The 3DMM channels as they are, next to `frame`'s LayerNorm over all speaker channels (which carries the
    audio's per-frame level: whether the speaker is talking). Its parameters are frame's (same names)."""

    def __init__(self, fv_dim: int, audio_dim: int) -> None:
        super().__init__(fv_dim + audio_dim)
        self.fv_dim = fv_dim

    def forward(self, spk: torch.Tensor) -> torch.Tensor:
        return torch.cat([spk[..., :self.fv_dim], super().forward(spk)], -1)


# model.aligned_norm -> (fv_dim, audio_dim) -> (the module, the channels it puts out)
SPEAKER_NORMS = {
    "frame": lambda f, a: (nn.LayerNorm(f + a), f + a),  # one LayerNorm over all speaker channels per frame
    "stream": lambda f, a: (StreamNorm(f, a), f + a),
    "face_and_frame": lambda f, a: (FaceAndFrameNorm(f, a), 2 * f + a),
}


def speaker_norm(kind: str, fv_dim: int, audio_dim: int) -> tuple[nn.Module, int]:
    if kind not in SPEAKER_NORMS:
        raise ValueError(f"aligned_norm {kind!r}: expected one of {list(SPEAKER_NORMS)}")
    return SPEAKER_NORMS[kind](fv_dim, audio_dim)


class TemporalUNet(nn.Module):
    def __init__(self, in_dim: int, out_dim: int, fv_dim: int, audio_dim: int, shape: UNetShape,
                 null_speaker: bool = False, aligned_speaker: bool = False, null_face: bool = False,
                 speaker_filter: int = 0, speaker_film: bool = False, band_gate: tuple[float, ...] = (),
                 band_gate_dims: slice = slice(None), band_gate_span: int = 0, aligned_norm: str = "frame") -> None:
        super().__init__()
        self.shape = shape
        self.aligned_norm, speaker_dim = (speaker_norm(aligned_norm, fv_dim, audio_dim) if aligned_speaker
                                          else (None, fv_dim + audio_dim))
        ch, n_levels = shape.channels, len(shape.channels)
        if speaker_filter and not aligned_speaker:
            raise ValueError("speaker_filter needs aligned_speaker: it filters the aligned speaker streams")
        self.speaker_filter = nn.Conv1d(speaker_dim, ch[0], speaker_filter) if speaker_filter else None
        aligned_dim = (ch[0] if speaker_filter else speaker_dim) + in_dim
        if speaker_film and not aligned_speaker:
            raise ValueError("speaker_film needs aligned_speaker: it is computed from the aligned speaker streams")
        # the aligned streams -> per-frame features every residual block maps to its own scale/shift
        self.film = nn.Sequential(nn.Conv1d(aligned_dim, ch[0], 1), nn.SiLU()) if speaker_film else None
        film_dim = ch[0] if speaker_film else 0
        emb_dim = shape.emb_mult * ch[0]
        self.noise_embed = nn.Sequential(FourierEmbedding(ch[0]), nn.Linear(ch[0], emb_dim), nn.SiLU(),
                                         nn.Linear(emb_dim, emb_dim))
        self.context = ContextEncoder(fv_dim, audio_dim, in_dim, shape.context_dim, shape.context_layers,
                                      shape.heads, shape.dropout, null_speaker, null_face)
        self.inp = nn.Conv1d(in_dim + (aligned_dim if aligned_speaker else 0), ch[0], 3, padding=1)
        attn_from = n_levels - shape.self_attention_levels
        self.down, self.downsample, skips = nn.ModuleList(), nn.ModuleList(), [ch[0]]
        c = ch[0]
        for i, (c_out, depth) in enumerate(zip(ch, shape.depths)):
            blocks = nn.ModuleList()
            for _ in range(depth):
                blocks.append(Level(c, c_out, emb_dim, shape, self_attention=i >= attn_from, film_dim=film_dim))
                c = c_out
                skips.append(c)
            self.down.append(blocks)
            self.downsample.append(Downsample(c) if i < n_levels - 1 else nn.Identity())
            if i < n_levels - 1:
                skips.append(c)
        self.mid = Level(c, c, emb_dim, shape, self_attention=True, film_dim=film_dim)
        self.mid_res = ResBlock(c, c, emb_dim, shape.dropout, film_dim)
        self.up, self.upsample = nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(n_levels)):
            blocks = nn.ModuleList()
            for _ in range(shape.depths[i] + 1):
                blocks.append(Level(c + skips.pop(), ch[i], emb_dim, shape, self_attention=i >= attn_from,
                                    film_dim=film_dim))
                c = ch[i]
            self.up.append(blocks)
            self.upsample.append(Upsample(c) if i > 0 else nn.Identity())
        self.out_norm = group_norm(c)
        self.out = nn.Conv1d(c, out_dim, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        self.past_out = nn.Linear(in_dim, out_dim) if aligned_speaker else None  # the last frame -> the output level
        if self.past_out is not None:
            nn.init.zeros_(self.past_out.weight)
            nn.init.zeros_(self.past_out.bias)
        if band_gate and not aligned_speaker:
            raise ValueError("band_gate needs aligned_speaker: its gains are computed from the aligned speaker streams")
        if band_gate and in_dim != out_dim:
            raise ValueError(f"band_gate gains the input's bands onto the output: needs in_dim == out_dim, got "
                             f"{in_dim} / {out_dim}")
        if band_gate_span and not band_gate:
            raise ValueError("band_gate_span needs band_gate: it is the gate's own view of the speaker's past")
        self.band_gate = (BandGate(aligned_dim, emb_dim, out_dim, tuple(band_gate), dims=band_gate_dims,
                                   span=band_gate_span, speaker_dim=speaker_dim) if band_gate else None)

    @staticmethod
    def _times(h: torch.Tensor, level: int) -> torch.Tensor:
        """Frame times (from the window start) of the positions at a level: frames are 2**level apart there."""
        return torch.arange(h.shape[2], device=h.device, dtype=torch.float32) * 2 ** level

    def prepare(self, speaker_fv: torch.Tensor, audio: torch.Tensor | None, past_listener: torch.Tensor,
                valid: torch.Tensor, drop: torch.Tensor | None = None,
                drop_face: torch.Tensor | None = None) -> dict:
        """Everything that depends on the conditioning only: context tokens and every cross-attention's keys and
        values. Samplers compute it once per window instead of once per network evaluation. drop (B,) bool: the
        samples whose speaker condition is replaced by the learned "no speaker" (condition dropout, guidance);
        drop_face (B,) bool: those whose speaker 3DMM alone is replaced by the learned "no face" (audio only)."""
        history = past_listener.shape[1]
        speaker_fv = self.context.face_or_null(speaker_fv, drop_face)
        tokens, times, mask = self.context(speaker_fv, audio, past_listener, valid, history, drop)
        kv = {level: level.cross.context_kv(tokens, times) for level in self.modules() if isinstance(level, Level)}
        cache = {"kv": kv, "mask": mask}
        if self.aligned_norm is not None:  # the speaker over the window's frames (the last W of [history, window])
            window = speaker_fv.shape[1] - history
            taps = self.speaker_filter.kernel_size[0] if self.speaker_filter is not None else 1
            gate_span = self.band_gate.span if self.band_gate is not None else 0
            for what, span in (("the speaker filter", taps), ("the band gate", gate_span)):
                if span - 1 > history:
                    raise ValueError(f"{what} spans {span} frames: it needs >= {span - 1} history frames, got "
                                     f"{history}")
            first = history - (max(taps, gate_span) - 1)  # the frames the window's outputs see
            spk = speaker_fv if audio is None else torch.cat([speaker_fv, audio], -1)
            normed = self.aligned_norm(spk[:, first:]) * valid[:, first:, None].to(spk.dtype)
            spk = normed[:, normed.shape[1] - (taps - 1 + window):]
            if self.speaker_filter is not None:
                spk = self.speaker_filter(spk.transpose(1, 2)).transpose(1, 2)  # (B, W, ch[0]): causal, valid conv
            # the band gate's own view: the speaker's last gate_span - 1 frames and the window's
            gate_view = normed[:, normed.shape[1] - (gate_span - 1 + window):] if gate_span else None
            if drop is not None:  # the unconditional mode sees no speaker here either (nor in the gate's view)
                zero, dropped = torch.zeros((), dtype=spk.dtype, device=spk.device), drop.view(-1, 1, 1)
                spk = torch.where(dropped, zero, spk)
                gate_view = None if gate_view is None else torch.where(dropped, zero, gate_view)
            if gate_view is not None:
                cache["gate_speaker"] = gate_view
            last = past_listener[:, -1:] if history else past_listener.new_zeros(len(spk), 1, past_listener.shape[2])
            cache["aligned"] = torch.cat([spk, last.to(spk.dtype).expand(-1, window, -1)], dim=-1)
            if self.film is not None:  # at every resolution of the U-Net (stride-2 downsampling: ceil(L / 2))
                feats = self.film(cache["aligned"].transpose(1, 2))
                cache["film"], length = {window: feats}, window
                for _ in range(len(self.shape.channels) - 1):
                    length = (length + 1) // 2
                    cache["film"][length] = F.adaptive_avg_pool1d(feats, length)
        return cache

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, cache: dict | None = None, **cond) -> torch.Tensor:
        """x (B, W, in_dim) scaled noisy window; `cond`: speaker_fv and audio over [history, window] (B, H+W, .),
        past_listener (B, H, in_dim), valid (B, H+W) -- or their `cache` from prepare(). -> (B, W, out_dim)."""
        w, noisy = x.shape[1], x
        ctx = cache if cache is not None else self.prepare(**cond)
        emb = self.noise_embed(c_noise)
        if "aligned" in ctx:
            x = torch.cat([x, ctx["aligned"].to(x.dtype)], dim=-1)
        h = self.inp(x.transpose(1, 2))
        lengths, skips = [w], [h]
        for i, (blocks, down) in enumerate(zip(self.down, self.downsample)):
            times = self._times(h, i)
            for block in blocks:
                h = block(h, emb, times, ctx)
                skips.append(h)
            if not isinstance(down, nn.Identity):
                h = down(h)
                lengths.append(h.shape[2])
                skips.append(h)
        h = self.mid(h, emb, self._times(h, len(self.down) - 1), ctx)
        h = self.mid_res(h, emb, film_at(ctx, h.shape[2]))
        for j, (blocks, up) in enumerate(zip(self.up, self.upsample)):
            times = self._times(h, len(self.up) - 1 - j)
            for block in blocks:
                h = block(torch.cat([h, skips.pop()], dim=1), emb, times, ctx)
            if not isinstance(up, nn.Identity):
                lengths.pop()
                h = up(h, lengths[-1])
        out = self.out(F.silu(self.out_norm(h))).transpose(1, 2)
        if self.past_out is not None:
            out = out + self.past_out(ctx["aligned"][:, :1, -self.past_out.in_features:].to(out.dtype))
        if self.band_gate is not None:
            out = out + self.band_gate(noisy, ctx["aligned"], emb, ctx.get("gate_speaker")).to(out.dtype)
        return out
