"""Online generation of whole clips: window after window, each conditioned on the speaker streams up to its end
and on the listener frames generated before it; consecutive windows overlap and are cross-faded.

Reaction k of a speaker clip draws all its noise from its own generator, seeded by (seed, clip key, role, k), so
it is the same reaction whatever the batch size, the number of ranks, or which other clips share its batch.

Classifier-free guidance (guidance w != 1, models trained with condition dropout): the denoiser's estimate is
D_none + w (D_speaker - D_none), D_none conditioned on the learned "no speaker" and the same listener past.
w = 1 is the plain conditional sampler, exactly (the unconditional branch is never built). Each stream group may
have its own w (sample.group_guidance: e.g. guidance on head rotation alone, where the nods are), and a guidance
rescale r scales each group's guided estimate back towards the conditional estimate's spread (rescale_guided).
Temperature t scales the noise the sampler draws (the starting point and the SDE's fresh noise): t < 1 trades
diversity for reactions nearer the model's typical listener; t = 1 is the plain sampler. A level temperature, when
set, scales each window's level (the noise's DCT coefficient 0) instead: how far the pose level strays from the
likely one, apart from the motion within the window.
"""
from __future__ import annotations

import zlib

import torch

from ..config import Join
from ..data import frame_layout as fv
from ..model.spectrum import temper_dct
from .noise import PerSampleNoiseSampler, per_sample_generators, randn_per_sample
from .samplers import get_sigmas_karras, sample


def reaction_seed(seed: int, key: str, role: str, k: int) -> int:
    return zlib.crc32(f"{seed}/{key}/{role}/{k}".encode()) & 0x7FFFFFFF


def window_starts(frames: int, window: int, overlap: int) -> list[int]:
    """Window starts covering [0, frames): stride window - overlap, the last one flush with the end."""
    if frames <= window:
        return [0]
    starts = list(range(0, frames - window, window - overlap))
    if starts[-1] + window < frames:
        starts.append(frames - window)
    return starts


def _pad_past(x: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    """x[:, lo:hi] along time, zero-padded where lo < 0."""
    if lo >= 0:
        return x[:, lo:hi]
    pad = torch.zeros(x.shape[0], -lo, *x.shape[2:], dtype=x.dtype, device=x.device)
    return torch.cat([pad, x[:, :max(hi, 0)]], dim=1)


def group_guidance_of(sample_cfg) -> tuple[tuple[str, float], ...]:
    """The stream groups sample.group_guidance sets a scale for, as hashable (group, scale) pairs."""
    return tuple((g, float(v)) for g, v in sample_cfg.group_guidance.items() if v is not None)


def window_settings(sample_cfg, **overrides) -> dict:
    """WindowSampler's keyword arguments from a config's `sample` section: the one place that maps it, so a new
    sampling key reaches `reactdiff sample`, the in-training previews and the live sessions alike. `overrides`
    replace single values (a preview's steps; a live session's own sampler, steps, guidance, temperature)."""
    s = sample_cfg
    out = {"sampler": getattr(s.sampler, "value", s.sampler), "steps": s.steps, "sigma_min": s.sigma_min,
           "sigma_max": s.sigma_max, "rho": s.rho, "guidance": s.guidance, "temperature": s.temperature,
           "level_temperature": s.level_temperature, "group_guidance": group_guidance_of(s),
           "guidance_rescale": s.guidance_rescale, "join": getattr(s.join, "value", s.join)}
    unknown = sorted(set(overrides) - set(out))
    if unknown:
        raise TypeError(f"window_settings: no sampling setting {unknown}; expected some of {sorted(out)}")
    return {**out, **overrides}


def guidance_scale(guidance: float, groups=(), dim: int = fv.FV_DIM) -> float | torch.Tensor:
    """The guidance scale per output dim: `guidance`, or per stream group where `groups` ((group, scale) pairs)
    sets one (dims past the 58-d, the emotion stream, keep `guidance`); a float when every dim has the same."""
    scales = dict(groups)
    unknown = set(scales) - set(fv.STREAM_GROUPS)
    if unknown:
        raise ValueError(f"group guidance: unknown groups {sorted(unknown)} (expected {list(fv.STREAM_GROUPS)})")
    if all(v == guidance for v in scales.values()):
        return float(guidance)
    w = torch.full((dim,), float(guidance))
    for group, v in scales.items():
        w[fv.STREAM_GROUPS[group]] = float(v)
    return w


def is_guided(scale: float | torch.Tensor) -> bool:
    """Whether a guidance_scale asks for guidance (then every step also runs the unconditional mode)."""
    return isinstance(scale, torch.Tensor) or scale != 1


def rescale_guided(guided: torch.Tensor, cond: torch.Tensor, rescale: float) -> torch.Tensor:
    """Guidance rescale: each stream group's guided estimate (rows, w, dim) scaled towards the conditional estimate's
    spread over the window (std over frames and the group's dims, per row), by `rescale` (0: plain guidance, 1: the
    conditional's spread). Guidance strengthens what the speaker explains against the rest of the motion, and
    inflates all of it; this keeps the first and gives back the second."""
    out = guided.clone()
    groups = list(fv.STREAM_GROUPS.values()) + ([slice(fv.FV_DIM, None)] if guided.shape[-1] > fv.FV_DIM else [])
    for dims in groups:
        g, c = guided[..., dims], cond[..., dims]
        ratio = c.std(dim=(1, 2), keepdim=True) / g.std(dim=(1, 2), keepdim=True).clamp_min(1e-8)
        out[..., dims] = g * (rescale * ratio + (1 - rescale))
    return out


def _held(denoise, target: torch.Tensor, mask: torch.Tensor):
    """The denoiser with the frames of `mask` (rows, w) held at `target` (rows, w, dim): every step's estimate of
    them is their known value, so the ODE ends on it (sample.join = inpaint). The network sees them only through
    the noisy window; measured worse than the cross-fade (README, "where the windows meet")."""
    m = mask[..., None]

    def held(x, sigma, **kwargs):
        return torch.where(m, target.to(x.dtype), denoise(x, sigma, **kwargs))
    return held


def _guided(denoise, scale: float | torch.Tensor, rescale: float = 0.0):
    """Classifier-free guidance around a denoiser whose extra args hold both conditionings' caches; `scale` a float
    or one per dim (D,); `rescale` (rescale_guided) 0: off."""
    def guided(x, sigma, cache, cache_none):
        cond, none = denoise(x, sigma, cache=cache), denoise(x, sigma, cache=cache_none)
        w = scale.to(cond.dtype) if isinstance(scale, torch.Tensor) else scale  # a no-op in fp32
        out = none + w * (cond - none)
        return rescale_guided(out, cond, rescale) if rescale else out
    return guided


class WindowSampler:
    """The sampling of one window for a batch of reactions, each with its own noise generator: what whole-clip
    generation (`generate`) and live sessions (reactdiff.serve) share, so both make the same reactions. Rows of
    different clips (or live sessions) may share a call: each row's noise comes from its own generator."""

    def __init__(self, model, *, sampler: str, steps: int, sigma_min: float = 0.01, sigma_max: float = 80.0,
                 rho: float = 7.0, guidance: float = 1.0, temperature: float = 1.0,
                 level_temperature: float | None = None, device=None, group_guidance=(),
                 guidance_rescale: float = 0.0, join: str = "crossfade") -> None:
        if join not in {j.value for j in Join}:  # the schema's choices
            raise ValueError(f"join: one of {[j.value for j in Join]}, got {join!r}")
        self.model, self.sampler, self.join = model, sampler, join
        self.guidance_rescale = float(guidance_rescale)
        self.device = device if device is not None else next(model.parameters()).device
        self.guidance, self.temperature = guidance_scale(guidance, group_guidance, model.dim), float(temperature)
        self.guided = is_guided(self.guidance)
        if isinstance(self.guidance, torch.Tensor):  # on the device once, not per network call
            self.guidance = self.guidance.to(self.device)
        self.level_temperature = None if level_temperature is None else float(level_temperature)
        self.sigmas = get_sigmas_karras(steps, sigma_min, sigma_max, rho, device=self.device)

    def __call__(self, cond: dict, gens: list[torch.Generator], w: int) -> torch.Tensor:
        """cond: `model.conditioning` of the rows' windows; gens: one generator per row -> (rows, w, dim) frames."""
        model, device, rows = self.model, self.device, len(gens)
        memory, held, held_mask = cond.get("memory"), cond.get("held"), cond.get("held_mask")  # not the network's
        cond = {k: v for k, v in cond.items() if k not in ("memory", "held", "held_mask")}
        anchor = model.anchor(cond["past_listener"], w, memory)  # windows relative to the generated past
        extra = {"cache": model.unet.prepare(**cond)}
        if self.guided:
            extra["cache_none"] = model.unet.prepare(**cond, drop=torch.ones(rows, dtype=torch.bool, device=device))
        x = model.colour_noise(randn_per_sample((w, model.dim), gens, device, torch.float32)) * self.sigmas[0]
        white = PerSampleNoiseSampler(gens, (w, model.dim), device, torch.float32)
        noise = lambda s, s_next: model.colour_noise(white(s, s_next))  # noqa: E731 - the diffusion's noise
        if self.level_temperature is not None:
            x = self._cool(x)
            noise = lambda s, s_next, n=noise: self._cool(n(s, s_next))  # noqa: E731
        elif self.temperature != 1:
            x = x * self.temperature
            noise = lambda s, s_next, n=noise: n(s, s_next) * self.temperature  # noqa: E731
        denoise = _guided(model.denoise, self.guidance, self.guidance_rescale) if self.guided else model.denoise
        if self.join == "inpaint" and held_mask is not None and bool(held_mask.any()):
            denoise = _held(denoise, held if anchor is None else held - anchor, held_mask)
        new = sample(self.sampler, denoise, x, self.sigmas, extra_args=extra, noise_sampler=noise)
        return new if anchor is None else new + anchor


    def _cool(self, noise: torch.Tensor) -> torch.Tensor:
        """noise (rows, w, dim) with the window's level by level_temperature and the motion within it by
        temperature; the noise model says what the level is (spectrum.py: the DCT mean; covariance.py: the leading
        principal component), white noise tempers the DCT's."""
        spectrum = self.model.spectrum
        temper = temper_dct if spectrum is None else spectrum.temper
        return temper(noise, self.temperature, self.level_temperature)


def window_condition(model, speaker: torch.Tensor, audio: torch.Tensor | None, out: torch.Tensor,
                     valid: torch.Tensor, start: int, history: int, window: int, done: int = 0) -> dict:
    """The conditioning of the window [start, start + window): the speaker streams over [start - history, start +
    window) and the listener frames generated before it (zeros before the clip starts); with model.anchor_memory M,
    "memory": the mean of the M generated frames before it (what of them `out` holds: callers keep M frames);
    "held" / "held_mask": the frames [start, done) an earlier window generated (sample.join = inpaint holds them)."""
    lo, hi = start - history, start + window
    cond = model.conditioning(_pad_past(speaker, lo, hi), _pad_past(audio, lo, hi) if audio is not None else None,
                              _pad_past(out, lo, start), _pad_past(valid, lo, hi))
    shared = max(0, min(done, out.shape[1], start + window) - start)
    cond["held"] = out.new_zeros(out.shape[0], window, out.shape[2])
    cond["held"][:, :shared] = out[:, start:start + shared]
    cond["held_mask"] = torch.zeros(out.shape[0], window, dtype=torch.bool, device=out.device)
    cond["held_mask"][:, :shared] = True
    if model.anchor_memory:
        a = max(0, start - model.anchor_memory)
        cond["memory"] = out[:, a:start].mean(1) if start > a else out.new_zeros(out.shape[0], out.shape[2])
    return cond


def place_window(out: torch.Tensor, new: torch.Tensor, start: int, done: int) -> int:
    """Write a window's frames into `out` at `start`, cross-fading the frames [start, done) the previous window
    generated too (old -> new); returns the new end of the generated frames."""
    shared = done - start
    if shared > 0:
        ramp = torch.linspace(0, 1, shared + 2, device=new.device)[1:-1].view(1, -1, 1)
        new = new.clone()
        new[:, :shared] = (1 - ramp) * out[:, start:done] + ramp * new[:, :shared]
    out[:, start:start + new.shape[1]] = new
    return start + new.shape[1]


@torch.inference_mode()
def generate(model, batch: dict, *, k: int, history: int, window: int, overlap: int, sampler: str, steps: int,
             sigma_min: float = 0.01, sigma_max: float = 80.0, rho: float = 7.0, seed: int = 0,
             frames: int | None = None, guidance: float = 1.0, temperature: float = 1.0,
             level_temperature: float | None = None, group_guidance=(),
             guidance_rescale: float = 0.0, join: str = "crossfade") -> torch.Tensor:
    """K reactions per role sample of an eval batch -> (B, K, frames, dim), normalised like the training data."""
    device = batch["speaker_fv"].device
    frames = frames or batch["speaker_fv"].shape[1]
    real = frames  # a clip shorter than the window is generated padded to it, as training saw such clips
    b = batch["speaker_fv"].shape[0]
    rep = lambda t: t.repeat_interleave(k, dim=0)  # noqa: E731 - row i*k + j is reaction j of sample i
    speaker = rep(batch["speaker_fv"][:, :frames].float())
    audio = model.audio(batch, batch["speaker_fv"].shape[1])  # whole clip once, then sliced per window
    audio = rep(audio[:, :frames]) if audio is not None else None
    valid = torch.ones(b * k, frames, dtype=torch.bool, device=device)
    if frames < window:
        pad = lambda t: torch.nn.functional.pad(t, (0, 0) * (t.ndim - 2) + (0, window - frames))  # noqa: E731
        speaker, audio = pad(speaker), pad(audio) if audio is not None else None
        valid = torch.nn.functional.pad(valid, (0, window - frames))
        frames = window
    gens = per_sample_generators([reaction_seed(seed, key, role, j) for key, role in zip(batch["key"], batch["role"])
                                  for j in range(k)])
    step = WindowSampler(model, sampler=sampler, steps=steps, sigma_min=sigma_min, sigma_max=sigma_max, rho=rho,
                         guidance=guidance, temperature=temperature, level_temperature=level_temperature,
                         device=device, group_guidance=group_guidance, guidance_rescale=guidance_rescale,
                         join=join)
    out = torch.zeros(b * k, frames, model.dim, device=device)
    done = 0  # frames [0, done) are generated
    for start in window_starts(frames, window, overlap):
        cond = window_condition(model, speaker, audio, out, valid, start, history, window, done)
        done = place_window(out, step(cond, gens, window), start, done)
    return out.view(b, k, frames, model.dim)[:, :, :real]
