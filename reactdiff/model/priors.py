"""The paper's two reaction priors, computed on the denoised estimate x0-hat against the clean target x0.

1. Facial-behaviour kinematics prior: lag-L temporal differences (velocity) and second differences (acceleration)
   of the prediction must match those of the target, over the sequence [history | window], so that the differences
   that cross the window boundary tie the window to the known past frames.
2. Facial-action dependency prior over the 52 ARKit blendshapes (activations ~0..1): symmetric Left/Right pairs match
   the target's asymmetry, co-occurring pairs match its joint activation, exclusive (antagonist) pairs may not be
   jointly active beyond what the target shows.

Two scales (`model.kinematics`):
- `loss` (default): the kinematics terms act on all 58 dims in per-dimension standardised units ((x0-hat - x0) / std)
  and carry EDM's loss weight lambda(sigma) = 1 / c_out^2, exactly like the denoising MSE they sit next to: a
  weight of 1 makes the frame-to-frame error count as much as the error itself, so high-frequency error (jitter)
  costs what it looks like. The AU terms (defined on raw activations) are divided by the blendshapes' mean
  variance and carry the same lambda(sigma).
- `raw_pose` (exports made before it): velocity of head pose only (dims 52:58) in raw radians/metres, weighted by
  sigma_data^2 / (sigma^2 + sigma_data^2); next to a denoising loss of ~1 it is ~1e-4 and shapes nothing.
The released code computed its auxiliary losses on the raw network output and only for sigma < 0.08; we do neither.
"""
from __future__ import annotations


import torch
import torch.nn as nn

from ..data import frame_layout as fv
from ..data.normalise import FaceStats
from .denoiser import loss_weight as edm_weight  # EDM's lambda(sigma), one owner

# ---------------------------------------------------------------------------------------------------------------------
# Blendshape pair lists (ARKit names, resolved to FaceVerse indices below).

# Blendshapes whose name ends in Left/Right but which are *directional* movements of one midline structure (jaw / whole
# mouth shifted towards the left or right), not the left and right halves of the same action: they are antagonists
# (see EXCLUSIVE_PAIRS), not a symmetric pair.
_DIRECTIONAL_STEMS = ("jaw", "mouth")


def _symmetric_pairs(names: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """Every `<stem>Left` with a `<stem>Right` partner, except the directional jaw/mouth shifts."""
    have = set(names)
    pairs = tuple((n, n[:-4] + "Right") for n in names
                  if n.endswith("Left") and n[:-4] + "Right" in have and n[:-4] not in _DIRECTIONAL_STEMS)
    # every remaining Left/Right name must be covered exactly once (no unmatched side, nothing silently dropped)
    sided = {n for n in names if (n.endswith("Left") or n.endswith("Right"))
             and n[:-4 if n.endswith("Left") else -5] not in _DIRECTIONAL_STEMS}
    assert sided == {n for p in pairs for n in p}, sorted(sided ^ {n for p in pairs for n in p})
    return pairs


# Left/Right halves of the same action (18 in FaceVerse/ARKit): browDown, browOuterUp, cheekSquint, eyeBlink,
# eyeLookDown, eyeLookIn, eyeLookOut, eyeLookUp, eyeSquint, eyeWide, mouthDimple, mouthFrown, mouthLowerDown,
# mouthPress, mouthSmile, mouthStretch, mouthUpperUp, noseSneer. The loss matches the target's asymmetry x_L - x_R, it
# does not force symmetry: one-sided smiles/winks are preserved, spurious asymmetries are penalised. For eyeLookIn/Out
# the difference encodes horizontal gaze (conjugate eye movement), which is equally worth matching.
SYMMETRIC_PAIRS: tuple[tuple[str, str], ...] = _symmetric_pairs(fv.EXP_NAMES)
N_SYMMETRIC = 18

# Blendshapes that are driven together in real faces (FACS co-activations); the loss matches the joint activation.
COOCCURRING_PAIRS: tuple[tuple[str, str], ...] = (
    # Duchenne smile: lip-corner puller (AU12) raises the cheek / orbicularis oculi (AU6) on the same side.
    ("mouthSmileLeft", "cheekSquintLeft"),
    ("mouthSmileRight", "cheekSquintRight"),
    # Jaw drop (AU26/27) parts the lips: the lower lip follows the jaw down (AU16/25).
    ("jawOpen", "mouthLowerDownLeft"),
    ("jawOpen", "mouthLowerDownRight"),
    # Brow raise / surprise: inner (AU1) and outer (AU2) frontalis fire together.
    ("browInnerUp", "browOuterUpLeft"),
    ("browInnerUp", "browOuterUpRight"),
    # Surprise: upper-lid raiser (AU5) with the outer brow raiser (AU2) on the same side.
    ("eyeWideLeft", "browOuterUpLeft"),
    ("eyeWideRight", "browOuterUpRight"),
    # Lid closure: orbicularis oculi closes (AU45) and tightens the lids (AU7) together.
    ("eyeBlinkLeft", "eyeSquintLeft"),
    ("eyeBlinkRight", "eyeSquintRight"),
    # Lip protrusion: funneler (AU22) and pucker (AU18) are both orbicularis oris protrusions.
    ("mouthFunnel", "mouthPucker"),
    # Lip suck (AU28) and chin raiser (AU17) move both lips together.
    ("mouthRollLower", "mouthRollUpper"),
    ("mouthShrugLower", "mouthShrugUpper"),
    # Disgust: nose wrinkler (AU9, levator labii alaeque nasi) pulls the medial brow down (AU4) on the same side.
    ("noseSneerLeft", "browDownLeft"),
    ("noseSneerRight", "browDownRight"),
)

# Antagonists (opposite muscles / opposite directions of one structure): the prediction may not be jointly active beyond
# what the target is. jawOpen-mouthClose is deliberately absent: in ARKit `mouthClose` is the lip closure *while the jaw
# is open* (a corrective shape that only exists on top of jawOpen), so the two co-activate by construction.
EXCLUSIVE_PAIRS: tuple[tuple[str, str], ...] = (
    # Lip-corner puller (zygomaticus, AU12) vs lip-corner depressor (AU15), per side.
    ("mouthSmileLeft", "mouthFrownLeft"),
    ("mouthSmileRight", "mouthFrownRight"),
    # Lid closing (AU45) vs upper-lid raiser (AU5), per eye.
    ("eyeBlinkLeft", "eyeWideLeft"),
    ("eyeBlinkRight", "eyeWideRight"),
    # Brow lowerer (AU4) vs outer brow raiser (AU2), per side.
    ("browDownLeft", "browOuterUpLeft"),
    ("browDownRight", "browOuterUpRight"),
    # Lip pucker (orbicularis oris, AU18) vs lip stretcher (risorius, AU20).
    ("mouthPucker", "mouthStretchLeft"),
    ("mouthPucker", "mouthStretchRight"),
    # Opposite directions of one structure.
    ("mouthLeft", "mouthRight"),
    ("jawLeft", "jawRight"),
    ("eyeLookInLeft", "eyeLookOutLeft"),
    ("eyeLookInRight", "eyeLookOutRight"),
    ("eyeLookUpLeft", "eyeLookDownLeft"),
    ("eyeLookUpRight", "eyeLookDownRight"),
)


def _resolve(pairs: tuple[tuple[str, str], ...], what: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    missing = [n for p in pairs for n in p if n not in fv.EXP]
    assert not missing, f"{what}: unknown blendshape names {missing}"
    assert all(a != b for a, b in pairs), f"{what}: a pair of a blendshape with itself"
    return tuple(fv.EXP[a] for a, _ in pairs), tuple(fv.EXP[b] for _, b in pairs)


assert len(SYMMETRIC_PAIRS) == N_SYMMETRIC, (len(SYMMETRIC_PAIRS), SYMMETRIC_PAIRS)
_ALL_PAIRS = [frozenset(p) for p in SYMMETRIC_PAIRS + COOCCURRING_PAIRS + EXCLUSIVE_PAIRS]
assert len(_ALL_PAIRS) == len(set(_ALL_PAIRS)), "a blendshape pair repeats within or across the pair lists"
SYMMETRIC_IDX = _resolve(SYMMETRIC_PAIRS, "SYMMETRIC_PAIRS")
COOCCURRING_IDX = _resolve(COOCCURRING_PAIRS, "COOCCURRING_PAIRS")
EXCLUSIVE_IDX = _resolve(EXCLUSIVE_PAIRS, "EXCLUSIVE_PAIRS")


# ---------------------------------------------------------------------------------------------------------------------

def snr_weight(sigma: torch.Tensor, sigma_data: float) -> torch.Tensor:
    """sigma_data^2 / (sigma^2 + sigma_data^2), per sample (B,): 1 at sigma=0, -> 0 as sigma grows."""
    sigma = torch.as_tensor(sigma).reshape(-1)
    return sigma_data ** 2 / (sigma ** 2 + sigma_data ** 2)


KINEMATICS = ("loss", "raw_pose")


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sample mean of values (B, T) over mask (B, T) with where() (masked entries never enter, even if inf/nan)."""
    count = mask.sum(dim=1)
    total = torch.where(mask, values, torch.zeros((), dtype=values.dtype, device=values.device)).sum(dim=1)
    return total / count.clamp_min(1).to(values.dtype), count


class ReactionPriors(nn.Module):
    """Kinematics + facial-action dependency priors on x0-hat; see the module docstring.

    velocity_weight: the kinematics (head-pose velocity) prior, 1.0 as in the released code; au_weight: the whole
    facial-action dependency prior, 0.01 (its three terms sum over many pairs of ~0..1 activations, so it is kept
    small next to the denoising MSE); au_term_weights: (symmetric, co-occurring, exclusive) inside the AU prior.
    total = velocity_weight * L_vel + au_weight * (w_sym * L_sym + w_co * L_co + w_ex * L_ex).
    """

    def __init__(self, stats: FaceStats, lags=(1, 8), velocity_weight: float = 1.0, au_weight: float = 0.01,
                 sigma_data: float = 0.5, au_term_weights: tuple[float, float, float] = (1.0, 1.0, 1.0),
                 kinematics: str = "raw_pose", acceleration_weight: float = 0.0) -> None:
        super().__init__()
        if kinematics not in KINEMATICS:
            raise ValueError(f"kinematics {kinematics!r}: expected one of {KINEMATICS}")
        self.kinematics, self.acceleration_weight = kinematics, float(acceleration_weight)
        lags = tuple(int(lag) for lag in lags)
        if not lags or any(lag < 1 for lag in lags) or len(set(lags)) != len(lags):
            raise ValueError(f"lags must be distinct positive integers, got {lags}")
        if sigma_data <= 0:
            raise ValueError("sigma_data must be > 0")
        self.stats, self.lags, self.sigma_data = stats, lags, float(sigma_data)
        self.velocity_weight, self.au_weight = float(velocity_weight), float(au_weight)
        self.au_term_weights = tuple(float(w) for w in au_term_weights)
        for name, (i, j) in (("sym", SYMMETRIC_IDX), ("co", COOCCURRING_IDX), ("ex", EXCLUSIVE_IDX)):
            self.register_buffer(f"_{name}_i", torch.tensor(i, dtype=torch.long), persistent=False)
            self.register_buffer(f"_{name}_j", torch.tensor(j, dtype=torch.long), persistent=False)

    # -- terms, each per sample (B,), unweighted ----------------------------------------------------------------------

    def velocity_terms(self, err_pose: torch.Tensor, history_valid: torch.Tensor) -> torch.Tensor:
        """err_pose (B, W, D): x0-hat - x0 on the window (pose in raw units, or every dim standardised);
        history_valid (B, H) bool.

        On [history | window], Δ_L x̂[t] - Δ_L x[t] = e[t] - e[t-L] with e = x̂ - x, and e = 0 on the history
        (the same ground-truth past for both). Using the error directly is exact and never touches the history values
        (no cancellation with large values). Per lag: mean over window positions t whose t-L is a valid frame; per
        sample the mean over the lags that have at least one valid position (0 if none).
        """
        B, W, _ = err_pose.shape
        H = history_valid.shape[1]
        P = max(self.lags)
        zeros = err_pose.new_zeros(B, P + H, err_pose.shape[-1])
        e = torch.cat([zeros, err_pose], dim=1)  # (B, P+H+W, 6)
        valid = torch.cat([history_valid.new_zeros(B, P), history_valid,
                           history_valid.new_ones(B, W)], dim=1)  # (B, P+H+W)
        start = P + H
        total = err_pose.new_zeros(B)
        n_lags = err_pose.new_zeros(B)
        for lag in self.lags:  # a couple of lags, vectorised over batch, time and dims
            diff = e[:, start:] - e[:, start - lag:start - lag + W]
            per_lag, count = _masked_mean(diff.square().mean(dim=-1), valid[:, start - lag:start - lag + W])
            total = total + per_lag
            n_lags = n_lags + (count > 0).to(total.dtype)
        return total / n_lags.clamp_min(1)

    def acceleration_terms(self, err: torch.Tensor, history_valid: torch.Tensor) -> torch.Tensor:
        """Second differences of the error, e[t] - 2 e[t-1] + e[t-2] (e = 0 on the known history), mean over the
        window positions whose t-2 is a valid frame; err (B, W, D), history_valid (B, H) -> (B,)."""
        B, W, _ = err.shape
        e = torch.cat([err.new_zeros(B, 2 + history_valid.shape[1], err.shape[-1]), err], dim=1)
        valid = torch.cat([history_valid.new_zeros(B, 2), history_valid, history_valid.new_ones(B, W)], dim=1)
        start = 2 + history_valid.shape[1]
        second = e[:, start:] - 2 * e[:, start - 1:start - 1 + W] + e[:, start - 2:start - 2 + W]
        return _masked_mean(second.square().mean(dim=-1), valid[:, start - 2:start - 2 + W])[0]

    def au_terms(self, exp_hat: torch.Tensor, exp: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """exp_hat, exp (B, W, 52) de-normalised blendshapes -> (symmetric, co-occurring, exclusive) per sample (B,)."""
        si, sj = self._sym_i, self._sym_j
        asym = (exp_hat[..., si] - exp_hat[..., sj]) - (exp[..., si] - exp[..., sj])
        symmetric = asym.square().flatten(1).mean(dim=1)
        c_hat, c = exp_hat.clamp(0, 1), exp.clamp(0, 1)
        ci, cj = self._co_i, self._co_j
        cooccur = (c_hat[..., ci] * c_hat[..., cj] - c[..., ci] * c[..., cj]).square().flatten(1).mean(dim=1)
        ei, ej = self._ex_i, self._ex_j
        exclusive = torch.relu(c_hat[..., ei] * c_hat[..., ej] - c[..., ei] * c[..., ej]).flatten(1).mean(dim=1)
        return symmetric, cooccur, exclusive

    # -----------------------------------------------------------------------------------------------------------------

    def forward(self, x0_hat: torch.Tensor, x0: torch.Tensor, sigma: torch.Tensor,
                history: torch.Tensor | None = None,
                history_valid: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x0_hat, x0 (B, W, C>=58) normalised; sigma (B,) (or scalar / (B,1,1)); history (B, H, C) ground-truth past
        frames (optional, H may be 0), history_valid (B, H) bool (False = padding before the clip start).

        Returns SNR-weighted batch means {"velocity", "au_symmetric", "au_cooccur", "au_exclusive", "prior_total"}.
        Gradients flow to x0_hat only (x0, history and sigma are treated as constants).
        """
        if x0_hat.shape != x0.shape or x0_hat.dim() != 3 or x0_hat.shape[-1] < fv.FV_DIM:
            raise ValueError(f"x0_hat/x0 must both be (B, W, C>={fv.FV_DIM}), got {tuple(x0_hat.shape)} / "
                             f"{tuple(x0.shape)}")
        B, W, _ = x0_hat.shape
        dtype = torch.promote_types(x0_hat.dtype, torch.float32)  # half/bf16 -> float32, float64 stays
        x0_hat, x0 = x0_hat.to(dtype), x0.detach().to(dtype)

        if history_valid is None:
            H = 0 if history is None else history.shape[1]
            history_valid = torch.ones(B, H, dtype=torch.bool, device=x0_hat.device)
        else:
            history_valid = history_valid.detach().to(device=x0_hat.device, dtype=torch.bool)
            if history is not None and history.shape[:2] != history_valid.shape:
                raise ValueError(f"history {tuple(history.shape)} and history_valid {tuple(history_valid.shape)} "
                                 "disagree")
        if history_valid.dim() != 2 or history_valid.shape[0] != B:
            raise ValueError(f"history_valid must be (B={B}, H), got {tuple(history_valid.shape)}")

        sig = torch.as_tensor(sigma, device=x0_hat.device).detach().to(dtype).reshape(-1)
        if sig.numel() == 1:
            sig = sig.expand(B)
        if sig.shape != (B,):
            raise ValueError(f"sigma must be a scalar or have B={B} values, got {tuple(torch.as_tensor(sigma).shape)}")
        raw_hat = self.stats.denormalise(x0_hat[..., :fv.FV_DIM])
        raw = self.stats.denormalise(x0[..., :fv.FV_DIM])
        symmetric, cooccur, exclusive = self.au_terms(raw_hat[..., fv.EXP_SLICE], raw[..., fv.EXP_SLICE])
        if self.kinematics == "raw_pose":
            weight = snr_weight(sig, self.sigma_data)
            err = raw_hat[..., fv.POSE_SLICE] - raw[..., fv.POSE_SLICE]
            au_scale = 1.0
        else:  # per-dimension standardised error at the denoising loss's weight
            weight = edm_weight(sig, self.sigma_data)
            std = self.stats.std.to(dtype).clamp_min(1e-8)
            err = (raw_hat - raw) / std
            au_scale = 1.0 / std[fv.EXP_SLICE].square().mean()
        terms = {"velocity": self.velocity_terms(err, history_valid), "au_symmetric": au_scale * symmetric,
                 "au_cooccur": au_scale * cooccur, "au_exclusive": au_scale * exclusive}
        if self.acceleration_weight:
            terms["acceleration"] = self.acceleration_terms(err, history_valid)
        out = {name: (weight * term).mean() for name, term in terms.items()}
        w_sym, w_co, w_ex = self.au_term_weights
        out["prior_total"] = self.velocity_weight * out["velocity"] + self.au_weight * (
            w_sym * out["au_symmetric"] + w_co * out["au_cooccur"] + w_ex * out["au_exclusive"])
        if self.acceleration_weight:
            out["prior_total"] = out["prior_total"] + self.acceleration_weight * out["acceleration"]
        return out

    def extra_repr(self) -> str:
        return (f"kinematics={self.kinematics!r}, lags={self.lags}, velocity_weight={self.velocity_weight}, "
                f"acceleration_weight={self.acceleration_weight}, au_weight={self.au_weight}, "
                f"au_term_weights={self.au_term_weights}, sigma_data={self.sigma_data}, pairs: "
                f"{len(SYMMETRIC_PAIRS)} symmetric, {len(COOCCURRING_PAIRS)} co-occurring, "
                f"{len(EXCLUSIVE_PAIRS)} exclusive")
