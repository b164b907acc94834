"""The MARS dataset layout (REACT 2025 / 2026) on disk: clip discovery, speaker/listener pairing, the protocols'
directions and the session-level appropriate reaction sets.

    root/{split}/{modality}/{speaker,listener}/session<N>/<stem>.{npy,wav,mp4}
        coefficients/       (T, 58) FaceVerse 3DMM, as in REACT 2024
        facial-attributes/  (T, 25): 15 AU occurrences, valence, arousal, 8 expression probabilities
        audio/              wav
        audio-features/     (T, 768) wav2vec2 features, one row per video frame
        video-face-crop/, video-raw/   mp4 at 30 fps
    root/{split}/eeg_processed/{role}/session<N>/<stem>.csv   REACT 2026 (listener EEG, about one row per second)
    root/{split}/personality/{listener,speaker}.csv           REACT 2026 (Big-Five labels per clip)

A speaker file and its listener share the stem within a session. There is no neighbour matrix: the reactions
that count for a speaker clip are its paired listener plus `EXTRA_APPROPRIATE` others of the same session and
role, drawn with a seed (without replacement when the session has enough, else with replacement, as the
challenge's evaluation does); `appropriate_sets` draws them from (seed, session, stem) alone, so the sets do not
depend on the order clips are listed or read in, and they are recorded with the shards.
"""
from __future__ import annotations

import dataclasses
import re
import zlib
from pathlib import Path

import numpy as np

ROLES = ("speaker", "listener")
COEFFS_DIR, ATTRS_DIR, AUDIO_DIR, FEATS_DIR = "coefficients", "facial-attributes", "audio", "audio-features"
FACE_VIDEO_DIR, RAW_VIDEO_DIR, EEG_DIR, PERSONALITY_DIR = "video-face-crop", "video-raw", "eeg_processed", "personality"
EXTENSIONS = {COEFFS_DIR: ".npy", ATTRS_DIR: ".npy", AUDIO_DIR: ".wav", FEATS_DIR: ".npy", FACE_VIDEO_DIR: ".mp4",
              RAW_VIDEO_DIR: ".mp4", EEG_DIR: ".csv"}
FPS = 30  # the challenge loader's frame rate for MARS (REACT 2024 is 25)
EXTRA_APPROPRIATE = 9  # others of the session besides the paired reaction (10 ground truths per speaker clip)
APPROPRIATE_SEED = 1234  # the challenge evaluation's seed
PROTOCOLS = {"react2025": ("speaker", "listener"), "react2026": ("speaker",)}  # roles that speak as inputs
_SESSION = re.compile(r"session(\d+)")


class MarsLayoutError(ValueError):
    """A folder that is not a MARS dataset split; the message names the path and what was expected."""


@dataclasses.dataclass(frozen=True, order=True)
class MarsClip:
    """A dyadic clip: one stem of one session, recorded for both roles."""

    session: str  # "session3"
    stem: str  # "Camera-2024-06-21-103121-103102"

    @property
    def key(self) -> str:
        return f"{self.session}/{self.stem}"

    def path(self, split_dir: Path, modality: str, role: str) -> Path:
        if role not in ROLES:
            raise ValueError(f"role {role!r}: expected one of {ROLES}")
        return Path(split_dir) / modality / role / self.session / f"{self.stem}{EXTENSIONS[modality]}"


def other(role: str) -> str:
    return ROLES[1 - ROLES.index(role)]


def is_mars(root: str | Path, split: str) -> bool:
    """Whether `root/split` looks like MARS (coefficients/{speaker,listener}/) rather than REACT 2024."""
    coeffs = Path(root) / split / COEFFS_DIR
    return all((coeffs / role).is_dir() for role in ROLES)


def _session_order(name: str) -> tuple[int, str]:
    m = _SESSION.fullmatch(name)
    return (int(m.group(1)) if m else 1 << 30, name)


def discover(root: str | Path, split: str) -> tuple[list[MarsClip], list[dict]]:
    """The clips of a split whose coefficients exist for both roles, in session then stem order; and the files with
    no partner as rejects ({"clip", "reason"}), so that a sharding run can list them."""
    split_dir = Path(root) / split
    if not is_mars(root, split):
        raise MarsLayoutError(f"{split_dir} is not a MARS split: expected {split_dir / COEFFS_DIR}/speaker/ and "
                              f"{split_dir / COEFFS_DIR}/listener/ (root/{{train,val,test}}/coefficients/{{speaker,"
                              f"listener}}/session<N>/<stem>.npy)")
    found: dict[str, set[tuple[str, str]]] = {}
    for role in ROLES:
        base = split_dir / COEFFS_DIR / role
        found[role] = {(p.parent.name, p.stem) for p in base.glob(f"*/*{EXTENSIONS[COEFFS_DIR]}")}
    both = found["speaker"] & found["listener"]
    order = lambda c: (_session_order(c[0]), c[1])  # noqa: E731
    clips = [MarsClip(s, stem) for s, stem in sorted(both, key=order)]
    rejects = [{"clip": f"{s}/{stem}", "reason": f"{role} coefficients {s}/{stem}.npy have no {other(role)} "
                                                 f"partner (a speaker and its listener share the stem)"}
               for role in ROLES for s, stem in sorted(found[role] - both, key=order)]
    if not clips:
        raise MarsLayoutError(f"{split_dir}: no clip has coefficients for both roles (found "
                              f"{len(found['speaker'])} speaker and {len(found['listener'])} listener files)")
    return clips, rejects


def inputs(clips: list[MarsClip], protocol: str) -> list[tuple[MarsClip, str]]:
    """(clip, role that speaks) for every input of a protocol: react2025 uses both directions, react2026 the
    speaker -> listener direction only; speaker-role inputs first, each in clip order."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol {protocol!r}: expected one of {', '.join(PROTOCOLS)}")
    return [(c, role) for role in PROTOCOLS[protocol] for c in clips]


def appropriate_sets(clips: list[MarsClip], seed: int = APPROPRIATE_SEED, extra: int = EXTRA_APPROPRIATE,
                     ) -> dict[tuple[str, str], list[str]]:
    """(clip key, speaking role) -> the stems whose `other(role)` recordings are appropriate reactions: the paired
    stem first, then `extra` others of the same session (without replacement when the session has that many, else
    with replacement), drawn from (seed, session, stem, role) alone."""
    by_session: dict[str, list[str]] = {}
    for c in clips:
        by_session.setdefault(c.session, []).append(c.stem)
    out = {}
    for c in clips:
        others = sorted(s for s in by_session[c.session] if s != c.stem)  # the draw must not see list order
        for role in ROLES:
            rng = np.random.default_rng([seed, zlib.crc32(f"{c.key}/{role}".encode())])
            if not others:
                picks = []
            elif len(others) >= extra:
                picks = [others[i] for i in rng.choice(len(others), size=extra, replace=False)]
            else:
                picks = [others[i] for i in rng.integers(0, len(others), size=extra)]
            out[(c.key, role)] = [c.stem, *picks]
    return out
