"""Exponential moving average of the weights, in fp32, with a power-function warm-up (as in k-diffusion):

    decay(step) = min(max_decay, 1 - (1 + step) ** -power)      power 2/3: ~0.999 after 30k steps, 0.9999 later

Under ZeRO-3 each rank holds only a slice of every parameter, so updates gather the full tensors (all ranks take
part) a few at a time; only rank 0 keeps the average.
"""
from __future__ import annotations

import contextlib

import torch


class EMA:
    def __init__(self, module: torch.nn.Module, max_decay: float = 0.9999, power: float = 2 / 3,
                 keep: bool = True, zero3: bool = False, chunk: int = 64) -> None:
        self.params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
        self.max_decay, self.power, self.keep, self.zero3, self.chunk = max_decay, power, keep, zero3, chunk
        self.shadow: dict[str, torch.Tensor] = {}
        self._update(1.0, init=True)

    def decay(self, step: int) -> float:
        return max(0.0, min(self.max_decay, 1 - (1 + step) ** -self.power))

    def _gathered(self, params):
        if not self.zero3:
            return contextlib.nullcontext()
        import deepspeed

        return deepspeed.zero.GatheredParameters(params, modifier_rank=None)

    @torch.no_grad()
    def _update(self, weight: float, init: bool = False) -> None:
        for i in range(0, len(self.params), self.chunk):
            group = self.params[i:i + self.chunk]
            with self._gathered([p for _, p in group]):
                if not self.keep:
                    continue
                for name, p in group:
                    value = p.detach().float()
                    if init:
                        self.shadow[name] = value.clone()
                    else:
                        self.shadow[name].lerp_(value, weight)

    def update(self, step: int) -> None:
        """Call after optimiser step `step` (1-based) on every rank."""
        self._update(1 - self.decay(step))

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().cpu() for k, v in self.shadow.items()}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        if not self.keep:
            return
        missing = set(self.shadow) - set(state)
        if missing:
            raise ValueError(f"EMA state lacks {len(missing)} parameters, e.g. {sorted(missing)[:3]}")
        for k in self.shadow:
            self.shadow[k].copy_(state[k])
