"""The training loop (readable in one sitting): shards -> DeepSpeed engine -> EMA -> checkpoints -> export.

    python -m reactdiff.train --config configs/demo.yaml train.steps=100        # one process
    torchrun --nproc_per_node 2 -m reactdiff.train --config ...                  # or the deepspeed launcher
Preemption: SIGUSR2 or SIGTERM makes every rank save a checkpoint at the next step boundary (they agree on the
step through an all-reduce) and exit with EXIT_REQUEUE, which launchers treat as "requeue me".
"""
from __future__ import annotations

import dataclasses
import math
import os
import random
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import atomic, config, dist
from ..data.reader import BatchStream, listener_windows, regression_windows
from ..model.export import build_model, export_weights
from ..data.normalise import FaceStats
from . import checkpoint, launcher_watch, resume, run_lock
from .ds_config import deepspeed_config, resolve_precision
from .ema import EMA
from .run_log import RunLog, count_flops
from .watch import Watch

EXIT_REQUEUE = 75  # EX_TEMPFAIL: preempted, checkpoint saved, run again to continue
LOST_LOCK = 2  # the ranks' stop agreement: 1 preempted, 2 the run lock was taken over


class TrainStep(nn.Module):
    """What DeepSpeed wraps: one micro-batch -> loss terms (so ZeRO hooks see every parameter use)."""

    def __init__(self, model: nn.Module, history: int) -> None:
        super().__init__()
        self.model, self.history = model, history

    def forward(self, batch: dict, generator: torch.Generator) -> dict:
        return self.model.training_loss(batch, self.history, generator)


def lr_lambda(cfg):
    t = cfg.train

    def factor(step: int) -> float:
        if step < t.warmup_steps:
            return (step + 1) / t.warmup_steps
        if t.schedule == "constant":
            return 1.0
        progress = min(1.0, (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps))
        return t.min_lr_ratio + (1 - t.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


class Preemption:
    """Remembers SIGUSR2/SIGTERM; the loop checks it at step boundaries. Handlers installed before ours (submitit's,
    which requeues the job) are called after the checkpoint is saved, so a requeued job always finds it."""

    def __init__(self) -> None:
        self.requested, self.received = False, []
        self.previous = {sig: signal.getsignal(sig) for sig in (signal.SIGUSR2, signal.SIGTERM)}
        for sig in self.previous:
            signal.signal(sig, self._handler)

    def _handler(self, signum, frame) -> None:
        self.requested = True
        self.received.append(signum)
        dist.print0(f"[train] got {signal.Signals(signum).name}: checkpoint at the next step boundary, then exit",
                    flush=True)

    def hand_over(self) -> None:
        """After the save: let the launcher's own handlers act (e.g. submitit: checkpoint() + requeue)."""
        for signum in dict.fromkeys(self.received):
            previous = self.previous.get(signum)
            if callable(previous):
                previous(signum, None)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


def fit_data_statistics(model, cfg) -> None:
    """Measure what the model takes from the training data before training: the window's regression on the last
    known frame and the memory mean (model.anchor=regression), then the spectrum of what the diffusion models. The
    same windows on every rank, so the same numbers; a resume restores them from the checkpoint."""
    w, clips, emotion = cfg.data.window, cfg.model.spectrum_clips, cfg.model.predict_emotion
    if model.past_regression is not None:
        last, windows, memory = regression_windows(cfg.data, w, clips, emotion, cfg.model.anchor_memory)
        model.past_regression.fit(last, windows, memory)
        if model.spectrum is not None:
            model.spectrum.fit(model.past_regression.residual(last, windows, memory))
    elif model.spectrum is not None:
        model.spectrum.fit(listener_windows(cfg.data, w, clips, emotion, relative=model.anchored))


def train(cfg) -> int:
    """Train (or continue) the run <train.out>/<name>; returns 0 when done, EXIT_REQUEUE when preempted."""
    env = dist.init()
    config.check_model_data(cfg)
    run_dir = Path(cfg.train.out) / cfg.name
    lock, refused = None, None
    if dist.is_main():  # one live run per folder, before anything in it is read or written
        run_dir.mkdir(parents=True, exist_ok=True)
        lock = run_lock.RunLock(run_dir)
        try:
            lock.acquire()
        except run_lock.RunLocked as exc:
            lock, refused = None, str(exc)
    refused = dist.broadcast_object(refused)
    if refused:
        raise run_lock.RunLocked(refused)
    try:
        return _train(cfg, env, run_dir, lock)
    finally:
        if lock is not None:
            lock.release()


@dataclasses.dataclass
class Session:
    """What one training run holds while it trains."""

    cfg: Any
    run_dir: Path
    device: torch.device
    stream: BatchStream
    model: nn.Module
    engine: Any
    scheduler: Any
    ema: EMA
    ds_cfg: dict
    precision: str
    generator: torch.Generator
    step: int = 0
    samples: int = 0  # windows trained on before `first_step`
    first_step: int = 0
    wandb_id: str = dataclasses.field(default_factory=lambda: uuid.uuid4().hex[:12])

    @property
    def accum(self) -> int:
        return self.ds_cfg["gradient_accumulation_steps"]


def plan_run(cfg, env, run_dir: Path) -> resume.ResumePlan | None:
    """Which checkpoint to continue from, and how (rank 0 sets broken ones aside first); saves the config."""
    usable = checkpoint.latest_usable(run_dir / "checkpoints") if dist.is_main() and cfg.train.resume else None
    plan = resume.plan_resume(cfg, run_dir, env.world_size, dist.broadcast_object(usable))
    if dist.is_main():
        config.save(cfg, run_dir / "config.yaml")
    dist.barrier()
    return plan


def build(cfg, env, run_dir: Path, plan) -> Session:
    """Data stream, model (with the statistics it fits from the data), DeepSpeed engine, EMA, noise generator."""
    import deepspeed

    t, device = cfg.train, dist.device()
    stream = BatchStream(cfg.data, env.rank, env.world_size, train=True, memory=cfg.model.anchor_memory)
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    model = build_model(cfg, FaceStats.from_normaliser(stream.dataset.normaliser))
    fit_data_statistics(model, cfg)
    precision = resolve_precision(t.precision.value, device.type)
    ds_cfg = deepspeed_config(cfg, env.world_size, precision, plan.grad_accum if plan else t.grad_accum,
                              load_universal=bool(plan and plan.universal))
    if dist.is_main():
        atomic.write_json(run_dir / "deepspeed.json", ds_cfg)
    if t.compile:
        if t.zero_stage == 3:
            raise config.ConfigError("train.compile=true with train.zero_stage=3: ZeRO-3's parameter hooks break "
                                     "the compiled graph; use stage 0-2")
        model.unet.compile(dynamic=False)  # in place: parameter names (checkpoints, exports) stay the same
    optimizer = torch.optim.AdamW(model.parameters(), lr=t.lr, betas=tuple(t.betas), eps=t.eps,
                                  weight_decay=t.weight_decay, fused=device.type == "cuda")  # one kernel per group
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    engine, _, _, scheduler = deepspeed.initialize(model=TrainStep(model, cfg.data.history), optimizer=optimizer,
                                                   lr_scheduler=scheduler, config=ds_cfg)
    ema = EMA(model, max_decay=t.ema_max, power=t.ema_power, keep=dist.is_main(), zero3=t.zero_stage == 3)
    generator = torch.Generator().manual_seed(cfg.seed * 100_003 + env.rank)  # sigma and noise draws
    return Session(cfg, run_dir, device, stream, model, engine, scheduler, ema, ds_cfg, precision, generator)


def restore(s: Session, plan: resume.ResumePlan, env) -> None:
    """Continue from the planned checkpoint: weights, optimiser, schedule, EMA, noise draws, data position."""
    client, rank_state, ema_state = checkpoint.load(s.engine, s.run_dir / "checkpoints", plan.tag, plan.universal,
                                                    plan.same_ranks)
    s.step, s.first_step, s.wandb_id = client["step"], client["step"], client["wandb_id"]
    s.samples = client.get("samples", s.step * plan.layout["train_batch_size"])
    if plan.same_ranks:
        s.generator.set_state(rank_state["generator"])
    else:  # new ranks: fresh, distinct draws per rank, reproducible from (seed, step, rank)
        reseed(s.generator, s.cfg.seed, s.step, env.rank)
    s.stream.load_state_dict(rank_state["data"])
    if ema_state is not None:
        s.ema.load_state_dict({k: v for k, v in ema_state.items() if k in s.ema.shadow})
    lay, stage = plan.layout, s.cfg.train.zero_stage
    moved = "" if plan.same_ranks and lay["zero_stage"] == stage else (
        f"; from {lay['world_size']} rank(s) ZeRO {lay['zero_stage']} to {env.world_size} rank(s) ZeRO {stage}, "
        f"{s.ds_cfg['train_batch_size']} windows/step (was {lay['train_batch_size']})")
    dist.print0(f"[train] resumed {s.run_dir} at step {s.step} (epoch {s.stream.epoch}, batch {s.stream.batch})"
                f"{moved}")


def save(s: Session, env) -> None:
    """A checkpoint at the current step (every rank calls this)."""
    ema_state = None
    if dist.is_main():  # EMA parameters + the model's buffers (normalisation stats, Fourier frequencies)
        ema_state = {**s.ema.state_dict(), **saved_buffers(s.model)}
    seen = s.samples + (s.step - s.first_step) * s.ds_cfg["train_batch_size"]
    layout = {"world_size": env.world_size, "zero_stage": s.cfg.train.zero_stage,
              "train_batch_size": s.ds_cfg["train_batch_size"], "grad_accum": s.accum}
    checkpoint.save(s.engine, s.run_dir / "checkpoints", s.step,
                    {"step": s.step, "samples": seen, "wandb_id": s.wandb_id},
                    {"generator": s.generator.get_state(), "data": s.stream.state_dict()}, ema_state,
                    keep=s.cfg.train.keep_checkpoints, layout=layout)


def step_flops(s: Session, env) -> float | None:
    """FLOPs of one optimiser step (forward + backward ~ 3x forward), counted once on a batch of a fresh stream
    (the run's own position is untouched); GPU only (MFU)."""
    if s.device.type != "cuda":
        return None
    batch = to_device(next(iter(BatchStream(s.cfg.data, env.rank, env.world_size, train=True,
                                           memory=s.cfg.model.anchor_memory))), s.device)
    return 3 * count_flops(lambda: s.model.training_loss(batch, s.cfg.data.history, torch.Generator())) * s.accum


def optimizer_step(s: Session, batches, log: RunLog) -> dict:
    """grad_accum micro-batches, one optimiser step; the loss terms averaged over the micro-batches (on device)."""
    terms: dict = {}
    for _ in range(s.accum):
        t0 = time.perf_counter()
        batch = to_device(next(batches), s.device)
        log.waited(time.perf_counter() - t0, len(batch["key"]))
        out = s.engine(batch, s.generator)
        s.engine.backward(out["loss"])
        s.engine.step()
        for k, v in out.items():
            terms[k] = terms.get(k, 0.0) + v.detach().float() / s.accum
    s.step += 1
    return terms


def _train(cfg, env, run_dir: Path, lock) -> int:
    t = cfg.train
    plan = plan_run(cfg, env, run_dir)
    s = build(cfg, env, run_dir, plan)
    if plan:
        restore(s, plan, env)
    if dist.is_main():
        resume.record_start(run_dir, s.step, env.world_size, s.ds_cfg, plan)
    log = RunLog(run_dir, cfg, s.wandb_id, resumed=bool(plan))
    dist.print0(f"[train] {run_dir}: {s.model.num_parameters():,} parameters, {env.world_size} rank(s) "
                f"({env.source}), ZeRO {t.zero_stage}, {s.precision}, micro-batch {cfg.data.batch_size} x accum "
                f"{s.accum} x {env.world_size} = {s.ds_cfg['train_batch_size']} windows/step, "
                f"{s.stream.batches_per_epoch} batches/epoch/rank, steps {s.step} -> {t.steps}")
    watch = Watch(cfg, s.model, run_dir, log, s.device, zero3=t.zero_stage == 3)
    preempt = Preemption()
    launcher_watch.start()  # a launcher killed with SIGKILL: SIGTERM ourselves (checkpoint, exit), never orphans
    flops, sums, n_in_window, batches, exit_code = step_flops(s, env), {}, 0, iter(s.stream), 0
    while s.step < t.steps:
        terms = optimizer_step(s, batches, log)
        step = s.step
        if step % t.ema_every == 0:
            s.ema.update(step)
        sums = {k: sums.get(k, 0.0) + v for k, v in terms.items()}
        n_in_window += 1
        if step % t.log_every == 0 or step == t.steps:
            means = {k: dist.all_reduce_mean(v / n_in_window).item() for k, v in sorted(sums.items())}
            log.log(step, {**means, "lr": s.scheduler.get_last_lr()[0]}, flops, n_in_window)
            sums, n_in_window = {}, 0
        due = t.checkpoint_every and step % t.checkpoint_every == 0
        # the agreement is a host sync: every few steps, not every step (a signal waits at most sync_every steps)
        flag = LOST_LOCK if lock is not None and lock.lost else int(preempt.requested)
        stop = dist.all_reduce_max_int(flag) if (step % t.sync_every == 0 or due or step == t.steps) else 0
        if stop == LOST_LOCK:  # another launch took the folder over (we hung past the lock's stale time)
            raise run_lock.RunLocked(f"{run_dir}: the run lock was taken over by another launch; stopping at step "
                                     f"{step} without writing a checkpoint")
        if stop or step == t.steps or due:
            save(s, env)
        if stop:  # no watching now: the grace period is for the checkpoint
            dist.print0(f"[train] preempted: checkpoint at step {step} saved, exiting with {EXIT_REQUEUE}")
            exit_code = EXIT_REQUEUE
            preempt.hand_over()
            break
        if step < t.steps:  # the last step's validation and samples come after the export
            watch(step, s.model, s.ema)
    finish(s, watch, log, exit_code)
    return exit_code


def finish(s: Session, watch: Watch, log: RunLog, exit_code: int) -> None:
    """Export the EMA weights and watch the last step (when done), close the logs, report the exit code."""
    if exit_code == 0 and dist.is_main():
        export_ema(s.cfg, s.model, s.ema, s.run_dir / "export")
        dist.print0(f"[train] done: {s.step} steps; EMA weights exported to {s.run_dir / 'export'}")
    if exit_code == 0 and (s.step > s.first_step or not watch.has_final(s.step)):  # a rerun of a finished run:
        watch(s.step, s.model, s.ema, final=True)                                   # only what is missing
    log.finish()
    dist.barrier()
    if dist.is_main() and os.environ.get("REACTDIFF_EXIT_FILE"):  # torchrun reports any worker's exit as 1:
        atomic.write_text(os.environ["REACTDIFF_EXIT_FILE"], f"{exit_code}\n")  # launch/local.sh reads ours


def reseed(generator: torch.Generator, seed: int, step: int, rank: int) -> None:
    """Every RNG of this rank from (seed, step, rank): for ranks that did not exist when the checkpoint was saved."""
    value = (seed * 1_000_003 + step) * 10_007 + rank
    generator.manual_seed(value)
    torch.manual_seed(value)
    np.random.seed(value % 2**32)
    random.seed(value)


def saved_buffers(model: nn.Module) -> dict[str, torch.Tensor]:
    """The buffers a state dict holds (persistent ones), without the frozen audio frontend's."""
    names = {n for n in model.state_dict(keep_vars=True) if not n.startswith("audio.frontend.")}
    return {n: b.detach().cpu() for n, b in model.named_buffers() if n in names}


def export_ema(cfg, model: nn.Module, ema: EMA, out: Path) -> Path:
    """The EMA weights (and the model's buffers: normalisation statistics, fitted maps) as an inference export."""
    return export_weights(cfg, {**ema.state_dict(), **saved_buffers(model)}, out, kind="ema")
