"""`reactdiff bench quality` (tools/bench_quality.py): how a change to the model is judged.

A synthetic REACT dataset with planted speaker -> listener couplings (smile and brow mimicry, nods after the
speaker's phrases, each listener with its own lag of 8-12 frames) -> shards -> training on 2 ranks with
`configs/quality.yaml` -> K reactions per test speaker clip -> `reactdiff evaluate`, printed as one table: the model
against every honest baseline on the REACT metrics, the motion statistics (jitter and variance relative to real
listeners), the recovered lag and strength of each planted coupling against the data's own, and for every trained
model the denoiser's gain on head pitch's nod band after the speaker's phrase ends vs elsewhere against the ideal
(reactdiff/eval/band_gain.py: whether the network uses the cue at all).

    python tools/bench_quality.py                                  # the default: configs/quality.yaml
    python tools/bench_quality.py --variant sd05:model.sigma_data=0.5 --variant cfg2:sample.guidance=2
A variant that only changes `sample.*` keys reuses the base training. Everything lands in --work; a rerun, and any
variant, reuses each finished training whose config differs from its own only in `sample.*` (and the run's name).
`--layout mars` runs it all on a synthetic MARS-layout dataset at 30 fps, scored with the react2025 protocol
(bench/quality_mars.py).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from omegaconf import OmegaConf

from .. import atomic, cli_args, config
from ..data.frame_layout import FPS
from ..data.make_shards import make_shards
from ..data.synthetic import generate_dataset
from ..eval.band_power import band_cells, band_label
from ..eval.evaluate import evaluate, load_reactions
from ..eval.ground_truth import load_ground_truth
from ..eval.motion import GROUPS, PLANTED, coupling_curves, coupling_name
from ..sampling.writer import load_manifest
from . import quality_mars

TARGETS = {"jitter": (0.8, 1.25), "variance": (0.7, 1.4), "coupling_strength": 0.75, "peak_frames": 2,
           "frdiv_vs_random": 0.5}
# Each layout's names for correlation, distance, diversity and variance (MARS: the react2025 protocol's).
METRICS = {"react2024": ("FRCorr", "FRDist", "FRDiv", "FRVar"), "mars": quality_mars.METRICS}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="reactdiff bench quality", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", help="dataset, shards, runs and evaluations (default runs/bench_quality, "
                                  "runs/bench_quality_mars with --layout mars)")
    p.add_argument("--layout", choices=tuple(METRICS), default="react2024",
                   help="react2024 (25 fps clips of 751 frames) or mars: a synthetic MARS-layout dataset (30 fps "
                        f"clips of {quality_mars.MARS_FRAMES} frames), scored with the {quality_mars.PROTOCOL} "
                        f"protocol; the runs add {' '.join(quality_mars.OVERRIDES)}")
    p.add_argument("--config", default=str(config.packaged("quality")), help="training + sampling config")
    p.add_argument("--train-sessions", type=int, default=12, help="train sessions of --clips dyads (default 12)")
    p.add_argument("--val-sessions", type=int, default=1, help="validation sessions (default 1; not scored here)")
    p.add_argument("--test-sessions", type=int, default=3, help="test sessions (default 3)")
    p.add_argument("--clips", type=int, default=4, help="dyadic 751-frame clips per session (default 4)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed")
    p.add_argument("--procs", type=int, default=2, help="training processes (gloo on CPU)")
    p.add_argument("--variant", action="append", default=[], metavar="NAME:key=v[,key=v]",
                   help="also train/sample with these overrides (sample.* only: the base training is reused)")
    p.add_argument("--no-base", action="store_true", help="only the variants")
    p.add_argument("--no-oracle", action="store_true", help="leave out the oracle rows (the data's own generator "
                                                            "as the model: what any model of the data can reach)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("overrides", nargs="*", help="overrides for every run (e.g. train.steps=400)")
    return p


def dataset(work: Path, args) -> tuple[Path, dict]:
    """The synthetic dataset and its train/test shards (reused when the arguments match)."""
    root = work / "react"
    want = {"seed": args.seed, "clips_per_session": args.clips,
            "sessions": {"train": args.train_sessions, "val": args.val_sessions, "test": args.test_sessions}}
    info = root / "synthetic.json"
    if not (info.is_file() and all(json.loads(info.read_text())["args"].get(k) == v for k, v in want.items())):
        generate_dataset(root, seed=args.seed, sessions=want["sessions"], clips_per_session=args.clips,
                         video="png", video_size=16, workers=2, progress=not args.quiet, force=True)
    for split in ("train", "test"):
        make_shards(root, split, work / "shards" / split, workers=2, samples_per_shard=8, audio_features="logmel",
                    resume=True, progress=False)
    return root, json.loads(info.read_text())


def listener_lags(meta: dict) -> np.ndarray:
    """The planted reaction lag (frames) of the true listener of every mirrored test row."""
    clips = meta["splits"]["test"]["clips"]
    n = len(clips)
    lags = np.zeros(2 * n, int)
    for c in clips:
        person = lambda path: path.split("/")[2]  # noqa: E731 - site/session/person/clip
        lags[c["row"]] = c["lags"][person(c["listener"])]
        lags[n + c["row"]] = c["lags"][person(c["speaker"])]
    return lags


def trains_alike(run: Path, cfg) -> bool:
    """A run (finished or not) whose saved config trains what `cfg` trains: equal but for `sample` (it steers
    sampling only, so a sampling key new to the schema keeps the training), keys it predates read as
    LEGACY_DEFAULTS."""
    if not (run / "config.yaml").is_file():
        return False
    training = lambda c: {k: v for k, v in OmegaConf.to_container(c).items() if k != "sample"}  # noqa: E731
    return training(config.load(run / "config.yaml", saved=True)) == training(cfg)


def trained_alike(run: Path, cfg) -> bool:
    """A finished run that trains what `cfg` trains (trains_alike)."""
    return (run / "export/export.json").is_file() and trains_alike(run, cfg)


def run_overrides(work: Path, name: str, overrides: list[str]) -> list[str]:
    return [f"data.shards={work / 'shards/train'}", f"train.out={work / 'runs'}", f"name={name}",
            "train.wandb=disabled", *overrides]


def train(work: Path, name: str, args, overrides: list[str]) -> tuple[Path, float]:
    """A real 2-rank training run; a finished run that trained the same (under this name or another variant's) is
    reused."""
    run = work / "runs" / name
    others = sorted(p for p in (work / "runs").glob("*") if p.name != name) if (work / "runs").is_dir() else []
    for done in [run, *others]:
        if trained_alike(done, config.load(args.config, run_overrides(work, done.name, overrides))):
            if done != run and not args.quiet:
                print(f"[quality] {name}: trains what {done.name} trained; its training is reused", flush=True)
            return done / "export", 0.0
    # an unfinished run of this config resumes from its last checkpoint; one of another config starts over (a
    # resumed run would mix both)
    if run.exists() and not trains_alike(run, config.load(args.config, run_overrides(work, name, overrides))):
        import shutil

        shutil.rmtree(run)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nnodes", "1", "--nproc_per_node", str(args.procs),
           "--rdzv_backend", "c10d", "--rdzv_endpoint", "127.0.0.1:0", "-m", "reactdiff.train", "--config",
           args.config, *run_overrides(work, name, overrides)]
    env = {**os.environ, "OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 2) // args.procs)), "WANDB_SILENT": "true"}
    t0 = time.time()
    if not args.quiet:
        print(f"[quality] training {name} ({' '.join(overrides) or 'base config'}) ...", flush=True)
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        raise RuntimeError(f"training {name} failed:\n{res.stdout[-3000:]}\n{res.stderr[-3000:]}")
    return run / "export", time.time() - t0


def sample_settings(cfg) -> list[str]:
    """Every `sample.*` key of a variant's resolved config as an override: a variant sampling another run's export
    samples with its own settings, not with the ones that run recorded."""
    flat = OmegaConf.to_container(OmegaConf.masked_copy(cfg, ["sample"]), resolve=True, enum_to_str=True)

    def items(prefix: str, node):
        for key, value in node.items():
            if isinstance(value, dict):
                yield from items(f"{prefix}{key}.", value)
            else:
                yield f"{prefix}{key}={'null' if value is None else value}"
    return list(items("", flat))


def sample(work: Path, name: str, export: Path, overrides: list[str], quiet: bool) -> tuple[Path, float]:
    from ..sampling.cli import main as sample_main

    out = work / "eval" / name
    t0 = time.time()
    code = sample_main(["--export", str(export), "--shards", str(work / "shards/test"), "--out", str(out),
                        "--overwrite", *(["--quiet"] if quiet else []), *overrides])
    if code != 0:
        raise RuntimeError(f"sampling {name} failed (exit {code})")
    return out, time.time() - t0


def oracle_samples(work: Path, root: Path, like: Path, same_person: bool) -> tuple[str, Path]:
    """The synthetic generator's own fresh listeners for the test speakers, written as a reactions folder with the
    K and frames of the model's folder `like` -> (row name, folder)."""
    from ..data.synthetic.oracle import write_oracle_reactions

    settings = load_manifest(like)["settings"]
    out = work / "eval" / ("oracle-same" if same_person else "oracle-new")
    write_oracle_reactions(root, "test", out, settings["k"], settings["frames"], same_person)
    return ("oracle: same person" if same_person else "oracle: new person"), out


def planted_couplings(speaker: np.ndarray, listeners: np.ndarray, lags: np.ndarray, fps: float) -> dict:
    """Per planted coupling: each row's curve shifted so that index `reach` (frames at `fps`) is its listener's own
    lag, pooled over rows and reactions -> (reach, aligned curve over -reach..reach)."""
    out = {}
    for pair, reach_s in PLANTED.items():
        reach = int(round(reach_s * fps))
        max_lag = int(lags.max()) + reach
        curves = coupling_curves(speaker, listeners, pair, max_lag).mean(1)  # (N, 2 max_lag + 1)
        idx = (max_lag + lags)[:, None] + np.arange(-reach, reach + 1)[None]
        out[coupling_name(pair)] = (reach, np.take_along_axis(curves, idx, axis=1).mean(0))
    return out


def peak_width(curve: np.ndarray, peak: int) -> int:
    """Frames around `peak` where the curve stays above half its height: how sharply a reaction follows its cue
    (a model that blurs an onset over its reactions' timing spreads the same curve wider and lower)."""
    half, lo, hi = curve[peak] / 2, peak, peak
    while lo > 0 and curve[lo - 1] > half:
        lo -= 1
    while hi < len(curve) - 1 and curve[hi + 1] > half:
        hi += 1
    return hi - lo + 1


def compare_coupling(reach: int, curve: np.ndarray, generated: np.ndarray) -> dict:
    """The data's and the model's peak of one planted coupling (aligned curves over -reach..reach), and the model's
    strength at the data's peak. Peaks are the largest positive values, as planted: a turn-taking anti-correlation
    at the search's edge is not the coupling."""
    peak, m_peak = int(np.argmax(curve)), int(np.argmax(generated))
    return {"data_offset": peak - reach, "data_r": float(curve[peak]), "model_offset": m_peak - reach,
            "model_r_at_data_peak": float(generated[peak]),
            "data_width": peak_width(curve, peak), "model_width": peak_width(generated, m_peak),
            "ratio": float(generated[peak] / curve[peak]) if curve[peak] else float("nan")}


def layout_fps(layout: str) -> float:
    return quality_mars.FPS if layout == "mars" else float(FPS)


def score(work: Path, name: str, samples: Path, lags: np.ndarray, layout: str = "react2024") -> dict:
    test, train = work / "shards/test", work / "shards/train"
    if layout == "mars":
        report = quality_mars.evaluate(samples, test, train)
        speaker, listener, face = quality_mars.arrays(quality_mars.truth(test), samples)
    else:
        report = evaluate(samples, test, samples, baseline_shards=train)
        gt = load_ground_truth(test, frames=report["frames"])
        speaker, listener = gt.speaker_fv, gt.listener_fv
        face, _ = load_reactions(samples, load_manifest(samples), gt.rows)
    data = planted_couplings(speaker, listener, lags, layout_fps(layout))
    model = planted_couplings(speaker, face, lags, layout_fps(layout))
    couplings = {key: compare_coupling(reach, curve, model[key][1]) for key, (reach, curve) in data.items()}
    return {"name": name, "report": report, "couplings": couplings, "metrics": METRICS[layout]}


def nod_gain(export: Path, work: Path, fps: float) -> dict:
    """The trained model's nod-band gain after phrase ends vs elsewhere, at sigma 1 and 3 (eval/band_gain.py)."""
    from ..eval.band_gain import band_gain
    from ..model.export import load_export

    model, cfg, _ = load_export(export)
    return {str(sigma): g for sigma, g in band_gain(model, cfg, work / "shards/test", sigmas=(1.0, 3.0),
                                                    fps=fps).items()}


def checks(result: dict) -> dict[str, bool]:
    res = result["report"]["results"]
    model = res["model"]
    corr, dist, div, _ = result.get("metrics", METRICS["react2024"])
    lo, hi = TARGETS["jitter"]
    vlo, vhi = TARGETS["variance"]
    out = {f"jitter {g} in [{lo}, {hi}]": lo <= model["motion"][g]["jitter_ratio"] <= hi for g in GROUPS}
    out.update({f"variance {g} in [{vlo}, {vhi}]": vlo <= model["motion"][g]["variance_ratio"] <= vhi for g in GROUPS})
    base = [n for n in res if n.startswith("baseline:")]
    out[f"{dist} below every baseline"] = all(model[dist] < res[n][dist] for n in base)
    out[f"{corr} above mean and random"] = all(model[corr] > res[n][corr] for n in base
                                               if n in ("baseline: mean", "baseline: random"))
    for key, c in result["couplings"].items():
        out[f"{key}: r >= {TARGETS['coupling_strength']} x data"] = c["ratio"] >= TARGETS["coupling_strength"]
        out[f"{key}: peak within {TARGETS['peak_frames']} frames"] = (
            abs(c["model_offset"] - c["data_offset"]) <= TARGETS["peak_frames"])
    if "baseline: random" in res:
        out[f"{div} >= 0.5 x random"] = model[div] >= TARGETS["frdiv_vs_random"] * res["baseline: random"][div]
    return out


def table(results: list[dict]) -> str:
    """The whole benchmark as markdown: metrics + motion for every row, then the planted couplings."""
    corr, dist, div, var = results[0].get("metrics", METRICS["react2024"]) if results else METRICS["react2024"]
    head = f"| run / row | {corr} | {dist} | {div} | {var} | jitter exp / rot / trans | variance exp / rot / trans |"
    lines = [head, "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for i, r in enumerate(results):
        for row, m in r["report"]["results"].items():
            if row != "model" and i > 0:
                continue  # the baselines and the reference are the same for every run: print them once
            label = r["name"] if row == "model" else row
            j = " / ".join(f"{m['motion'][g]['jitter_ratio']:.2f}" for g in GROUPS)
            v = " / ".join(f"{m['motion'][g]['variance_ratio']:.2f}" for g in GROUPS)
            lines.append(f"| {label} | {m[corr]:.3f} | {m[dist]:.1f} | {m[div]:.4f} | {m[var]:.4f} | {j} | {v} |")
    lines += ["", "| run | planted coupling | data: peak (frames from the planted lag) / r | model: peak / r at the "
                  "data's peak | ratio | width at half height: data / model |",
              "| --- | --- | ---: | ---: | ---: | ---: |"]
    for r in results:
        for key, c in r["couplings"].items():
            width = f"{c['data_width']} / {c['model_width']}" if "model_width" in c else "-"  # scored before widths
            lines.append(f"| {r['name']} | {key.removeprefix('speaker ')} | {c['data_offset']:+d} / {c['data_r']:.3f} "
                         f"| {c['model_offset']:+d} / {c['model_r_at_data_peak']:.3f} | {c['ratio']:.2f} | {width} |")
    joined = [r for r in results if r["report"]["results"]["model"].get("seams")]
    if joined:  # motion.seam_jitter: the sampled rows' windows, where they meet against inside them
        lines += ["", "| run | jitter at the window joins / inside: " + " | ".join(GROUPS) + " |",
                  "| --- | " + " | ".join("---:" for _ in GROUPS) + " |"]
        for r in joined:
            seams = r["report"]["results"]["model"]["seams"]
            cells = [f"{seams[g]['joins_ratio']:.2f} / {seams[g]['inside_ratio']:.2f}" for g in GROUPS]
            lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    banded = [r for r in results if r["report"]["results"]["model"].get("bands")]
    if banded:  # eval/band_power.py: at which speeds the model moves more (or less) than the data
        first = banded[0]["report"]["results"]["model"]["bands"]
        lines += ["", "| run: power / data's per band, " + " / ".join(band_label(b) for b in first["bands_hz"]) + " | "
                  + " | ".join(GROUPS) + " |", "| --- | " + " | ".join("---:" for _ in GROUPS) + " |"]
        for r in banded:
            lines.append(f"| {r['name']} | " + " | ".join(band_cells(r["report"]["results"]["model"]["bands"])) + " |")
    gained = [r for r in results if r.get("nod_gain")]
    if gained:
        lines += ["", "| run | sigma | c_skip | nod-band gain after phrase ends / elsewhere | ratio | ideal gains | "
                      "ideal ratio |", "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for r in gained:
            for sigma, g in r["nod_gain"].items():
                lines.append(f"| {r['name']} | {float(sigma):g} | {g['c_skip']:.3f} | {g['after']['gain']:.3f} / "
                             f"{g['elsewhere']['gain']:.3f} | {g['ratio']:.3f} | {g['after']['ideal']:.3f} / "
                             f"{g['elsewhere']['ideal']:.3f} | {g['ideal_ratio']:.2f} |")
    return "\n".join(lines)


def parse_variant(spec: str) -> tuple[str, list[str]]:
    name, sep, keys = spec.partition(":")
    if not sep or not name or not keys:
        raise ValueError(f"--variant {spec!r}: expected NAME:key=value[,key=value]")
    out, depth, start = [], 0, 0
    for i, ch in enumerate(keys + ","):  # commas inside a list value ([0.5,1.5]) belong to it
        depth += {"[": 1, "]": -1}.get(ch, 0)
        if ch == "," and depth == 0:
            out.append(keys[start:i])
            start = i + 1
    return name, out


def prepare(work: Path, args) -> tuple[Path, np.ndarray, list[str], list]:
    """The dataset and shards of --layout -> (dataset root, each test row's listener lag, the overrides every
    training gets, the MARS truth rows (empty on REACT))."""
    other = work / ("react" if args.layout == "mars" else "mars")
    if other.is_dir():  # one shards folder per work folder: never mix the layouts' shards
        raise SystemExit(f"bench quality: {work} holds the {'REACT' if args.layout == 'mars' else 'MARS'} benchmark "
                         f"({other}); give --layout {args.layout} its own --work")
    if args.layout == "mars":
        root, meta = quality_mars.dataset(work, args)
        rows = quality_mars.truth(work / "shards/test")
        return root, quality_mars.listener_lags(meta, rows), list(quality_mars.OVERRIDES), rows
    root, meta = dataset(work, args)
    return root, listener_lags(meta), [], []


def oracle_row(work: Path, root: Path, like: Path, same_person: bool, rows: list) -> tuple[str, Path]:
    if not rows:
        return oracle_samples(work, root, like, same_person)
    out = work / "eval" / ("oracle-same" if same_person else "oracle-new")
    k = load_manifest(like)["settings"]["k"]
    return ("oracle: same person" if same_person else "oracle: new person"), \
        quality_mars.write_oracle(root, rows, out, k, same_person)


def main(argv: list[str] | None = None) -> int:
    args = cli_args.parse(build_parser(), argv)
    work = Path(args.work or ("runs/bench_quality_mars" if args.layout == "mars" else "runs/bench_quality"))
    variants = ([] if args.no_base else [("base", [])]) + [parse_variant(v) for v in args.variant]
    t0 = time.time()
    root, lags, layout_overrides, rows = prepare(work, args)
    fps = layout_fps(args.layout)
    results, base_export, gains = [], None, {}
    for name, extra in variants:
        sample_only = bool(extra) and all(k.startswith("sample.") for k in extra)
        train_over = [*layout_overrides, *args.overrides] + ([] if sample_only else extra)
        export, train_s = (base_export, 0.0) if sample_only and base_export else \
            train(work, "base" if sample_only else name, args, train_over)
        if name == "base" or (sample_only and base_export is None):
            base_export = export
        variant = config.load(args.config, run_overrides(work, name, [*layout_overrides, *args.overrides, *extra]))
        samples, sample_s = sample(work, name, export, sample_settings(variant), args.quiet)
        result = score(work, name, samples, lags, args.layout)
        result.update({"overrides": extra, "train_s": round(train_s, 1), "sample_s": round(sample_s, 1)})
        if export not in gains:  # one per trained model (sample-only variants share their export's)
            gains[export] = nod_gain(export, work, fps)
        result["nod_gain"] = gains[export]
        result["checks"] = checks(result)
        results.append(result)
        if not args.quiet:
            print(f"[quality] {name}: trained in {train_s:.0f} s, sampled in {sample_s:.0f} s; "
                  f"{sum(result['checks'].values())}/{len(result['checks'])} targets met", flush=True)
    if results and not args.no_oracle:  # the data's own generator, scored like a model: what is reachable at all
        for same_person in (False, True):
            name, samples = oracle_row(work, root, Path(results[0]["report"]["samples"]), same_person, rows)
            result = score(work, name, samples, lags, args.layout)
            result.update({"overrides": [], "train_s": 0.0, "sample_s": 0.0})
            result["checks"] = checks(result)
            results.append(result)
    text = table(results)
    for r in results:
        failed = [k for k, ok in r["checks"].items() if not ok]
        text += (f"\n\n{r['name']}: {sum(r['checks'].values())}/{len(r['checks'])} targets met"
                 + (f"; missed: {'; '.join(failed)}" if failed else ""))
    print(text)
    atomic.write_text(work / "quality.md", text + "\n")
    atomic.write_json(work / "quality.json", [{k: v for k, v in r.items() if k != "report"} |
                                              {"results": r["report"]["results"]} for r in results])
    print(f"\n[quality] {len(results)} run(s) in {time.time() - t0:.0f} s -> {work / 'quality.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
