"""FRRea from the videos of `reactdiff render --ground-truth`: the listener frames of the true reactions (gt.mp4)
against those of the generated ones (k*.mp4), every `step`-th frame, through fid.fr_rea."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from .. import recorded
from ..render.plan import row_selection
from .fid import Extractor, fr_rea

RENDER_JSON = "render.json"


def listener_frames(path: Path, step: int, speaker_beside: bool, batch: int = 50) -> Iterator[torch.Tensor]:
    """(B, 3, H, W) float batches in [0, 1] of every `step`-th frame; the right half when the speaker is beside."""
    import av

    buf = []
    with av.open(str(path)) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i % step:
                continue
            rgb = frame.to_ndarray(format="rgb24")
            if speaker_beside:
                rgb = rgb[:, rgb.shape[1] // 2:]
            buf.append(rgb)
            if len(buf) == batch:
                yield torch.from_numpy(np.stack(buf)).permute(0, 3, 1, 2).float() / 255
                buf = []
    if buf:
        yield torch.from_numpy(np.stack(buf)).permute(0, 3, 1, 2).float() / 255


def render_videos(render_dir: Path) -> tuple[dict, list[Path], list[Path]]:
    """(settings, true listener videos, generated videos) of a render folder (render.json, or a fan-out's parts)."""
    render_dir = Path(render_dir)
    index = render_dir / RENDER_JSON
    if not index.is_file():
        raise FileNotFoundError(f"{index} not found: expected the output of `reactdiff render` (a fan-out writes it "
                                f"in its index job)")
    doc = json.loads(index.read_text())
    videos = [render_dir / v["video"] for v in doc["videos"]]
    real = [v for v in videos if v.name == "gt.mp4"]
    fake = [v for v in videos if v.name != "gt.mp4"]
    if not real or not fake:
        raise ValueError(f"{render_dir}: FRRea needs true and generated listener videos; render with --ground-truth "
                         f"(found {len(real)} gt and {len(fake)} generated)")
    missing = [str(v) for v in videos if not v.is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} videos listed in {index} are missing (e.g. {missing[:2]})")
    return doc["settings"], real, fake


def frrea_from_renders(render_dir: Path, extractor: Extractor | None = None, *, weights=None, step: int = 10,
                       device=None, sampling: dict | None = None) -> dict:
    """FRRea and what it was computed on. `sampling`: the sampling settings the videos must have been rendered from
    (the samples' manifest settings), checked when given."""
    if step < 1:
        raise ValueError(f"FRRea: the frame step must be >= 1; got {step}")
    settings, real, fake = render_videos(render_dir)
    rendered = settings.get("sampling") or {}
    if sampling is not None and rendered != sampling:
        diff = recorded.changes(rendered, sampling)
        raise ValueError(f"{render_dir} holds videos of other reactions (sampling settings differ: "
                         f"{', '.join(diff)}); render these samples first")
    beside = bool(settings.get("speaker_beside"))

    def frames(paths):
        for p in paths:
            yield from listener_frames(p, step, beside)

    value = fr_rea(frames(real), frames(fake), extractor, weights=weights, device=device)
    return {"FRRea": value, "renderer": settings.get("renderer"), "frame_step": step, "real_videos": len(real),
            "generated_videos": len(fake), "row_selection": row_selection(settings) or "all", "k": settings.get("k"),
            "frames": settings.get("frames") or "all"}
