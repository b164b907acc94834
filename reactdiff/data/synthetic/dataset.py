"""Plan the sessions of a synthetic REACT dataset, run the clip jobs (in parallel), write the split tables."""
from __future__ import annotations

import concurrent.futures as cf
import datetime
import multiprocessing
import shutil
import time
from pathlib import Path

from tqdm import tqdm

from ...atomic import write_bytes, write_json
from ..frame_layout import CLIP_FRAMES
from ..layout import SPLITS
from ..sample_format import encode_npy
from .seeding import rng_for
from ..normalise import merge_moments
from .writer import VIDEO_KINDS, ClipJob, pair_paths, run_clip, write_split_tables

GENERATOR_VERSION = 1
CITIES = ("Paris", "Nottingham", "Augsburg")
NOXI_PERSONS = ("Expert_video", "Novice_video")
DEFAULT_SESSIONS = {"train": 3, "val": 1, "test": 2}
TOP_LEVEL_FILES = tuple(f"{s}.csv" for s in SPLITS) + tuple(f"neighbour_emotion_{s}.npy" for s in SPLITS) + (
    "mean_face.npy", "std_face.npy", "synthetic.json")


def plan_sessions(seed: int, sessions: dict[str, int]) -> list[tuple[str, str, str, tuple[str, str]]]:
    """(split, site, session, persons) for every session; NoXI and RECOLA alternate, names unique across splits."""
    rng = rng_for(seed, "sessions")
    out, g, noxi, recola = [], 0, 0, 0
    day = datetime.date(2016, 3, 1)
    for split in SPLITS:
        for _ in range(int(sessions.get(split, 0))):
            if g % 2 == 0:
                number = 3 * noxi + 1 + int(rng.integers(0, 3))
                day += datetime.timedelta(days=int(rng.integers(1, 6)))
                name = f"{number:03d}_{day.isoformat()}_{CITIES[noxi % len(CITIES)]}"
                out.append((split, "NoXI", name, NOXI_PERSONS))
                noxi += 1
            else:
                recola += 1
                out.append((split, "RECOLA", f"group-{recola}", (f"P{2 * recola + 23}", f"P{2 * recola + 24}")))
            g += 1
    return out


def _clear(root: Path, force: bool) -> None:
    if root.exists() and not root.is_dir():
        raise NotADirectoryError(f"output path {root} exists and is not a folder")
    if root.is_dir() and any(root.iterdir()):
        if not force:
            raise FileExistsError(f"output folder {root} is not empty; pass --force (force=True) to replace the "
                                  "synthetic dataset there")
        for split in SPLITS:
            if (root / split).is_dir():
                shutil.rmtree(root / split)
        for name in TOP_LEVEL_FILES:
            (root / name).unlink(missing_ok=True)
    root.mkdir(parents=True, exist_ok=True)


def _run_jobs(jobs: list[ClipJob], workers: int, progress: bool) -> list[dict]:
    results: list[dict | None] = [None] * len(jobs)
    with tqdm(total=len(jobs), disable=not progress, unit="clip", desc="synthetic REACT", dynamic_ncols=True) as bar:
        if workers <= 1:
            for i, job in enumerate(jobs):
                results[i] = run_clip(job)
                bar.update()
        else:
            methods = multiprocessing.get_all_start_methods()
            ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
            with cf.ProcessPoolExecutor(max_workers=min(workers, len(jobs)) or 1, mp_context=ctx) as ex:
                futures = {ex.submit(run_clip, job): i for i, job in enumerate(jobs)}
                for fut in cf.as_completed(futures):
                    results[futures[fut]] = fut.result()
                    bar.update()
    return results  # type: ignore[return-value]


def generate_dataset(root, *, seed: int = 0, sessions: dict[str, int] | None = None, clips_per_session: int = 2,
                     frames: int = CLIP_FRAMES, video: str = "png", video_size: int = 64, templates: int = 4,
                     workers: int = 1, progress: bool = True, force: bool = False) -> dict:
    """Write a synthetic REACT dataset under `root`; returns a summary (counts per split, files, bytes, seconds).

    The bytes written depend only on the arguments other than root/workers/progress/force.
    """
    t0 = time.perf_counter()
    sessions = dict(DEFAULT_SESSIONS if sessions is None else sessions)
    unknown = set(sessions) - set(SPLITS)
    if unknown:
        raise ValueError(f"unknown split(s) {sorted(unknown)}; expected some of {SPLITS}")
    sessions = {s: int(sessions.get(s, 0)) for s in SPLITS}
    if sessions["train"] < 1 or min(sessions.values()) < 0:
        raise ValueError(f"need >= 1 train session (mean/std come from it) and no negative counts, got {sessions}")
    if video not in VIDEO_KINDS:
        raise ValueError(f"video must be one of {VIDEO_KINDS}, got {video!r}")
    if frames < 25 or clips_per_session < 1 or templates < 1 or video_size < 8 or seed < 0:
        raise ValueError("need frames >= 25, clips_per_session >= 1, templates >= 1, video_size >= 8, seed >= 0")
    if video == "mp4" and video_size % 2:
        raise ValueError(f"mp4 needs an even --video-size, got {video_size}")
    root = Path(root)
    _clear(root, force)

    plan = plan_sessions(seed, sessions)
    jobs = [ClipJob(str(root), split, site, session, persons, str(c), frames, seed, templates, video, video_size)
            for split, site, session, persons in plan for c in range(1, clips_per_session + 1)]
    results = _run_jobs(jobs, workers, progress)

    total = sum(r["bytes"] for r in results)
    meta_splits, summary_splits = {}, {}
    for split in SPLITS:
        rs = [r for r in results if r["split"] == split]
        total += write_split_tables(root, split, rs)
        meta_splits[split] = {
            "sessions": list(dict.fromkeys(f"{r['site']}/{r['session']}" for r in rs)),
            "clips": [{"row": i, "speaker": a, "listener": b, "template": r["template"],
                       "template_id": f"{split}/t{r['template']}", "roles": r["roles"], "lags": r["lags"]}
                      for i, (r, (a, b)) in enumerate((r, pair_paths(r)) for r in rs)],
        }
        summary_splits[split] = {"sessions": sessions[split], "clips": len(rs), "pairs": len(rs),
                                 "samples": 2 * len(rs)}
    mean, std = merge_moments([s for r in results if r["split"] == "train" for s in r["stats"]])
    for name, arr in (("mean_face.npy", mean), ("std_face.npy", std)):
        blob = encode_npy(arr)
        write_bytes(root / name, blob)
        total += len(blob)
    args = {"seed": seed, "sessions": sessions, "clips_per_session": clips_per_session, "frames": frames,
            "video": video, "video_size": video_size, "templates": templates}
    write_json(root / "synthetic.json", {
        "generator": "reactdiff.data.synthetic", "version": GENERATOR_VERSION, "seed": seed, "args": args,
        "splits": meta_splits,
        "note": "template_id + the speaker's template role define the neighbour matrices; lags are the listener "
                "reaction lags (frames) planted per person",
    })
    total += (root / "synthetic.json").stat().st_size
    return {"root": str(root), "splits": summary_splits, "clips": len(results), "bytes": total,
            "seconds": round(time.perf_counter() - t0, 3), "args": args, "workers": workers}
