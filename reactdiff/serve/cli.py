"""`reactdiff serve`: live listener reactions from an export over WebSockets (ws://HOST:PORT/ws), with a web page
at http://HOST:PORT/ that streams a speaker clip, a wav file or the microphone and draws the listener live.
Binds localhost unless told otherwise. The protocol: reactdiff/serve/protocol.py and the README."""
from __future__ import annotations

import argparse
import asyncio
import sys

from .. import cli_args


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff serve", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--export", required=True, help="an export folder (training writes <run>/export)")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8765, help="port (default 8765; 0: any free port)")
    p.add_argument("--device", default="cpu", help="torch device of the model (default cpu; e.g. cuda)")
    p.add_argument("--shards", default=None, help="a shard folder whose speaker clips the page can stream")
    p.add_argument("--faceverse", default=None, help="a FaceVerse v2 model file: the mesh the page draws")
    p.add_argument("--max-sessions", type=int, default=16, help="sessions at once (default 16)")
    p.add_argument("--max-wait-ms", type=float, default=10.0,
                   help="dynamic batching: how long a due window waits for others (default 10 ms)")
    p.add_argument("--max-message-kib", type=int, default=1024, help="largest client message (default 1024 KiB)")
    p.add_argument("overrides", nargs="*", help="config key=value applied to the export's config (e.g. "
                                                "sample.steps=10)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    try:
        import websockets  # noqa: F401 - the `serve` extra
    except ImportError:
        print("reactdiff serve: error: needs the websockets package: pip install -e .[serve]", file=sys.stderr)
        return 2
    from .batcher import WindowBatcher
    from .protocol import Limits
    from .server import ReactionServer, run_server
    from .session import LiveModel

    try:
        live = LiveModel.load(args.export, args.device, args.overrides)
        server = ReactionServer(live, Limits(max_message_bytes=args.max_message_kib * 1024,
                                             max_sessions=args.max_sessions),
                                WindowBatcher(max_wait_s=args.max_wait_ms / 1000), shards=args.shards,
                                faceverse=args.faceverse)
    except (FileNotFoundError, ValueError) as exc:
        print(f"reactdiff serve: error: {exc}", file=sys.stderr)
        return 2
    info = server.info()
    if info["audio_error"]:  # the model needs audio features no live stream can give: no session could run
        print(f"reactdiff serve: error: {info['audio_error']}", file=sys.stderr)
        return 2

    def ready(port: int) -> None:
        print(f"reactdiff serve: {args.export} on {live.device} at {live.fps} fps, window {info['window']}, "
              f"{info['steps']} steps; page http://{args.host}:{port}/  socket ws://{args.host}:{port}/ws",
              flush=True)

    try:
        asyncio.run(run_server(server, args.host, args.port, ready))
    except KeyboardInterrupt:
        pass
    return 0
