"""Pack REACT dyadic clips into deterministic WebDataset shards (one sample per pair-list row).

Shard i holds pair-list rows [i*S, (i+1)*S) minus rejected ones, so shard contents never depend on timing or on
the number of workers, and a resumed run redoes exactly the shards that are not recorded intact in index.json.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from .. import __version__, atomic, recorded
from . import frame_layout as fv
from . import shard_folder as mf
from . import react_source as src
from .audio_features import make_frontend, parse_spec
from .layout import ClipPath, PairRow, pair_list_path, read_pair_list
from .sample_format import FORMAT_VERSION, PERSONS, decode_audio, encode_audio, encode_json, encode_npy, sample_key
from .tario import ShardBuilder

_FRONTEND = None  # per process: the audio frontend (wav2vec2 loads once per worker, not once per clip)
_FEATURE_SPEC = "none"  # per process: what --audio-features asked for


@dataclasses.dataclass(frozen=True)
class ShardSettings:
    """Everything that decides the bytes of the shards; a resume must use the same."""

    split: str
    samples_per_shard: int
    audio_features: str
    audio_format: str
    pair_list_sha256: str
    rows: int
    format_version: int = FORMAT_VERSION


class ShardingError(RuntimeError):
    """A problem with the run as a whole (not one clip): bad arguments, an output folder in the way."""


def _init_worker(feature_spec: str, threads: int) -> None:
    global _FRONTEND, _FEATURE_SPEC
    torch.set_num_threads(threads)
    _FEATURE_SPEC = feature_spec
    _FRONTEND = None if feature_spec == "provided" else make_frontend(feature_spec)  # provided: MARS's own


def frontend():
    """This process's audio frontend (None: no features computed here) and the --audio-features spec."""
    return _FRONTEND, _FEATURE_SPEC


def process_row(row: PairRow, split_dir: Path, split: str, n_rows: int, audio_format: str) -> dict:
    """Read, check and encode both persons of one dyadic clip -> {'key', 'fields'} or {'reject': record}."""
    try:
        clips = {}
        for person, rel in zip(PERSONS, (row.a, row.b)):
            try:
                clips[person] = ClipPath.parse(rel)
            except ValueError as exc:
                raise src.ClipRejected(f"pair list row {row.row}: {exc}") from None
        key = sample_key(row.row, clips["a"].site, clips["a"].session, clips["a"].clip)
        fields, meta_src, audio_samples = {}, {}, {}
        frames = None
        for person, clip in clips.items():
            src.check_exists(clip, split_dir)
            face = src.load_fv(clip, split_dir)
            if frames is None:
                frames = face.shape[0]
            elif face.shape[0] != frames:
                raise src.ClipRejected(f"3DMM tracks differ in length: {clips['a'].rel} has {frames} frames, "
                                       f"{clip.rel} has {face.shape[0]}")
            emotion = src.load_emotion(clip, split_dir, frames)
            audio, audio_info = src.load_audio(clip, split_dir, frames)
            ref_png, video_kind = src.load_reference_frame(clip, split_dir)
            fields[f"{person}.fv.npy"] = encode_npy(face)
            fields[f"{person}.emotion.npy"] = encode_npy(emotion)
            fields[f"{person}.audio.{audio_format}"] = encode_audio(audio, audio_format)
            audio = decode_audio(fields[f"{person}.audio.{audio_format}"])  # features of the stored (16-bit) audio
            fields[f"{person}.ref.png"] = ref_png
            if _FRONTEND is not None:
                fields[f"{person}.feat.npy"] = encode_npy(_FRONTEND(audio, frames).astype(np.float16))
            audio_samples[person] = int(audio.shape[0])
            meta_src[person] = {"audio_rate": audio_info["rate"], "audio_channels": audio_info["channels"],
                                "video": video_kind}
    except src.ClipRejected as exc:
        return {"reject": {"row": row.row, "a": row.a, "b": row.b, "reason": str(exc)}}
    meta = {
        "key": key, "split": split, "site": clips["a"].site, "session": clips["a"].session, "clip": clips["a"].clip,
        "persons": {p: c.person for p, c in clips.items()}, "paths": {p: c.rel for p, c in clips.items()},
        "frames": frames, "fps": fv.FPS, "audio_rate": fv.AUDIO_RATE, "audio_samples": audio_samples,
        "audio_format": audio_format,
        # neighbour-matrix rows in REACT's mirrored order: row k = a speaks to b, row L + k = b speaks to a
        "csv_row": row.row, "pair_rows": n_rows, "matrix_rows": {"a": row.row, "b": n_rows + row.row},
        "features": _FRONTEND.describe() | {"dtype": "float16"} if _FRONTEND is not None else None,
        "source": meta_src, "format_version": FORMAT_VERSION,
    }
    fields["meta.json"] = encode_json(meta)
    return {"key": key, "fields": fields, "matrix_rows": [meta["matrix_rows"]["a"], meta["matrix_rows"]["b"]],
            "frames": frames}


def check_run_args(samples_per_shard: int, audio_format: str) -> None:
    """What every sharding run checks first, whatever the layout."""
    if samples_per_shard < 1:
        raise ShardingError(f"--samples-per-shard must be >= 1, got {samples_per_shard}")
    if audio_format not in ("flac", "wav"):
        raise ShardingError(f"--audio-format must be flac or wav, got {audio_format!r}")


def _prepare_out(out: Path, settings: ShardSettings, resume: bool, overwrite: bool) -> dict:
    """Return the index to continue from (empty shards list for a fresh run)."""
    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.iterdir():
        if atomic.is_temp_file(leftover.name):
            leftover.unlink()  # half-written files of an interrupted run
    existing = [p for p in out.iterdir() if p.suffix == ".tar" or p.name in (mf.INDEX_NAME, mf.REJECTS_NAME)]
    fresh = {"format": mf.FORMAT, "settings": dataclasses.asdict(settings), "shards": [], "complete": False}
    if not existing:
        return fresh
    if overwrite:
        for p in existing:
            p.unlink()
        return fresh
    if not resume:
        raise ShardingError(f"{out} already holds shards ({len(existing)} files); pass --resume to finish that run "
                            f"or --overwrite to start over")
    if not (out / mf.INDEX_NAME).is_file():
        return fresh  # killed before the first shard was recorded: everything gets (re)written
    index = mf.load_index(out)
    old = index.get("settings", {})
    now = dataclasses.asdict(settings)
    diff = recorded.changes(old, now, keys=now)
    if diff:
        details = recorded.describe(diff, "{key}: was {old!r}, now {new!r}")
        raise ShardingError(f"cannot resume {out / mf.INDEX_NAME}: it was written with other settings ({details}); "
                            f"use the same arguments, or --overwrite")
    return index


def _copy_side_files(stats_dir: Path, react_root: Path, split: str, n_rows: int, out: Path) -> dict:
    """Copy mean_face.npy / std_face.npy and the split's neighbour matrix next to the shards, so readers and the
    evaluation find everything in the shard folder. The matrix must be (2L, 2L) for the L pair-list rows."""
    sources = {name: stats_dir / name for name in mf.STATS_FILES}
    sources[mf.NEIGHBOURS_NAME] = react_root / f"neighbour_emotion_{split}.npy"
    copied = {}
    for name, path in sources.items():
        if not path.is_file():
            continue
        data = path.read_bytes()
        if name == mf.NEIGHBOURS_NAME:
            shape = np.load(path, allow_pickle=False, mmap_mode="r").shape
            if shape != (2 * n_rows, 2 * n_rows):
                raise ShardingError(f"{path} has shape {shape}; expected ({2 * n_rows}, {2 * n_rows}) for the "
                                    f"{n_rows} rows of the pair list (mirrored order)")
        atomic.write_bytes(out / name, data)
        copied[name] = {"from": str(path), "sha256": mf.sha256_bytes(data)}
    return copied


class ShardWriter:
    """Collects processed rows and writes each shard (then its index entry) as soon as all its rows are in."""

    def __init__(self, out: Path, split: str, samples_per_shard: int, rows: int, index: dict, todo_rows: list,
                 progress: bool) -> None:
        self.out, self.split, self.per_shard, self.rows, self.index = out, split, samples_per_shard, rows, index
        self.by_shard: dict[int, list] = collections.defaultdict(list)
        self.remaining = collections.Counter(r.row // samples_per_shard for r in todo_rows)
        self.bar = tqdm(total=len(todo_rows), desc=f"shards {split}", unit="clip", disable=not progress,
                        dynamic_ncols=True)

    def collect(self, row: PairRow, result: dict) -> None:
        i = row.row // self.per_shard
        self.by_shard[i].append(result)
        self.remaining[i] -= 1
        self.bar.update(1)
        if "reject" in result:
            self.bar.write(f"reject row {row.row}: {result['reject']['reason']}")
        if self.remaining[i] == 0:
            self._finish(i)

    def _finish(self, i: int) -> None:
        results = self.by_shard.pop(i)
        accepted = [r for r in results if "reject" not in r]
        entry = {"index": i, "rows": [i * self.per_shard, min((i + 1) * self.per_shard, self.rows)],
                 "file": None, "keys": [], "offsets": [], "samples": 0, "bytes": 0, "sha256": None,
                 "rejects": [r["reject"] for r in results if "reject" in r]}
        if accepted:
            builder = ShardBuilder()
            for r in accepted:
                builder.add_sample(r["key"], r["fields"])
            data = builder.finish()
            name = mf.shard_file_name(self.split, i)
            atomic.write_bytes(self.out / name, data)
            entry.update(file=name, keys=builder.keys, offsets=builder.offsets, samples=len(accepted),
                         bytes=len(data), sha256=mf.sha256_bytes(data),
                         matrix_rows=[r["matrix_rows"] for r in accepted],  # [a speaks, b speaks] per sample
                         frames=[r["frames"] for r in accepted])  # per sample: whole-clip eval balances by them
        self.index["shards"] = sorted(self.index["shards"] + [entry], key=lambda e: e["index"])
        self.index["totals"] = mf.totals(self.index["shards"])
        mf.write_index(self.out, self.index)  # recorded only after the shard file is in place


def _process_rows(rows: list, split_dir: Path, split: str, n_rows: int, audio_format: str, audio_features: str,
                  workers: int, process=process_row):
    """(row, processed sample or reject) in row order, in this process or a pool of `workers` (each worker builds
    its audio frontend once, in _init_worker); a bounded number of clips in flight. `process` reads one row
    (process_row for REACT 2024, mars_shards.process_mars_row for MARS)."""
    if workers <= 1:
        _init_worker(audio_features, threads=torch.get_num_threads())
        for row in rows:
            yield row, process(row, split_dir, split, n_rows, audio_format)
        return
    with cf.ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(audio_features, 1)) as pool:
        pending: collections.deque = collections.deque()
        for row in rows:
            pending.append((row, pool.submit(process, row, split_dir, split, n_rows, audio_format)))
            while len(pending) >= 2 * workers:
                r, fut = pending.popleft()
                yield r, fut.result()
        while pending:
            r, fut = pending.popleft()
            yield r, fut.result()


def make_shards(react_root: str | Path, split: str, out: str | Path, *, workers: int = 1,
                samples_per_shard: int = 64, audio_features: str = "none", audio_format: str = "flac",
                resume: bool = False, overwrite: bool = False, pair_list: str | Path | None = None,
                limit: int | None = None, stats_dir: str | Path | None = None, tool_args: dict | None = None,
                progress: bool = True) -> dict:
    """Write the shards of one split; returns the final index (with `totals`)."""
    t0 = time.time()
    react_root, out = Path(react_root), Path(out)
    split_dir = react_root / split
    if not split_dir.is_dir():
        raise ShardingError(f"split folder {split_dir} not found (expected REACT layout root/{split}/3D_FV_files/...)")
    check_run_args(samples_per_shard, audio_format)
    parse_spec(audio_features)
    list_path = Path(pair_list) if pair_list else pair_list_path(react_root, split)
    try:
        rows = read_pair_list(list_path)
    except (FileNotFoundError, ValueError) as exc:
        raise ShardingError(str(exc)) from None
    n_rows = len(rows)  # matrix indices always refer to the full list, even with --limit
    rows = rows[:limit] if limit else rows
    settings = ShardSettings(split=split, samples_per_shard=samples_per_shard, audio_features=audio_features,
                             audio_format=audio_format, pair_list_sha256=mf.sha256_file(list_path), rows=len(rows))
    index = _prepare_out(out, settings, resume, overwrite)
    index["side_files"] = _copy_side_files(Path(stats_dir) if stats_dir else react_root, react_root, split, n_rows, out)
    index.update(tool=f"reactdiff {__version__} make_shards", args=tool_args or {},
                 source={"react_root": str(react_root), "pair_list": str(list_path), "pair_rows": n_rows})
    return write_shards(out, split, rows, index, samples_per_shard, split_dir, n_rows, audio_format, audio_features,
                        workers, progress, process_row, t0=t0)


def write_shards(out: Path, split: str, rows: list, index: dict, samples_per_shard: int, split_dir: Path, n_rows: int,
                 audio_format: str, audio_features: str, workers: int, progress: bool, process,
                 extra_rejects: list = (), t0: float | None = None) -> dict:
    """The shards of `rows` that index.json does not record intact, then the final index and rejects.jsonl (rows
    rejected while processing, plus `extra_rejects` found before) -> the index with `totals` and `run`."""
    t0 = time.time() if t0 is None else t0
    n_shards = (len(rows) + samples_per_shard - 1) // samples_per_shard
    done = {e["index"]: e for e in index["shards"] if mf.shard_is_intact(out, e)}
    index["shards"] = sorted(done.values(), key=lambda e: e["index"])
    todo = [i for i in range(n_shards) if i not in done]
    todo_rows = [r for i in todo for r in rows[i * samples_per_shard:(i + 1) * samples_per_shard]]

    writer = ShardWriter(out, split, samples_per_shard, len(rows), index, todo_rows, progress)
    for row, result in _process_rows(todo_rows, split_dir, split, n_rows, audio_format, audio_features, workers,
                                     process):
        writer.collect(row, result)
    writer.bar.close()

    index["shards"] = sorted(index["shards"], key=lambda e: e["index"])
    index["totals"] = mf.totals(index["shards"])
    index["totals"]["rejects"] += len(extra_rejects)
    index["complete"] = True
    mf.write_index(out, index)
    rejects = [*extra_rejects, *(rej for e in index["shards"] for rej in e["rejects"])]
    atomic.write_text(out / mf.REJECTS_NAME, "".join(json.dumps(r, sort_keys=True) + "\n" for r in rejects))
    index["run"] = {"seconds": round(time.time() - t0, 2), "shards_written": len(todo),
                    "shards_kept": len(done), "clips_processed": len(todo_rows)}
    return index
