"""The window's least-squares prediction from the last known listener frame (`model.anchor=regression`).

Listener head pose moves slowly and returns to the person's rest pose: in the quality benchmark's data, the last
frame before a 64-frame window explains 82% of the window's translation variance and 68% of its rotation variance,
with a coefficient that decays from 1.0 at the first frame to ~0.86 at the last (mean reversion). Denoising a window
as absolute values leaves the network to learn that map and, undertrained, it under-uses the past: the level jumps
from window to window (measured: translation variance 9.5x the data's). Denoising relative to the last frame
(`anchor=last_frame`, coefficient 1) makes every window's level a step of a random walk (FRDist 1185).

Here, per window offset t and dim d, with l the last known frame,

    prediction[t, d] = alpha[t, d] + beta[t, d] * l[d],

alpha and beta fitted by least squares on the training shards when training starts (the same numbers on every
rank, saved with the weights), and the diffusion models the residual x - prediction, whose spectrum is measured
after the fit. Before the clip starts the past is the zero face (the mean face of z-scored data), so the first
window is predicted as alpha (the mean, for zero-mean dims). For a window longer than the fit, the last offset's
coefficients hold.

With a memory (`model.anchor_memory` M > 0) the mean m of the listener's M frames before the window joins the last
frame:

    prediction[t, d] = alpha[t, d] + beta[t, d] * l[d] + gamma[t, d] * m[d].

A person's rest pose and face are their own: the last frame alone predicts the window's return towards the
population's mean, so the generated level wanders over the population's range within a clip (measured: translation
temporal variance 2.3x the data's, where the person's own variance is 5-18% of the population's). The memory says
where this person returns to: on the quality benchmark's data, M = 250 leaves 29% less of the window's translation
variance, 25% less of rotation and 22% less of expression to the diffusion than the last frame alone.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def fit_past_regression(last: np.ndarray, windows: np.ndarray,
                        memory: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Per-(offset, dim) least squares of windows (N, W, D) on their last frames (N, D) and, when given, the memory
    means (N, D): (alpha, beta, gamma), (W, D) each (gamma None without a memory), in float64. A constant regressor
    gets coefficient 0; regressors too collinear to tell apart (e.g. every window near the clip start, where the
    memory is the last frame) fall back to the last frame alone."""
    last, windows = np.asarray(last, np.float64), np.asarray(windows, np.float64)
    if last.ndim != 2 or windows.ndim != 3 or windows.shape[::2] != last.shape:
        raise ValueError(f"expected last frames (N, D) and windows (N, W, D), got {last.shape} and {windows.shape}")
    if memory is not None and np.shape(memory) != last.shape:
        raise ValueError(f"expected memory means {last.shape} like the last frames, got {np.shape(memory)}")
    ml, mw = last.mean(0), windows.mean(0)
    dl, dw = last - ml, windows - mw
    var_l = (dl * dl).mean(0)
    cov_l = (dw * dl[:, None]).mean(0)
    beta = np.where(var_l > 1e-12, cov_l / np.maximum(var_l, 1e-12), 0.0)
    if memory is None:
        return mw - beta * ml, beta, None
    memory = np.asarray(memory, np.float64)
    mm = memory.mean(0)
    dm = memory - mm
    var_m, cov_lm = (dm * dm).mean(0), (dl * dm).mean(0)
    cov_m = (dw * dm[:, None]).mean(0)
    det = var_l * var_m - cov_lm ** 2
    ok = det > 1e-6 * np.maximum(var_l * var_m, 1e-12)  # the 2x2 normal equations, where they are well posed
    safe = np.where(ok, det, 1.0)
    beta2 = (var_m * cov_l - cov_lm * cov_m) / safe
    gamma = (var_l * cov_m - cov_lm * cov_l) / safe
    beta, gamma = np.where(ok, beta2, beta), np.where(ok, gamma, 0.0)
    return mw - beta * ml - gamma * mm, beta, gamma


class PastRegression(nn.Module):
    """alpha/beta (and with a memory gamma) buffers (W, D) and the prediction of a window from the last known frame
    (and the memory mean)."""

    def __init__(self, window: int, dim: int, memory: bool = False) -> None:
        super().__init__()
        # unfitted: predicts the mean face (absolute windows) until fit() runs
        self.register_buffer("alpha", torch.zeros(int(window), int(dim)))
        self.register_buffer("beta", torch.zeros(int(window), int(dim)))
        # only with a memory, so that the state dicts of models made before it load as they are
        self.register_buffer("gamma", torch.zeros(int(window), int(dim)) if memory else None)

    @property
    def uses_memory(self) -> bool:
        return self.gamma is not None

    @torch.no_grad()
    def fit(self, last: np.ndarray, windows: np.ndarray, memory: np.ndarray | None = None) -> None:
        """Fit from normalised training windows (N, W, D), the frame before each (N, D) and, with a memory, the mean
        of the memory frames before each (N, D)."""
        if windows.ndim != 3 or windows.shape[1:] != tuple(self.beta.shape):
            raise ValueError(f"regression windows must be (N, {self.beta.shape[0]}, {self.beta.shape[1]}), got "
                             f"{windows.shape}")
        if (memory is None) == self.uses_memory:
            raise ValueError("this regression " + ("needs" if self.uses_memory else "takes no") + " memory means")
        alpha, beta, gamma = fit_past_regression(last, windows, memory)
        self.alpha.copy_(torch.from_numpy(alpha).to(self.alpha))
        self.beta.copy_(torch.from_numpy(beta).to(self.beta))
        if gamma is not None:
            self.gamma.copy_(torch.from_numpy(gamma).to(self.gamma))

    def residual(self, last: np.ndarray, windows: np.ndarray, memory: np.ndarray | None = None) -> np.ndarray:
        """windows - their prediction (numpy, for measuring the residual's spectrum)."""
        as_t = lambda a: None if a is None else torch.as_tensor(np.asarray(a, np.float32))  # noqa: E731
        pred = self(as_t(last), windows.shape[1], as_t(memory))
        return np.asarray(windows, np.float32) - pred.numpy()

    def forward(self, last: torch.Tensor, w: int, memory: torch.Tensor | None = None) -> torch.Tensor:
        """last (B, D) [, memory (B, D)] -> the predicted window (B, w, D)."""
        idx = torch.arange(w, device=last.device).clamp(max=self.beta.shape[0] - 1)
        alpha, beta = self.alpha[idx].to(last), self.beta[idx].to(last)
        pred = alpha + beta * last[:, None]
        if self.gamma is not None:
            if memory is None:
                raise ValueError("this model's windows are predicted from the listener's memory too "
                                 "(model.anchor_memory): the conditioning has no memory mean")
            pred = pred + self.gamma[idx].to(last) * memory[:, None].to(last)
        return pred
