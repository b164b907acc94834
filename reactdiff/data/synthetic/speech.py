"""Speech-like audio, vectorised numpy: voiced syllables, consonant bursts, pauses, a room mix, 16-bit WAV bytes.

Voiced syllables: a harmonic source (person f0, declination over the phrase, a pitch peak on emphasis, integrated
phase) with 16 harmonics weighted by 3 formant resonances of the syllable's vowel. Unvoiced bursts: band-limited
noise before some syllables. The room mix adds the other person at -20 dB and low background noise, so voice
activity is recoverable from frame energy.
"""
from __future__ import annotations

import io

import numpy as np
import soundfile as sf

from ..frame_layout import FPS, SOURCE_AUDIO_RATE
from .script import Syllables, syllable_envelope

# F1, F2, F3 (Hz) per vowel (script.N_VOWELS), then the closed-mouth hum of a backchannel.
VOWELS = np.array([
    [730, 1090, 2440], [530, 1840, 2480], [300, 870, 2240], [660, 1720, 2410], [570, 840, 2410], [390, 1990, 2550],
    [250, 1000, 2300],
], float)
FORMANT_AMP = np.array([1.0, 0.6, 0.3])
FORMANT_BW = np.array([90.0, 120.0, 180.0])
N_HARMONICS = 16
VOICE_LEVEL = 0.12  # peak-ish amplitude of a normal syllable
LEAK_DB = -20.0
NOISE_LEVEL = 1e-3


def n_samples(frames: int, rate: int = SOURCE_AUDIO_RATE) -> int:
    """Samples of a clip of `frames` video frames: round(frames / 25 * rate)."""
    return int(round(frames / FPS * rate))


def _bandpass(x: np.ndarray, lo: float, hi: float, rate: int) -> np.ndarray:
    f = np.fft.rfftfreq(len(x), 1.0 / rate)
    return np.fft.irfft(np.fft.rfft(x) * ((f >= lo) & (f <= hi)), n=len(x))


def synth_voice(syl: Syllables, f0: float, samples: int, rng: np.random.Generator,
                rate: int = SOURCE_AUDIO_RATE) -> np.ndarray:
    """(samples,) float32 dry voice of one person following its syllable plan."""
    out = np.zeros(samples, np.float32)
    if len(syl) == 0:
        return out
    t = np.arange(samples) / rate
    env, idx = syllable_envelope(syl, t)
    nz = np.nonzero(idx >= 0)[0]
    if len(nz):
        s = idx[nz]
        ts = t[nz]
        # pitch: declination over the phrase (+8% .. -8%), a peak on emphasised syllables, per-syllable wobble
        wobble = 1.0 + 0.03 * rng.standard_normal(len(syl))
        span = np.maximum(syl.phrase_t1 - syl.phrase_t0, 1e-3)
        decl = 0.08 - 0.16 * np.clip((ts - syl.phrase_t0[s]) / span[s], 0, 1)
        u = np.clip((ts - syl.onset[s]) / np.maximum(syl.dur[s], 1e-6), 0, 1)
        f = f0 * wobble[s] * (1 + decl) * (1 + 0.25 * syl.emph[s] * np.sin(np.pi * u))
        phase = 2 * np.pi * np.cumsum(f) / rate
        # harmonic weights per syllable from the vowel's formants at the syllable's mean pitch
        fmt = VOWELS[syl.vowel] * rng.uniform(0.95, 1.05, size=(len(syl), 3))
        centre = syl.onset + syl.dur / 2
        f_mid = f0 * wobble * (1 + 0.08 - 0.16 * np.clip((centre - syl.phrase_t0) / span, 0, 1)) * (1 + 0.25 * syl.emph)
        k = np.arange(1, N_HARMONICS + 1)
        fk = f_mid[:, None] * k[None, :]  # (n_syl, K)
        g = (FORMANT_AMP[None, None] / (1 + ((fk[:, :, None] - fmt[:, None, :]) / FORMANT_BW) ** 2)).sum(-1)
        g = (g + 0.05) / np.sqrt(k)[None, :] * (fk < 0.45 * rate)
        g /= np.sqrt((g ** 2).sum(1, keepdims=True))
        g = g.astype(np.float32)
        # sum_k g_k sin(k phase) by the Chebyshev recurrence sin((k+1)x) = 2 cos(x) sin(kx) - sin((k-1)x)
        s1 = np.sin(phase).astype(np.float32)
        c2 = (2 * np.cos(phase)).astype(np.float32)
        prev, cur = np.zeros_like(s1), s1
        acc = np.zeros_like(s1)
        for j in range(N_HARMONICS):
            acc += g[s, j] * cur
            prev, cur = cur, c2 * cur - prev
        out[nz] = VOICE_LEVEL * env[nz].astype(np.float32) * acc
    # unvoiced consonant bursts (30-70 ms of 2.5-7 kHz noise) right before some syllables
    bursts = np.nonzero(syl.burst)[0]
    if len(bursts):
        lens = np.round(rng.uniform(0.03, 0.07, size=len(bursts)) * rate).astype(int)
        starts = np.round(syl.onset[bursts] * rate).astype(int) - lens
        noise = _bandpass(rng.standard_normal(fft_size(int(lens.sum()))), 2500.0, 7000.0, rate).astype(np.float32)
        pos = 0
        for b, st, n in zip(bursts, starts, lens):
            w = np.sin(np.pi * (np.arange(n) + 0.5) / n).astype(np.float32) ** 2
            lo, hi = max(st, 0), min(st + n, samples)
            if hi > lo:
                out[lo:hi] += (0.5 * VOICE_LEVEL * syl.amp[b] * w * noise[pos:pos + n])[lo - st:hi - st]
            pos += n
    return out


def fft_size(n: int) -> int:
    """The smallest 2^a 3^b 5^c >= n (clip lengths like 751 * 1764 have a large prime factor: slow FFTs)."""
    best = 1 << max(int(n) - 1, 0).bit_length()
    p5 = 1
    while p5 < best:
        p35 = p5
        while p35 < best:
            m = p35
            while m < n:
                m *= 2
            best = min(best, m)
            p35 *= 3
        p5 *= 5
    return best


def _background(rng: np.random.Generator, samples: int, rate: int) -> np.ndarray:
    """Low pinkish room noise (1/sqrt(f) spectrum above 50 Hz), RMS ~NOISE_LEVEL."""
    n = fft_size(samples)
    f = np.fft.rfftfreq(n, 1.0 / rate)
    shape = 1.0 / np.sqrt(np.maximum(f, 50.0))
    x = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * shape, n=n)[:samples]
    return (NOISE_LEVEL * x / max(float(np.sqrt(np.mean(x ** 2))), 1e-12)).astype(np.float32)


def room_mix(own: np.ndarray, other: np.ndarray, channels: int, rng: np.random.Generator,
             rate: int = SOURCE_AUDIO_RATE) -> np.ndarray:
    """(samples, channels) float32: own voice, the other leaking in at -20 dB, background noise per channel."""
    leak = np.float32(10 ** (LEAK_DB / 20))
    cols = []
    for ch in range(channels):
        own_gain, leak_gain = (1.0, 1.0) if ch == 0 else (0.85, 1.3)  # a second, slightly different mic
        cols.append(own_gain * own + leak_gain * leak * other + _background(rng, len(own), rate))
    return np.stack(cols, 1)


def wav_bytes(audio: np.ndarray, rate: int = SOURCE_AUDIO_RATE) -> bytes:
    """16-bit PCM WAV (mono for (N,) or (N,1), multi-channel for (N,C))."""
    pcm = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    if pcm.ndim == 2 and pcm.shape[1] == 1:
        pcm = pcm[:, 0]
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, subtype="PCM_16", format="WAV")
    return buf.getvalue()
