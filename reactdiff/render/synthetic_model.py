"""A small procedural head in the FaceVerse v2 model-file format, for the demo and the tests (the real model file is
user-provided). Same keys, layouts and conventions as the real file: meanshape (V, 3) with y down and the face
looking towards -z, xyz-interleaved bases idBase (3V, 150) / exBase (3V, 52) / texBase (3V, 251), 0-based tri,
point_buf (V, 8), 66 keypoints, skinmask, exp_name_list in REACT order.

Expression blendshapes move the regions their ARKit names say (jawOpen drops the chin, smiles lift the mouth
corners, blinks close the eye regions, brows lift the forehead); the others are small smooth bumps at fixed places.
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from .. import atomic
from ..data import frame_layout as fv

N_TEX = 251


def _ellipsoid(rings: int, segments: int) -> tuple[np.ndarray, np.ndarray]:
    """Closed ellipsoid (y down, face at -z): vertices (V, 3) and triangles (F, 3)."""
    theta = np.linspace(0, np.pi, rings + 1)[1:-1]  # polar angle from the top (y = -0.5) to the chin
    phi = np.linspace(0, 2 * np.pi, segments, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    verts = np.stack([0.38 * np.sin(t) * np.sin(p), -0.5 * np.cos(t), -0.42 * np.sin(t) * np.cos(p)], -1).reshape(-1, 3)
    top, bottom = len(verts), len(verts) + 1
    verts = np.concatenate([verts, [[0, -0.5, 0], [0, 0.5, 0]]])
    tris = []
    for r in range(rings - 2):
        for s in range(segments):
            a, b = r * segments + s, r * segments + (s + 1) % segments
            c, d = a + segments, b + segments
            tris += [(a, c, b), (b, c, d)]
    last = (rings - 2) * segments
    for s in range(segments):
        tris.append((top, s, (s + 1) % segments))
        tris.append((bottom, last + (s + 1) % segments, last + s))
    return verts.astype(np.float32), np.asarray(tris, dtype=np.int64)


def _bump(verts: np.ndarray, centre, radius: float) -> np.ndarray:
    return np.exp(-((verts - np.asarray(centre)) ** 2).sum(1) / (2 * radius ** 2))


def make_model(rings: int = 48, segments: int = 64, seed: int = 0) -> dict:
    """The model dict (what np.load(...).item() gives for a real file)."""
    rng = np.random.default_rng(seed)
    verts, tri = _ellipsoid(rings, segments)
    front = (verts[:, 2] < 0).astype(np.float32)
    x, y = verts[:, 0], verts[:, 1]
    # features as depth offsets towards the viewer (-z): nose ridge, brow ridge, eye sockets, lips, chin
    def blob(cx, cy, sx2, sy2):
        return np.exp(-(x - cx) ** 2 / sx2 - (y - cy) ** 2 / sy2)

    taper = np.clip((y + 0.1) / 0.22, 0, 1) * np.exp(-np.clip(y - 0.12, 0, None) / 0.02)  # nose: grows, then ends
    ridge = blob(0, 0, 2 * 0.035 ** 2, np.inf) * taper
    depth = 0.07 * ridge + 0.025 * blob(0, -0.14, 0.006, 0.0015)
    for sx in (1, -1):
        depth -= 0.035 * _bump(verts, (0.13 * sx, -0.06, -0.38), 0.045)
    depth += 0.02 * blob(0, 0.2, 0.004, 0.0006) + 0.02 * blob(0, 0.25, 0.004, 0.0006)  # lips
    depth -= 0.012 * blob(0, 0.225, 0.005, 0.0002)  # the mouth line between them
    depth += 0.03 * blob(0, 0.4, 0.01, 0.004)  # chin
    verts = verts + (depth * front)[:, None].astype(np.float32) * np.array([0, 0, -1], np.float32)
    v = len(verts)
    exp = np.zeros((v, 3, fv.N_EXP), np.float32)

    def move(name, weight, direction):
        exp[:, :, fv.EXP[name]] += (weight * front)[:, None] * np.asarray(direction, np.float32)

    chin = np.clip((verts[:, 1] - 0.12) / 0.38, 0, 1)
    move("jawOpen", chin, (0, 0.18, 0))
    for side, sx in (("Left", 1), ("Right", -1)):
        corner = _bump(verts, (0.12 * sx, 0.22, -0.36), 0.06)
        move(f"mouthSmile{side}", corner, (0.04 * sx, -0.05, 0))
        move(f"mouthFrown{side}", corner, (0, 0.04, 0))
        eye = _bump(verts, (0.13 * sx, -0.08, -0.36), 0.05)
        move(f"eyeBlink{side}", eye, (0, 0.03, 0.02))
        move(f"eyeWide{side}", eye, (0, -0.02, -0.01))
        brow = _bump(verts, (0.13 * sx, -0.18, -0.35), 0.06)
        move(f"browOuterUp{side}", brow, (0, -0.05, 0))
        move(f"browDown{side}", brow, (0, 0.03, 0))
    move("browInnerUp", _bump(verts, (0, -0.18, -0.38), 0.06), (0, -0.05, 0))
    done = {n for n in fv.EXP_NAMES if exp[..., fv.EXP[n]].any()}
    for name in fv.EXP_NAMES:
        if name not in done:  # a small bump somewhere on the face, pushed along a fixed direction
            centre = (rng.uniform(-0.2, 0.2), rng.uniform(-0.15, 0.35), -0.38)
            move(name, _bump(verts, centre, 0.05), rng.normal(0, 0.02, 3))
    ident = np.stack([_bump(verts, rng.normal(0, 0.25, 3), 0.15) for _ in range(150)], -1)  # (V, 150)
    id_base = (ident[:, None, :] * rng.normal(0, 0.01, (1, 3, 150))).astype(np.float32)

    point_buf = np.zeros((v, 8), np.int64)  # up to 8 triangles per vertex, padded by repeating valid ones
    incident = [[] for _ in range(v)]
    for i, t in enumerate(tri):
        for k in t:
            incident[k].append(i)
    for k, faces in enumerate(incident):
        point_buf[k] = np.resize(np.asarray(faces or [0]), 8)
    return {
        "meanshape": verts.astype(np.float32), "meantex": np.full((v, 3), 180.0, np.float32),
        "idBase": id_base.reshape(3 * v, 150), "exBase": exp.reshape(3 * v, fv.N_EXP),
        "texBase": np.zeros((3 * v, N_TEX), np.float32), "tri": tri, "point_buf": point_buf,
        "keypoints": np.linspace(0, v - 1, 66).astype(np.int64), "skinmask": front,
        "exp_name_list": np.asarray(fv.EXP_NAMES),
    }


def write_model(path: str | Path, **kw) -> Path:
    """np.save the model dict to `path` (atomically), as the FaceVerse release does."""
    buf = io.BytesIO()
    np.save(buf, make_model(**kw), allow_pickle=True)
    atomic.write_bytes(path, buf.getvalue())
    return Path(path)
