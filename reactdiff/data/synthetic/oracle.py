"""The synthetic dataset's own generator as a reaction model: what a perfect model of its listeners would produce.

For every speaker row of a split, K fresh listeners drawn from the generator's conditional distribution given that
speaker's recorded clip: the speaker's script stays (what the listener reacts to); the listener's own script
jitter, syllables and moment-to-moment behaviour are drawn anew, and so is the person (style: identity offsets,
expressiveness, reaction lag) unless `same_person`. Scored like a model, it shows which quality targets any model
that samples the data's distribution can reach at all (DTW-based FRDist, for one, rewards a still mean face over
every realistic listener whose slow head motion is not the true one's).
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from .behaviour import behave, draw_style
from .dataset import plan_sessions
from .script import jitter, plan_syllables
from .seeding import rng_for
from .writer import ClipJob, plan_clip


def _clip_jobs(root: Path, meta: dict, split: str) -> list[ClipJob]:
    """The split's clips in the order generate_dataset wrote them (the pair list's rows)."""
    a = meta["args"]
    return [ClipJob(str(root), s, site, session, persons, str(c), a["frames"], a["seed"], a["templates"])
            for s, site, session, persons in plan_sessions(a["seed"], a["sessions"]) if s == split
            for c in range(1, a["clips_per_session"] + 1)]


def _listener(job: ClipJob, direction: int, draw: np.random.Generator | None, same_person: bool) -> np.ndarray:
    """(T, 58) the listener of one direction of a clip (0: the pair list's first person speaks): as recorded (draw
    None: the dataset's own random streams) or drawn anew from `draw`."""
    T, plan = job.frames, plan_clip(job)
    speaker = plan.first if direction == 0 else 1 - plan.first
    listener, person = 1 - speaker, job.persons[1 - speaker]
    heard = plan.scripts[speaker]
    style = draw_style(rng_for(job.seed, "person", job.person_key(person)))
    if draw is None:
        own = plan.scripts[listener]
        syl = plan_syllables(own, rng_for(job.seed, "syllables", job.name, person))
        return behave(own, heard, syl, style, T, rng_for(job.seed, "behaviour", job.name, person)).fv
    own = jitter(plan.tpl[plan.roles[listener]], draw, T)
    syl = plan_syllables(own, draw)
    return behave(own, heard, syl, style if same_person else draw_style(draw), T, draw).fv


def _rows(root: Path, split: str) -> list[ClipJob]:
    meta = json.loads((Path(root) / "synthetic.json").read_text())
    jobs = _clip_jobs(Path(root), meta, split)
    if len(jobs) != len(meta["splits"][split]["clips"]):
        raise ValueError(f"{root}/synthetic.json: {len(meta['splits'][split]['clips'])} {split} clips listed, but "
                         f"its arguments plan {len(jobs)}: not this generator's dataset")
    return jobs


def recorded_listeners(root: str | Path, split: str, frames: int) -> np.ndarray:
    """(2L, frames, 58): the split's listeners as the dataset recorded them, in neighbour-matrix row order."""
    jobs = _rows(Path(root), split)
    return np.stack([_listener(job, d, None, False)[:frames] for d in (0, 1) for job in jobs]).astype(np.float32)


def oracle_reactions(root: str | Path, split: str, k: int, frames: int, seed: int = 0,
                     same_person: bool = False) -> np.ndarray:
    """(2L, K, frames, 58) float32 in the mirrored row order of the split's neighbour matrix (rows 0..L-1: the
    pair list's first person speaks; L..2L-1: the other one)."""
    jobs = _rows(Path(root), split)
    return np.stack([np.stack([_listener(job, d, rng_for(seed, "oracle", job.name, str(d), str(j)),
                                         same_person)[:frames] for j in range(k)])
                     for d in (0, 1) for job in jobs]).astype(np.float32)


def oracle_name(same_person: bool) -> str:
    return "same person (the generator)" if same_person else "new person (the generator)"


def _write_folder(root: str | Path, out: str | Path, settings: dict, same_person: bool, draw) -> Path:
    """A reactions folder (reactions/, manifest.json) of the rows that `draw()` returns ({row: (K, T, 58)}), unless
    one is complete there with the same settings and dataset: the draws are seeded, so it holds the same reactions."""
    from ...sampling.writer import load_manifest, write_manifest, write_reaction

    out = Path(out)
    dataset = hashlib.sha256((Path(root) / "synthetic.json").read_bytes()).hexdigest()[:16]
    who = "the recorded listener's person" if same_person else "a new person each"
    settings = {**settings, "outputs": "raw (de-normalised) FaceVerse 3DMM",
                "dataset": f"synthetic.json sha256:{dataset}",
                "weights": f"the synthetic generator's own listeners, {who}"}
    try:
        done = load_manifest(out)
        if done["complete"] and done["settings"] == settings:
            return out
    except FileNotFoundError:
        pass
    drawn = draw()
    for row, face in drawn.items():
        write_reaction(out, row, face)
    write_manifest(out, [{"row": row} for row in drawn], settings, complete=True)
    return out


def write_oracle_reactions(root: str | Path, split: str, out: str | Path, k: int, frames: int,
                           same_person: bool = False) -> Path:
    """The generator's fresh listeners for the split's speakers as a reactions folder (reactions/, manifest.json)
    that `reactdiff evaluate --reference` scores next to a model: what a perfect model of these listeners gets."""
    settings = {"frames": frames, "k": k, "split": split, "rows": 2 * len(_rows(Path(root), split))}
    return _write_folder(root, out, settings, same_person, lambda: dict(enumerate(
        oracle_reactions(root, split, k=k, frames=frames, same_person=same_person))))


def write_mars_oracle_reactions(root: str | Path, split: str, out: str | Path, k: int,
                                rows: dict[int, tuple[str, str, str]], same_person: bool = False) -> Path:
    """The same folder on a synthetic MARS-layout dataset, whole clips: `rows` maps each scored row to its
    (session, stem, direction) as mars_oracle_reactions keys them."""
    from .. import mars_layout as M

    settings = {"frames": 0, "fps": M.FPS, "k": k, "split": split, "rows": len(rows)}

    def draw():
        drawn = mars_oracle_reactions(root, split, k=k, same_person=same_person)
        return {row: drawn[key] for row, key in rows.items()}
    return _write_folder(root, out, settings, same_person, draw)


def mars_oracle_reactions(root: str | Path, split: str, k: int, seed: int = 0, same_person: bool = False,
                          recorded: bool = False) -> dict[tuple[str, str, str], np.ndarray]:
    """The same oracle on a synthetic MARS-layout dataset (synthetic/mars.py): (session, stem, direction) -> (K,
    frames, 58) float32 at 30 fps, direction "speaker->listener" (the speaker-role recording speaks) or
    "listener->speaker". Drawn at the generator's 25 fps and resampled as the dataset's own tracks were;
    `recorded`: the recorded listener instead (K = 1), from the dataset's own random streams."""
    from .. import frame_layout as fv
    from .. import mars_layout as M
    from .mars import plan_mars, resample

    info = Path(root) / "synthetic.json"
    meta = json.loads(info.read_text()) if info.is_file() else {"layout": None}
    if meta.get("layout") != "mars":
        raise ValueError(f"{root}/synthetic.json: not a synthetic MARS dataset (layout {meta.get('layout')!r})")
    a = meta["args"]
    out = {}
    # datasets written before the generator took templates acted out one script per split
    for job in plan_mars(str(root), a["seed"], a["sessions"], a["clips_per_session"], a["min_frames"],
                         a["max_frames"], a.get("templates", 1)):
        if job.split != split:
            continue
        base = job.simulation()
        for d, direction in enumerate(("speaker->listener", "listener->speaker")):
            out[(job.session, job.stem, direction)] = np.stack([
                resample(_listener(base, d, None if recorded else rng_for(seed, "oracle", base.name, str(d), str(j)),
                                   same_person), job.frames, fv.FPS, M.FPS)
                for j in range(1 if recorded else k)]).astype(np.float32)
    return out
