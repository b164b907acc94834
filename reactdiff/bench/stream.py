"""`reactdiff bench stream` (tools/bench_stream.py): how many live sessions one machine serves in real time.

A `reactdiff serve` service runs in this process (loopback only); a client process opens N sessions at once and
streams each a synthetic speaker (random 3DMM frames + audio) in real time, one 40 ms frame at a time. Per window
we record the compute latency (the network call the window shared, as the service reports it) and, per listener
frame, the end-to-end latency (the speaker frame's send -> its listener frame's arrival, client clock). A session
count is real time when the p95 compute latency is below the hop (window - overlap) and the p95 end-to-end latency
below window + hop. N doubles until a count misses. The baseline, in the same run: the same service with dynamic
batching off (one session's window per network call).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from .. import config


def _client(url: str, sessions: int, frames: int, k: int, fps: int, seed: int, out) -> None:
    """The client process: N sessions streaming in real time; -> per-session latencies through `out`."""
    from websockets.asyncio.client import connect

    from ..serve.protocol import FACE, PCM

    rng = np.random.default_rng(seed)
    spf = 16000 // fps

    async def one(i: int) -> dict:
        face = (rng.standard_normal((frames, 58)) * 0.1).astype("<f4")
        audio = (rng.standard_normal(frames * spf) * 0.05).astype("<f4")
        sent, e2e, compute, rows, got = {}, [], [], [], 0
        async with connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "open", "k": k, "key": f"bench{i}"}))
            json.loads(await ws.recv())

            async def receive():
                nonlocal got
                async for message in ws:
                    msg = json.loads(message)
                    now = time.perf_counter()
                    if msg["type"] == "frames":
                        if not msg["final"]:
                            e2e.extend(now - sent[f] for f in range(msg["start"], msg["start"] + msg["count"]))
                        compute.extend(w["compute_ms"] / 1000 for w in msg["windows"])
                        rows.extend(w["batch_rows"] for w in msg["windows"])
                        got = max(got, msg["start"] + msg["count"])
                    elif msg["type"] in ("done", "error"):
                        return msg

            reader = asyncio.create_task(receive())
            t0 = time.perf_counter() + i / sessions / fps  # the sessions' frames spread over one frame time
            for f in range(frames):
                await asyncio.sleep(max(0.0, t0 + f / fps - time.perf_counter()))
                await ws.send(PCM + audio[f * spf:(f + 1) * spf].tobytes())
                await ws.send(FACE + face[f:f + 1].tobytes())
                sent[f] = time.perf_counter()
            await ws.send(json.dumps({"type": "end"}))
            last = await reader
        return {"e2e": e2e, "compute": compute, "rows": rows, "frames": got, "end": last["type"]}

    async def main():
        return await asyncio.gather(*(one(i) for i in range(sessions)))

    out.put(asyncio.run(main()))


def measure(url: str, sessions: int, frames: int, k: int, fps: int) -> dict:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_client, args=(url, sessions, frames, k, fps, sessions, queue))
    proc.start()
    results = queue.get(timeout=frames / fps * 4 + 120)
    proc.join(30)
    e2e = np.concatenate([r["e2e"] for r in results])
    compute = np.concatenate([r["compute"] for r in results])
    rows = np.concatenate([r["rows"] for r in results])
    return {"sessions": sessions, "k": k, "compute_p50": float(np.percentile(compute, 50)),
            "compute_p95": float(np.percentile(compute, 95)), "e2e_p50": float(np.percentile(e2e, 50)),
            "e2e_p95": float(np.percentile(e2e, 95)), "rows": float(rows.mean()),
            "complete": all(r["end"] == "done" and r["frames"] == frames for r in results)}


def make_live(size: str, steps: int, window: int, overlap: int, history: int, device: str, tmp: Path):
    from ..model.export import build_model, save_export
    from ..serve.session import LiveModel

    cfg = config.load(None, [f"model.size={size}", "model.audio=logmel", "data.audio=raw", f"data.history={history}",
                             f"data.window={window}", f"sample.window={window}", f"sample.overlap={overlap}",
                             f"sample.steps={steps}", "sample.k=1", "data.shards=/nonexistent"])
    torch.manual_seed(0)
    export = save_export(tmp / "export", build_model(cfg).eval(), cfg, kind="random-init")
    return LiveModel.load(export, device), cfg


def sweep(live, args, batched: bool, k: int) -> list[dict]:
    from ..serve.background import start

    hop_s = (args.window - args.overlap) / live.fps
    rows_cap = 1024 if batched else k
    server = start(live, max_sessions=args.max_sessions, max_wait_s=args.max_wait_ms / 1000, max_rows=rows_cap)
    results, n = [], 1
    measure(server.url, 1, args.window + 2, k, live.fps)  # warm-up: the first windows pay one-off costs
    try:
        while n <= args.max_sessions:
            r = measure(server.url, n, args.frames, k, live.fps)
            r["real_time"] = (r["complete"] and r["compute_p95"] < hop_s
                              and r["e2e_p95"] < (args.window + args.window - args.overlap) / live.fps)
            results.append(r)
            print(f"  [{'batched' if batched else 'one window per call'}, K={k}] {n:>3} sessions: compute p95 "
                  f"{r['compute_p95'] * 1000:.0f} ms, e2e p95 {r['e2e_p95']:.2f} s, rows/call {r['rows']:.1f} "
                  f"-> {'real time' if r['real_time'] else 'misses'}", flush=True)
            if not r["real_time"]:
                break
            n *= 2
    finally:
        server.close()
    return results


def best(results: list[dict]) -> int:
    ok = [r["sessions"] for r in results if r["real_time"]]
    return max(ok) if ok else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="reactdiff bench stream", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", default="small", help="model size (default small; the paper's: paper)")
    p.add_argument("--steps", type=int, default=10, help="sampling steps per window (default 10)")
    p.add_argument("--window", type=int, default=64)
    p.add_argument("--overlap", type=int, default=8)
    p.add_argument("--history", type=int, default=64)
    p.add_argument("--seconds", type=float, default=9.0, help="speaker seconds each session streams (default 9)")
    p.add_argument("--k", type=int, nargs="+", default=[1, 4], help="reactions per session, one row each")
    p.add_argument("--max-sessions", type=int, default=64)
    p.add_argument("--max-wait-ms", type=float, default=10.0)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--no-baseline", action="store_true", help="skip the one-window-per-call baseline")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        live, cfg = make_live(args.size, args.steps, args.window, args.overlap, args.history, args.device, Path(tmp))
        args.frames = int(args.seconds * live.fps)
        hop = args.window - args.overlap
        device = (torch.cuda.get_device_name() if live.device.type == "cuda"
                  else f"cpu ({torch.get_num_threads()} threads)")
        print(f"[bench stream] {args.size} model ({live.model.num_parameters():,} parameters), {args.steps} steps "
              f"{cfg.sample.sampler.value}, window {args.window} / hop {hop} frames at {live.fps} fps (hop "
              f"{hop / live.fps:.2f} s, deadline: p95 compute < hop, p95 end-to-end < window + hop = "
              f"{(args.window + hop) / live.fps:.2f} s), logmel audio, {args.seconds:g} s per session, on {device}")
        rows = []
        for k in args.k:
            batched = sweep(live, args, True, k)
            base = [] if args.no_baseline else sweep(live, args, False, k)
            rows.append((k, batched, base))
    print()
    print("| K | sessions | compute p50 / p95 (ms) | end-to-end p50 / p95 (s) | rows per call | real time |")
    print("| ---: | ---: | ---: | ---: | ---: | :---: |")
    for k, batched, base in rows:
        for r in batched:
            print(f"| {k} | {r['sessions']} | {r['compute_p50'] * 1000:.0f} / {r['compute_p95'] * 1000:.0f} | "
                  f"{r['e2e_p50']:.2f} / {r['e2e_p95']:.2f} | {r['rows']:.1f} | {'yes' if r['real_time'] else 'no'} |")
    print()
    print("| K | real-time sessions, batched | one window per call (baseline, same run) | ratio |")
    print("| ---: | ---: | ---: | ---: |")
    for k, batched, base in rows:
        b, u = best(batched), (best(base) if base else None)
        ratio = "-" if not u else f"{b / u:.1f}x"
        print(f"| {k} | {b} | {'-' if u is None else u} | {ratio} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
