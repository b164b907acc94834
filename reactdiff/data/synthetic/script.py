"""The script of one dyadic clip: who speaks when, phrase ends, emphasis, smiles, brow raises, syllables.

A split has a small pool of *templates* (two roles each: role 0 talks more, role 1 less). A clip's script is a
template with jitter (events shifted by a few frames, amplitudes scaled), so clips that share a template and role
have similar speaker behaviour -- that is what the neighbour ("appropriate reaction") matrix marks. Syllables are
drawn per clip, inside the scripted phrases. Times are in frames (25 fps) except syllables, which are in seconds.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from ..frame_layout import FPS

N_VOWELS = 6  # vowel shapes (formant sets and lip rounding, see speech.VOWELS / behaviour)
HUM_VOWEL = N_VOWELS  # the closed-mouth "mm-hm" of a backchannel


@dataclasses.dataclass
class RoleScript:
    """What one role does on its own (its scripted/spontaneous behaviour; reactions are added later)."""

    phrases: np.ndarray  # (n, 2) int [start, end) frames of own speech; turns are runs of phrases
    backchannels: np.ndarray  # (n, 2) int [start, end) short "mm-hm"s while the other speaks
    emphasis: np.ndarray  # (n, 2) float: frame, amplitude (0..1)
    smiles: np.ndarray  # (n, 3) float: start frame, duration (frames), amplitude
    brows: np.ndarray  # (n, 2) float: frame, amplitude

    def speaking(self, frames: int) -> np.ndarray:
        """(frames,) bool: inside one of the own phrases or backchannels."""
        mask = np.zeros(frames, bool)
        for s, e in np.concatenate([self.phrases, self.backchannels]).astype(int):
            mask[max(s, 0):max(e, 0)] = True
        return mask

    def phrase_ends(self) -> np.ndarray:
        return self.phrases[:, 1].astype(float) if len(self.phrases) else np.zeros(0)


@dataclasses.dataclass
class Syllables:
    """One person's voice plan in seconds (sorted, non-overlapping)."""

    onset: np.ndarray
    dur: np.ndarray
    amp: np.ndarray
    emph: np.ndarray  # 0..1 emphasis strength (louder, higher pitch)
    vowel: np.ndarray  # int, 0..N_VOWELS (HUM_VOWEL for backchannels)
    burst: np.ndarray  # bool: an unvoiced consonant burst right before the onset
    phrase_t0: np.ndarray  # start/end of the enclosing phrase (pitch declination)
    phrase_t1: np.ndarray

    def __len__(self) -> int:
        return len(self.onset)


def _arr(rows, width) -> np.ndarray:
    return np.asarray(rows, float).reshape(-1, width)


def make_template(rng: np.random.Generator, frames: int) -> tuple[RoleScript, RoleScript]:
    """Turn-taking (2-8 s turns, short pauses, some overlaps) and the events of both roles."""
    phrases: list[list] = [[], []]
    backch: list[list] = [[], []]
    emph: list[list] = [[], []]
    smiles: list[list] = [[], []]
    brows: list[list] = [[], []]
    t = int(rng.integers(0, 15))
    role = int(rng.integers(0, 2))
    while t < frames - 12:
        lo, hi = (75, 200) if role == 0 else (50, 150)  # role 0 holds the floor longer
        end = min(t + int(rng.integers(lo, hi + 1)), frames)
        turn_phrases = []
        p = t
        while p < end:  # phrases of 1-3 s with 6-10 frame breaks
            pe = min(p + int(rng.integers(25, 76)), end)
            if end - pe < 15:
                pe = end
            if pe - p >= 8:
                turn_phrases.append((p, pe))
            p = pe + int(rng.integers(6, 11))
        phrases[role] += turn_phrases
        for s, e in turn_phrases:  # emphasis points, some with a brow raise
            for _ in range(int(rng.integers(1, 3))):
                f = float(rng.uniform(s + 3, max(s + 4, e - 3)))
                a = float(rng.uniform(0.6, 1.0))
                emph[role].append((f, a))
                if rng.random() < 0.5:
                    brows[role].append((f + rng.uniform(-2, 2), rng.uniform(0.3, 0.6)))
        if rng.random() < 0.65:  # the speaker smiles during its turn
            smiles[role].append((rng.uniform(t, max(t + 1, end - 20)), rng.uniform(25, 75), rng.uniform(0.3, 0.7)))
        if rng.random() < 0.1:  # a rare spontaneous smile of the listener
            smiles[1 - role].append((rng.uniform(t, max(t + 1, end - 20)), rng.uniform(20, 50), rng.uniform(0.2, 0.4)))
        for s, e in turn_phrases[:-1]:  # backchannels of the listener in the phrase breaks
            if rng.random() < 0.35:
                b0 = e + int(rng.integers(1, 4))
                backch[1 - role].append((b0, b0 + int(rng.integers(6, 12))))
        gap = int(rng.integers(-12, -2)) if rng.random() < 0.15 else int(rng.integers(4, 26))
        t = end + gap
        if rng.random() < 0.85:
            role = 1 - role
        else:
            t = max(t, end + 8)
    return tuple(
        RoleScript(_arr(phrases[r], 2), _arr(backch[r], 2), _arr(emph[r], 2), _arr(smiles[r], 3), _arr(brows[r], 2))
        for r in (0, 1)
    )


def jitter(script: RoleScript, rng: np.random.Generator, frames: int, shift: int = 3) -> RoleScript:
    """The same script with every event shifted by a few frames and every amplitude scaled by ~15%."""

    def move_spans(spans: np.ndarray) -> np.ndarray:
        out = spans.copy()
        if len(out):
            # +-2 per span, +-1 per end: the breaks (>= 6 frames) stay open
            d = rng.integers(-shift + 1, shift, size=(len(out), 1))
            out = out + d + rng.integers(-1, 2, size=out.shape) * np.array([[1, 0]])
            out = np.clip(out, 0, frames)
            out[:, 1] = np.maximum(out[:, 1], out[:, 0] + 1)
            out = out[out[:, 0] < frames]
        return out

    def move_events(ev: np.ndarray) -> np.ndarray:
        out = ev.copy()
        if len(out):
            out[:, 0] += rng.integers(-shift, shift + 1, size=len(out))
            out[:, -1] *= rng.uniform(0.85, 1.15, size=len(out))
        return out

    return RoleScript(
        phrases=move_spans(script.phrases),
        backchannels=move_spans(script.backchannels),
        emphasis=move_events(script.emphasis),
        smiles=move_events(script.smiles),
        brows=move_events(script.brows),
    )


def plan_syllables(script: RoleScript, rng: np.random.Generator) -> Syllables:
    """~4 syllables/s inside the phrases (emphasised near the scripted emphasis), one hum per backchannel."""
    rows = []  # onset, dur, amp, emph, vowel, burst, t0, t1
    for s, e in script.phrases:
        t0, t1 = s / FPS, e / FPS
        t = t0 + rng.uniform(0.0, 0.05)
        while t < t1 - 0.08:
            dur = min(rng.uniform(0.12, 0.28), t1 - t)
            rows.append([t, dur, rng.uniform(0.6, 1.0), 0.0, rng.integers(0, N_VOWELS), rng.random() < 0.5, t0, t1])
            t += dur + rng.uniform(0.02, 0.09)
    for s, e in script.backchannels:
        rows.append([s / FPS, (e - s) / FPS, 0.45, 0.0, HUM_VOWEL, False, s / FPS, e / FPS])
    a = np.asarray(rows, float).reshape(-1, 8)
    a = a[np.argsort(a[:, 0], kind="stable")]
    if len(a) > 1:  # overlaps (a backchannel inside a jittered phrase): shorten the earlier syllable
        nxt = np.append(a[1:, 0], np.inf)
        a[:, 1] = np.maximum(np.minimum(a[:, 1], nxt - a[:, 0] - 0.01), 0.0)
        a = a[a[:, 1] > 0.03]
    if len(a):
        centre = a[:, 0] + a[:, 1] / 2
        for f, amp in script.emphasis:
            i = int(np.argmin(np.abs(centre - f / FPS)))
            if abs(centre[i] - f / FPS) < 0.3:
                a[i, 3] = max(a[i, 3], amp)
        a[:, 2] *= 1.0 + 0.8 * a[:, 3]
    return Syllables(
        onset=a[:, 0], dur=a[:, 1], amp=a[:, 2], emph=a[:, 3], vowel=a[:, 4].astype(int), burst=a[:, 5] > 0.5,
        phrase_t0=a[:, 6], phrase_t1=a[:, 7],
    )


def syllable_envelope(syl: Syllables, times: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Loudness (amp * sqrt(sin(pi u)) inside a syllable, else 0) at `times` (s), and the syllable index (or -1)."""
    idx = np.searchsorted(syl.onset, times, side="right") - 1
    env = np.zeros(len(times))
    cand = np.nonzero(idx >= 0)[0]
    i = idx[cand]
    u = (times[cand] - syl.onset[i]) / np.maximum(syl.dur[i], 1e-6)
    out = u >= 1.0
    idx[cand[out]] = -1
    keep = ~out
    env[cand[keep]] = syl.amp[i[keep]] * np.sqrt(np.sin(np.pi * u[keep]))
    return env, idx


def frame_envelope(syl: Syllables, frames: int, sub: int = 4) -> tuple[np.ndarray, np.ndarray]:
    """The syllable envelope averaged over each video frame, and the syllable index at each frame centre."""
    t = (np.arange(frames * sub) + 0.5) / (FPS * sub)
    env, _ = syllable_envelope(syl, t)
    _, idx = syllable_envelope(syl, (np.arange(frames) + 0.5) / FPS)
    return env.reshape(frames, sub).mean(1), idx
