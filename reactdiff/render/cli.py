"""`reactdiff render`: mp4 videos of generated reactions (the output of `reactdiff sample`): grey FaceVerse meshes,
or photoreal frames from a PIRender checkpoint (--pirender, with the person's reference frame from --shards).

    out/<row>/k<k>.mp4     reaction k of neighbour-matrix row <row>; with --shards: [speaker | listener] side by
                           side with the speaker's audio
    out/<row>/gt.mp4       the true listener (--ground-truth), same layout
    out/<row>/grid.mp4     --grid: [speaker | true listener | reaction 1..K] in one labelled video, speaker audio
    out/settings.json      the settings, written before rendering (a folder never mixes videos made otherwise)
    out/render.json        every video of the render, written once they all exist (by the last fan-out task)

Each video is written atomically; a rerun renders only the videos that are missing (--overwrite: all of them).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import atomic, recorded
from ..data.faceverse import AUDIO_RATE, FPS
from ..media import write_mp4
from ..sampling.writer import load_manifest, reaction_path
from . import p3d
from .clips import SpeakerSource
from .faceverse import FaceVerseError, FaceVerseModel
from .grey import GreyRenderer
from .grid import write_grid
from .pirender import PIRenderer, load_generator

RENDER_JSON = "render.json"
SETTINGS_JSON = "settings.json"


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff render", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--samples", required=True, help="output folder of `reactdiff sample` (reactions/ + manifest)")
    p.add_argument("--faceverse", help="FaceVerse v2 model file (faceverse_simple_v2.npy): grey meshes (needed unless "
                                       "--pirender)")
    p.add_argument("--out", required=True, help="output folder for the videos")
    p.add_argument("--shards", help="the shard folder the samples were made from: adds the speaker (mesh + audio) "
                                    "beside each reaction, and enables --ground-truth")
    p.add_argument("--pirender", help="REACT-retrained PIRender generator checkpoint: photoreal frames (needs --shards "
                                      "for the reference images; --size a multiple of 32)")
    p.add_argument("--ground-truth", action="store_true", help="also render each row's true listener (gt.mp4)")
    p.add_argument("--grid", action="store_true", help="one video per row instead: [speaker | true listener | "
                                                        "reactions] side by side (grid.mp4; needs --shards)")
    p.add_argument("--identity", help="npy with the FaceVerse identity coefficients to render with (the first 150 "
                                      "values are used; e.g. reference_full.npy); default: the mean face")
    p.add_argument("--simplified", action="store_true", help="use the model's simplified mesh (select_id/tri_select)")
    p.add_argument("--rasteriser", default="auto", choices=p3d.BACKENDS,
                   help="grey meshes: pytorch3d (the REACT renderer's library; the `pytorch3d` extra), torch (ours; "
                        "the same frames), or auto (default: pytorch3d on a GPU when it imports, else torch: on the "
                        "CPU pytorch3d is 90-430x slower); recorded in settings.json")
    p.add_argument("--size", type=int, default=224, help="frame size in pixels (default 224, as the REACT renderer)")
    p.add_argument("--rows", help="comma-separated neighbour-matrix rows (default: all in the manifest)")
    p.add_argument("--k", type=int, help="render only the first K reactions of each row (default: all)")
    p.add_argument("--frames", type=int, help="only the first N frames (default: all)")
    p.add_argument("--batch", type=int, help="frames per renderer call (default 32 for grey meshes, 16 for PIRender; "
                                             "lower it if the GPU runs out of memory)")
    p.add_argument("--rank", type=int, default=0, help="this task's part of a fan-out (every world-size-th video)")
    p.add_argument("--world-size", type=int, default=1, help="tasks in the fan-out")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--overwrite", action="store_true", help="render again the videos that exist")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p


def plan(samples: Path, rows: str | None = None, k: int | None = None, ground_truth: bool = False,
         grid: bool = False):
    """(manifest, every video of the render as (entry, name) in a fixed order, K used). Task R of W renders
    videos R, R + W, R + 2W, ... of this list. grid: one "grid" video per row."""
    manifest = load_manifest(samples)
    entries = manifest["entries"]
    if rows:
        wanted = {int(r) for r in str(rows).split(",")}
        missing = sorted(wanted - {e["row"] for e in entries})
        if missing:
            raise ValueError(f"rows {missing} are not in {samples} (it has {len(entries)} rows)")
        entries = [e for e in entries if e["row"] in wanted]
    k_all = int(manifest["settings"]["k"])
    k = min(k or k_all, k_all)
    jobs = []
    for e in entries:
        if grid:
            jobs.append((e, "grid"))
            continue
        jobs += [(e, f"k{i}") for i in range(k)]
        if ground_truth:
            jobs.append((e, "gt"))
    return manifest, jobs, k


def video_path(out: Path, entry: dict, name: str) -> Path:
    return Path(out) / f"{entry['row']:05d}" / f"{name}.mp4"


def write_index(out: Path) -> tuple[dict | None, list[str]]:
    """(render.json's content, written once every video of the plan in settings.json exists, else None; the
    videos still missing)."""
    out = Path(out)
    if not (out / SETTINGS_JSON).is_file():
        raise FileNotFoundError(f"{out / SETTINGS_JSON} not found: nothing was rendered into {out}")
    settings = json.loads((out / SETTINGS_JSON).read_text())
    _, videos, _ = plan(Path(settings["samples"]), settings["rows"], settings["k"], settings["ground_truth"],
                      settings.get("grid", False))
    missing = [str(video_path(out, e, name)) for e, name in videos if not video_path(out, e, name).is_file()]
    if missing:
        return None, missing
    doc = {"settings": settings, "videos": [{"row": e["row"], "key": e["key"], "role": e["role"],
                                             "video": f"{e['row']:05d}/{name}.mp4"} for e, name in videos]}
    atomic.write_json(out / RENDER_JSON, doc)
    return doc, []


def finish_index(out: Path) -> dict:
    """The fan-out's last step: render.json, or an error that lists the missing videos."""
    doc, missing = write_index(out)
    if doc is None:
        raise ValueError(f"{len(missing)} videos are missing in {out} (e.g. {missing[:3]}); run the render again "
                         f"to make them")
    return doc


def _check_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """Record the settings before rendering; refuse to mix videos made otherwise in one folder."""
    path = out / SETTINGS_JSON
    if path.is_file() and not overwrite:
        old = json.loads(path.read_text())
        diff = recorded.changes(old, settings, keys=settings)
        if diff:
            raise ValueError(f"{out} holds videos rendered with other settings ({recorded.describe(diff)}); use "
                             f"another --out or "
                             f"--overwrite")
    atomic.write_json(path, settings)  # fan-out tasks write the same bytes


def _resolved(path) -> str | None:
    return str(Path(path).resolve()) if path else None


def check_args(args) -> None:
    """Refuse option combinations that cannot render, naming what is missing."""
    if not 0 <= args.rank < args.world_size:
        raise ValueError(f"--rank {args.rank} outside --world-size {args.world_size}")
    for name in ("k", "frames", "batch"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise ValueError(f"--{name} must be >= 1; got {getattr(args, name)}")
    if args.ground_truth and not args.shards:
        raise ValueError("--ground-truth needs --shards (the true listener is read from them)")
    if args.grid and not args.shards:
        raise ValueError("--grid needs --shards (the speaker and the true listener are read from them)")
    if args.grid and args.pirender:
        raise ValueError("--grid draws grey meshes; render PIRender videos without --grid")
    if not args.pirender and not args.faceverse:
        raise ValueError("grey mesh frames need --faceverse (the FaceVerse model file); or give --pirender")
    if args.pirender and not args.shards:
        raise ValueError("--pirender needs --shards (each person's reference frame is read from them)")


class Drawer:
    """Frames of a 3DMM track: PIRender (photoreal, from a reference frame) or grey FaceVerse meshes."""

    def __init__(self, args) -> None:
        self.grey = None
        if args.pirender:
            self.pir = PIRenderer(load_generator(args.pirender), args.size, args.device, chunk=args.batch or 16)
            self.name, self.what = "pirender", f"PIRender {args.pirender}"
        else:
            identity = np.load(args.identity, allow_pickle=False) if args.identity else None
            model = FaceVerseModel.load(args.faceverse, simplified=args.simplified)
            self.grey = GreyRenderer(model, args.size, identity, args.device, chunk=args.batch or 32,
                                     rasteriser=args.rasteriser)
            self.name = self.grey.name
            self.what = f"grey mesh ({self.grey.rasteriser} rasteriser), {model.num_vertices} vertices"

    def __call__(self, coeffs: np.ndarray, ref, n: int):
        if self.grey is None:
            return self.pir.frames(coeffs, ref, n)  # PIRender's windows see past the cut
        return self.grey.frames(coeffs[:n])


def render_settings(args, samples: Path, manifest: dict, k: int, beside: bool, renderer: str) -> dict:
    """What the video folder records: videos rendered otherwise are never mixed into it."""
    settings = {"samples": _resolved(samples), "sampling": manifest["settings"],
                "weights": manifest["settings"].get("weights"), "rows": args.rows, "k": k,
                "ground_truth": args.ground_truth, "shards": _resolved(args.shards),
                "faceverse": _resolved(args.faceverse), "simplified": args.simplified,
                "identity": _resolved(args.identity),
                "pirender": _resolved(args.pirender), "size": args.size, "fps": FPS, "frames": args.frames,
                "speaker_beside": beside, "renderer": renderer}
    if args.grid:  # only when set: folders rendered before the option existed keep their settings
        settings["grid"] = True
    return settings


def render_video(path: Path, name: str, draw: Drawer, reactions, clip, k: int, args) -> int:
    """One video: reaction `name` ("r<j>"), the true listener ("gt") or the grid, beside the speaker when the
    shards are given, with the speaker's audio; -> frames written."""
    if name == "grid":
        return write_grid(path, draw.grey.frames, clip["speaker"], clip["listener"], reactions[:k], args.size,
                          clip["audio"], args.frames)
    listener = clip["listener"] if name == "gt" else reactions[int(name[1:])]
    n = len(listener) if clip is None else min(len(listener), len(clip["speaker"]))
    n = n if args.frames is None else min(args.frames, n)
    frames = draw(listener, clip and clip.get("listener_ref"), n)
    audio = None
    if clip is not None:
        speaker = draw(clip["speaker"], clip.get("speaker_ref"), n)
        frames = (np.concatenate([a, b], axis=2) for a, b in zip(speaker, frames))  # [speaker | listener]
        if clip["audio"] is not None:
            audio = clip["audio"][:n * AUDIO_RATE // FPS]
    return write_mp4(path, frames, FPS, audio=audio, audio_rate=AUDIO_RATE)


def run(args) -> int:
    samples, out = Path(args.samples), Path(args.out)
    check_args(args)
    manifest, jobs, k = plan(samples, args.rows, args.k, args.ground_truth, args.grid)
    draw = Drawer(args)
    source = SpeakerSource(Path(args.shards)) if args.shards else None
    _check_settings(out, render_settings(args, samples, manifest, k, source is not None, draw.name),
                    args.overwrite)
    jobs = jobs[args.rank::args.world_size]
    todo = [(e, name) for e, name in jobs if args.overwrite or not video_path(out, e, name).is_file()]
    if not args.quiet:
        print(f"[render] {len(jobs)} videos for this task ({len(jobs) - len(todo)} already there), {draw.what}, "
              f"{args.size}px, {args.device}", flush=True)
    t0, frames_done, cache = time.perf_counter(), 0, {}
    for e, name in tqdm(todo, desc="render", unit="video", disable=args.quiet):
        reactions = cache.get(e["row"])
        if reactions is None and name != "gt":
            cache = {e["row"]: np.load(reaction_path(samples, e["row"]), allow_pickle=False)}  # one row at a time
            reactions = cache[e["row"]]
        clip = source.clip(e["key"], e["role"]) if source else None
        if args.pirender and ("listener_ref" not in clip or "speaker_ref" not in clip):
            raise ValueError(f"{e['key']}: the shards hold no ref.png for this pair; PIRender needs them")
        frames_done += render_video(video_path(out, e, name), name, draw, reactions, clip, k, args)
    secs = time.perf_counter() - t0
    index, _ = write_index(out)  # by whichever task finishes the set last
    if not args.quiet:
        rate = f", {frames_done / secs:.0f} frames/s" if frames_done else ""
        state = f"; {RENDER_JSON} lists all {len(index['videos'])}" if index else "; other tasks' videos still missing"
        print(f"[render] wrote {len(todo)} videos to {out} in {secs:.1f} s{rate}{state}", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return run(args)
    except (FaceVerseError, ValueError, KeyError, FileNotFoundError) as exc:
        print(f"reactdiff render: error: {exc}", file=sys.stderr)
        return 2
