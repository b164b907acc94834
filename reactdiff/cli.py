"""`reactdiff <command> ...`: one entry point for every tool (each also runs as `python tools/<tool>.py`)."""
from __future__ import annotations

import importlib
import sys

# command -> (module with main(argv) -> int, one-line help)
COMMANDS = {
    "synth": ("reactdiff.data.synthetic.cli", "write a synthetic REACT dataset (real layout, planted coupling)"),
    "oracle": ("reactdiff.data.synthetic.oracle_cli",
               "a synthetic dataset's own listeners as reactions: what a perfect model reaches (evaluate --reference)"),
    "shards": ("reactdiff.data.shards_cli", "pack a REACT split into WebDataset shards + index.json"),
    "inspect": ("reactdiff.data.inspect_cli", "read windows back from shards and print a summary"),
    "config": ("reactdiff.config_cli", "print the resolved run config (--print) or every config key (--keys)"),
    "train": ("reactdiff.train.cli", "DeepSpeed training (run under torchrun / deepspeed / SLURM for several ranks)"),
    "export": ("reactdiff.train.export_cli", "write a checkpoint's EMA weights as an inference export"),
    "sample": ("reactdiff.sampling.cli", "generate K reactions per speaker clip of a shard folder"),
    "evaluate": ("reactdiff.eval.cli", "REACT metrics of generated reactions -> metrics.json + report.md"),
    "render": ("reactdiff.render.cli", "mp4 videos of generated reactions (grey FaceVerse meshes, speaker beside)"),
    "serve": ("reactdiff.serve.cli", "live listener reactions over WebSockets, with a web page (the serve extra)"),
    "launch": ("reactdiff.cluster.launch_cli", "submit train / eval / render to SLURM (= python launch/slurm.py)"),
    "demo": ("reactdiff.demo", "the whole system end to end on CPU, small"),
    "bench": (None, "benchmarks: `reactdiff bench loader|model|train|metrics|cluster|render|watch|stream|quality`"),
}
BENCHES = {
    "loader": ("reactdiff.bench.loader", "training windows/s from shards vs the raw REACT layout"),
    "train": ("reactdiff.bench.train",
              "end-to-end training throughput per size and process count, vs the released step"),
    "metrics": ("reactdiff.bench.dtw_speed",
                "batched torch DTW / FRDist vs the reference tslearn + multiprocessing loop"),
    "cluster": ("reactdiff.bench.cluster", "evaluation fan-out wall time on 1 vs 2 SLURM nodes"),
    "model": ("reactdiff.bench.model", "generation and training-step speed per model size vs the released schedule"),
    "render": ("reactdiff.bench.render", "grey-mesh (torch, pytorch3d) and PIRender frames/s, batched vs per frame"),
    "watch": ("reactdiff.bench.watch", "validation + samples during training as a share of training time"),
    "stream": ("reactdiff.bench.stream", "live sessions served in real time, batched vs one window per call"),
    "quality": ("reactdiff.bench.quality",
                "train -> sample -> evaluate on planted couplings: the model vs honest baselines"),
}


def _usage() -> str:
    lines = ["usage: reactdiff <command> [args]   (reactdiff <command> --help for its options)", "", "commands:"]
    lines += [f"  {name:<10} {help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "benchmarks:"] + [f"  bench {name:<8} {help_}" for name, (_, help_) in BENCHES.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    table = COMMANDS
    if name == "bench":
        if not rest or rest[0] in ("-h", "--help"):
            print(_usage())
            return 0 if rest else 2
        name, rest, table = rest[0], rest[1:], BENCHES
    if name not in table:
        print(f"reactdiff: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module = importlib.import_module(table[name][0])
    return int(module.main(rest) or 0)


def _deprecated(old: str, command: str) -> int:
    print(f"{old}: deprecated name; use `reactdiff {command}` (the same tool)", file=sys.stderr)
    return main([command, *sys.argv[1:]])


def make_shards_alias() -> int:
    return _deprecated("reactdiff-make-shards", "shards")


def synth_alias() -> int:
    return _deprecated("reactdiff-synth", "synth")


if __name__ == "__main__":
    raise SystemExit(main())
