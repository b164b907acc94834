"""Typed run configuration: omegaconf structured dataclasses, YAML files in configs/, dotlist overrides.

Unknown keys and wrong types fail at start-up with the key and the file that set it; the resolved config is
saved with every run (`save`).
"""
from __future__ import annotations

import dataclasses
import enum
from pathlib import Path
from typing import Any, Sequence

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from . import atomic
from .data import frame_layout as fv


class Choice(str, enum.Enum):
    """A config value from a fixed set: omegaconf refuses anything else at load, naming the key; it compares equal
    to its string and prints as it (f"{cfg.sample.sampler}" is "dpmpp_2m"). Names equal values, so the saved YAML
    reads as the strings."""

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)


class Normalisation(Choice):
    zscore = "zscore"  # (x - mean) / std: ReactDiff's convention
    center = "center"  # x - mean: the REACT 2023/24 baselines' convention
    none = "none"      # raw 3DMM values


class AudioInput(Choice):
    feat = "feat"  # precomputed features stored in the shards (make_shards --audio-features)
    raw = "raw"    # 16 kHz waveform windows, for a frontend that runs in the model
    none = "none"  # no audio (3DMM-only models and tests)


@dataclasses.dataclass
class DataConfig:
    """Where the shards are and how training windows are cut from them."""

    shards: str = "shards/train"  # folder with index.json and the .tar shards (tools/make_shards.py --out)
    window: int = 64  # frames the model denoises at once (25 fps)
    history: int = 64  # past frames given as context (speaker streams and past listener frames); 0 = none
    windows_per_clip: int = 4  # random windows cut from each role sample per epoch (each costs no extra read)
    batch_size: int = 8  # windows per batch on each rank
    shuffle_buffer: int = 256  # windows in the shuffle buffer of each worker
    num_workers: int = 2  # DataLoader worker processes per rank (0: read in the main process)
    seed: int = 0  # shard order, window starts and shuffling all derive from it
    audio: AudioInput = AudioInput.feat  # which speaker audio stream items carry
    emotion: bool = False  # also carry the 25-d emotion streams
    mean_face: str = ""  # mean_face.npy (58,); empty: the copy next to index.json
    std_face: str = ""  # std_face.npy (58,); empty: the copy next to index.json
    normalisation: Normalisation = Normalisation.zscore  # how 3DMM is normalised for the model
    eval_frames: int = 750  # frames per clip in eval mode (REACT scores frames 0..749); 0: whole clips (MARS)
    val_shards: str = ""  # validation shards: "" = the sibling `val` folder of `shards` when it exists; none = off


class ModelSize(Choice):
    tiny = "tiny"    # tests: ~0.4 M parameters
    small = "small"  # CPU demo: ~9 M
    paper = "paper"  # the paper's size: channels 128/256/512, depths 2/4/4, ~48 M


class SigmaDensityKind(Choice):
    lognormal = "lognormal"  # EDM: ln(sigma) ~ N(p_mean, p_std^2)
    cosine = "cosine"        # the truncated v-diffusion density of the released ReactDiff code


class NoiseKind(Choice):
    white = "white"  # i.i.d. per frame and dim (EDM as published)
    spectral = "spectral"  # whitened DCT coordinates of the window: every coordinate has std sigma_data (spectrum.py)
    covariance = "covariance"  # whitened principal coordinates of the window's full temporal covariance: knows that
    #                            a window's first frames follow its past (covariance.py)


class Anchor(Choice):
    none = "none"  # windows are denoised as absolute (normalised) values
    last_frame = "last_frame"  # relative to the last known listener frame (continuity with the past by default)
    regression = "regression"  # relative to the window's least-squares prediction from that frame (mean-reverting)


class AlignedNorm(Choice):
    frame = "frame"  # one LayerNorm per frame over the speaker's 3DMM and audio channels together (v20 and before)
    stream = "stream"  # each stream on its own: the 3DMM as data.normalisation left it, the audio LayerNormed alone
    face_and_frame = "face_and_frame"  # the 3DMM as data.normalisation left it, next to frame's channels


class Kinematics(Choice):
    loss = "loss"  # all 58 dims, standardised, at the denoising loss's EDM weight
    raw_pose = "raw_pose"  # head pose in raw radians/metres with the SNR weight (exports made before `loss`)


class Sampler(Choice):
    euler = "euler"
    heun = "heun"
    dpmpp_2m = "dpmpp_2m"
    dpmpp_2m_sde = "dpmpp_2m_sde"


class Join(Choice):
    crossfade = "crossfade"  # each window sampled from the past alone; the frames two windows share cross-faded
    inpaint = "inpaint"      # the shared frames held at the earlier window's while the later one is sampled


class Schedule(Choice):
    constant = "constant"
    cosine = "cosine"  # after warm-up, down to min_lr_ratio x lr


class Rasteriser(Choice):
    auto = "auto"  # pytorch3d on GPUs when it imports, else torch
    torch = "torch"
    pytorch3d = "pytorch3d"


class Executor(Choice):
    slurm = "slurm"
    local = "local"  # submitit's local executor: no SLURM needed


@dataclasses.dataclass
class LossGroupPower:
    """model.loss_weight_power of its own for a stream group's dims (none: model.loss_weight_power); each dim's
    loss keeps its share, the power only moves it between the dim's slow and fast coordinates."""

    expression: float | None = None  # dims 0:52
    rotation: float | None = None  # dims 52:55
    translation: float | None = None  # dims 55:58


@dataclasses.dataclass
class LossGroupWeight:
    """Weight of each 3DMM stream group's dims in the denoising loss, relative to each other (normalised so that the
    mean over all dims is 1: the loss keeps its scale). All 1: every dim alike, so head rotation is 3 of 58."""

    expression: float = 1.0  # dims 0:52
    rotation: float = 1.0  # dims 52:55 (nods are pitch)
    translation: float = 1.0  # dims 55:58


@dataclasses.dataclass
class LossBand:
    """Extra denoising-loss weight on one stream group's temporal-frequency band (spectral / covariance noise: the
    window's DCT coefficients k whose frequency k * fps / (2 W) lies in [low_hz, high_hz]), normalised so that the
    loss keeps its scale. The default band is where listeners nod and shake their heads (~1.5-2.6 Hz); weight 1: off."""

    group: str = "rotation"  # a stream group (expression | rotation | translation) or a head-rotation channel (pitch |
    #                          yaw | roll: nods are pitch alone)
    low_hz: float = 1.5
    high_hz: float = 2.6
    fps: float = 25.0  # the frame rate the band is given at (REACT 25, MARS 30)
    weight: float = 1.0


@dataclasses.dataclass
class BandGate:
    """A speaker-gated band skip (reactdiff/model/band_gate.py): the aligned speaker streams and the noise level set
    per-frame gains on the noisy window's temporal-frequency bands, split at `edges_hz`; empty: off."""

    edges_hz: list[float] = dataclasses.field(default_factory=list)  # e.g. [0.5, 1.5, 2.6, 5.0]: 5 bands
    group: str = "all"  # the dims it gains: all, a stream group (expression | rotation | translation) or one
    #                     head-rotation channel (pitch | yaw | roll)
    fps: float = 25.0  # the frame rate the edges are given at (REACT 25, MARS 30)
    span: int = 0  # > 0: the gate also filters the speaker's last `span` frames itself (a cue's nod runs ~50
    #                frames; the U-Net's speaker_filter stays as it is); needs data.history >= span - 1


@dataclasses.dataclass
class ModelConfig:
    """The ReactDiff denoiser: U-Net size, audio input, EDM settings and prior weights."""

    size: ModelSize = ModelSize.small  # U-Net preset (reactdiff/model/unet.py PRESETS)
    audio: str = "feat"  # feat (shard features, data.audio=feat) | logmel | wav2vec2:/path (data.audio=raw) | none
    audio_dim: int = 80  # width of the shard features when audio=feat (logmel: 80, wav2vec2-base: 768)
    predict_emotion: bool = False  # also generate the 25-d emotion stream (needs data.emotion=true)
    dropout: float = 0.0  # dropout in residual blocks and attention (training only)
    sigma_data: float = 1.0  # EDM sigma_data: the data's std (z-scored 3DMM has std 1; the release used 0.5)
    sigma_density: SigmaDensityKind = SigmaDensityKind.lognormal  # training noise-level density
    p_mean: float = 0.0  # lognormal: mean of ln(sigma) (with p_std 1.4 it trains the sigmas > 5 where sampling
    #                      decides a window's level; EDM's -1.2 / 1.2 never does: measured, see README)
    p_std: float = 1.4  # lognormal: std of ln(sigma)
    kinematics: Kinematics = Kinematics.loss  # scale of the kinematics prior (reactdiff/model/priors.py)
    velocity_weight: float = 1.0  # kinematics prior: velocity (lag differences) weight
    acceleration_weight: float = 1.0  # kinematics prior: acceleration (second differences) weight
    au_weight: float = 0.01  # facial-action-unit dependency prior weight
    kinematics_lags: list[int] = dataclasses.field(default_factory=lambda: [1, 8])  # velocity lags (frames)
    cond_dropout: float = 0.0  # training: share of windows whose speaker streams are replaced by a learned "none"
    face_dropout: float = 0.0  # training: share of windows whose speaker 3DMM alone is replaced by a learned "no
    #                            face" (the model can then react to audio alone: live audio-only sessions)
    noise: NoiseKind = NoiseKind.spectral  # diffusion noise: white, or with the data's temporal spectrum / covariance
    anchor: Anchor = Anchor.regression  # denoise windows as absolute values, or relative to the last known listener
    #                                     frame (last_frame) or to their prediction from it (regression, measured best)
    anchor_memory: int = 0  # with anchor=regression: listener frames before a window whose mean joins its
    #                         prediction (where this person's face and pose return to; 0: the last frame alone)
    aligned_speaker: bool = True  # also feed the speaker streams of the window's frames (+ the last listener frame)
    #                               to the U-Net input, frame by frame
    aligned_norm: AlignedNorm = AlignedNorm.frame  # with aligned_speaker: how the speaker streams are scaled there
    #                          (frame: the audio's per-frame level and spread also scale every 3DMM channel; the
    #                          other two sharpen smile onsets but cost FRCorr 0.82-0.87x: README)
    speaker_filter: int = 0  # with aligned_speaker: frames of a learned causal filter over the speaker streams
    #                          before the U-Net input (0: each frame sees only its own speaker frame); <= history + 1
    speaker_film: bool = False  # with aligned_speaker: the aligned streams also scale/shift every residual block
    #                             frame by frame (a speaker-dependent gain: cued reactions of varying shape)
    spectrum_clips: int = 64  # dyadic clips of the training shards the spectrum is measured from
    loss_weight_power: float = 1.0  # spectral / covariance noise: loss weight (r/sigma_data)^p per coordinate
    #                                 (0: whitened)
    loss_group_weight: LossGroupWeight = dataclasses.field(default_factory=LossGroupWeight)  # per stream group
    loss_group_power: LossGroupPower = dataclasses.field(default_factory=LossGroupPower)  # per stream group
    loss_band: LossBand = dataclasses.field(default_factory=LossBand)  # one group's frequency band weighted more
    band_gate: BandGate = dataclasses.field(default_factory=BandGate)  # speaker-set gains on the noisy bands


@dataclasses.dataclass
class GroupGuidance:
    """A guidance scale of its own for a stream group's dims (none: sample.guidance)."""

    expression: float | None = None  # dims 0:52
    rotation: float | None = None  # dims 52:55 (nods are pitch)
    translation: float | None = None  # dims 55:58


@dataclasses.dataclass
class SampleConfig:
    """Online generation of full clips: windows conditioned on the past generated frames."""

    sampler: Sampler = Sampler.dpmpp_2m  # euler | heun | dpmpp_2m | dpmpp_2m_sde
    steps: int = 25  # sampling steps per window
    sigma_min: float = 0.01  # Karras schedule
    sigma_max: float = 20.0  # whitened data has std sigma_data = 1: 20 is pure noise already (measured vs 80)
    rho: float = 7.0
    window: int = 64  # frames generated per window
    overlap: int = 8  # frames shared by consecutive windows, cross-faded (no "momentum" damping)
    join: Join = Join.crossfade  # crossfade | inpaint: whether a window is sampled knowing the frames it shares
    #                              (inpaint: more jitter at the joins and weaker onsets, README)
    k: int = 10  # reactions per speaker clip (REACT protocol: 10)
    seed: int = 0  # reaction k of clip c always uses the same noise, whatever the batch or world size
    batch_size: int = 4  # speaker clips generated together (x k reactions)
    guidance: float = 1.0  # classifier-free guidance scale (1: off; > 1 needs model.cond_dropout > 0, 2x calls)
    group_guidance: GroupGuidance = dataclasses.field(default_factory=GroupGuidance)  # per stream group (2x calls
    #                                                   when any differs from 1)
    guidance_rescale: float = 0.0  # 0..1: each group's guided estimate scaled back towards the conditional one's
    #                                spread per window (0: plain guidance)
    temperature: float = 0.85  # scale of the noise the sampler draws (< 1: less diverse, nearer the typical
    #                            listener; 0.85 measured best with the quality benchmark, see README)
    level_temperature: float | None = None  # the temperature of each window's level (its mean over frames, the
    #                            DCT's first coefficient; with model.noise=covariance its leading principal
    #                            component): how far a reaction's pose level strays from the likely one (none: the
    #                            same as temperature)


class Precision(Choice):
    auto = "auto"  # bf16 on GPUs that support it, else fp16 on GPU; fp32 on CPU
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class WandbMode(Choice):
    offline = "offline"    # default: logs under the run folder, `wandb sync` later
    online = "online"
    disabled = "disabled"


@dataclasses.dataclass
class TrainConfig:
    """DeepSpeed training: optimiser, schedule, ZeRO, EMA, checkpoints and logging."""

    out: str = "runs"  # the run folder is <out>/<name>
    steps: int = 10000  # optimiser steps
    lr: float = 1e-4  # AdamW learning rate (the paper's)
    betas: list[float] = dataclasses.field(default_factory=lambda: [0.95, 0.999])  # AdamW betas
    eps: float = 1e-6  # AdamW epsilon
    weight_decay: float = 1e-3  # AdamW weight decay
    warmup_steps: int = 0  # linear warm-up steps
    schedule: Schedule = Schedule.constant  # constant | cosine (after warm-up, down to min_lr_ratio x lr)
    min_lr_ratio: float = 0.1  # cosine floor
    grad_accum: int = 1  # micro-batches per optimiser step
    grad_clip: float = 1.0  # global gradient-norm clipping (0: off)
    zero_stage: int = 0  # DeepSpeed ZeRO stage 0-3
    precision: Precision = Precision.auto  # compute precision; CPU always runs fp32
    deepspeed_json: str = ""  # optional DeepSpeed JSON merged over the generated config (expert knobs)
    ema_max: float = 0.9999  # EMA decay ceiling
    ema_power: float = 0.6667  # EMA warm-up power: decay = 1 - (1 + step)^-power
    ema_every: int = 1  # update the EMA every N optimiser steps
    checkpoint_every: int = 1000  # optimiser steps between checkpoints (0: only at the end and on preemption)
    keep_checkpoints: int = 2  # complete checkpoints kept (older ones are deleted)
    log_every: int = 10  # optimiser steps between log lines
    wandb: WandbMode = WandbMode.offline  # wandb mode
    wandb_project: str = "reactdiff"  # wandb project
    resume: bool = True  # continue from the latest complete checkpoint of the run folder
    allow_config_change: bool = False  # let a rerun change what is trained (model, data, optimiser, schedule keys)
    #                                    or the global batch; recorded in <run>/starts.jsonl
    compile: bool = False  # torch.compile the U-Net (dynamic=False: fixed window shapes); measured slower on CPU
    sync_every: int = 10  # optimiser steps between the ranks' preemption agreement (a host sync; also at
    #                       checkpoint steps and the last step)
    val_every: int = 1000  # optimiser steps between validation losses (and at the end; 0: off)
    val_windows: int = 256  # fixed validation windows (the same ones at every validation and in every run)
    val_levels: int = 8  # fixed noise levels, log-spaced over the training density's 1st-99th percentiles
    sample_every: int = 5000  # optimiser steps between samples of validation clips (and at the end; 0: off)
    sample_clips: int = 2  # validation clips sampled (the first ones of data.val_shards)
    sample_k: int = 4  # reactions per sampled clip
    sample_steps: int = 10  # sampler steps of those reactions (the other settings: the sample section)
    render_faceverse: str = ""  # FaceVerse model file: also a grey-mesh grid video of each sampled clip
    render_size: int = 224  # pixels per panel of those videos (the REACT renderer's 224)
    render_rasteriser: Rasteriser = Rasteriser.auto  # auto (pytorch3d on GPUs when it imports, else torch)


@dataclasses.dataclass
class RunConfig:
    """The whole run: what `reactdiff train` reads, saves with the run and writes into every export."""

    name: str = "reactdiff"  # run name (folder and wandb name)
    seed: int = 0  # global seed
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    sample: SampleConfig = dataclasses.field(default_factory=SampleConfig)
    train: TrainConfig = dataclasses.field(default_factory=TrainConfig)


@dataclasses.dataclass
class ClusterConfig:
    """A cluster profile for launch/slurm.py (configs/cluster/*.yaml)."""

    executor: Executor = Executor.slurm  # slurm | local (submitit's local executor: no SLURM needed)
    partition: str = ""  # SLURM partition ("" = the cluster's default)
    account: str = ""  # --account
    qos: str = ""  # --qos
    constraint: str = ""  # --constraint (e.g. a GPU type)
    time_min: int = 60  # time limit per job (minutes)
    mem_gb: int = 0  # memory per node (0 = the partition's default)
    cpus_per_task: int = 2  # CPUs per task (data-loader workers + the main process)
    nodes: int = 1  # training nodes
    tasks_per_node: int = 1  # training processes per node (= GPUs per node on GPU clusters)
    gpus_per_node: int = 0  # GPUs per node (0 = CPU only)
    signal_delay_s: int = 120  # USR2 this long before the time limit: save, requeue, resume
    max_num_timeout: int = 3  # how often a job may requeue itself after hitting the time limit
    eval_tasks: int = 0  # eval array size (0 = one task per shard)
    render_tasks: int = 0  # render array size (0 = eval_tasks, which sized render arrays before; else 1)
    eval_parallelism: int = 64  # eval / render array tasks running at once
    setup: list[str] = dataclasses.field(default_factory=list)  # shell lines run before each job (module load ...)


class ConfigError(ValueError):
    """A config that does not match the schema; the message names the key and where it came from."""


def _explain(exc: OmegaConfBaseException, source: str) -> ConfigError:
    key = getattr(exc, "full_key", None) or "?"
    msg = str(exc).splitlines()[0]
    return ConfigError(f"{source}: {key}: {msg}")


# Keys added after configs were first saved with runs and exports, with the value that reproduces how those older
# runs behaved. A saved (resolved) config holds every key of its day, so a missing key means "made before it".
LEGACY_DEFAULTS = {
    "model.kinematics": "raw_pose",
    "model.acceleration_weight": 0.0,
    "model.cond_dropout": 0.0,
    "model.face_dropout": 0.0,
    "model.noise": "white",
    "model.anchor": "none",
    "model.aligned_speaker": False,
    "model.aligned_norm": "frame",
    "sample.temperature": 1.0,
}


PACKAGED = Path(__file__).resolve().parent / "configs"  # shipped in the wheel; `configs/` in a clone links here


def packaged(name: str) -> Path:
    """A config shipped with the package: "demo", "paper", "cluster/local", ... (with or without .yaml)."""
    return PACKAGED / (name if name.endswith(".yaml") else f"{name}.yaml")


def locate(path: str | Path) -> Path:
    """`path` when it is a file, else the packaged config of that name (`--config demo`, `--config
    configs/paper.yaml` from any folder); a clear error listing the packaged ones otherwise."""
    path = Path(path)
    if path.is_file():
        return path
    name = Path(*path.parts[1:]) if path.parts[:1] == ("configs",) and len(path.parts) > 1 else path
    if packaged(str(name)).is_file():
        return packaged(str(name))
    shipped = sorted(str(p.relative_to(PACKAGED).with_suffix("")) for p in PACKAGED.rglob("*.yaml"))
    raise ConfigError(f"config file {path} not found (packaged configs, usable by name: {', '.join(shipped)})")


def load(path: str | Path | None = None, overrides: Sequence[str] = (), schema: type = RunConfig,
         saved: bool = False) -> DictConfig:
    """Schema defaults <- YAML file <- `key=value` overrides; returns a read-only, fully typed config.

    saved=True: `path` is a resolved config saved with a run or export; keys it lacks take LEGACY_DEFAULTS."""
    cfg = OmegaConf.structured(schema)
    if path is not None:
        path = locate(path)
        try:
            loaded = OmegaConf.load(path)
            if saved:
                missing = [f"{k}={v}" for k, v in LEGACY_DEFAULTS.items() if OmegaConf.select(loaded, k) is None]
                loaded = OmegaConf.merge(loaded, OmegaConf.from_dotlist(missing))
            cfg = OmegaConf.merge(cfg, loaded)
        except OmegaConfBaseException as exc:
            raise _explain(exc, str(path)) from None
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected key=value (e.g. data.window=32)")
        try:
            cfg = OmegaConf.merge(cfg, OmegaConf.from_dotlist([item]))
        except OmegaConfBaseException as exc:
            raise _explain(exc, f"override {item!r}") from None
    try:
        OmegaConf.resolve(cfg)
    except OmegaConfBaseException as exc:
        raise _explain(exc, str(path or "config")) from None
    if schema is RunConfig:
        check(cfg)
    OmegaConf.set_readonly(cfg, True)
    return cfg


_POSITIVE = ("data.window", "model.spectrum_clips", "sample.temperature", "data.windows_per_clip", "data.batch_size",
             "data.shuffle_buffer",
             "model.audio_dim", "model.sigma_data", "sample.steps", "sample.window", "sample.k", "sample.batch_size",
             "sample.sigma_min", "sample.sigma_max", "train.steps", "train.lr", "train.grad_accum", "train.ema_every",
             "train.log_every", "train.keep_checkpoints", "train.val_windows", "train.val_levels",
             "train.sample_clips", "train.sample_k", "train.sample_steps", "train.render_size",
             "train.sync_every", "model.loss_group_weight.expression", "model.loss_group_weight.rotation",
             "model.loss_group_weight.translation", "model.loss_band.weight", "model.loss_band.fps",
             "model.band_gate.fps")
_NON_NEGATIVE = ("data.history", "data.num_workers", "sample.overlap", "model.dropout", "model.velocity_weight",
                 "model.loss_weight_power", "data.eval_frames", "model.speaker_filter", "model.anchor_memory",
                 "model.band_gate.span",
                 "model.acceleration_weight", "model.au_weight", "sample.guidance", "train.warmup_steps",
                 "train.grad_clip", "train.checkpoint_every", "train.weight_decay", "train.zero_stage",
                 "train.val_every", "train.sample_every")
_DATA_AUDIO_FOR_MODEL = {"feat": "feat", "logmel": "raw", "wav2vec2": "raw", "none": "none"}


def check(cfg: DictConfig) -> None:
    """Value ranges the types cannot express."""
    for key in _POSITIVE + _NON_NEGATIVE:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        if (value <= 0) if key in _POSITIVE else (value < 0):
            raise ConfigError(f"{key}: must be {'> 0' if key in _POSITIVE else '>= 0'}, got {value}")
    if cfg.sample.overlap >= cfg.sample.window:
        raise ConfigError(f"sample.overlap ({cfg.sample.overlap}) must be smaller than sample.window "
                          f"({cfg.sample.window})")
    if cfg.train.zero_stage > 3:
        raise ConfigError(f"train.zero_stage: 0, 1, 2 or 3, got {cfg.train.zero_stage}")
    if len(cfg.train.betas) != 2 or not all(0 <= b < 1 for b in cfg.train.betas):
        raise ConfigError(f"train.betas: two values in [0, 1), got {list(cfg.train.betas)}")
    if not 0 <= cfg.train.ema_max < 1:
        raise ConfigError(f"train.ema_max: in [0, 1), got {cfg.train.ema_max}")
    if not 0 <= cfg.model.cond_dropout < 1:
        raise ConfigError(f"model.cond_dropout: in [0, 1), got {cfg.model.cond_dropout}")
    if not 0 <= cfg.sample.guidance_rescale <= 1:
        raise ConfigError(f"sample.guidance_rescale: in [0, 1], got {cfg.sample.guidance_rescale}")
    if not 0 <= cfg.model.face_dropout < 1:
        raise ConfigError(f"model.face_dropout: in [0, 1), got {cfg.model.face_dropout}")
    if cfg.sample.guidance != 1 and cfg.model.cond_dropout == 0:
        raise ConfigError(f"sample.guidance={cfg.sample.guidance} needs a model trained with condition dropout "
                          f"(model.cond_dropout > 0): without it the model has no unconditional mode to guide from")
    for group, scale in cfg.sample.group_guidance.items():
        if scale is None:
            continue
        if scale < 0:
            raise ConfigError(f"sample.group_guidance.{group}: must be >= 0, got {scale}")
        if scale != 1 and cfg.model.cond_dropout == 0:
            raise ConfigError(f"sample.group_guidance.{group}={scale} needs a model trained with condition dropout "
                              f"(model.cond_dropout > 0): without it the model has no unconditional mode to guide from")
    if cfg.model.speaker_filter and not cfg.model.aligned_speaker:
        raise ConfigError("model.speaker_filter needs model.aligned_speaker=true: it filters the aligned speaker "
                          "streams")
    if cfg.model.speaker_film and not cfg.model.aligned_speaker:
        raise ConfigError("model.speaker_film needs model.aligned_speaker=true: it is computed from the aligned "
                          "speaker streams")
    gate = cfg.model.band_gate
    if gate.edges_hz:
        if not cfg.model.aligned_speaker:
            raise ConfigError("model.band_gate needs model.aligned_speaker=true: its gains are computed from the "
                              "aligned speaker streams")
        edges = list(gate.edges_hz)
        if gate.fps <= 0 or edges != sorted(set(edges)) or not all(0 < e < gate.fps / 2 for e in edges):
            raise ConfigError(f"model.band_gate.edges_hz: increasing, within (0, fps / 2 = {gate.fps / 2}) Hz, got "
                              f"{edges} at fps {gate.fps}")
        if gate.group != "all" and gate.group not in fv.STREAMS:
            raise ConfigError(f"model.band_gate.group: all or one of {list(fv.STREAMS)}, got {gate.group!r}")
    elif gate.span:
        raise ConfigError(f"model.band_gate.span={gate.span} needs model.band_gate.edges_hz: it is the gate's own view "
                          f"of the speaker")
    for key in ("model.speaker_filter", "model.band_gate.span"):  # causal filters over the speaker's past frames
        frames = OmegaConf.select(cfg, key)
        if frames > cfg.data.history + 1:
            raise ConfigError(f"{key}={frames} frames needs data.history >= {frames - 1} (the speaker's past frames "
                              f"it filters), got {cfg.data.history}")
    for group, power in cfg.model.loss_group_power.items():
        if power is None:
            continue
        if power < 0:
            raise ConfigError(f"model.loss_group_power.{group}: must be >= 0, got {power}")
        if cfg.model.noise.value == "white":
            raise ConfigError(f"model.loss_group_power.{group} needs model.noise=spectral or covariance: the power "
                              f"weighs the noise model's coordinates")
    band = cfg.model.loss_band
    if band.weight != 1:
        if band.group not in fv.STREAMS:
            raise ConfigError(f"model.loss_band.group: one of {list(fv.STREAMS)}, got {band.group!r}")
        if not 0 <= band.low_hz < band.high_hz:
            raise ConfigError(f"model.loss_band: needs 0 <= low_hz < high_hz, got {band.low_hz} / {band.high_hz}")
        if cfg.model.noise.value == "white":
            raise ConfigError("model.loss_band needs model.noise=spectral or covariance: the band is a set of the "
                              "window's DCT coefficients")
    if cfg.model.anchor_memory and cfg.model.anchor.value != "regression":
        raise ConfigError(f"model.anchor_memory={cfg.model.anchor_memory} needs model.anchor=regression (the memory "
                          f"mean joins the window's regression), got model.anchor={cfg.model.anchor.value}")
    if any(lag < 1 for lag in cfg.model.kinematics_lags):
        raise ConfigError(f"model.kinematics_lags: every lag must be >= 1, got {list(cfg.model.kinematics_lags)}")


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(cfg, resolve=True)


def save(cfg: Any, path: str | Path) -> None:
    """Write the resolved config (atomically) so a run can always be reproduced from its folder."""
    atomic.write_text(path, to_yaml(cfg))


def check_model_data(cfg: DictConfig) -> None:
    """The model's inputs must be what the data section delivers (checked where a model meets data)."""
    from .data.audio_features import parse_spec

    try:
        kind, _ = parse_spec(cfg.model.audio, feat=True)
    except ValueError as exc:
        raise ConfigError(f"model.audio: {exc}") from None
    need = _DATA_AUDIO_FOR_MODEL[kind]
    if cfg.data.audio.value != need:
        raise ConfigError(f"model.audio={cfg.model.audio} needs data.audio={need}, got "
                          f"data.audio={cfg.data.audio.value}")
    if cfg.model.predict_emotion and not cfg.data.emotion:
        raise ConfigError("model.predict_emotion=true needs data.emotion=true")


def schema_keys(schema: type = RunConfig, prefix: str = "") -> list[tuple[str, str, str, str]]:
    """(key, type, default, comment) of every leaf key of the schema, the comments read from the dataclasses'
    source (a field's trailing comment and the comment lines that continue it)."""
    import inspect
    import re

    comments: dict[str, str] = {}
    last = None
    for line in inspect.getsource(schema).splitlines():
        field = re.match(r"\s+(\w+)\s*:.*?#\s?(.*)$", line)
        if field and "=" in line.split("#")[0]:
            last = field.group(1)
            comments[last] = field.group(2).strip()
        elif last and re.match(r"\s+#", line):
            comments[last] += " " + line.strip().lstrip("#").strip()
        else:
            last = None
    out = []
    hints = {f.name: f for f in dataclasses.fields(schema)}
    for name, f in hints.items():
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if dataclasses.is_dataclass(default):
            out += schema_keys(type(default), f"{prefix}{name}.")
            continue
        kind = type(default)
        if isinstance(default, enum.Enum):
            type_name, value = " | ".join(m.value for m in kind), default.value
        else:
            type_name, value = kind.__name__, default
        out.append((f"{prefix}{name}", type_name, repr(value) if isinstance(value, str) else str(value),
                    comments.get(name, "")))
    return out


def describe_keys(schema: type = RunConfig) -> str:
    """Every config key with its type, default and comment, for --help."""
    import textwrap

    lines = []
    for key, type_name, default, comment in schema_keys(schema):
        lines.append(f"  {key} = {default}  ({type_name})")
        if comment:
            lines += textwrap.wrap(comment, 112, initial_indent="      ", subsequent_indent="      ")
    return "\n".join(lines)
