"""The callables submitit runs on the nodes.

Every job is Checkpointable: on SLURM's USR2 (time limit or preemption) submitit calls checkpoint() and requeues the
same job. The trainer first saves at the next step boundary and only then hands the signal over, so the requeued job
resumes from that checkpoint. Eval and render tasks write each row's reactions / each video atomically and skip what
is there, so a requeued task (or a rerun) only redoes what is missing; the aggregation job waits (afterok) for
every task, requeues included, and refuses to score an incomplete set.

Array tasks get typed jobs (sampling.job.SampleJob, render.job.RenderJob, paths absolute) and call the library
functions that `reactdiff sample` / `reactdiff render` call; nothing is turned into argv and parsed again.
"""
from __future__ import annotations

import os
from pathlib import Path

import submitit


def _launcher_env() -> dict:
    """Expose submitit's view of the job (SLURM or local executor) as torchrun-style variables for reactdiff.dist."""
    from .. import dist

    env = submitit.JobEnvironment()
    port = dist.job_port(env.job_id)
    return {"RANK": str(env.global_rank), "WORLD_SIZE": str(env.num_tasks), "LOCAL_RANK": str(env.local_rank),
            "LOCAL_WORLD_SIZE": str(env.num_tasks // max(1, env.num_nodes)),
            # a profile's setup lines may export MASTER_ADDR (e.g. simulated nodes whose names do not resolve)
            "MASTER_ADDR": os.environ.get("MASTER_ADDR") or (env.hostnames[0] if env.num_nodes > 1 else "127.0.0.1"),
            "MASTER_PORT": str(port)}


def _limit_threads(threads: int | None) -> None:
    """One intra-op thread pool per task sized to its CPUs: oversubscribed OpenMP pools spin and crawl."""
    import torch

    threads = threads or int(os.environ.get("SLURM_CPUS_PER_TASK", "0") or 0)
    if threads > 0:
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)


class TrainJob(submitit.helpers.Checkpointable):
    def __init__(self, config_path: str) -> None:
        self.config_path = config_path

    def __call__(self) -> dict:
        from .. import config, dist
        from ..train.loop import train

        os.environ.update(_launcher_env())
        _limit_threads(None)
        cfg = config.load(self.config_path, saved=True)
        code = train(cfg)
        result = {"rank": dist.rank(), "world_size": dist.world_size(), "exit": code,
                  "run": str(Path(cfg.train.out) / cfg.name)}
        dist.shutdown()
        return result

    def checkpoint(self, *args, **kwargs) -> submitit.helpers.DelayedSubmission:
        # the trainer has saved already (it hands the signal over only after the checkpoint is complete)
        return submitit.helpers.DelayedSubmission(TrainJob(self.config_path))


class Requeueable(submitit.helpers.Checkpointable):
    """A function run as a job that SLURM may stop (time limit, preemption) and submitit then requeues with the same
    arguments: the function must be safe to run again, continuing from what it has written."""

    def __init__(self, fn) -> None:
        self.fn = fn

    def __call__(self, *args, **kwargs):
        return self.fn(*args, **kwargs)


def _sample_rows(spec: dict, rank: int, world_size: int) -> dict:
    """Generate the reactions of task `rank` of `world_size` (contiguous rows); rows already there are skipped."""
    from ..sampling.run import sample

    _limit_threads(spec.get("threads"))
    done = sample(spec["job"], rank, world_size)
    return {"rank": rank, "world_size": world_size, "generated": done["generated"]}


def _sweep_sample_rows(spec: dict, rank: int, world_size: int) -> dict:
    """A sweep point's sampling task: as _sample_rows, but only from the weights of a finished training. SLURM takes
    a dependency on a training job that vanished (cancelled before it started) as met, so this task may start
    anyway; it then fails, and the point's scoring job is cancelled with it."""
    from .sweep import last_step

    step = last_step(Path(spec["run"]))
    if step < spec["steps"]:
        raise RuntimeError(f"{spec['run']}: its training has not finished (step {step} of {spec['steps']}; was its "
                           f"job cancelled?): nothing to evaluate; rerun the sweep")
    return _sample_rows(spec, rank, world_size)


def _aggregate(spec: dict) -> dict:
    """Merge every task's reactions in neighbour-matrix order and score them -> metrics.json + report.md (MARS
    shards: with spec["protocol"], react2025 or react2026)."""
    from ..eval.evaluate import evaluate
    from ..eval.mars_evaluate import evaluate_mars

    out = Path(spec["out"])
    baseline_shards = spec.get("baseline_shards")
    if spec.get("protocol", "react2024") != "react2024":
        report = evaluate_mars(out, Path(spec["shards"]), out, spec["protocol"], spec.get("reference_quirks", False),
                               spec.get("baselines", True),
                               baseline_shards=Path(baseline_shards) if baseline_shards else None, progress=True,
                               wandb=spec.get("wandb", "offline"))
        return {"metrics": report["results"]["model"], "out": str(out / "metrics.json"), "wandb": report.get("wandb")}
    report = evaluate(out, Path(spec["shards"]), out, spec.get("convention", "react2024"),
                      spec.get("reference_quirks", False), spec.get("baselines", True),
                      baseline_shards=Path(baseline_shards) if baseline_shards else None, progress=True,
                      wandb=spec.get("wandb", "offline"),
                      references={name: Path(d) for name, d in spec.get("references", {}).items()})
    return {"metrics": report["results"]["model"], "out": str(out / "metrics.json"), "wandb": report.get("wandb")}


def _render_videos(spec: dict, rank: int, world_size: int) -> dict:
    """Render every world_size-th video of the plan, starting at `rank`; videos already there are skipped."""
    from ..render.run import render

    _limit_threads(spec.get("threads"))
    done = render(spec["job"], rank, world_size)
    return {"rank": rank, "world_size": world_size, "written": done["written"]}


def _render_index(spec: dict) -> dict:
    """After the array: render.json listing every video of the plan; fails, listing them, if any is missing."""
    from ..render.plan import finish_index

    doc = finish_index(Path(spec["out"]))
    return {"videos": len(doc["videos"]), "out": str(Path(spec["out"]) / "render.json")}


def _tabulate(spec: dict) -> dict:
    """The sweep's table; with spec["test"], then the best point's evaluation on the test shards."""
    from .sweep_table import tabulate, test_best

    _limit_threads((spec.get("test") or {}).get("threads"))
    done = tabulate(spec["folder"])
    if spec.get("test"):
        done["test"] = test_best(spec["folder"], **{k: v for k, v in spec["test"].items() if k != "threads"})
    return done


eval_task, aggregate = Requeueable(_sample_rows), Requeueable(_aggregate)
sweep_eval_task = Requeueable(_sweep_sample_rows)
tabulate = Requeueable(_tabulate)
render_task, render_index = Requeueable(_render_videos), Requeueable(_render_index)
