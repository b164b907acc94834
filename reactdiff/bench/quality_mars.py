"""`reactdiff bench quality --layout mars`: the same benchmark on a synthetic MARS-layout dataset (REACT 2025 /
2026: session folders, 30 fps), scored with the react2025 protocol.

The generator plants the same couplings (its behaviour runs at 25 fps over the clip's time and is resampled to 30
fps, so a listener's lag of 8-12 frames at 25 fps is 10-14 frames here). Every clip lasts MARS_FRAMES frames (the
REACT clips' 30 s) so that the planted couplings pool over clips as on REACT; the metrics are the MARS ones (FRC,
FRD, S-MSE, FRVar on 3DMM: the benchmark's model predicts no attributes) against MARS's honest baselines.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..data import frame_layout as fv
from ..data import mars_layout as M

MARS_FRAMES = 900  # 30 s at 30 fps, like REACT's 751 frames at 25 fps
TEMPLATES = 4  # scripts per split, as the REACT benchmark's data (with one, a split's clips all act out one script)
FPS = float(M.FPS)
PROTOCOL = "react2025"
# What the quality config needs to hear about 30 fps data: whole clips at evaluation, and the Hz of its bands read at
# this frame rate. Keys counted in frames (window, history, speaker_filter, band_gate.span, anchor_memory) stay as the
# config has them, as configs/paper_mars.yaml keeps them; variants measure them scaled to the same seconds.
OVERRIDES = ("data.eval_frames=0", f"model.loss_band.fps={M.FPS:g}", f"model.band_gate.fps={M.FPS:g}")
METRICS = ("FRC", "FRD", "S-MSE", "FRVar")  # the REACT 2024 table's FRCorr, FRDist, FRDiv, FRVar


def dataset(work: Path, args) -> tuple[Path, dict]:
    """The synthetic MARS dataset and its train/test shards (reused when the arguments match)."""
    from ..data.mars_shards import make_mars_shards
    from ..data.synthetic.mars import generate_mars

    root = work / "mars"
    want = {"seed": args.seed, "clips_per_session": args.clips, "min_frames": MARS_FRAMES, "max_frames": MARS_FRAMES,
            "templates": TEMPLATES,
            "sessions": {"train": args.train_sessions, "val": args.val_sessions, "test": args.test_sessions}}
    info = root / "synthetic.json"
    if not (info.is_file() and all(json.loads(info.read_text())["args"].get(k) == v for k, v in want.items())):
        generate_mars(root, seed=args.seed, sessions=want["sessions"], clips_per_session=args.clips,
                      min_frames=MARS_FRAMES, max_frames=MARS_FRAMES, templates=TEMPLATES, progress=not args.quiet,
                      force=True)
    for split in ("train", "test"):
        make_mars_shards(root, split, work / "shards" / split, workers=2, samples_per_shard=8,
                         audio_features="logmel", resume=True, progress=False)
    return root, json.loads(info.read_text())


def truth(shards: Path):
    """The scored rows (both directions) in row order."""
    from ..eval.mars_truth import load_mars_truth

    return load_mars_truth(shards, PROTOCOL)


def listener_lags(meta: dict, rows) -> np.ndarray:
    """The planted reaction lag of each row's true listener, in 30 fps frames."""
    lags = {(c["session"], c["stem"]): c["lags"] for c in meta["clips"] if c["split"] == "test"}
    listener_role = {"speaker->listener": "listener", "listener->speaker": "speaker"}
    return np.array([int(round(lags[r.clip][listener_role[r.direction]] * M.FPS / fv.FPS)) for r in rows])


def arrays(rows, samples: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(speaker (N, T, 58), true listener (N, T, 58), reactions (N, K, T, 58)) of equal-length clips."""
    from ..sampling.writer import reaction_path

    return (np.stack([r.speaker["3dmm"] for r in rows]), np.stack([r.targets["3dmm"][0] for r in rows]),
            np.stack([np.load(reaction_path(samples, r.row), allow_pickle=False) for r in rows]))


def evaluate(samples: Path, shards: Path, baseline_shards: Path) -> dict:
    from ..eval.mars_evaluate import evaluate_mars

    return evaluate_mars(samples, shards, samples, protocol=PROTOCOL, baseline_shards=baseline_shards)


def write_oracle(root: Path, rows, out: Path, k: int, same_person: bool) -> Path:
    """The generator's fresh listeners for every row, as a whole-clip reactions folder (reused when written)."""
    from ..data.synthetic.oracle import write_mars_oracle_reactions

    return write_mars_oracle_reactions(root, "test", out, k, {r.row: (*r.clip, r.direction) for r in rows},
                                       same_person)
