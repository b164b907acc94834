"""`reactdiff launch sweep`: training runs over a grid of settings, each followed by its evaluation on the validation
shards, then one job that tabulates them (sweep.md, sweep.json, sweep_val.png) with the honest baselines and the
mean and spread over seeds.

    python launch/slurm.py sweep --cluster cluster/local_executor --config demo --grid train.lr=1e-3,3e-4 \\
        --grid model.size=tiny,small --seeds 2 train.steps=200          # --dry-run prints the points first

Folder `<train.out>/<name>/`: `runs/<point>/` (a training run as `launch train` makes it; the point's settings
in its config), `evals/<point>/` (its reactions on the validation shards, metrics.json, report.md), and the
tables. A rerun skips the points whose evaluation exists for their current weights, resumes unfinished training
from its checkpoint, and refuses another grid unless --extend. On SLURM each point's evaluation waits (afterok) for
its training and the table job for every evaluation; with `executor: local` the points run one after another.
"""
from __future__ import annotations

import json
from pathlib import Path

from .. import atomic, config
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


def trained(folder: Path, point: Point, cfg) -> bool:
    """The point's training reached its last step and wrote its export."""
    from ..train.run_log import read_rows

    run = folder / "runs" / point.name
    rows = read_rows(run / "metrics.jsonl")
    return (run / "export" / "export.json").is_file() and bool(rows) and rows[-1]["step"] >= cfg.train.steps


def evaluated(folder: Path, point: Point) -> bool:
    """The point's evaluation exists and was made from its current export."""
    metrics, export = folder / "evals" / point.name / "metrics.json", folder / "runs" / point.name / "export"
    if not (metrics.is_file() and (export / "export.json").is_file()):
        return False
    sha = json.loads((export / "export.json").read_text())["sha256"][:16]
    return sha in json.loads(metrics.read_text()).get("sampling", {}).get("weights", "")


def submit_sweep(args, cluster) -> list:
    from ..train.validation import resolve_val_shards
    from .jobs import TrainJob, eval_point, tabulate
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
    cfgs = {p.name: point_config(args, folder, p) for p in points}  # every point's config fails here, not later
    val = resolve_val_shards(base_cfg.data)
    if val is None:
        raise SweepError(f"the sweep evaluates on validation shards: {base_cfg.data.shards} has no sibling `val` "
                         f"folder and data.val_shards is not set")
    todo = [p for p in points if not evaluated(folder, p)]
    nodes, tpn = cluster.nodes, cluster.tasks_per_node
    print(f"[sweep] {folder}: {len(points)} points ({len(todo)} to run), each {nodes} node(s) x {tpn} task(s) "
          f"of training on {cluster.executor}, then its evaluation on {val} (1 task), then the table job")
    for p in points:
        mark = "todo" if p in todo else "done"
        print(f"[sweep]   {p.name} {mark}: {' '.join(p.overrides)}")
    if args.dry_run:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    keys = list(dict.fromkeys(k for p in points for k, _ in p.settings))  # the table's columns, in axis order
    plan = {"base": base, "points": [p.describe() for p in points], "keys": keys,
            "val_shards": str(Path(val).resolve()), "train_shards": str(Path(base_cfg.data.shards).resolve())}
    atomic.write_json(folder / "sweep.json", {"plan": plan, **_results_of(folder)})
    slurm = cluster.executor == "slurm"
    waits, jobs = [], []
    for p in todo:
        cfg, run_dir = cfgs[p.name], folder / "runs" / p.name
        run_dir.mkdir(parents=True, exist_ok=True)
        config.save(cfg, run_dir / "launch_config.yaml")
        train = None
        if not trained(folder, p, cfg):  # a finished run is only evaluated again
            train_ex, _ = executor(cluster, run_dir / "submitit", f"sweep-{p.name}", nodes, tpn,
                                   cluster.gpus_per_node)
            train = train_ex.submit(TrainJob(str(run_dir / "launch_config.yaml")))
        eval_ex, _ = executor(cluster, folder / "submitit", f"sweep-eval-{p.name}", 1, 1,
                              min(1, cluster.gpus_per_node))
        if train is not None and slurm:
            eval_ex.update_parameters(slurm_additional_parameters={"dependency": f"afterok:{train.job_id}",
                                                                   "kill-on-invalid-dep": "yes"})
        elif train is not None:  # the local executor has no dependencies: the points run one after another
            _check_train(train)
        spec = {"export": str(run_dir / "export"), "shards": str(Path(val).resolve()),
                "out": str(folder / "evals" / p.name), "threads": cluster.cpus_per_task,
                "baseline_shards": str(Path(base_cfg.data.shards).resolve())}
        ev = eval_ex.submit(eval_point, spec)
        if not slurm:
            _check_job(ev, "evaluation")
        print(f"[sweep] {p.name}: training job {train.job_id if train else '(done before)'}, evaluation job "
              f"{ev.job_id}")
        waits.append(ev)
        jobs += [j for j in (train, ev) if j is not None]
    final_ex, _ = executor(cluster, folder / "submitit", "sweep-table", 1, 1, 0)
    if slurm and waits:
        final_ex.update_parameters(slurm_additional_parameters={
            "dependency": "afterok:" + ":".join(j.job_id for j in waits), "kill-on-invalid-dep": "yes"})
    table = final_ex.submit(tabulate, str(folder))
    if not slurm:
        _check_job(table, "table")
    print(f"[sweep] table job {table.job_id} -> {folder / 'sweep.md'}")
    return jobs + [table]


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
