"""A speaker-gated band skip (`model.band_gate`): per frame, per dim and per temporal-frequency band, a gain on the
noisy window that the speaker decides, added to the U-Net's raw output F.

    F(x) = UNet(x) + sum_b g_b[t, d] * band_b(x)[t, d],    band_b(x) = C^T (mask_b * (C x))    (C: the window's DCT)
    g = small conv net of the aligned speaker streams (filtered speaker + last listener frame) and the noise level
        (+ with `span` S > 0: a causal filter of its own over the speaker's last S frames)

Why: a reaction whose moment the speaker cues but whose shape it does not (a nod of its own phase and speed after a
phrase end) is, for the ideal denoiser, a gain on the noisy window's band that depends on the speaker (the data's
nod band carries ~7x the power after phrase ends; the ideal gains at sigma 1 are ~0.69 there vs ~0.22 elsewhere).
The U-Net can express that (FiLM did not change it) but learns it only when the loss pays for it (README, "Nods
after phrase ends"): its parameters serve every dim and band, so the nod band's share of the gradient (~0.4% of the
loss) is drowned by the rest. Here the gains have parameters of their own, so Adam's step on them follows their own
gradient however small its share of the loss. The bands' masks sum to 1, the output layer starts at zero: an
untrained gate is the model without it.

Why `span`: a nod runs 8-50 frames after its cue (8-12 frames' lag, 1-3 cycles at ~2 Hz), so a gate that sees the
speaker only through the U-Net's 24-frame filter has lost the cue before the nod ends. Widening that shared filter to
48 frames carried the nods but cost FRCorr and the brow onsets (README); the gate's own long filter leaves the U-Net's
input as it was.
"""
from __future__ import annotations

import torch
from torch import nn

from .spectrum import dct_matrix


class BandGate(nn.Module):
    def __init__(self, aligned_dim: int, emb_dim: int, dim: int, edges: tuple[float, ...], hidden: int = 64,
                 dims: slice = slice(None), span: int = 0, speaker_dim: int = 0) -> None:
        """edges: band edges in cycles per frame (Hz / fps), increasing, in (0, 0.5): len(edges) + 1 bands; dims:
        the dims of the `dim` whose bands are gained (the others get nothing from the gate); span > 0: the gate also
        filters the (normalised) speaker streams of `speaker_dim` channels over their last `span` frames."""
        super().__init__()
        edges = tuple(float(e) for e in edges)
        if not edges or any(not 0 < e < 0.5 for e in edges) or list(edges) != sorted(set(edges)):
            raise ValueError(f"band gate edges must increase within (0, 0.5) cycles per frame, got {list(edges)}")
        self.register_buffer("edges", torch.tensor(edges, dtype=torch.float64), persistent=False)
        self.dims = dims
        self.dim, self.bands = len(range(int(dim))[dims]), len(edges) + 1
        if not self.dim:
            raise ValueError(f"band gate: {dims} selects none of {dim} dims")
        self.full = int(dim)
        self.inp = nn.Conv1d(aligned_dim, hidden, 3, padding=1)
        self.emb = nn.Linear(emb_dim, hidden)  # the noise level: the right gain moves with sigma
        if span < 0 or (span and speaker_dim <= 0):
            raise ValueError(f"band gate span: >= 0 frames (with the speaker's channels), got {span} / {speaker_dim}")
        self.span = int(span)
        self.speaker = nn.Conv1d(speaker_dim, hidden, span) if span else None  # causal: valid conv over the past
        self.mid = nn.Conv1d(hidden, hidden, 3, padding=1)
        self.out = nn.Conv1d(hidden, self.bands * self.dim, 1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)

    def masks(self, w: int, device, dtype) -> torch.Tensor:
        """(bands, w) 0/1: which DCT coefficient k (frequency k / 2w cycles per frame) lies in which band."""
        freq = torch.arange(w, dtype=torch.float64, device=self.edges.device) / (2 * w)
        band = torch.bucketize(freq, self.edges, right=True)
        return (band[None] == torch.arange(self.bands, device=band.device)[:, None]).to(device=device, dtype=dtype)

    def split(self, x: torch.Tensor) -> torch.Tensor:
        """(B, W, D) -> its bands (B, bands, W, D); they sum to x."""
        c = dct_matrix(x.shape[1], x.device, x.dtype)
        coef = torch.einsum("kt,btd->bkd", c, x)
        return torch.einsum("tk,nk,bkd->bntd", c.T, self.masks(x.shape[1], x.device, x.dtype), coef)

    def gains(self, aligned: torch.Tensor, emb: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """aligned (B, W, A), emb (B, E), speaker (B, span - 1 + W, S) with span -> (B, bands, W, D)."""
        h = self.inp(aligned.transpose(1, 2)) + self.emb(emb)[..., None]
        if self.speaker is not None:
            if speaker is None or speaker.shape[1] != self.span - 1 + aligned.shape[1]:
                raise ValueError(f"band gate span {self.span}: needs the speaker's {self.span - 1} frames before the "
                                 f"window and its {aligned.shape[1]}, got "
                                 f"{None if speaker is None else speaker.shape[1]}")
            h = h + self.speaker(speaker.to(h.dtype).transpose(1, 2))
        h = self.mid(torch.nn.functional.silu(h))
        g = self.out(torch.nn.functional.silu(h))  # (B, bands * D, W)
        return g.view(g.shape[0], self.bands, self.dim, g.shape[2]).transpose(2, 3)

    def forward(self, x: torch.Tensor, aligned: torch.Tensor, emb: torch.Tensor,
                speaker: torch.Tensor | None = None) -> torch.Tensor:
        """The gated band skip (B, W, D) for the scaled noisy window x (B, W, D): zero outside the gate's dims."""
        gated = (self.gains(aligned.to(x.dtype), emb, speaker) * self.split(x[..., self.dims])).sum(1)
        if self.dim == self.full:
            return gated
        out = x.new_zeros(x.shape)
        out[..., self.dims] = gated
        return out
