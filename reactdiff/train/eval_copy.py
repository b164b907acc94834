"""A plain (non-DeepSpeed) fp32 copy of the model on every rank, loaded with the raw or the EMA weights, for
validation and in-training samples: the engine's module stays untouched (ZeRO-3 partitions, half precision, train
mode), and every rank scores its share of the work with the same weights."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from .. import dist
from ..model.export import build_model
from ..data.normalise import FaceStats


class EvalCopy:
    def __init__(self, cfg, model: nn.Module, device: torch.device, zero3: bool) -> None:
        stats = FaceStats(model.stats.mean.cpu(), model.stats.std.cpu(), model.stats.convention)
        with torch.random.fork_rng(devices=[]):  # building draws random weights: not from the training's stream
            self.model = build_model(cfg, stats).to(device).eval().requires_grad_(False)
        self.zero3 = zero3
        self.names = [n for n, _ in self.model.named_parameters()]
        self.holds = None  # ("ema", step) while the copy holds that step's EMA weights

    def _gathered(self, model: nn.Module):
        if not self.zero3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(list(model.parameters()), modifier_rank=None)

    @torch.no_grad()
    def _buffers(self, model: nn.Module) -> None:
        """Buffers (normalisation, spectrum, regression) are the same on every rank and never partitioned."""
        mine = dict(self.model.named_buffers())
        for name, b in model.named_buffers():
            if name in mine:
                mine[name].copy_(b)

    @torch.no_grad()
    def load_raw(self, model: nn.Module) -> nn.Module:
        """The training weights (every rank takes part under ZeRO-3: the parameters are gathered)."""
        self.holds = None
        own = dict(self.model.named_parameters())
        with self._gathered(model):
            for name, p in model.named_parameters():
                own[name].copy_(p.detach().float())
        self._buffers(model)
        return self.model

    @torch.no_grad()
    def load_ema(self, ema, model: nn.Module, step: int) -> nn.Module:
        """The EMA weights after optimiser step `step`: kept by rank 0 only, broadcast to every rank in one flat
        tensor (once per step: validation and samples at the same step share it)."""
        if self.holds == ("ema", step):
            return self.model
        self.holds = ("ema", step)
        params = dict(self.model.named_parameters())
        flat = torch.empty(sum(p.numel() for p in params.values()), device=next(iter(params.values())).device)
        if dist.is_main():
            flat.copy_(torch.cat([ema.shadow[n].reshape(-1).to(flat) if n in ema.shadow else params[n].reshape(-1)
                                  for n in self.names]))
        dist.broadcast_(flat)
        offset = 0
        for n in self.names:
            p = params[n]
            p.copy_(flat[offset:offset + p.numel()].view_as(p))
            offset += p.numel()
        self._buffers(model)
        return self.model
