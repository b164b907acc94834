"""Cheap cartoon face frames drawn from the 3DMM (numpy), written as a PNG folder or an mp4.

Background and skin/hair colours are the person's, the face ellipse moves with head yaw/pitch/roll and translation,
the eyes close with eyeBlink, the mouth opens with jawOpen and widens with the smile, the brows follow the brow dims.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from ... import atomic
from ...media import write_mp4  # noqa: F401  (re-exported: the dataset writer's mp4 option)
from ..frame_layout import EXP
from .behaviour import ROT_MEAN, TRANS_MEAN, Style

CHUNK = 128  # frames drawn at once
EYE = np.array([35, 25, 30], np.uint8)
MOUTH = np.array([150, 40, 55], np.uint8)


def _col(fv: np.ndarray, *names: str) -> np.ndarray:
    return fv[:, [EXP[n] for n in names]].mean(1)


def draw_frames(fv: np.ndarray, style: Style, size: int) -> np.ndarray:
    """(T, size, size, 3) uint8 frames for a (T, 58) 3DMM trajectory."""
    fv = np.asarray(fv, np.float64).reshape(len(fv), -1)
    out = np.empty((len(fv), size, size, 3), np.uint8)
    grid = (np.arange(size) + 0.5) / size  # pixel centres in [0, 1]
    shade = (0.8 + 0.4 * grid)[None, :, None, None]  # vertical background gradient
    bg = np.clip(style.background[None, None, None, :] * shade, 0, 255).astype(np.uint8)
    for lo in range(0, len(fv), CHUNK):
        out[lo:lo + CHUNK] = _draw_chunk(fv[lo:lo + CHUNK], style, grid, bg)
    return out


def _draw_chunk(fv: np.ndarray, style: Style, grid: np.ndarray, bg: np.ndarray) -> np.ndarray:
    n = len(fv)
    pitch, yaw, roll = fv[:, 52] - ROT_MEAN[0], fv[:, 53] - ROT_MEAN[1], fv[:, 54]
    tx, ty, tz = fv[:, 55] - TRANS_MEAN[0], fv[:, 56] - TRANS_MEAN[1], fv[:, 57]
    scale = np.clip(TRANS_MEAN[2] / np.maximum(tz, 1e-3), 0.6, 1.6)
    cx = 0.5 + 0.3 * np.sin(yaw) + 0.8 * tx
    cy = 0.5 + 0.3 * np.sin(pitch) - 0.8 * ty
    ax, ay = 0.34 * scale, 0.42 * scale
    e = lambda v: v[:, None, None]  # noqa: E731  (n,) -> (n, 1, 1)
    dx = grid[None, None, :] - e(cx)
    dy = grid[None, :, None] - e(cy)
    c, s = e(np.cos(roll)), e(np.sin(roll))
    u = (c * dx + s * dy) / e(ax)  # face coordinates: the face is the unit disc
    v = (-s * dx + c * dy) / e(ay)
    turn = e(0.35 * np.sin(yaw))
    img = np.broadcast_to(bg, (n, len(grid), len(grid), 3)).copy()
    face = u ** 2 + v ** 2 < 1.0
    img[face] = style.skin
    img[face & (v < -0.6)] = style.hair
    blink = _col(fv, "eyeBlinkLeft", "eyeBlinkRight")
    eye_h = e(np.clip(0.11 * (1.0 - blink), 0.0, None))
    for side in (-1.0, 1.0):
        eye = ((u - side * 0.38 - turn) / 0.15) ** 2 + ((v + 0.15) / np.maximum(eye_h, 1e-4)) ** 2 < 1.0
        img[eye & (eye_h > 0.01)] = EYE
    brow_up = (_col(fv, "browInnerUp", "browOuterUpLeft", "browOuterUpRight")
               - 0.5 * _col(fv, "browDownLeft", "browDownRight"))
    brow_v = e(-0.33 - 0.25 * brow_up)
    brows = (np.abs(np.abs(u - turn) - 0.38) < 0.2) & (np.abs(v - brow_v) < 0.045)
    img[brows] = style.hair
    smile = _col(fv, "mouthSmileLeft", "mouthSmileRight")
    mouth_w = e(0.22 * (1.0 + 0.7 * smile))
    mouth_h = e(0.03 + 0.25 * fv[:, EXP["jawOpen"]])
    mouth = ((u - turn) / mouth_w) ** 2 + ((v - 0.45) / mouth_h) ** 2 < 1.0
    img[mouth] = MOUTH
    return img


def png_bytes(frame: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(frame).save(buf, format="PNG", compress_level=6)
    return buf.getvalue()


def write_png_folder(folder: Path, frames: np.ndarray) -> None:
    """`folder/1.png .. T.png`, written into a temp folder next to it that is then renamed (all or nothing)."""
    with atomic.replacing_folder(folder) as tmp:
        for i, frame in enumerate(frames, start=1):
            with open(tmp / f"{i}.png", "wb") as f:
                f.write(png_bytes(frame))
