"""The 25 REACT emotion columns of one person, derived from its 3DMM and its voice activity.

15 AU activations from the related ARKit blendshapes, valence (smile minus frown/brow lowering/sneer),
arousal (voice activity + motion energy), and 8 expression probabilities (softmax of a linear map).
"""
from __future__ import annotations

import io

import numpy as np

from ..frame_layout import AU_NAMES, EMOTION_COLUMNS, EMOTION_DIM, EXP, EXPRESSION_NAMES, N_EXP

# AU <- (blendshapes averaged, offset subtracted, gain)
_AU_SOURCES = {
    "AU1": (("browInnerUp",), 0.25, 1.6),
    "AU2": (("browOuterUpLeft", "browOuterUpRight"), 0.1, 1.8),
    "AU4": (("browDownLeft", "browDownRight"), 0.45, 1.8),
    "AU6": (("cheekSquintLeft", "cheekSquintRight"), 0.05, 1.8),
    "AU7": (("eyeSquintLeft", "eyeSquintRight"), 0.15, 1.6),
    "AU9": (("noseSneerLeft", "noseSneerRight"), 0.03, 2.0),
    "AU10": (("mouthUpperUpLeft", "mouthUpperUpRight"), 0.03, 2.0),
    "AU12": (("mouthSmileLeft", "mouthSmileRight"), 0.1, 1.8),
    "AU14": (("mouthDimpleLeft", "mouthDimpleRight"), 0.04, 2.0),
    "AU15": (("mouthFrownLeft", "mouthFrownRight"), 0.05, 2.0),
    "AU17": (("mouthShrugLower",), 0.1, 2.0),
    "AU23": (("mouthRollLower", "mouthRollUpper"), 0.06, 2.0),
    "AU24": (("mouthPressLeft", "mouthPressRight"), 0.08, 2.0),
    "AU25": (("jawOpen", "mouthLowerDownLeft", "mouthLowerDownRight"), 0.04, 3.0),
    "AU26": (("jawOpen",), 0.06, 2.5),
}
assert tuple(_AU_SOURCES) == AU_NAMES

# expression logits = bias + W @ [AU12, AU15, AU1+AU2, eyeWide, AU26, AU9, AU4, AU24, |dimple L-R|]
_EXPR_BIAS = np.array([1.5, -0.5, -1.0, -1.5, -2.0, -1.5, -1.2, -1.8])
_EXPR_W = np.array([
    # AU12  AU15  brows eyeW  AU26  AU9   AU4   AU24  asym
    [-2.0, -1.0, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5, -0.5],  # Neutral
    [5.0, -2.0, 0.3, 0.0, 0.5, -1.0, -1.0, 0.0, 0.0],  # Happy
    [-2.0, 4.0, 1.0, 0.0, -0.5, 0.0, 0.5, 0.5, 0.0],  # Sad
    [0.0, 0.0, 3.0, 3.0, 2.0, 0.0, -1.5, -0.5, 0.0],  # Surprise
    [-1.0, 1.0, 2.0, 2.5, 1.0, 0.0, 0.5, 0.0, 0.0],  # Fear
    [-1.0, 1.0, 0.0, 0.0, 0.0, 4.0, 1.0, 0.5, 0.0],  # Disgust
    [-1.5, 0.5, -1.0, 0.5, 0.0, 1.0, 3.0, 2.0, 0.0],  # Anger
    [0.5, 0.0, 0.0, 0.0, 0.0, 0.5, 0.5, 0.5, 6.0],  # Contempt
])
assert _EXPR_W.shape == (len(EXPRESSION_NAMES), 9)


def _mean(fv: np.ndarray, names) -> np.ndarray:
    return fv[:, [EXP[n] for n in names]].mean(axis=1)


def emotion_from_fv(fv: np.ndarray, voice: np.ndarray) -> np.ndarray:
    """(T, 25) float32: AUs in [0,1], valence/arousal in [-1,1], expression probabilities summing to 1.

    fv: (T, 58) 3DMM; voice: (T,) own voice loudness (syllable envelope, >= 0).
    """
    fv = np.asarray(fv, float).reshape(len(fv), -1)
    T = len(fv)
    aus = np.stack([np.clip((_mean(fv, names) - off) * gain, 0.0, 1.0) for names, off, gain in _AU_SOURCES.values()], 1)
    au = {n: aus[:, i] for i, n in enumerate(AU_NAMES)}
    valence = np.tanh(2.5 * (au["AU12"] + 0.5 * au["AU6"] - au["AU15"] - 0.5 * au["AU4"] - 0.5 * au["AU9"]) - 0.1)
    k = np.ones(13) / 13
    va = np.convolve(np.pad(np.minimum(voice, 1.0), 6, mode="edge"), k, mode="valid")
    motion = np.zeros(T)
    if T > 1:
        vel = np.abs(np.diff(fv[:, :N_EXP], axis=0)).sum(1) + 10.0 * np.abs(np.diff(fv[:, 52:55], axis=0)).sum(1)
        motion[1:] = vel
        motion[0] = vel[0]
    motion = np.convolve(np.pad(motion, 6, mode="edge"), k, mode="valid")
    arousal = np.tanh(2.0 * va + 1.5 * motion - 0.6)
    x = np.stack([au["AU12"], au["AU15"], 0.5 * (au["AU1"] + au["AU2"]), _mean(fv, ("eyeWideLeft", "eyeWideRight")),
                  au["AU26"], au["AU9"], au["AU4"], au["AU24"],
                  np.abs(fv[:, EXP["mouthDimpleLeft"]] - fv[:, EXP["mouthDimpleRight"]])], 1)
    logits = _EXPR_BIAS + x @ _EXPR_W.T
    logits -= logits.max(1, keepdims=True)
    p = np.exp(logits)
    p /= p.sum(1, keepdims=True)
    out = np.concatenate([aus, valence[:, None], arousal[:, None], p], 1).astype(np.float32)
    assert out.shape == (T, EMOTION_DIM)
    return out


def emotion_csv(em: np.ndarray) -> bytes:
    """The REACT csv: a header row with the 25 column names, one `%.6f` row per frame."""
    buf = io.StringIO()
    np.savetxt(buf, np.asarray(em, np.float64), fmt="%.6f", delimiter=",", header=",".join(EMOTION_COLUMNS),
               comments="")
    return buf.getvalue().encode("ascii")
