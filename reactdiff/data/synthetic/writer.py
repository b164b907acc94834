"""Generate and write one dyadic clip (both persons, every modality) into the REACT layout; the split-level tables.

A job is a plain picklable dataclass, so `run_clip` can run in a worker process; everything it draws comes from
`rng_for(seed, <purpose>, <names>)`, so its bytes do not depend on which process runs it or in which order.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from ...atomic import write_bytes
from ..frame_layout import FV_DIM
from ..layout import ClipPath, write_pair_list
from ..normalise import frame_moments
from ..sample_format import encode_npy
from .behaviour import behave, draw_style
from .emotion import emotion_csv, emotion_from_fv
from .script import jitter, make_template, plan_syllables
from .seeding import rng_for
from .speech import n_samples, room_mix, synth_voice, wav_bytes
from .video import draw_frames, write_mp4, write_png_folder

VIDEO_KINDS = ("png", "mp4", "none")


@dataclasses.dataclass(frozen=True)
class ClipJob:
    root: str
    split: str
    site: str
    session: str
    persons: tuple[str, str]
    clip: str
    frames: int
    seed: int
    templates: int
    video: str = "png"
    video_size: int = 64

    @property
    def name(self) -> str:
        return f"{self.split}/{self.site}/{self.session}/{self.clip}"

    def person_key(self, person: str) -> str:
        """Names a person across the clips of its session (its style is the same in every clip)."""
        return f"{self.split}/{self.site}/{self.session}/{person}"


def template_scripts(seed: int, split: str, template: int, frames: int):
    """The (role 0, role 1) scripts of template `template` of `split`."""
    return make_template(rng_for(seed, "template", split, str(template)), frames)


@dataclasses.dataclass
class Person:
    """One person's generated recording of a clip, at 25 fps."""

    fv: np.ndarray  # (T, 58)
    audio: np.ndarray  # (samples, channels) at SOURCE_AUDIO_RATE: own voice, the other's leaking in, room noise
    emotion: np.ndarray  # (T, 25)
    style: object


@dataclasses.dataclass
class ClipPlan:
    """What a clip's persons act out: its template, who plays which role, who the pair list names first, scripts."""

    template: int
    roles: tuple[int, int]  # template role of persons[0], persons[1]
    first: int  # which person the pair list names first (the "speaker" column)
    tpl: tuple  # the template's (role 0, role 1) scripts
    scripts: list  # each person's own (jittered) script, in job.persons order


def plan_clip(job: ClipJob) -> ClipPlan:
    pick = rng_for(job.seed, "clip", job.name)
    template = int(pick.integers(job.templates))
    role0 = int(pick.integers(2))  # persons[1] plays the other role
    first = int(pick.integers(2))
    roles = (role0, 1 - role0)
    tpl = template_scripts(job.seed, job.split, template, job.frames)
    scripts = [jitter(tpl[roles[i]], rng_for(job.seed, "jitter", job.name, p), job.frames)
               for i, p in enumerate(job.persons)]
    return ClipPlan(template, roles, first, tpl, scripts)


def simulate_clip(job: ClipJob) -> tuple[list[Person], dict]:
    """Both persons of one dyadic clip (in job.persons order) and the clip's facts (template, roles, lags)."""
    T, name = job.frames, job.name
    plan = plan_clip(job)
    template, roles, first, scripts = plan.template, plan.roles, plan.first, plan.scripts
    syls = [plan_syllables(scripts[i], rng_for(job.seed, "syllables", name, p)) for i, p in enumerate(job.persons)]
    styles = [draw_style(rng_for(job.seed, "person", job.person_key(p))) for p in job.persons]
    samples = n_samples(T)
    voices = [synth_voice(syls[i], styles[i].f0, samples, rng_for(job.seed, "voice", name, p))
              for i, p in enumerate(job.persons)]
    channels = 2 if job.site == "NoXI" else 1
    people = []
    for i, person in enumerate(job.persons):
        o = 1 - i
        beh = behave(scripts[i], scripts[o], syls[i], styles[i], T, rng_for(job.seed, "behaviour", name, person))
        audio = room_mix(voices[i], voices[o], channels, rng_for(job.seed, "room", name, person))
        people.append(Person(beh.fv, audio, emotion_from_fv(beh.fv, beh.envelope), styles[i]))
    facts = {"split": job.split, "site": job.site, "session": job.session, "clip": job.clip,
             "persons": list(job.persons), "template": template,
             "roles": {p: roles[i] for i, p in enumerate(job.persons)}, "first": first,
             "lags": {p: styles[i].lag for i, p in enumerate(job.persons)}}
    return people, facts


def run_clip(job: ClipJob) -> dict:
    """Generate both persons of one dyadic clip, write their 3DMM, audio, emotion and video; return its metadata."""
    T = job.frames
    people, facts = simulate_clip(job)
    split_dir = Path(job.root) / job.split
    written, stats = 0, []
    for person, rec in zip(job.persons, people):
        cp = ClipPath(job.site, job.session, person, job.clip)
        blobs = {
            cp.fv(split_dir): encode_npy(rec.fv.reshape(T, 1, FV_DIM)),
            cp.audio(split_dir): wav_bytes(rec.audio),
            cp.emotion(split_dir): emotion_csv(rec.emotion),
        }
        for path, data in blobs.items():
            write_bytes(path, data)
            written += len(data)
        if job.video != "none":
            frames = draw_frames(rec.fv, rec.style, job.video_size)
            if job.video == "png":
                folder = cp.video_frames(split_dir)
                write_png_folder(folder, frames)
                written += sum(f.stat().st_size for f in folder.iterdir())
            else:
                write_mp4(cp.video_mp4(split_dir), frames)
                written += cp.video_mp4(split_dir).stat().st_size
        stats.append(frame_moments(rec.fv))
    return {**facts, "stats": stats, "bytes": written}


def pair_paths(result: dict) -> tuple[str, str]:
    """(speaker path, listener path) of a clip's pair-list row, e.g. `NoXI/010_.../Expert_video/1`."""
    persons = result["persons"]
    a, b = persons[result["first"]], persons[1 - result["first"]]
    rel = lambda p: ClipPath(result["site"], result["session"], p, result["clip"]).rel  # noqa: E731
    return rel(a), rel(b)


def neighbour_matrix(results: list[dict]) -> np.ndarray:
    """(2L, 2L) uint8 in the mirrored order: 1 where both speakers play the same role of the same template."""
    keys = []
    for direction in (0, 1):  # rows 0..L-1: the first-listed person speaks; L..2L-1: the other one
        for r in results:
            persons = r["persons"]
            speaker = persons[r["first"]] if direction == 0 else persons[1 - r["first"]]
            keys.append((r["template"], r["roles"][speaker]))
    k = np.asarray(keys, np.int64).reshape(-1, 2)
    return (k[:, None, :] == k[None, :, :]).all(-1).astype(np.uint8)


def write_split_tables(root: Path, split: str, results: list[dict]) -> int:
    """`root/{split}.csv` and `root/neighbour_emotion_{split}.npy`; returns the bytes written."""
    root = Path(root)
    write_pair_list(root / f"{split}.csv", [pair_paths(r) for r in results])
    blob = encode_npy(neighbour_matrix(results))
    write_bytes(root / f"neighbour_emotion_{split}.npy", blob)
    return (root / f"{split}.csv").stat().st_size + len(blob)
