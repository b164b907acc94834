"""`reactdiff serve`: the WebSocket service over loopback -- the same frames as a session alone, many sessions
batched at once, clear errors that close one session without touching the others, and the page's HTTP routes."""
from __future__ import annotations

import json
import socket
import threading
import urllib.error
import urllib.request

import numpy as np
import pytest

pytest.importorskip("websockets")
from websockets.sync.client import connect  # noqa: E402

from reactdiff.serve.client import stream_clip  # noqa: E402
from reactdiff.serve.clips import ClipCatalogue  # noqa: E402
from reactdiff.serve.protocol import FACE, PCM  # noqa: E402
from reactdiff.serve.session import LiveModel, ReactionSession  # noqa: E402

from reactdiff.serve.background import start  # noqa: E402
from test_serve_session import make_export, stream  # noqa: E402


@pytest.fixture(scope="module")
def live(tiny_shards, tmp_path_factory):
    return LiveModel.load(make_export(tiny_shards, tmp_path_factory.mktemp("serve") / "export"))


@pytest.fixture(scope="module")
def service(live, tiny_shards, tmp_path_factory):
    from reactdiff.render.synthetic_model import write_model

    mesh = write_model(tmp_path_factory.mktemp("mesh") / "faceverse.npy", rings=8, segments=12)
    server = start(live, shards=tiny_shards, faceverse=mesh, max_sessions=4, max_message_bytes=64 * 1024,
                   max_wait_s=0.05)
    yield server
    server.close()


def client_stream(url, face, audio, k=2, key="live", role="speaker->listener", chunk=10, result=None):
    out = stream_clip(url, face, audio, k=k, key=key, role=role, chunk=chunk)
    if result is not None:
        result.append(out)
    return out


def alone(live, face, audio, key, role, k=2):
    got, _ = stream(ReactionSession(live, k=k, key=key, role=role), face, audio, np.random.default_rng(0))
    return got


def test_a_streamed_clip_equals_the_session_alone(service, live, tiny_shards):
    face, audio, key, role = ClipCatalogue(tiny_shards).speaker(1)
    got, messages = client_stream(service.url, face, audio, key=key, role=role)
    assert messages[-1] == {"type": "done", "frames": len(face)}
    np.testing.assert_allclose(got, alone(live, face, audio, key, role), atol=1e-5, rtol=0)
    windows = [w for m in messages if m["type"] == "frames" for w in m["windows"]]
    assert len(windows) == 5 and all(w["compute_ms"] > 0 for w in windows)
    assert messages[0]["time"] == 0 and messages[1]["time"] == messages[1]["start"] / 25


def test_concurrent_sessions_are_batched_and_unchanged(service, live, tiny_shards):
    clips = ClipCatalogue(tiny_shards)
    streams = [clips.speaker(row) for row in (0, 3, 5)]
    results: list = [[] for _ in streams]
    threads = [threading.Thread(target=client_stream, args=(service.url, f, a),
                                kwargs=dict(key=key, role=role, chunk=25, result=results[i]))
               for i, (f, a, key, role) in enumerate(streams)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    batched = 0
    for (face, audio, key, role), [(got, messages)] in zip(streams, results):
        np.testing.assert_allclose(got, alone(live, face, audio, key, role), atol=1e-5, rtol=0)
        batched += sum(w["batch_rows"] > 2 for m in messages if m["type"] == "frames" for w in m["windows"])
    assert batched > 0  # windows of different sessions shared network calls


def refused(url, messages, expect: str, code: int = 1008):
    with connect(url, max_size=None) as ws:
        for m in messages:
            ws.send(m)
        msg = json.loads(ws.recv())
        if msg["type"] == "ready":  # the open was fine; the error is about what followed
            msg = json.loads(ws.recv())
        assert msg["type"] == "error" and expect in msg["message"], msg
        with pytest.raises(Exception):
            ws.recv(timeout=10)
        assert ws.close_code == code, (ws.close_code, ws.close_reason)


OPEN = json.dumps({"type": "open"})


@pytest.mark.parametrize("messages,expect,code", [
    ([json.dumps({"type": "open", "audio_rate": 44100})], "16000 Hz", 1008),
    ([json.dumps({"type": "open", "colour": 1})], "unknown keys", 1008),
    ([json.dumps({"type": "hello"})], "first message", 1008),
    ([OPEN, PCM + b"\x00\x01\x02"], "not whole f32 samples", 1008),
    ([OPEN, PCM + np.full(4, 3.0, "<f4").tobytes()], "[-1, 1]", 1008),
    ([OPEN, FACE + np.zeros(57, "<f4").tobytes()], "58", 1008),
    ([OPEN, FACE + np.full(58, np.nan, "<f4").tobytes()], "NaN", 1008),
    ([OPEN, b"WHAT" + bytes(8)], "tag", 1008),
    ([OPEN, PCM + np.zeros(20000, "<f4").tobytes()], "limit is 65536", 1009),
])
def test_bad_input_gets_a_clear_error_and_a_clean_close(service, messages, expect, code):
    refused(service.url, messages, expect, code)
    assert service.server.sessions == {} or len(service.server.sessions) < 4


def test_too_many_sessions_and_vanishing_clients_leave_the_others_alone(service, live, tiny_shards):
    face, audio, key, role = ClipCatalogue(tiny_shards).speaker(2)
    held = [connect(service.url) for _ in range(4)]
    for ws in held:
        ws.send(OPEN)
        assert json.loads(ws.recv())["type"] == "ready"
    refused(service.url, [], "full", 1013)
    # two clients vanish mid-window: their sockets drop without a closing handshake
    for ws in held[:2]:
        ws.send(PCM + audio[:40 * 640].astype("<f4").tobytes())
        ws.send(FACE + face[:40].astype("<f4").tobytes())
        ws.socket.shutdown(socket.SHUT_RDWR)
        ws.socket.close()
    for ws in held[2:]:
        ws.close()
    got, messages = client_stream(service.url, face, audio, key=key, role=role)  # a place is free again
    np.testing.assert_allclose(got, alone(live, face, audio, key, role), atol=1e-5, rtol=0)
    for _ in range(50):
        if not service.server.sessions:
            break
        threading.Event().wait(0.1)
    assert service.server.sessions == {}


def test_the_page_and_its_data_are_served(service, tiny_shards):
    get = lambda path: urllib.request.urlopen(service.http + path, timeout=10)  # noqa: E731
    page = get("/").read().decode()
    assert "<canvas" in page and "app.js" in page
    assert "WebSocket" in get("/app.js").read().decode()
    info = json.loads(get("/info").read())
    assert info["fps"] == 25 and info["mesh"] and info["clips"] and info["audio"] and not info["audio_only"]
    clips = json.loads(get("/clips").read())
    assert [c["row"] for c in clips] == list(range(12)) and clips[0]["frames"] == 120
    face, audio, _, _ = ClipCatalogue(tiny_shards).speaker(0)
    assert np.array_equal(np.frombuffer(get("/clip/0/face.f32").read(), "<f4").reshape(-1, 58), face)
    assert np.frombuffer(get("/clip/0/audio.f32").read(), "<f4").shape == audio.shape
    mesh = get("/mesh.bin").read()
    v, f = np.frombuffer(mesh[:8], "<u4")
    assert len(mesh) == 8 + 4 * (v * 3 + 52 * v * 3 + f * 3)
    with pytest.raises(urllib.error.HTTPError, match="404"):
        get("/clip/99/face.f32")


def test_bench_stream_prints_its_tables(capsys):
    from reactdiff.cli import main as cli_main

    assert cli_main(["bench", "stream", "--size", "tiny", "--steps", "2", "--window", "16", "--overlap", "4",
                     "--history", "8", "--seconds", "1.5", "--k", "1", "--max-sessions", "2"]) == 0
    out = capsys.readouterr().out
    assert "| K | sessions | compute p50 / p95 (ms)" in out and "| 1 | 2 |" in out
    assert "one window per call (baseline, same run) | ratio |" in out and "x |" in out
