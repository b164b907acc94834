"""The [speaker | true listener | reaction 1 .. K] grid video of one clip, each panel labelled, with the speaker's
audio: what `reactdiff render --grid` writes and what training shows of its samples."""
from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageDraw

from ..data.frame_layout import AUDIO_RATE, FPS
from ..media import write_mp4

LABEL_ROWS = 16  # pixels of the label strip above the panels (even, as the mp4 needs)


def panel_labels(k: int) -> list[str]:
    return ["speaker", "true listener"] + [f"reaction {i + 1}" for i in range(k)]


def label_strip(labels: list[str], size: int) -> np.ndarray:
    """(LABEL_ROWS, len(labels) * size, 3) uint8: each label centred over its panel."""
    img = Image.new("RGB", (len(labels) * size, LABEL_ROWS), (32, 32, 32))
    draw = ImageDraw.Draw(img)
    for i, text in enumerate(labels):
        width = draw.textlength(text)
        draw.text((i * size + max(0, (size - width) / 2), 2), text, fill=(230, 230, 230))
    return np.asarray(img)


def grid_frames(draw, speaker: np.ndarray, listener: np.ndarray, reactions: np.ndarray, n: int,
                size: int) -> Iterator[np.ndarray]:
    """Chunks (c, LABEL_ROWS + size, (K + 2) size, 3) of the grid; draw(coeffs (n, 58)) yields (c, size, size, 3)
    chunks of the same length for every sequence."""
    strip = label_strip(panel_labels(len(reactions)), size)
    streams = [draw(speaker[:n]), draw(listener[:n])] + [draw(r[:n]) for r in reactions]
    for chunks in zip(*streams):
        body = np.concatenate(chunks, axis=2)
        yield np.concatenate([np.broadcast_to(strip, (len(body), *strip.shape)), body], axis=1)


def write_grid(path: Path, draw, speaker: np.ndarray, listener: np.ndarray, reactions: np.ndarray, size: int,
               audio: np.ndarray | None = None, frames: int | None = None, fps: int = FPS) -> int:
    """Write the grid mp4 (atomically); speaker/listener (T, 58) raw, reactions (K, T, 58) raw; audio 16 kHz mono.
    Returns the frames written."""
    n = min(len(speaker), len(listener), reactions.shape[1])
    n = n if frames is None else min(frames, n)
    if audio is not None:
        audio = audio[:int(round(n * AUDIO_RATE / fps))]
    return write_mp4(path, grid_frames(draw, speaker, listener, reactions, n, size), fps, audio=audio,
                     audio_rate=AUDIO_RATE)
