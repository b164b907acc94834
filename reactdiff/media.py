"""mp4 output shared by the synthetic dataset and the renderer: H.264 yuv420p at 25 fps, written atomically, with an
optional mono audio track (AAC) muxed in."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Iterable

import numpy as np

from .atomic import atomic_open
from .data.frame_layout import FPS


def rgb_to_yuv420p(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB -> (3H/2, W) planar BT.601 limited-range yuv420p (numpy, so the bytes are exact)."""
    rgb = frame.astype(np.float32)
    h, w = rgb.shape[:2]
    y = 16.0 + rgb @ np.array([65.481, 128.553, 24.966], np.float32) / 255.0
    cbcr = 128.0 + rgb @ np.array([[-37.797, 112.0], [-74.203, -93.786], [112.0, -18.214]], np.float32) / 255.0
    cbcr = cbcr.reshape(h // 2, 2, w // 2, 2, 2).mean((1, 3))
    planes = [y.ravel(), cbcr[..., 0].ravel(), cbcr[..., 1].ravel()]
    return np.clip(np.round(np.concatenate(planes)), 0, 255).astype(np.uint8).reshape(h * 3 // 2, w)


def write_mp4(path: Path, frames: Iterable[np.ndarray], fps: int = FPS, audio: np.ndarray | None = None,
              audio_rate: int = 16000) -> int:
    """Write (H, W, 3) uint8 RGB frames (an array or any iterable of frames or of (n, H, W, 3) chunks) as H.264
    (libx264, or mpeg4 where it is missing) yuv420p mp4 at `fps`; frame size must be even. `audio`: mono float
    samples in [-1, 1] at `audio_rate`, muxed as AAC. Returns the number of frames written."""
    import av  # imported here: only mp4 output needs PyAV

    count = 0
    with atomic_open(path, "wb") as f:
        with av.open(f, mode="w", format="mp4", options={"fflags": "+bitexact"}) as container:
            stream = audio_stream = None
            for chunk in frames:
                chunk = np.asarray(chunk)
                for frame in (chunk if chunk.ndim == 4 else chunk[None]):
                    if stream is None:  # every stream exists before the first packet is muxed
                        stream = _video_stream(container, frame.shape[:2], fps)
                        if audio is not None:
                            audio_stream = container.add_stream("aac", rate=audio_rate)
                            audio_stream.layout = "mono"
                    vf = av.VideoFrame.from_ndarray(rgb_to_yuv420p(frame), format="yuv420p")
                    vf.pts, vf.time_base = count, Fraction(1, fps)
                    for packet in stream.encode(vf):
                        container.mux(packet)
                    count += 1
            if stream is None:
                raise ValueError(f"{path}: no frames to write")
            for packet in stream.encode():
                container.mux(packet)
            if audio_stream is not None:
                _mux_audio(container, audio_stream, np.asarray(audio, np.float32).reshape(-1), audio_rate)
    return count


def _video_stream(container, hw: tuple[int, int], fps: int):
    import av

    h, w = hw
    if h % 2 or w % 2:
        raise ValueError(f"mp4 frames need an even size, got {w}x{h}")
    try:
        # with mbtree on, this x264 build gave different bytes for the same frames from one encode to
        # the next in a process (seen at 64x64); without it the output is reproducible.
        stream = container.add_stream("libx264", rate=fps, options={
            "preset": "veryfast", "crf": "20", "x264-params": "no-mbtree=1"})
    except Exception:  # noqa: BLE001  (codec not built into this FFmpeg)
        stream = container.add_stream("mpeg4", rate=fps)
    stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
    stream.codec_context.thread_count = 1
    stream.codec_context.flags |= getattr(av.codec.context.Flags, "bitexact", 0)
    stream.codec_context.time_base = Fraction(1, fps)
    return stream


def _mux_audio(container, stream, samples: np.ndarray, rate: int) -> None:
    import av

    size = stream.codec_context.frame_size or 1024  # the AAC encoder takes whole frames of this many samples
    padded = np.zeros(-(-len(samples) // size) * size, np.float32)
    padded[:len(samples)] = np.clip(samples, -1, 1)
    for i in range(0, len(padded), size):
        af = av.AudioFrame.from_ndarray(padded[None, i:i + size], format="fltp", layout="mono")
        af.sample_rate, af.pts, af.time_base = rate, i, Fraction(1, rate)
        for packet in stream.encode(af):
            container.mux(packet)
    for packet in stream.encode():
        container.mux(packet)
