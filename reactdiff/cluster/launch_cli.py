"""Submit training, evaluation or rendering to SLURM with submitit (or run the same code with submitit's local
executor). `reactdiff launch ...` and `python launch/slurm.py ...` are the same command.

    python launch/slurm.py train --cluster configs/cluster/local.yaml --config configs/demo.yaml train.steps=200
    python launch/slurm.py eval  --cluster configs/cluster/local.yaml --export runs/demo/runs/demo/export \\
        --shards shards/demo/test --out runs/demo/eval sample.k=10
    python launch/slurm.py render --cluster configs/cluster/local.yaml --samples runs/demo/eval \\
        --faceverse faceverse_simple_v2.npy --shards shards/demo/test --out runs/demo/render --ground-truth
    ... --dry-run        print the jobs, resources and resolved config; submit nothing
train: nodes x tasks_per_node processes (one per GPU), a Checkpointable job that saves and requeues itself on
preemption or before the time limit. eval: an array of tasks over the test rows (each writes its reactions
atomically; rows already there are skipped, tasks with nothing left are not submitted), then one aggregation job
(afterok) that merges them in neighbour-matrix order and writes metrics.json and report.md. render: an array of
tasks over the videos (`reactdiff render --rank R --world-size W`; videos already there are skipped, tasks with
nothing left are not submitted), then one job that checks that every video exists and writes render.json.
sweep: a training run per point of a grid, each evaluated on the validation shards, then the table
(reactdiff/cluster/sweep.py).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from .. import cli_args, config
from ..render.job import add_options as add_render_options


def executor(cluster, folder: Path, name: str, nodes: int, tasks_per_node: int, gpus: int):
    import submitit

    kind = None if cluster.executor == "slurm" else cluster.executor.value
    ex = submitit.AutoExecutor(folder=folder / "%j", cluster=kind, slurm_max_num_timeout=cluster.max_num_timeout)
    params = {"name": name, "nodes": nodes, "tasks_per_node": tasks_per_node, "cpus_per_task": cluster.cpus_per_task,
              "timeout_min": cluster.time_min}
    if gpus:
        params["gpus_per_node"] = gpus
    if cluster.mem_gb:
        params["mem_gb"] = cluster.mem_gb
    slurm = {"slurm_partition": cluster.partition, "slurm_account": cluster.account, "slurm_qos": cluster.qos,
             "slurm_constraint": cluster.constraint}
    params.update({k: v for k, v in slurm.items() if v})
    params["slurm_signal_delay_s"] = cluster.signal_delay_s
    if cluster.setup:
        params["slurm_setup"] = list(cluster.setup)
    ex.update_parameters(**params)
    return ex, params


def array_executor(cluster, out: Path, name: str):
    """One task per array element, a GPU each when the profile has GPUs, at most eval_parallelism at once."""
    ex, params = executor(cluster, out / "submitit", name, 1, 1, min(1, cluster.gpus_per_node))
    ex.update_parameters(slurm_array_parallelism=cluster.eval_parallelism)
    return ex, params


def submit_array_then(cluster, out: Path, ex, task, spec: dict, todo: list[int], tasks: int, final,
                      final_name: str) -> list:
    """Array tasks `todo` (of `tasks`) running task(spec, rank, tasks), then one job final(spec) once all of them
    succeeded. -> the array's jobs + the final job."""
    jobs = ex.map_array(task, [spec] * len(todo), todo, [tasks] * len(todo)) if todo else []
    final_ex, _ = executor(cluster, out / "submitit", final_name, 1, 1, 0)
    if jobs and cluster.executor == "slurm":
        # a failed task makes the dependency impossible: SLURM then cancels the final job instead of keeping it
        final_ex.update_parameters(slurm_additional_parameters={
            "dependency": "afterok:" + ":".join(j.job_id for j in jobs), "kill-on-invalid-dep": "yes"})
    elif jobs:  # the local executor has no dependencies: wait here
        for job in jobs:
            job.result()
    return jobs + [final_ex.submit(final, spec)]


def fan_out(args, cluster, out: Path, kind: str, task, spec: dict, todo: list[int], tasks: int, final,
            final_name: str, what: str, final_what: str) -> list:
    """Print the plan of an array + final job; submit it unless --dry-run -> the jobs."""
    ex, params = array_executor(cluster, out, kind)
    print(f"[launch] {kind}: {what}, {len(todo)} still to run {todo if len(todo) < 20 else ''}; then 1 "
          f"{final_what}; {params}")
    if args.dry_run:
        return []
    jobs = submit_array_then(cluster, out, ex, task, spec, todo, tasks, final, f"{kind}-{final_name}")
    ids = [j.job_id for j in jobs[:-1]]
    print(f"[launch] submitted {len(ids)} {kind} task(s) {ids} and {final_what.split(' (')[0]} {jobs[-1].job_id}")
    return jobs


def submit_train(args, cluster) -> list:
    from .jobs import TrainJob

    cfg = config.load(args.config, args.overrides)
    # jobs may start in another folder: pin every path the run writes or reads
    cfg = config.load(args.config, [*args.overrides, f"train.out={Path(cfg.train.out).resolve()}",
                                    f"data.shards={Path(cfg.data.shards).resolve()}"])
    config.check_model_data(cfg)
    run_dir = Path(cfg.train.out).resolve() / cfg.name
    nodes, tpn = args.nodes or cluster.nodes, args.tasks_per_node or cluster.tasks_per_node
    ex, params = executor(cluster, run_dir / "submitit", f"train-{cfg.name}", nodes, tpn, cluster.gpus_per_node)
    print(f"[launch] train {cfg.name}: {nodes} node(s) x {tpn} task(s) = {nodes * tpn} ranks on "
          f"{cluster.executor}; {params}")
    if args.dry_run:
        print(config.to_yaml(cfg))
        return []
    run_dir.mkdir(parents=True, exist_ok=True)
    config.save(cfg, run_dir / "launch_config.yaml")
    job = ex.submit(TrainJob(str(run_dir / "launch_config.yaml")))
    print(f"[launch] submitted job {job.job_id}; logs in {run_dir / 'submitit' / job.job_id}")
    return [job]


def missing_tasks(out: Path, index, tasks: int, whole_clips: bool = False) -> list[int]:
    """Tasks with at least one row whose reactions are not written yet; a task's rows are its samples' matrix rows
    as the shard index records them (with rejected clips or a partial split they are not the sample positions)."""
    from ..sampling.writer import reaction_path

    return [task for task in range(tasks) if any(not reaction_path(out, r).is_file()
                                                 for r in index.task_rows(task, tasks, whole_clips))]


def submit_eval(args, cluster) -> list:
    from .jobs import aggregate, eval_task
    from ..data.shard_index import ShardIndex
    from ..eval.baselines import resolve_baseline_shards
    from ..sampling.job import SampleJob

    index = ShardIndex.open(args.shards)
    tasks = args.tasks or cluster.eval_tasks or len(index.files)
    out = Path(args.out).resolve()
    # checked at submission: an aggregation job that fails after the whole array ran loses hours
    baseline_shards = None if args.no_baselines else resolve_baseline_shards(
        Path(args.shards), Path(args.baseline_shards) if args.baseline_shards else None).resolve()
    job = SampleJob(shards=args.shards, out=str(out), export=args.export, overrides=tuple(args.overrides),
                    quiet=True).absolute()
    from .. import config
    from ..model.export import CONFIG

    # the tasks split the clips as the sampler's reader will: by frames when it takes whole clips (MARS)
    whole_clips = config.load(Path(job.export) / CONFIG, list(job.overrides), saved=True).data.eval_frames == 0
    from ..eval.mars_truth import resolve_protocol

    protocol = resolve_protocol(job.shards, args.protocol)
    references = {name: str(folder) for name, folder in cli_args.named_folders(args.reference, "--reference").items()}
    if references and protocol != "react2024":
        raise ValueError("--reference rows are not part of the MARS protocols' reports yet")
    spec = {"job": job, "shards": job.shards, "out": str(out), "convention": args.convention, "protocol": protocol,
            "threads": cluster.cpus_per_task,
            "baselines": not args.no_baselines, "baseline_shards": str(baseline_shards) if baseline_shards else None,
            "wandb": args.wandb, "references": references}
    return fan_out(args, cluster, out, "eval", eval_task, spec, missing_tasks(out, index, tasks, whole_clips), tasks,
                   aggregate, "aggregate", f"{index.num_samples} dyadic clips ({2 * index.num_samples} speaker "
                   f"rows) in {tasks} tasks", f"aggregation job (baselines from {baseline_shards or 'none'})")


def submit_render(args, cluster) -> list:
    from .jobs import render_index, render_task
    from ..render.job import RenderJob
    from ..render.p3d import resolve
    from ..render.plan import plan, video_path

    if args.overrides:
        raise ValueError(f"render takes options, not config overrides; got {' '.join(args.overrides)}")
    job = RenderJob.from_args(args).absolute()
    job.check()
    if not job.pirender:  # resolved here, once: every task of the array draws with the same backend
        job = dataclasses.replace(job, rasteriser=resolve(job.rasteriser,
                                                          "cuda" if cluster.gpus_per_node > 0 else "cpu"))
    job = dataclasses.replace(job, quiet=True)
    _, videos, _ = plan(Path(job.samples), job.rows, job.k, job.ground_truth, job.grid)
    if not args.tasks and not cluster.render_tasks and cluster.eval_tasks:
        print("[launch] note: the profile's eval_tasks sizes this render array; set render_tasks (eval_tasks for "
              "render arrays is deprecated)")
    tasks = max(1, min(args.tasks or cluster.render_tasks or cluster.eval_tasks or 1, len(videos)))
    out = Path(job.out)
    todo = [r for r in range(tasks) if any(not video_path(out, e, n).is_file() for e, n in videos[r::tasks])]
    spec = {"job": job, "out": str(out), "threads": cluster.cpus_per_task}
    return fan_out(args, cluster, out, "render", render_task, spec, todo, tasks, render_index, "index",
                   f"{len(videos)} videos in {tasks} tasks", "index job")


def build_parser(prog: str = "reactdiff launch") -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    for name in ("train", "eval", "render", "sweep"):
        s = sub.add_parser(name)
        s.add_argument("--cluster", required=True, help="cluster profile (configs/cluster/*.yaml)")
        s.add_argument("--dry-run", action="store_true", help="print jobs, resources and config; submit nothing")
        s.add_argument("--wait", action="store_true", help="wait for the jobs and print their results")
        s.add_argument("overrides", nargs="*", help="config overrides (key=value)")
    train = sub.choices["train"]
    train.add_argument("--config", help="run config (configs/*.yaml)")
    train.add_argument("--nodes", type=int, help="override the profile's nodes")
    train.add_argument("--tasks-per-node", type=int, help="override the profile's tasks per node")
    ev = sub.choices["eval"]
    ev.add_argument("--export", required=True, help="export folder (model.safetensors + config.yaml)")
    ev.add_argument("--shards", required=True, help="test shards")
    ev.add_argument("--out", required=True, help="results folder (reactions/, metrics.json, report.md)")
    ev.add_argument("--tasks", type=int, help="array size (default: the profile's eval_tasks, else one per shard)")
    ev.add_argument("--convention", default="react2024", choices=("react2024", "reactface"))
    ev.add_argument("--protocol", choices=("react2024", "react2025", "react2026"),
                    help="as in `reactdiff evaluate` (default: react2025 for MARS shards, else react2024)")
    ev.add_argument("--baseline-shards", help="split the random/mean baselines draw from (default: the sibling "
                                              "`train` folder of --shards; never --shards itself)")
    ev.add_argument("--no-baselines", action="store_true", help="score the model only")
    ev.add_argument("--reference", action="append", metavar="NAME=DIR",
                    help="another reactions folder of the same clips scored as a `reference: NAME` row, as in "
                         "`reactdiff evaluate` (repeatable; e.g. `reactdiff oracle`'s listeners of synthetic data)")
    ev.add_argument("--wandb", default="offline", choices=("offline", "online", "disabled"),
                    help="log the aggregated metrics, plots and report to wandb, grouped with the training run "
                         "(default offline: a run folder in --out that `wandb sync` uploads)")
    sw = sub.choices["sweep"]
    sw.add_argument("--config", required=True, help="the base run config (configs/*.yaml)")
    sw.add_argument("--grid", action="append", metavar="KEY=V1,V2", help="a swept key and its values (several "
                    "--grid multiply)")
    sw.add_argument("--file", help="a sweep YAML: grid (lists), zip (keys that move together), seeds")
    sw.add_argument("--seeds", type=int, help="seeds 0..N-1 for every point (seed, data.seed and sample.seed)")
    sw.add_argument("--name", help="sweep folder name under train.out (default sweep-<config name>)")
    sw.add_argument("--extend", action="store_true", help="add the new points to an existing sweep folder")
    sw.add_argument("--eval-tasks", type=int, help="sampling tasks per point's evaluation (default: the profile's "
                                                   "eval_tasks, else 1)")
    sw.add_argument("--test", action="store_true", help="after the table, evaluate the best settings' first point "
                                                        "on the test shards")
    sw.add_argument("--test-shards", help="with --test (default: the sibling `test` folder of data.shards)")
    sw.add_argument("--best", default="FRCorr", choices=("FRCorr", "FRDist"),
                    help="with --test: the validation metric (mean over seeds) that picks the best settings")
    rd = sub.choices["render"]
    add_render_options(rd, overwrite=False)
    rd.add_argument("--tasks", type=int, help="array size (default: the profile's render_tasks, else 1)")
    return p


def parse(argv: list[str] | None = None, prog: str = "reactdiff launch") -> argparse.Namespace:
    """Options and key=value overrides may come in any order."""
    return cli_args.parse(build_parser(prog), argv)


def main(argv: list[str] | None = None, prog: str = "reactdiff launch") -> int:
    args = parse(argv, prog)
    try:
        cluster = config.load(args.cluster, schema=config.ClusterConfig)
        from .sweep import submit_sweep

        submit = {"train": submit_train, "eval": submit_eval, "render": submit_render, "sweep": submit_sweep}[args.what]
        jobs = submit(args, cluster)
    except (config.ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    code = 0
    if args.wait:
        for job in jobs:
            results = job.results()
            print(f"[launch] job {job.job_id}: {results}")
            if any(isinstance(r, dict) and r.get("exit") == 75 for r in results):
                code = 75  # preempted and out of requeues (max_num_timeout): the checkpoint is saved, submit again
    return code
