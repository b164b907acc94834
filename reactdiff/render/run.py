"""Render a RenderJob's videos (all of them, or task `rank` of a `world_size` fan-out): each written atomically,
videos already there skipped, the settings recorded first so that one folder never mixes videos made otherwise."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from .. import atomic, recorded
from ..data.frame_layout import AUDIO_RATE, FPS
from ..media import write_mp4
from ..sampling.writer import reaction_path
from .clips import SpeakerSource
from .faceverse import FaceVerseModel
from .grey import GreyRenderer
from .grid import write_grid
from .job import RenderJob
from .pirender import PIRenderer, load_generator
from .plan import RENDER_JSON, SETTINGS_JSON, plan, upgrade_settings, video_path, write_index


class Drawer:
    """Frames of a 3DMM track: PIRender (photoreal, from a reference frame) or grey FaceVerse meshes."""

    def __init__(self, job: RenderJob) -> None:
        self.grey = None
        device = job.on_device()
        if job.pirender:
            self.pir = PIRenderer(load_generator(job.pirender), job.size, device, chunk=job.batch or 16)
            self.name, self.what = "pirender", f"PIRender {job.pirender}"
        else:
            identity = np.load(job.identity, allow_pickle=False) if job.identity else None
            model = FaceVerseModel.load(job.faceverse, simplified=job.simplified)
            self.grey = GreyRenderer(model, job.size, identity, device, chunk=job.batch or 32,
                                     rasteriser=job.rasteriser)
            self.name = self.grey.name
            self.what = f"grey mesh ({self.grey.rasteriser} rasteriser), {model.num_vertices} vertices"

    def __call__(self, coeffs: np.ndarray, ref, n: int):
        if self.grey is None:
            return self.pir.frames(coeffs, ref, n)  # PIRender's windows see past the cut
        return self.grey.frames(coeffs[:n])


def settings_of(job: RenderJob, manifest: dict, k: int, beside: bool, renderer: str) -> dict:
    """What the video folder records: videos rendered otherwise are never mixed into it."""
    job = job.absolute()
    settings = {"samples": job.samples, "sampling": manifest["settings"],
                "weights": manifest["settings"].get("weights"), "row_selection": job.rows, "k": k,
                "ground_truth": job.ground_truth, "shards": job.shards, "faceverse": job.faceverse,
                "simplified": job.simplified, "identity": job.identity, "pirender": job.pirender, "size": job.size,
                "fps": manifest["settings"].get("fps", FPS), "frames": job.frames, "speaker_beside": beside,
                "renderer": renderer}
    if job.grid:  # only when set: folders rendered before the option existed keep their settings
        settings["grid"] = True
    return settings


def record_settings(out: Path, settings: dict, overwrite: bool) -> None:
    """Record the settings before rendering; refuse to mix videos made otherwise in one folder."""
    path = out / SETTINGS_JSON
    if path.is_file() and not overwrite:
        diff = recorded.changes(upgrade_settings(json.loads(path.read_text())), settings, keys=settings)
        if diff:
            raise ValueError(f"{out} holds videos rendered with other settings ({recorded.describe(diff)}); use "
                             f"another --out or --overwrite")
    atomic.write_json(path, settings)  # fan-out tasks write the same bytes


def render_video(path: Path, name: str, draw: Drawer, reactions, clip, k: int, job: RenderJob,
                 fps: int = FPS) -> int:
    """One video at the clips' `fps`: reaction `name` ("k<j>"), the true listener ("gt") or the grid, beside the
    speaker when the shards are given, with the speaker's audio; -> frames written."""
    if name == "grid":
        return write_grid(path, draw.grey.frames, clip["speaker"], clip["listener"], reactions[:k], job.size,
                          clip["audio"], job.frames, fps)
    listener = clip["listener"] if name == "gt" else reactions[int(name[1:])]
    n = len(listener) if clip is None else min(len(listener), len(clip["speaker"]))
    n = n if job.frames is None else min(job.frames, n)
    frames = draw(listener, clip and clip.get("listener_ref"), n)
    audio = None
    if clip is not None:
        speaker = draw(clip["speaker"], clip.get("speaker_ref"), n)
        frames = (np.concatenate([a, b], axis=2) for a, b in zip(speaker, frames))  # [speaker | listener]
        if clip["audio"] is not None:
            audio = clip["audio"][:int(round(n * AUDIO_RATE / fps))]
    return write_mp4(path, frames, fps, audio=audio, audio_rate=AUDIO_RATE)


def render(job: RenderJob, rank: int = 0, world_size: int = 1) -> dict:
    """Render this task's videos -> {"videos": this task's, "written", "frames", "seconds", "index": render.json's
    content once every video of the plan exists, else None}."""
    if not 0 <= rank < world_size:
        raise ValueError(f"--rank {rank} outside --world-size {world_size}")
    job.check()
    samples, out = Path(job.samples), Path(job.out)
    manifest, videos, k = plan(samples, job.rows, job.k, job.ground_truth, job.grid)
    draw = Drawer(job)
    source = SpeakerSource(Path(job.shards)) if job.shards else None
    record_settings(out, settings_of(job, manifest, k, source is not None, draw.name), job.overwrite)
    mine = videos[rank::world_size]
    todo = [(e, name) for e, name in mine if job.overwrite or not video_path(out, e, name).is_file()]
    if not job.quiet:
        print(f"[render] {len(mine)} videos for this task ({len(mine) - len(todo)} already there), {draw.what}, "
              f"{job.size}px, {job.on_device()}", flush=True)
    t0, frames_done, cache = time.perf_counter(), 0, {}
    for e, name in tqdm(todo, desc="render", unit="video", disable=job.quiet):
        reactions = cache.get(e["row"])
        if reactions is None and name != "gt":
            cache = {e["row"]: np.load(reaction_path(samples, e["row"]), allow_pickle=False)}  # one row at a time
            reactions = cache[e["row"]]
        clip = source.clip(e["key"], e["role"]) if source else None
        if job.pirender and ("listener_ref" not in clip or "speaker_ref" not in clip):
            raise ValueError(f"{e['key']}: the shards hold no ref.png for this pair; PIRender needs them")
        frames_done += render_video(video_path(out, e, name), name, draw, reactions, clip, k, job,
                                    manifest["settings"].get("fps", FPS))
    secs = time.perf_counter() - t0
    index, _ = write_index(out)  # by whichever task finishes the set last
    if not job.quiet:
        rate = f", {frames_done / secs:.0f} frames/s" if frames_done else ""
        state = f"; {RENDER_JSON} lists all {len(index['videos'])}" if index else "; other tasks' videos still missing"
        print(f"[render] wrote {len(todo)} videos to {out} in {secs:.1f} s{rate}{state}", flush=True)
    return {"videos": len(mine), "written": len(todo), "frames": frames_done, "seconds": secs, "index": index}
