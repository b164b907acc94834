"""One person's FaceVerse 3DMM trajectory (T, 58) from the clip script, with the planted listener coupling.

    fv = person style (mean offsets, gains)                                     -- who
       + own speaking motion (jaw/lips on the own syllables, head motion, brow raises on emphasis, own smiles)
       + reactions to the OTHER person, `style.lag` frames late (8-12):          -- the planted coupling
           head nods (rot_x, ~2 Hz, 1-3 cycles) after the other's phrase ends and emphasis,
           smiles mimicking the other's smiles, blinks after the other's pauses, small brow mimicry
       + spontaneous blinks (every 2-6 s) and low-pass noise on every dim.
Reactions are driven by the other's *scripted* events only (never by its reactions), so there is no feedback loop.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..frame_layout import EXP, FPS, FV_DIM, N_EXP
from .script import HUM_VOWEL, RoleScript, Syllables, frame_envelope

# Static mean and spread (between persons + noise) per blendshape; speaking/reactions add to it.
_EXP_STATS = {
    "browDownLeft": (0.55, 0.22), "browDownRight": (0.57, 0.22), "browInnerUp": (0.30, 0.14),
    "browOuterUpLeft": (0.12, 0.08), "browOuterUpRight": (0.12, 0.08), "cheekPuff": (0.03, 0.02),
    "cheekSquintLeft": (0.10, 0.06), "cheekSquintRight": (0.10, 0.06), "eyeBlinkLeft": (0.15, 0.08),
    "eyeBlinkRight": (0.15, 0.08), "eyeSquintLeft": (0.20, 0.10), "eyeSquintRight": (0.20, 0.10),
    "eyeWideLeft": (0.05, 0.04), "eyeWideRight": (0.05, 0.04), "jawForward": (0.03, 0.02),
    "jawOpen": (0.05, 0.04), "mouthClose": (0.06, 0.04), "mouthDimpleLeft": (0.06, 0.04),
    "mouthDimpleRight": (0.06, 0.04), "mouthFrownLeft": (0.08, 0.06), "mouthFrownRight": (0.08, 0.06),
    "mouthFunnel": (0.04, 0.03), "mouthLowerDownLeft": (0.06, 0.04), "mouthLowerDownRight": (0.06, 0.04),
    "mouthPressLeft": (0.10, 0.06), "mouthPressRight": (0.10, 0.06), "mouthPucker": (0.15, 0.08),
    "mouthRollLower": (0.10, 0.06), "mouthRollUpper": (0.05, 0.04), "mouthShrugLower": (0.15, 0.08),
    "mouthShrugUpper": (0.10, 0.06), "mouthSmileLeft": (0.10, 0.07), "mouthSmileRight": (0.10, 0.07),
    "tongueOut": (0.004, 0.01),
}
EXP_MEAN = np.full(N_EXP, 0.05)
EXP_STD = np.full(N_EXP, 0.04)
for _name, (_m, _s) in _EXP_STATS.items():
    EXP_MEAN[EXP[_name]], EXP_STD[EXP[_name]] = _m, _s
ROT_MEAN, ROT_STD = np.array([3.19, 0.045, 0.002]), np.array([0.18, 0.35, 0.13])
TRANS_MEAN, TRANS_STD = np.array([-0.006, -0.018, 1.84]), np.array([0.09, 0.04, 0.46])
POSE_MEAN, POSE_STD = np.concatenate([ROT_MEAN, TRANS_MEAN]), np.concatenate([ROT_STD, TRANS_STD])
RX, RY, RZ = 52, 53, 54

# Per vowel (script.N_VOWELS of them, then the hum): how far the jaw opens, how round the lips are.
VOWEL_OPEN = np.array([1.0, 0.7, 0.5, 0.9, 0.6, 0.4, 0.05])
VOWEL_ROUND = np.array([0.0, 0.2, 0.8, 0.1, 0.6, 0.3, 0.0])


@dataclasses.dataclass
class Style:
    """Who a person is: offsets from the population mean, expressiveness, reaction lag, voice and colours."""

    exp_offset: np.ndarray  # (52,)
    pose_offset: np.ndarray  # (6,)
    gain: float  # expressiveness 0.5-1.5
    noise: float  # noise level 0.7-1.3
    lag: int  # listener reaction lag in frames, 8-12
    mimic: float  # smile mimicry 0.6-1.0
    nod_amp: float  # rad, 0.06-0.10
    f0: float  # Hz, 100-220
    skin: np.ndarray  # RGB, uint8 (3,)
    background: np.ndarray
    hair: np.ndarray


def draw_style(rng: np.random.Generator) -> Style:
    tone = rng.uniform(0.3, 1.0)
    skin = np.array([90.0, 60.0, 45.0]) + tone * np.array([160.0, 140.0, 120.0]) + rng.normal(0, 8, size=3)
    return Style(
        exp_offset=rng.standard_normal(N_EXP) * 0.6 * EXP_STD,
        pose_offset=rng.standard_normal(6) * 0.85 * POSE_STD,
        gain=float(rng.uniform(0.5, 1.5)),
        noise=float(rng.uniform(0.7, 1.3)),
        lag=int(rng.integers(8, 13)),
        mimic=float(rng.uniform(0.6, 1.0)),
        nod_amp=float(rng.uniform(0.06, 0.10)),
        f0=float(rng.uniform(100, 220)),
        skin=np.round(np.clip(skin, 0, 255)).astype(np.uint8),
        background=rng.integers(20, 236, size=3).astype(np.uint8),
        hair=rng.integers(10, 120, size=3).astype(np.uint8),
    )


@dataclasses.dataclass
class Behaviour:
    fv: np.ndarray  # (T, 58) float32
    envelope: np.ndarray  # (T,) own syllable loudness (0..~1.8)
    speaking: np.ndarray  # (T,) bool, inside own phrases/backchannels


def lowpass_noise(rng: np.random.Generator, frames: int, dims: int, cutoff_hz: float) -> np.ndarray:
    """(frames, dims) unit-variance noise, 2nd-order low-passed at `cutoff_hz` (FFT filter, circular)."""
    n = max(int(frames), 2)
    f = np.fft.rfftfreq(n, 1.0 / FPS)
    g = 1.0 / np.sqrt(1.0 + (f / cutoff_hz) ** 4)
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal((n, dims)), axis=0) * g[:, None], n=n, axis=0)
    return x[:frames] / np.sqrt(np.sum(np.fft.irfft(g, n=n) ** 2))


def _smoothstep(u: np.ndarray) -> np.ndarray:
    u = np.clip(u, 0.0, 1.0)
    return u * u * (3 - 2 * u)


def bump(t: np.ndarray, centre: float, width: float) -> np.ndarray:
    """Raised cosine of half-width `width` frames, 1 at `centre`."""
    d = np.abs(t - centre) / width
    return np.where(d < 1, 0.5 * (1 + np.cos(np.pi * np.minimum(d, 1))), 0.0)


def smile_curve(t: np.ndarray, smiles: np.ndarray, delay: float = 0.0) -> np.ndarray:
    """Sum of smiles (start, duration, amplitude): 5-frame attack, hold, 12-frame release."""
    out = np.zeros_like(t, dtype=float)
    for start, dur, amp in smiles:
        s = start + delay
        out += amp * _smoothstep((t - s) / 5.0) * (1.0 - _smoothstep((t - s - dur) / 12.0))
    return out


def _pulse(t: np.ndarray, start: float, dur: float) -> np.ndarray:
    u = (t - start) / dur
    return np.where((u >= 0) & (u <= 1), np.sin(np.pi * np.clip(u, 0, 1)) ** 2, 0.0)


def behave(own: RoleScript, other: RoleScript, syl: Syllables, style: Style, frames: int,
           rng: np.random.Generator, coupling: float = 1.0) -> Behaviour:
    """The person's (T, 58) 3DMM; `coupling` scales the reactions to the other (0 = no planted coupling)."""
    T = int(frames)
    t = np.arange(T, dtype=float)
    fv = np.zeros((T, FV_DIM))
    fv[:, :N_EXP] = EXP_MEAN + style.exp_offset
    fv[:, N_EXP:] = POSE_MEAN + style.pose_offset
    g = style.gain

    def add(names, value):
        for n in names:
            fv[:, EXP[n]] += value

    # own speaking motion
    env, vidx = frame_envelope(syl, T)
    vowel = np.where(vidx >= 0, syl.vowel[np.maximum(vidx, 0)] if len(syl) else 0, 0)
    hum = (vidx >= 0) & (vowel == HUM_VOWEL)
    add(["jawOpen"], g * 0.45 * env * VOWEL_OPEN[vowel])
    add(["mouthLowerDownLeft", "mouthLowerDownRight"], g * 0.2 * env * VOWEL_OPEN[vowel])
    add(["mouthFunnel"], g * 0.25 * env * VOWEL_ROUND[vowel])
    add(["mouthPucker"], g * 0.3 * env * VOWEL_ROUND[vowel])
    add(["mouthClose"], 0.25 * env * hum)
    speaking = own.speaking(T)
    k = np.ones(12) / 12
    busy = np.convolve(np.pad(speaking.astype(float), (6, 5), mode="edge"), k, mode="valid")
    fv[:, RX:RZ + 1] += g * busy[:, None] * lowpass_noise(rng, T, 3, 1.5) * np.array([0.03, 0.06, 0.03])
    for f, amp in own.emphasis:
        b = bump(t, f, 8.0)
        add(["browInnerUp"], g * 0.3 * amp * b)
        add(["browOuterUpLeft", "browOuterUpRight"], g * 0.25 * amp * b)
        fv[:, RX] += 0.04 * amp * bump(t, f + 1, 6.0)
    for f, amp in own.brows:
        b = bump(t, f, 12.0)
        add(["browInnerUp"], g * amp * b)
        add(["browOuterUpLeft", "browOuterUpRight"], g * 0.8 * amp * b)
        add(["browDownLeft", "browDownRight"], -0.5 * g * amp * b)
    s_own = smile_curve(t, own.smiles)
    add(["mouthSmileLeft", "mouthSmileRight"], g * s_own)
    add(["cheekSquintLeft", "cheekSquintRight"], g * 0.6 * s_own)
    add(["eyeSquintLeft", "eyeSquintRight"], g * 0.3 * s_own)

    # reactions to the other person (its scripted events), `lag` frames late
    lag = style.lag
    c = float(coupling)
    nod_triggers = [(f, 0.9) for f in other.phrase_ends()] + [(f, 0.3) for f in other.emphasis[:, 0]]
    for f, p in nod_triggers:
        fire, cycles, freq, a = rng.random() < p, rng.integers(1, 4), rng.uniform(1.7, 2.3), rng.uniform(0.7, 1.3)
        start = f + lag
        if not fire or start >= T:
            continue
        u = (t - start) * freq / FPS  # cycles since the start
        on = (u >= 0) & (u < cycles)
        damp = 1.0 - 0.6 * busy[int(max(start, 0))]
        fv[:, RX] += c * style.nod_amp * a * damp * np.where(on, np.sin(2 * np.pi * u), 0.0)
    s_other = smile_curve(t, other.smiles, delay=lag)
    add(["mouthSmileLeft", "mouthSmileRight"], c * g * style.mimic * 0.8 * s_other)
    add(["cheekSquintLeft", "cheekSquintRight"], c * g * style.mimic * 0.5 * s_other)
    for f, amp in other.brows:
        add(["browInnerUp"], c * g * 0.3 * amp * bump(t, f + lag, 12.0))
    blinks = []
    for f in other.phrase_ends():
        if rng.random() < 0.5:
            blinks.append((f + lag + rng.integers(0, 3), rng.integers(4, 7), c))

    # spontaneous blinks every 2-6 s, noise
    b = rng.uniform(0, 3 * FPS)
    while b < T:
        blinks.append((b, rng.integers(4, 7), 1.0))
        b += rng.uniform(2 * FPS, 6 * FPS)
    for start, dur, weight in blinks:
        add(["eyeBlinkLeft", "eyeBlinkRight"], weight * rng.uniform(0.8, 0.95) * _pulse(t, start, float(dur)))
    fv[:, :N_EXP] += lowpass_noise(rng, T, N_EXP, 1.5) * (0.45 * style.noise * EXP_STD)
    fv[:, RX:RZ + 1] += lowpass_noise(rng, T, 3, 0.3) * np.array([0.06, 0.15, 0.05]) * style.noise
    fv[:, RX:RZ + 1] += lowpass_noise(rng, T, 3, 2.0) * np.array([0.008, 0.01, 0.006]) * style.noise
    fv[:, RZ + 1:] += lowpass_noise(rng, T, 3, 0.3) * np.array([0.03, 0.015, 0.08]) * style.noise
    fv[:, :N_EXP] = np.clip(fv[:, :N_EXP], 0.0, 1.0)
    fv[:, FV_DIM - 1] = np.maximum(fv[:, FV_DIM - 1], 0.6)  # camera distance stays positive
    return Behaviour(fv=fv.astype(np.float32), envelope=env, speaking=speaking)
