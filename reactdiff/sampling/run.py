"""Generate a SampleJob's reactions: K per speaker clip of a shard folder, written row by row (atomically; rows
already there are skipped), with the settings recorded so that one folder never mixes reactions made otherwise."""
from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import config, recorded
from ..data import frame_layout as fv
from ..data.normalise import FaceNormaliser
from ..data.shard_folder import shard_fps
from ..data.reader import BatchStream, make_normaliser
from ..model.export import build_model, load_export, save_export
from ..data.normalise import FaceStats
from .job import SampleJob
from .online import generate, group_guidance_of, guidance_scale, is_guided, window_settings
from .samplers import network_evaluations
from .writer import load_manifest, part_name, reaction_path, write_manifest, write_reaction


def export_normaliser(model, data_cfg, quiet: bool) -> FaceNormaliser:
    """The export's training statistics normalise the speaker inputs (its outputs are de-normalised with them too);
    says so when the shard folder's own mean/std differ."""
    mine = FaceNormaliser.of_model(model.stats)
    try:
        theirs = make_normaliser(data_cfg, Path(data_cfg.shards))
    except (FileNotFoundError, ValueError):
        theirs = None
    if theirs is not None and not mine.same_as(theirs) and not quiet:
        print(f"[sample] {data_cfg.shards}: its mean/std differ from the export's (max |diff| "
              f"{np.abs(theirs.mean - mine.mean).max():.3g} / {np.abs(theirs.std - mine.std).max():.3g}); inputs "
              f"are normalised with the export's, as in training")
    return mine


def load_model(job: "SampleJob", overrides: list[str]):
    """(model or None for --random-init, config, what the weights are) from --export / --config."""
    if job.export:
        model, cfg, meta = load_export(job.export, overrides)
        if job.config:
            cfg = config.load(job.config, overrides)
        return model, cfg, f"{meta['weights']} sha256:{meta['sha256'][:16]}"
    cfg = config.load(job.config, overrides)
    torch.manual_seed(cfg.seed)
    return None, cfg, "random-init"


def sampling_settings(cfg, rows: int, weights: str, fps: int = 25) -> dict:
    """What the output folder records: reactions made with other settings are never mixed into it."""
    s, d = cfg.sample, cfg.data
    settings = {"rows": rows, "weights": weights, "sampler": s.sampler.value, "steps": s.steps, "k": s.k,
                "window": s.window, "overlap": s.overlap, "history": d.history, "seed": s.seed,
                "frames": d.eval_frames, "normalisation": d.normalisation.value,
                "outputs": "raw (de-normalised) FaceVerse 3DMM"}
    # recorded when they differ from the values every folder was sampled with before they were recorded, so those
    # folders stay resumable
    if fps != 25:  # recorded where it is not REACT 2024's (folders sampled before it was recorded stay resumable)
        settings["fps"] = fps
    for key, before in (("guidance", 1.0), ("temperature", 1.0), ("sigma_min", 0.01), ("sigma_max", 80.0),
                        ("rho", 7.0)):
        if s[key] != before:
            settings[key] = s[key]
    if s.level_temperature is not None:
        settings["level_temperature"] = s.level_temperature
    groups = group_guidance_of(s)
    if groups:
        settings["group_guidance"] = dict(groups)
    if s.guidance_rescale:
        settings["guidance_rescale"] = s.guidance_rescale
    if s.join.value != "crossfade":
        settings["join"] = s.join.value
    return settings


def previous_entries(out: Path, settings: dict, part: str | None, overwrite: bool) -> dict:
    """The manifest entries already in `out` (row -> entry), checked against `settings`; --overwrite starts over."""
    if not ((out / "manifest.json").is_file() or list(out.glob("manifests/part-*.json"))):
        return {}
    old = load_manifest(out)
    diff = recorded.changes(old["settings"], settings)
    if diff and not overwrite:
        raise ValueError(f"{out} holds reactions made with other settings ({recorded.describe(diff)}); use "
                         f"another --out or --overwrite")
    if diff:
        shutil.rmtree(out / "reactions", ignore_errors=True)
    return {} if diff or part else {e["row"]: e for e in old["entries"]}


def react(model, batch: dict, idx: list[int], cfg, device) -> tuple[np.ndarray, np.ndarray | None]:
    """The K reactions of samples `idx` of a batch: raw 3DMM (n, K, frames, 58) and emotion (or None)."""
    s, d = cfg.sample, cfg.data
    sub = {k: (v[idx].to(device) if isinstance(v, torch.Tensor) else [v[i] for i in idx]) for k, v in batch.items()}
    y = generate(model, sub, k=s.k, history=d.history, window=s.window, overlap=s.overlap, seed=s.seed,
                 frames=d.eval_frames or None, **window_settings(s))
    face = model.stats.denormalise(y[..., :fv.FV_DIM]).cpu().numpy()  # the stats live with the model
    return face, y[..., fv.FV_DIM:].cpu().numpy() if model.predict_emotion else None


def sample(job: SampleJob, rank: int = 0, world_size: int = 1) -> dict:
    """Generate this task's reactions (contiguous rows of the shard folder; rows already there are skipped) ->
    {"generated", "rows" (this task's), "seconds"}."""
    if not 0 <= rank < world_size:
        raise ValueError(f"--rank {rank} outside --world-size {world_size}")
    out = Path(job.out)
    device = job.on_device()
    model, cfg, weights = load_model(job, [f"data.shards={job.shards}", "data.num_workers=0", *job.overrides])
    s, d = cfg.sample, cfg.data
    stream = BatchStream(d, rank=rank, world_size=world_size, train=False,
                         normaliser=export_normaliser(model, d, job.quiet) if model is not None else None)
    if model is None:
        model = build_model(cfg, FaceStats.from_normaliser(stream.dataset.normaliser)).eval()
        save_export(out / "export", model, cfg, kind="random-init")  # what was sampled from, for the record
    model = model.to(device)
    config.save(cfg, out / "config.yaml")
    all_rows = 2 * stream.dataset.index.num_samples  # role samples: both directions of every dyadic clip
    settings = sampling_settings(cfg, all_rows, weights, shard_fps(job.shards))
    part = part_name(rank, world_size) if world_size > 1 else None
    entries = previous_entries(out, settings, part, job.overwrite)
    mine = len(stream.dataset.index.task_rows(rank, world_size, stream.dataset.whole_clips))
    total = min(mine, job.limit) if job.limit else mine
    bar = tqdm(total=total, desc="sample", unit="clip", disable=job.quiet, dynamic_ncols=True)
    t0, generated, seen = time.time(), 0, 0
    for batch in stream:
        rows = batch["matrix_row"].tolist()
        keep = [i for i, r in enumerate(rows) if seen + i < total]
        seen += len(rows)
        todo = [i for i in keep if not reaction_path(out, rows[i]).is_file()]
        for i in keep:
            entries.setdefault(rows[i], {"row": rows[i], "key": batch["key"][i], "role": batch["role"][i]})
        bar.update(len(keep) - len(todo))
        for chunk in range(0, len(todo), s.batch_size):
            idx = todo[chunk:chunk + s.batch_size]
            face, emotion = react(model, batch, idx, cfg, device)
            for j, i in enumerate(idx):
                write_reaction(out, rows[i], face[j], None if emotion is None else emotion[j])
                bar.update(1)
            generated += len(idx)
        if seen >= total:
            break
    bar.close()
    write_manifest(out, list(entries.values()), settings, complete=len(entries) == (mine if part else all_rows),
                   part=part)
    nfe = network_evaluations(s.sampler, s.steps) * (2 if is_guided(guidance_scale(s.guidance, group_guidance_of(s)))
                                                     else 1)
    print(f"reactdiff sample: {generated} speaker clips x {s.k} reactions generated ({len(entries) - generated} "
          f"already there) in {time.time() - t0:.1f} s; {s.sampler} {s.steps} steps ({nfe} network evaluations per "
          f"window) -> {out}")
    return {"generated": generated, "rows": len(entries), "seconds": time.time() - t0}
