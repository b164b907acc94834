"""Speaker-side conditioning: per-frame tokens of the speaker's 3DMM and audio features over [history, window],
plus tokens of the listener's own past frames, each with its frame time (relative to the window start) and a
type embedding, mixed by a small transformer. The U-Net cross-attends to them.

With `null_speaker` (models trained with condition dropout) a learned "no speaker" vector can stand in for the
speaker's tokens of chosen samples (`drop`): the unconditional mode that classifier-free guidance steers away from.
The listener's own past stays: it is what keeps consecutive windows continuous.
"""
from __future__ import annotations

import torch
from torch import nn

from .layers import sinusoidal_positions

SPEAKER, PAST_LISTENER = 0, 1


class ContextEncoder(nn.Module):
    def __init__(self, fv_dim: int, audio_dim: int, listener_dim: int, dim: int, layers: int, heads: int,
                 dropout: float = 0.0, null_speaker: bool = False, null_face: bool = False) -> None:
        super().__init__()
        self.dim = dim
        self.null_speaker = nn.Parameter(torch.zeros(dim)) if null_speaker else None
        # the learned "no face" speaker 3DMM (face dropout): the model hears the speaker without seeing them
        self.null_face = nn.Parameter(torch.zeros(fv_dim)) if null_face else None
        self.speaker = nn.Linear(fv_dim + audio_dim, dim)
        self.past = nn.Linear(listener_dim, dim)
        self.kind = nn.Embedding(2, dim)
        layer = nn.TransformerEncoderLayer(dim, heads, 2 * dim, dropout=dropout, batch_first=True, norm_first=True)
        self.mixer = nn.TransformerEncoder(layer, layers, enable_nested_tensor=False) if layers else nn.Identity()

    def face_or_null(self, speaker_fv: torch.Tensor, drop_face: torch.Tensor | None) -> torch.Tensor:
        """speaker_fv with the learned "no face" in place of the samples `drop_face` (B,) marks."""
        if drop_face is None:
            return speaker_fv
        if self.null_face is None:
            raise ValueError("this model has no 'no face' speaker (trained without model.face_dropout): it cannot "
                             "react to audio alone")
        return torch.where(drop_face.view(-1, 1, 1), self.null_face.to(speaker_fv.dtype), speaker_fv)

    def forward(self, speaker_fv: torch.Tensor, audio: torch.Tensor | None, past_listener: torch.Tensor,
                valid: torch.Tensor, history: int,
                drop: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """drop (B,) bool: samples whose speaker tokens become the learned "no speaker" vector.
        -> (tokens (B, N, dim), token times (B, N) in frames from the window start, mask (B, N) true = real)."""
        b, total, _ = speaker_fv.shape
        times = torch.arange(total, device=speaker_fv.device, dtype=torch.float32) - history
        spk_in = speaker_fv if audio is None else torch.cat([speaker_fv, audio], dim=-1)
        speaker = self.speaker(spk_in)
        if drop is not None:
            if self.null_speaker is None:
                raise ValueError("this model has no unconditional mode (trained without model.cond_dropout): it "
                                 "cannot drop the speaker condition or be sampled with sample.guidance != 1")
            speaker = torch.where(drop.view(b, 1, 1), self.null_speaker.to(speaker.dtype), speaker)
        tokens = [speaker + self.kind.weight[SPEAKER]]
        token_times, mask = [times.expand(b, total)], [valid]
        if history:
            tokens.append(self.past(past_listener) + self.kind.weight[PAST_LISTENER])
            token_times.append(times[:history].expand(b, history))
            mask.append(valid[:, :history])
        tokens, token_times, mask = torch.cat(tokens, 1), torch.cat(token_times, 1), torch.cat(mask, 1)
        tokens = tokens + sinusoidal_positions(token_times, self.dim, tokens.dtype)
        if isinstance(self.mixer, nn.TransformerEncoder):
            tokens = self.mixer(tokens, src_key_padding_mask=~mask)
        return tokens, token_times, mask
