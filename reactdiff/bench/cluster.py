"""`reactdiff bench cluster` (tools/bench_cluster.py): wall time of the same evaluation fan-out on 1 vs 2 SLURM
nodes (launch/slurm.py eval: sampling array + aggregation), and the parallel efficiency. Needs a SLURM cluster
(e.g. `bash tools/slurm_local.sh up` and its `env`); on the local one the two "nodes" share this host's cores.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from .. import config



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench cluster", description=__doc__)
    p.add_argument("--cluster", default=str(config.packaged("cluster/local")), help="cluster profile")
    p.add_argument("--sessions", type=int, default=2, help="synthetic test sessions of 2 clips (default 2)")
    p.add_argument("--size", default="small", help="model size (random weights; default small)")
    p.add_argument("--k", type=int, default=4, help="reactions per clip (default 4)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps (default 10)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    from ..cluster import launch_cli as launcher
    from ..data.make_shards import make_shards
    from ..data.synthetic import generate_dataset
    from ..model.export import build_model, save_export

    cluster = config.load(args.cluster, schema=config.ClusterConfig)
    with tempfile.TemporaryDirectory(prefix="bench_cluster_", dir="runs" if Path("runs").is_dir()
                                     else None) as tmp:
        tmp = Path(tmp)
        generate_dataset(tmp / "react", sessions={"train": 1, "val": 0, "test": args.sessions}, video="png",
                         video_size=16, workers=2, progress=False)
        for split in ("train", "test"):  # the aggregation draws its random/mean baselines from the train split
            make_shards(tmp / "react", split, tmp / "shards" / split, samples_per_shard=1, audio_features="logmel",
                        progress=False)
        cfg = config.load(None, [f"model.size={args.size}", f"data.shards={tmp / 'shards/test'}"])
        torch.manual_seed(0)
        export = save_export(tmp / "export", build_model(cfg).eval(), cfg, kind="random-init")
        rows = []
        for tasks in (1, 2):
            out = tmp / f"eval{tasks}"
            argv = ["eval", "--cluster", args.cluster, "--export", str(export), "--shards", str(tmp / "shards/test"),
                    "--out", str(out), "--tasks", str(tasks), f"sample.k={args.k}", f"sample.steps={args.steps}"]
            t0 = time.perf_counter()
            jobs = launcher.submit_eval(launcher.parse(argv), cluster)
            jobs[-1].result()
            rows.append((tasks, time.perf_counter() - t0))
        one = rows[0][1]
        print(f"\neval fan-out: {2 * 2 * args.sessions} speaker clips x {args.k} reactions x 750 frames, {args.size} "
              f"model, {args.steps} steps, profile {Path(args.cluster).name}")
        print(f"{'nodes (tasks)':>13} {'wall s':>8} {'speed-up':>9} {'efficiency':>10}")
        for tasks, secs in rows:
            print(f"{tasks:>13} {secs:>8.1f} {one / secs:>8.2f}x {100 * one / secs / tasks:>9.0f}%")
    return 0
