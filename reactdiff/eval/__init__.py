"""Evaluation: the REACT challenge metrics (metrics.py), batched torch DTW matching tslearn (dtw.py), FRRea / FID
(fid.py), and `reactdiff evaluate` (evaluate.py) that scores generated reactions against the shards' ground truth.

compute_all(pred (N, K, T, D), gt_listener (M, T, D), gt_speaker (N, T, D), neighbours (N, M), kind="3dmm" |
"emotion", convention="react2024" | "reactface", reference_quirks=False) -> {"FRCorr", "FRDist", "FRDiv", "FRDvs",
"FRVar", "FRSyn", and the settings used}.
"""
from .dtw import accumulated_cost, dtw_indexed, dtw_pairs, squared_cost
from .fid import activation_statistics, extract_features, fr_rea, frechet_distance, inception_extractor
from .metrics import (
    CONVENTIONS,
    EMOTION_SLICES,
    MAX_LAG,
    ccc,
    compute_all,
    fr_corr,
    fr_dist,
    fr_div,
    fr_dvs,
    fr_syn,
    fr_var,
    tlcc_offsets,
    validate,
)

__all__ = [
    "CONVENTIONS",
    "EMOTION_SLICES",
    "MAX_LAG",
    "accumulated_cost",
    "activation_statistics",
    "ccc",
    "compute_all",
    "dtw_pairs",
    "dtw_indexed",
    "extract_features",
    "fr_corr",
    "fr_dist",
    "fr_div",
    "fr_dvs",
    "fr_rea",
    "fr_syn",
    "fr_var",
    "frechet_distance",
    "inception_extractor",
    "squared_cost",
    "tlcc_offsets",
    "validate",
]
