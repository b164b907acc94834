"""`reactdiff launch sweep`: training runs over a grid of settings, each followed by its evaluation on the validation
shards, then one job that tabulates them (sweep.md, sweep.json, sweep_val.png) with the honest baselines and the
mean and spread over seeds; with --test that job also evaluates the best point on the test shards.

    python launch/slurm.py sweep --cluster cluster/local_executor --config demo --grid train.lr=1e-3,3e-4 \\
        --grid model.size=tiny,small --seeds 2 train.steps=200          # --dry-run prints the points first

Folder `<train.out>/<name>/`: `runs/<run>/` (a training run as `launch train` makes it; the point's settings
in its config; points that differ only in sampling settings, `sample.*`, share one run), `evals/<point>/` (its
reactions on the validation shards, metrics.json, report.md), `jobs.json` (the jobs submitted per point), and the
tables. On SLURM the trainings are one job array (each element a
requeueable training job), each point's evaluation is an array of sampling tasks that waits (afterok) for its
training element, then a scoring job, and the table job waits for every scoring job. A rerun skips the points whose
evaluation exists for their current weights and those whose jobs SLURM still holds, resumes unfinished training
from its checkpoint, and refuses another grid unless --extend. With `executor: local` the points run one after
another.
"""
from __future__ import annotations

import json
import shutil
from pathlib import Path

from .. import atomic, config
from . import sweep_jobs
from .sweep_plan import Point, SweepError, check_plan, load_file, make_points, parse_grid


def sweep_folder(cfg, name: str | None) -> Path:
    return Path(cfg.train.out).resolve() / (name or f"sweep-{cfg.name}")


def point_config(args, folder: Path, point: Point):
    """The point's resolved config: the base config, the command's overrides, the point's settings; paths pinned
    (jobs may start elsewhere)."""
    from ..train.validation import resolve_val_shards

    cfg = config.load(args.config, [*args.overrides, *point.overrides])
    val = resolve_val_shards(cfg.data)
    return config.load(args.config, [*args.overrides, *point.overrides, f"name={point.name}",
                                     f"train.out={folder / 'runs'}", f"data.shards={Path(cfg.data.shards).resolve()}",
                                     f"data.val_shards={Path(val).resolve() if val is not None else 'none'}"])


def last_step(run_dir: Path) -> int:
    """The last step a training run logged (0 before its first)."""
    from ..train.run_log import read_rows

    rows = read_rows(Path(run_dir) / "metrics.jsonl")
    return rows[-1]["step"] if rows else 0


def trained(folder: Path, run: Point, cfg) -> bool:
    """The training run (a point's `training`) reached its last step and wrote its export."""
    run_dir = folder / "runs" / run.name
    return (run_dir / "export" / "export.json").is_file() and last_step(run_dir) >= cfg.train.steps


def evaluated(folder: Path, point: Point, cfg) -> bool:
    """The point's training finished and its evaluation was made from the export it wrote."""
    metrics, export = folder / "evals" / point.name / "metrics.json", folder / "runs" / point.training.name / "export"
    if not (metrics.is_file() and trained(folder, point.training, cfg)):
        return False
    sha = json.loads((export / "export.json").read_text())["sha256"][:16]
    return sha in json.loads(metrics.read_text()).get("sampling", {}).get("weights", "")


def submit_sweep(args, cluster) -> list:
    from ..train.validation import resolve_val_shards
    from .jobs import tabulate
    from .launch_cli import executor

    base_cfg = config.load(args.config, args.overrides)
    folder = sweep_folder(base_cfg, args.name)
    axes, seeds = parse_grid(args.grid or []), args.seeds
    if args.file:
        file_axes, file_seeds = load_file(args.file)
        axes, seeds = axes + file_axes, seeds if seeds is not None else file_seeds
    points = make_points(axes, seeds)
    base = {"config": str(args.config), "overrides": list(args.overrides)}
    points = check_plan(folder, points, base, args.extend)
    for p in points:  # every point's settings fail here, not in a job
        point_config(args, folder, p)
    runs = {p.training.name: p.training for p in points}  # points that differ only in sample.* share a training
    cfgs = {name: point_config(args, folder, run) for name, run in runs.items()}
    val = resolve_val_shards(base_cfg.data)
    if val is None:
        raise SweepError(f"the sweep evaluates on validation shards: {base_cfg.data.shards} has no sibling `val` "
                         f"folder and data.val_shards is not set")
    val, train_shards = Path(val).resolve(), Path(base_cfg.data.shards).resolve()
    test = _test_shards(args, train_shards)
    slurm = cluster.executor == "slurm"
    todo = [p for p in points if not evaluated(folder, p, cfgs[p.training.name])]
    records = sweep_jobs.read(folder)
    active = sweep_jobs.active_slurm_jobs() if slurm and todo else set()
    queued = {p.name: q for p in todo if (q := sweep_jobs.still_queued(records.get(p.name, {}), active))}
    tasks = max(1, args.eval_tasks or cluster.eval_tasks or 1)
    nodes, tpn = cluster.nodes, cluster.tasks_per_node
    print(f"[sweep] {folder}: {len(points)} points ({len(todo)} to run, {len(queued)} of them still queued) from "
          f"{len(runs)} training runs, each {nodes} node(s) x {tpn} task(s) on {cluster.executor}; every point's "
          f"evaluation on {val} "
          f"({tasks} task(s) + scoring), then the table job" + (f", then the best point on {test}" if test else ""))
    for p in points:
        mark = "queued" if p.name in queued else "todo" if p in todo else "done"
        shared = f" (training {p.training.name})" if p.training.name != p.name else ""
        print(f"[sweep]   {p.name} {mark}: {' '.join(p.overrides)}{shared}")
    if args.dry_run:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for p in points for k, _ in p.settings))  # the table's columns, in axis order
    plan = {"base": base, "points": [p.describe() for p in points], "keys": keys, "val_shards": str(val),
            "train_shards": str(train_shards)}
    atomic.write_json(folder / "sweep.json", {"plan": plan, **_results_of(folder)})
    submit = [p for p in todo if p.name not in queued]
    needed = [runs[name] for name in dict.fromkeys(p.training.name for p in submit)]
    for run in needed:
        run_dir = folder / "runs" / run.name
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(cfgs[run.name], run_dir / "launch_config.yaml")
    to_train = [r for r in needed if not trained(folder, r, cfgs[r.name])]  # a finished run is only evaluated again
    trains = _submit_trainings(cluster, folder, to_train) if slurm else {}
    waits, jobs = [records[n]["score"] for n in queued], []
    for p in submit:
        run = p.training
        if not slurm and run in to_train and run.name not in trains:  # the local executor has no dependencies:
            trains.update(_submit_trainings(cluster, folder, [run]))   # the points run one after another
            _check_train(trains[run.name])
            jobs.append(trains[run.name])
        train = trains.get(run.name)
        evals = _submit_evaluation(cluster, folder, p, cfgs[run.name], val, train_shards, tasks,
                                   train if slurm else None, fresh=run in to_train)
        sweep_jobs.record(folder, p.name, {"train": train.job_id if train else None,
                                           "eval": [j.job_id for j in evals[:-1]], "score": evals[-1].job_id})
        print(f"[sweep] {p.name}: training job {train.job_id if train else '(done before)'}, evaluation task(s) "
              f"{[j.job_id for j in evals[:-1]]}, scoring job {evals[-1].job_id}")
        waits.append(evals[-1].job_id)
        jobs += evals
    jobs = list(trains.values()) + jobs if slurm else jobs
    final_ex, _ = executor(cluster, folder / "submitit", "sweep-table", 1, 1, min(1, cluster.gpus_per_node))
    if slurm and waits:
        final_ex.update_parameters(slurm_additional_parameters={
            "dependency": "afterok:" + ":".join(waits), "kill-on-invalid-dep": "yes"})
    spec = {"folder": str(folder), "test": None if test is None else {
        "shards": str(test), "best": args.best, "baseline_shards": str(train_shards), "threads": cluster.cpus_per_task}}
    table = final_ex.submit(tabulate, spec)
    if not slurm:
        _check_job(table, "table")
    print(f"[sweep] table job {table.job_id} -> {folder / 'sweep.md'}")
    return jobs + [table]


def _test_shards(args, train_shards: Path) -> Path | None:
    """--test: the shards the best point is tested on (default: the sibling `test` of the training shards)."""
    if not args.test:
        return None
    test = Path(args.test_shards) if args.test_shards else train_shards.parent / "test"
    if not (test / "index.json").is_file():
        raise SweepError(f"--test: {test} is not a shard folder (no index.json); pass --test-shards DIR")
    return test.resolve()


def _submit_trainings(cluster, folder: Path, points: list[Point]) -> dict:
    """One requeueable training job per point; on SLURM one array (every point has the profile's shape)."""
    from .jobs import TrainJob
    from .launch_cli import executor

    if not points:
        return {}
    ex, _ = executor(cluster, folder / "submitit", f"sweep-train-{folder.name}", cluster.nodes,
                     cluster.tasks_per_node, cluster.gpus_per_node)
    configs = [TrainJob(str(folder / "runs" / p.name / "launch_config.yaml")) for p in points]
    if cluster.executor != "slurm":
        return {p.name: ex.submit(job) for p, job in zip(points, configs)}
    with ex.batch():
        jobs = [ex.submit(job) for job in configs]
    return {p.name: job for p, job in zip(points, jobs)}


def _submit_evaluation(cluster, folder: Path, point: Point, cfg, val: Path, baseline_shards: Path, tasks: int,
                       after, fresh: bool) -> list:
    """The point's evaluation fan-out on the validation shards (after its training job, when there is one), then
    its scoring job -> the jobs, the scoring job last. Reactions of other weights than the point's are removed
    first (fresh: its training is about to change them); those of its current weights are kept and completed."""
    from ..data.shard_index import ShardIndex
    from ..eval.mars_truth import resolve_protocol
    from ..sampling.job import SampleJob
    from .jobs import aggregate, sweep_eval_task
    from .launch_cli import array_executor, missing_tasks, submit_array_then

    out, run = folder / "evals" / point.name, folder / "runs" / point.training.name
    if out.exists() and (fresh or not _reactions_of(out, run / "export")):
        shutil.rmtree(out)
    job = SampleJob(shards=str(val), out=str(out), export=str(run / "export"), overrides=tuple(point.sample_overrides),
                    quiet=True).absolute()
    spec = {"job": job, "run": str(run), "steps": cfg.train.steps,
            "shards": str(val), "out": str(out), "protocol": resolve_protocol(val, None),
            "threads": cluster.cpus_per_task, "baselines": True, "baseline_shards": str(baseline_shards),
            "wandb": "disabled"}
    todo = missing_tasks(out, ShardIndex.open(val), tasks, whole_clips=cfg.data.eval_frames == 0)
    ex, _ = array_executor(cluster, out, f"sweep-eval-{point.name}")
    if after is not None:
        ex.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{after.job_id}",
                                                          "kill-on-invalid-dep": "yes"})
    jobs = submit_array_then(cluster, out, ex, sweep_eval_task, spec, todo, tasks, aggregate,
                             f"sweep-score-{point.name}")
    if cluster.executor != "slurm":
        _check_job(jobs[-1], "evaluation")
    return jobs


def _reactions_of(out: Path, export: Path) -> bool:
    """Whether the reactions in `out` were made with the export's current weights."""
    from ..sampling.writer import load_manifest

    if not (export / "export.json").is_file():
        return False
    try:
        weights = load_manifest(out)["settings"].get("weights", "")
    except (FileNotFoundError, ValueError):
        return False
    return json.loads((export / "export.json").read_text())["sha256"][:16] in weights


def _check_job(job, what: str) -> None:
    try:
        job.results()
    except Exception as exc:  # noqa: BLE001 - submitit's FailedJobError, with the job's own traceback inside
        raise SweepError(f"{what} job {job.job_id} failed: {str(exc).strip().splitlines()[-1]}; its log: "
                         f"{job.paths.stderr}; rerun the sweep to redo it") from None


def _check_train(job) -> None:
    _check_job(job, "training")
    results = job.results()
    if any(isinstance(r, dict) and r.get("exit") not in (0, None) for r in results):
        raise SweepError(f"training job {job.job_id} ended with {results}; rerun the sweep to resume it")


def _results_of(folder: Path) -> dict:
    path = folder / "sweep.json"
    if not path.is_file():
        return {}
    old = json.loads(path.read_text())
    return {k: v for k, v in old.items() if k != "plan"}
