"""What a run shows while it trains: the validation loss (validation.py) every `train.val_every` steps and samples
of validation clips (previews.py) every `train.sample_every` steps, both also at the end.

Every rank takes part with its share of the work and the same (raw or EMA) weights in a plain fp32 copy of the
model (eval_copy.py); rank 0 writes the rows (metrics.jsonl, kinds validation / samples), the plots and the
wandb entries. Grid videos (train.render_faceverse) are rendered by the rank that generated the clip. The time
spent is printed as a share of the run's wall time, so a config whose watching costs too much shows it.
"""
from __future__ import annotations

import time
from pathlib import Path

from .. import dist
from .eval_copy import EvalCopy
from .previews import PreviewClips, write_preview
from .validation import ValidationSet, resolve_val_shards


class Watch:
    def __init__(self, cfg, model, run_dir: Path, log, device, zero3: bool) -> None:
        t = cfg.train
        self.cfg, self.run_dir, self.log, self.t0 = cfg, Path(run_dir), log, time.perf_counter()
        self.spent = {"validation": 0.0, "samples": 0.0}
        self.shards = resolve_val_shards(cfg.data) if (t.val_every or t.sample_every) else None
        self.vset = self.clips = self.copy = self.grey = self.source = None
        if self.shards is None:
            if t.val_every or t.sample_every:
                dist.print0(f"[train] no validation shards (data.val_shards, or a `val` folder next to "
                            f"{cfg.data.shards}): no validation loss or samples during training")
            return
        started = time.perf_counter()
        error = None
        try:
            if t.val_every:
                self.vset = ValidationSet.from_shards(cfg, model.dim, model.density, self.shards, t.val_windows,
                                                      t.val_levels, seed=cfg.seed)
            if t.sample_every and cfg.data.eval_frames == 0:
                dist.print0("[train] samples during training score fixed-length REACT 2024 clips; with whole clips "
                            "(data.eval_frames=0, MARS) they are off: evaluate exports with `reactdiff evaluate`")
            elif t.sample_every:  # the ground truth only where it is scored: rank 0
                self.clips = PreviewClips.from_shards(cfg, self.shards, t.sample_clips, truth=dist.is_main())
        except (ValueError, FileNotFoundError, KeyError) as exc:
            error = exc
        if dist.all_reduce_max_int(error is not None):  # every rank decides the same
            reason = error or "another rank could not read them"
            if cfg.data.val_shards:  # asked for by name: a config error
                raise ValueError(f"data.val_shards={cfg.data.val_shards}: {reason}") from error
            # found next to the training shards: train without watching rather than not at all
            dist.print0(f"[train] warning: the validation shards {self.shards} cannot be watched ({reason}); no "
                        f"validation loss or samples during training (set data.val_shards to a usable folder)")
            self.shards = self.vset = self.clips = None
            return
        if self.clips is not None and t.render_faceverse:
            from ..render.clips import SpeakerSource
            from ..render.faceverse import FaceVerseModel
            from ..render.grey import GreyRenderer
            from ..render.p3d import resolve

            rasteriser = dist.broadcast_object(resolve(t.render_rasteriser.value, device))  # rank 0's: one per run
            self.grey = GreyRenderer(FaceVerseModel.load(t.render_faceverse), t.render_size, None, device,
                                     rasteriser=rasteriser)
            self.source = SpeakerSource(self.shards)
        self.copy = EvalCopy(cfg, model, device, zero3)
        what = []
        if self.vset is not None:
            what.append(f"validation loss on {self.vset.windows} windows x {len(self.vset.sigmas)} noise levels "
                        f"every {t.val_every} steps")
        if self.clips is not None:
            what.append(f"{t.sample_k} reactions to {len(self.clips.rows)} clips every {t.sample_every} steps"
                        + (f" with grid videos ({self.grey.rasteriser} rasteriser)" if self.grey else ""))
        dist.print0(f"[train] watching {self.shards}: {'; '.join(what)} (set up in "
                    f"{time.perf_counter() - started:.1f} s)")

    def _spent(self, what: str, secs: float) -> None:
        self.spent[what] += secs
        self.log.exclude(secs)  # the next throughput row counts training only

    def _share(self) -> str:
        total = max(time.perf_counter() - self.t0, 1e-9)
        spent = sum(self.spent.values())
        return f"watching so far: {spent:.1f} s = {100 * spent / total:.1f}% of the run's wall time"

    def has_final(self, step: int) -> bool:
        """Whether the run's records already hold the end-of-run validation and samples at `step` (rank 0's answer,
        on every rank)."""
        done = True
        if dist.is_main():
            from .run_log import read_rows

            path = self.run_dir / "metrics.jsonl"
            for kind, wanted in (("validation", self.vset), ("samples", self.clips)):
                if wanted is not None and not any(r["step"] == step for r in read_rows(path, kind)):
                    done = False
        return bool(dist.broadcast_object(done))

    def _rank0(self, what: str, fn) -> None:
        """Rank 0's share (scores, files, plots, wandb): a failure is reported, never left to hang the other ranks
        at their next collective or to stop training."""
        try:
            fn()
        except Exception as exc:  # noqa: BLE001 - watching must not kill a run
            print(f"[train] warning: {what} failed ({type(exc).__name__}: {exc}); training goes on", flush=True)

    def __call__(self, step: int, model, ema, final: bool = False) -> None:
        """After optimiser step `step`, on every rank (they all take part)."""
        t = self.cfg.train
        if self.vset is not None and (step % t.val_every == 0 or final):
            self.validate(step, model, ema)
        if self.clips is not None and (step % t.sample_every == 0 or final):
            self.preview(step, model, ema)

    def validate(self, step: int, model, ema) -> dict:
        started = time.perf_counter()
        rank, world, bs = dist.rank(), dist.world_size(), self.cfg.data.batch_size
        raw = self.vset.loss(self.copy.load_raw(model), rank, world, bs)
        avg = self.vset.loss(self.copy.load_ema(ema, model, step), rank, world, bs)
        row = {"step": step, "val/loss": float(raw.mean()), "val/loss_ema": float(avg.mean())}
        for j, (sigma, a, b) in enumerate(zip(self.vset.sigmas.tolist(), raw.tolist(), avg.tolist())):
            row[f"val/loss@{j}:{sigma:.4g}"], row[f"val/loss_ema@{j}:{sigma:.4g}"] = a, b
        if dist.is_main():
            self._rank0("logging the validation loss", lambda: (self.log.event("validation", row), self.log.plot()))
        self._spent("validation", time.perf_counter() - started)
        dist.print0(f"[train] validation at step {step}: loss {row['val/loss']:.4f}, EMA {row['val/loss_ema']:.4f} "
                    f"({self.vset.windows} windows x {len(self.vset.sigmas)} levels, {world} rank(s), "
                    f"{time.perf_counter() - started:.1f} s; {self._share()})")
        return row

    def preview(self, step: int, model, ema) -> dict | None:
        started = time.perf_counter()
        rank, world = dist.rank(), dist.world_size()
        reactions = self.clips.sample(self.copy.load_ema(ema, model, step), self.cfg, rank, world)
        out = self.run_dir / "samples" / f"step_{step:07d}"
        generated = time.perf_counter() - started
        videos = []
        if self.grey is not None:
            from ..render.grid import write_grid

            for c in range(rank, len(self.clips.rows), world):
                clip = self.source.clip(self.clips.batch["key"][c], self.clips.batch["role"][c])
                path = out / f"grid_{self.clips.rows[c]:05d}.mp4"
                write_grid(path, self.grey.frames, clip["speaker"], clip["listener"], reactions[c],
                           self.cfg.train.render_size, clip["audio"], self.cfg.data.eval_frames)
            videos = [out / f"grid_{r:05d}.mp4" for r in self.clips.rows]
        dist.barrier()  # every rank's videos exist
        row = {}
        if dist.is_main():
            def finish() -> None:
                scores = self.clips.score(reactions)
                write_preview(out, self.clips, reactions, scores, step)
                row.update({"step": step, **{f"samples/{k}": float(v) for k, v in scores.items()}})
                self.log.event("samples", row, images={"samples/curves": out / "curves.png"},
                               videos={f"samples/grid_{p.stem[5:]}": p for p in videos if p.is_file()})

            self._rank0("scoring and logging the samples", finish)
        self._spent("samples", time.perf_counter() - started)
        if row:
            dist.print0(f"[train] samples at step {step}: {len(self.clips.rows)} clips x {self.cfg.train.sample_k} "
                        f"reactions, FRCorr {row['samples/FRCorr']:.3f}, FRDist {row['samples/FRDist']:.1f}, jitter "
                        f"ratio {row['samples/jitter_ratio/expression']:.2f} / "
                        f"{row['samples/jitter_ratio/rotation']:.2f} / {row['samples/jitter_ratio/translation']:.2f} "
                        f"-> {out} (generation {generated:.1f} s, total {time.perf_counter() - started:.1f} s; "
                        f"{self._share()})")
        return row or None

