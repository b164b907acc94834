"""`reactdiff demo`: the whole system as it stands, end to end on CPU, small.

    synthetic REACT dataset (real layout) -> WebDataset shards (train/val/test, logmel features)
    -> training windows read back (2 DataLoader workers, exact-resume check) -> eval pass over the test clips
    -> DeepSpeed training of a tiny model (2 processes over gloo, ZeRO-2, EMA, checkpoints, export)
    -> evaluation as on a cluster (reactdiff launch eval, submitit's local executor): K reactions per test speaker
       clip by online generation from the EMA weights in 2 array tasks, then the aggregation job: REACT metrics
       against the ground truth, the mean / random (train split) / mime baselines and the ground-truth reference,
       with motion statistics -> metrics.json + report.md
    -> rendering (reactdiff render): grey FaceVerse-mesh mp4s of a clip's reactions and its true listener, the
       speaker beside them with the speaker's audio (a synthetic head in the FaceVerse model-file format)
    -> live (reactdiff serve, loopback): a test clip streamed chunk by chunk through the WebSocket service gives
       the reactions `reactdiff sample` made for it

`--layout mars` runs the same path on a synthetic MARS-layout dataset (REACT 2025 / 2026: session folders, clips of
40-600 frames at 30 fps): whole-clip generation and the react2025 protocol on the 25 facial attributes.

Re-running reuses what is already there (the dataset if its arguments match, verified shards via --resume).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from . import cli_args, config
from .data import shard_folder as mf
from .data.inspect_cli import describe_index, read_batches
from .data.layout import pair_list_path, read_pair_list
from .data.make_shards import make_shards
from .data.reader import BatchStream
from .data.synthetic import generate_dataset
from .eval.report import verdict
from .sampling.writer import load_manifest, reaction_path
from .train.run_log import read_rows



def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff demo", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--layout", choices=("react2024", "mars"), default="react2024",
                   help="react2024 (default) or mars: a MARS-layout dataset (REACT 2025/2026), whole clips of "
                        "variable length at 30 fps, scored with the react2025 protocol")
    p.add_argument("--work", help="folder for the synthetic dataset (default runs/demo, runs/demo_mars for mars)")
    p.add_argument("--shards", help="folder for the shards, one subfolder per split (default shards/demo, "
                                    "shards/demo_mars)")
    p.add_argument("--config", default=str(config.packaged("demo")), help="run config (default: the packaged "
                                                                           "configs/demo.yaml)")
    p.add_argument("--sessions", default="4,1,2", help="train,val,test sessions of 2 dyadic clips (default 4,1,2)")
    p.add_argument("--frames", type=int, default=751, help="frames per clip (REACT: 751)")
    p.add_argument("--video-size", type=int, default=32, help="synthetic video frame size (default 32)")
    p.add_argument("--workers", type=int, default=2, help="processes for generation and sharding (default 2)")
    p.add_argument("--batches", type=int, default=20, help="training batches to read back (default 20)")
    p.add_argument("--train-procs", type=int, default=2, help="training processes (default 2, gloo on CPU)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("overrides", nargs="*", help="config overrides, e.g. data.window=32")
    return p


MARS_OVERRIDES = ("data.eval_frames=0", "data.emotion=true", "model.predict_emotion=true",
                  "train.sample_every=0")  # whole clips; attributes generated and scored; no REACT-style previews
MARS_FRAMES = (40, 600)


def _mars_dataset(work: Path, args) -> dict:
    from .data.synthetic.mars import generate_mars

    train, val, test = (int(x) for x in args.sessions.split(","))
    sessions = {"train": train, "val": val, "test": test}
    root = work / "mars"
    info = root / "synthetic.json"
    if info.is_file() and json.loads(info.read_text())["args"]["sessions"] == sessions:
        print(f"[demo] 1/9 synthetic MARS dataset: reusing {root}")
        return {"root": root, "reused": True}
    s = generate_mars(root, sessions=sessions, clips_per_session=3, min_frames=MARS_FRAMES[0],
                      max_frames=MARS_FRAMES[1], progress=not args.quiet, force=True)
    print(f"[demo] 1/9 synthetic MARS dataset: {root}, {s['clips']} dyadic clips of {MARS_FRAMES[0]}-"
          f"{MARS_FRAMES[1]} frames at 30 fps, {s['bytes'] / 1e6:.0f} MB in {s['seconds']:.1f} s")
    return {"root": root, "reused": False}


def _dataset(work: Path, args) -> dict:
    if args.layout == "mars":
        return _mars_dataset(work, args)
    train, val, test = (int(x) for x in args.sessions.split(","))
    wanted = {"sessions": {"train": train, "val": val, "test": test}, "frames": args.frames,
              "video_size": args.video_size}
    root = work / "react"
    info = root / "synthetic.json"
    if info.is_file():
        have = json.loads(info.read_text())["args"]
        if all(have.get(k) == v for k, v in wanted.items()):
            print(f"[demo] 1/9 synthetic REACT dataset: reusing {root}")
            return {"root": root, "reused": True}
    t0 = time.time()
    summary = generate_dataset(root, seed=0, clips_per_session=2, video="png", workers=args.workers,
                               progress=not args.quiet, force=True, **wanted)
    clips = {s: v["clips"] for s, v in summary["splits"].items()}
    print(f"[demo] 1/9 synthetic REACT dataset: {root}, dyadic clips per split {clips}, "
          f"{summary['bytes'] / 1e6:.0f} MB in {time.time() - t0:.1f} s")
    return {"root": root, "reused": False}


def _shards(root: Path, split: str, out: Path, args) -> dict | None:
    """One split's shards (None for a split with no sessions)."""
    if args.layout == "mars":
        from .data.mars_shards import make_mars_shards

        if not (root / split).is_dir():
            return None
        return make_mars_shards(root, split, out, workers=args.workers, samples_per_shard=2,
                                audio_features="logmel", resume=True, progress=not args.quiet)
    if not read_pair_list(pair_list_path(root, split)):
        return None
    return make_shards(root, split, out, workers=args.workers, samples_per_shard=2, audio_features="logmel",
                       resume=True, progress=not args.quiet)


def run(args) -> int:
    mars = args.layout == "mars"
    work = Path(args.work or ("runs/demo_mars" if mars else "runs/demo"))
    shards = Path(args.shards or ("shards/demo_mars" if mars else "shards/demo"))
    if mars:
        args.overrides = [*MARS_OVERRIDES, *args.overrides]
    ds = _dataset(work, args)
    for split in ("train", "val", "test"):
        index = _shards(ds["root"], split, shards / split, args)
        if index is None:
            continue
        run_ = index["run"]
        print(f"[demo] 2/9 shards {split}: " + describe_index(shards / split)[0].split(": ", 1)[1]
              + f" (wrote {run_['shards_written']}, kept {run_['shards_kept']})")
    cfg = config.load(args.config, [f"data.shards={shards / 'train'}", *args.overrides])
    config.save(cfg, work / "config.yaml")
    lines, facts = read_batches(cfg.data, args.batches, train=True)
    print("[demo] 3/9 " + "\n           ".join(lines))
    # exact resume: stop half way, restore the position into a new stream, compare keys
    straight = [b["key"] + [str(s) for s in b["start"].tolist()] for _, b in zip(range(6), BatchStream(cfg.data))]
    first = BatchStream(cfg.data)
    head = [b["key"] + [str(s) for s in b["start"].tolist()] for _, b in zip(range(3), first)]
    again = BatchStream(cfg.data)
    again.load_state_dict(first.state_dict())
    tail = [b["key"] + [str(s) for s in b["start"].tolist()] for _, b in zip(range(3), again)]
    print(f"[demo]     resume check: 3 batches + restore + 3 batches == 6 straight: {head + tail == straight}")
    eval_cfg = config.load(args.config, [f"data.shards={shards / 'test'}", "data.num_workers=0",
                                         f"data.eval_frames={min(750, args.frames)}", *args.overrides])
    lines, facts = read_batches(eval_cfg.data, 0, train=False)
    total = mf.load_index(shards / "test")["totals"]["role_samples"]
    print("[demo] 4/9 " + "\n           ".join(lines))
    ok = head + tail == straight and sorted(facts["rows"]) == list(range(total))
    export = _train(work, shards / "train", args)
    report = _fan_out_eval(work, shards / "test", export, args) if export is not None else None
    ok = ok and report is not None
    if report is not None:
        model = report["results"]["model"]
        jitter = " / ".join(f"{model['motion'][g]['jitter_ratio']:.2f}" for g in ("expression", "rotation",
                                                                                   "translation"))
        names, keys = (("FRC", "FRD", "S-MSE", "FRVar", "TLCC"), ("FRC", "FRD")) if mars else (
            ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRSyn"), ())
        protocol = f" ({report['protocol']}, {report['kind']})" if mars else ""
        print(f"[demo] 7/9 metrics{protocol}: " + ", ".join(f"{m} {model[m]:.3f}" for m in names) +
              f"; jitter vs real listeners (expression / rotation / translation) {jitter}; the table with the mean, "
              f"random (from the train split) and mime baselines and the generator's own listeners: "
              f"{work / 'eval' / 'report.md'}")
        print(f"           {verdict(report['results'], *keys)}")
    ok = ok and report is not None and _render(work, shards / "test", args)
    ok = ok and _live(work, shards / "test", export, args)
    print(f"[demo] {'OK' if ok else 'FAILED'}: every test role sample read exactly once "
          f"({len(facts['rows'])}/{total}), reactions for all of them; resolved config in {work / 'config.yaml'}")
    return 0 if ok else 1


def _train(work: Path, train_shards: Path, args) -> Path | None:
    """Two training processes under torchrun (gloo on CPU); a rerun resumes from the last complete checkpoint."""
    run_dir = work / "runs" / "demo"
    faceverse = _faceverse_model(work)  # the samples of validation clips during training come with a grid video
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(args.train_procs),
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0", "-m", "reactdiff.train", "--config", args.config,
           f"data.shards={train_shards}", f"train.out={work / 'runs'}", "name=demo",
           f"data.eval_frames={min(750, args.frames)}", f"train.render_faceverse={faceverse}", *args.overrides]
    t0 = time.time()
    env = {**os.environ, "OMP_NUM_THREADS": "1", "WANDB_SILENT": "true"}
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in res.stdout.splitlines() if line.startswith(("step ", "[train]"))]
    if res.returncode != 0:
        print("[demo] 5/9 training FAILED:\n" + res.stdout[-3000:] + res.stderr[-3000:], file=sys.stderr)
        return None
    rows = read_rows(run_dir / "metrics.jsonl")
    print(f"[demo] 5/9 training: {args.train_procs} processes, {rows[-1]['step']} steps in {time.time() - t0:.1f} s, "
          f"loss {rows[0]['loss']:.3f} (step {rows[0]['step']}) -> {rows[-1]['loss']:.3f} (step {rows[-1]['step']}); "
          f"{run_dir}/loss.png, EMA export {run_dir / 'export'}")
    watched = [line for line in lines if line.startswith(("[train] validation", "[train] samples"))]
    done = [line for line in lines if line.startswith("[train] done")]
    for line in [line for line in lines if "parameters," in line][-1:] + watched[-2:] + done[-1:]:
        print(f"           {line}")
    return run_dir / "export"


def _oracle(work: Path, args) -> list[str]:
    """`--reference` words for the synthetic generator's own new listeners of the test speakers, scored next to the
    model: they show which of the honest-baseline targets any model of these listeners can reach."""
    if args.layout == "mars":
        return []  # (reference rows are not in the MARS reports yet)
    from .data.synthetic.oracle import oracle_name, write_oracle_reactions

    cfg = config.load(args.config, args.overrides)
    folder = write_oracle_reactions(work / "react", "test", work / "oracle", cfg.sample.k, min(750, args.frames))
    return ["--reference", f"{oracle_name(False)}={folder}"]


def _fan_out_eval(work: Path, test_shards: Path, export: Path, args) -> dict | None:
    """Sampling and metrics as on a cluster: reactdiff launch eval with submitit's local executor (an array of 2
    sampling tasks, then the aggregation job), with the data's own generator as a reference row."""
    out = work / "eval"
    sha = json.loads((export / "export.json").read_text())["sha256"][:16]
    try:
        if sha not in load_manifest(out)["settings"]["weights"]:
            shutil.rmtree(out)  # reactions of an earlier model: start over
    except FileNotFoundError:
        pass
    cmd = [sys.executable, "-m", "reactdiff", "launch", "eval",
           "--cluster", str(config.packaged("cluster/local_executor")),
           "--export", str(export), "--shards", str(test_shards), "--out", str(out), "--wait", *_oracle(work, args),
           f"data.eval_frames={min(750, args.frames)}", *args.overrides]
    t0 = time.time()
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0 or not (out / "metrics.json").is_file():
        print("[demo] 6/9 evaluation fan-out FAILED:\n" + res.stdout[-3000:] + res.stderr[-3000:], file=sys.stderr)
        return None
    report = json.loads((out / "metrics.json").read_text())
    first = np.load(reaction_path(out, 0))
    print(f"[demo] 6/9 evaluation fan-out (reactdiff launch eval, submitit local executor): 2 sampling tasks + "
          f"aggregation in {time.time() - t0:.1f} s; {report['rows']} speaker clips x {first.shape[0]} reactions of "
          f"{first.shape[1]} frames (raw 3DMM, {first.shape[2]} dims) from the trained EMA weights -> {out}/reactions")
    return report


def _faceverse_model(work: Path) -> Path:
    """A synthetic head in the FaceVerse model-file format (written once)."""
    from .render.synthetic_model import write_model

    model = work / "faceverse_synthetic.npy"
    if not model.is_file():
        write_model(model)
    return model


def _render(work: Path, test_shards: Path, args) -> bool:
    """Videos of the first speaker clip's first two reactions and of its true listener (a rerun keeps them)."""
    from .render.cli import main as render_main

    model = _faceverse_model(work)
    out = work / "render"
    if (out / "render.json").is_file():
        rendered = json.loads((out / "render.json").read_text())["settings"].get("weights")
        if rendered != load_manifest(work / "eval")["settings"]["weights"]:
            shutil.rmtree(out)  # videos of an earlier model's reactions: start over
    t0 = time.time()
    code = render_main(["--samples", str(work / "eval"), "--faceverse", str(model), "--out", str(out),
                        "--shards", str(test_shards), "--ground-truth", "--rows", "0", "--k", "2", "--size", "128",
                        *(["--quiet"] if args.quiet else [])])
    if code != 0:
        print("[demo] 8/9 rendering FAILED", file=sys.stderr)
        return False
    files = sorted(str(p.relative_to(out)) for p in out.rglob("*.mp4"))
    print(f"[demo] 8/9 rendering (reactdiff render) in {time.time() - t0:.1f} s: {', '.join(files)} in {out} "
          f"([speaker | listener] grey meshes, {load_manifest(work / 'eval')['settings'].get('fps', 25)} fps, "
          f"speaker audio)")
    return len(files) == 3


def _live(work: Path, test_shards: Path, export: Path, args) -> bool:
    """The first test clip through the live service (in this process, loopback), against its sampled reactions."""
    try:
        import websockets  # noqa: F401 - the serve extra
    except ImportError:
        print("[demo] 9/9 live: skipped (the serve extra is not installed: pip install -e .[serve])")
        return True
    from .serve.background import start
    from .serve.client import stream_clip
    from .serve.clips import ClipCatalogue
    from .serve.session import LiveModel, SessionError

    live = LiveModel.load(export)
    try:
        live.frontend()
    except SessionError as exc:
        print(f"[demo] 9/9 live: skipped ({exc})")
        return True
    sampled = np.load(reaction_path(work / "eval", 0))
    face, audio, key, role = ClipCatalogue(test_shards).speaker(0)
    face = face[:sampled.shape[1]]  # the frames the evaluation generated (data.eval_frames)
    server = start(live, shards=test_shards, faceverse=_faceverse_model(work))
    try:
        t0 = time.time()
        got, messages = stream_clip(server.url, face, audio, k=sampled.shape[0], key=key, role=role, chunk=8)
    finally:
        server.close()
    windows = [w for m in messages if m["type"] == "frames" for w in m["windows"]]
    compute = np.median([w["compute_ms"] for w in windows])
    diff = float(np.abs(got - sampled).max())
    print(f"[demo] 9/9 live (reactdiff serve, loopback): test clip 0 streamed in 8-frame chunks in "
          f"{time.time() - t0:.1f} s: {got.shape[1]} frames x {got.shape[0]} reactions in {len(windows)} windows "
          f"(compute {compute:.0f} ms per window, median); max |difference| from reactdiff sample's: {diff:.1e}; "
          f"`reactdiff serve --export {export} --shards {test_shards} --faceverse {_faceverse_model(work)}` "
          f"serves the page at http://127.0.0.1:8765/")
    return diff < 1e-3


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    try:
        return run(args)
    except (config.ConfigError, FileNotFoundError, ValueError) as exc:
        print(f"reactdiff demo: error: {exc}", file=sys.stderr)
        return 2
