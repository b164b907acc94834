"""What an evaluation shows people: report.md (REACT metrics, motion statistics, what each row is) and its plots
(metrics.png bar charts, couplings.png cross-correlation against lag)."""
from __future__ import annotations

import sys
from pathlib import Path

from .. import atomic
from .band_power import band_cells, band_label, plot_band_power
from .baselines import DESCRIPTIONS
from .metrics import METRICS
from .motion import GROUPS, plot_couplings
from .wandb_log import log_evaluation


def plot_metrics(report: dict, path: Path) -> None:
    """One small bar chart per metric: the model next to the baselines and the reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(report["results"])
    colours = ["C0" if n.startswith("model") else "C2" if n.startswith("reference") else "C7" for n in names]
    fig, axes = plt.subplots(2, 3, figsize=(11, 5.5))
    metrics = report.get("metric_names", METRICS)
    for ax in axes.flat[len(metrics):]:
        ax.set_visible(False)
    for ax, metric in zip(axes.flat, metrics):
        values = [report["results"][n][metric] for n in names]
        ax.bar(range(len(names)), values, color=colours)
        ax.set_xticks(range(len(names)), [n.split(": ")[-1] for n in names], rotation=25, fontsize=7)
        ax.set_title(metric)
        ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    atomic.save_figure(fig, path)
    plt.close(fig)


def _fmt(v) -> str:
    return "n/a" if v is None or v != v else f"{v:.4f}" if abs(v) < 1e4 else f"{v:.4g}"


def motion_table(results: dict) -> list[str]:
    """Jitter and variance ratios (1.0 = human) per stream group, and the HF share, for every row."""
    head = [f"{g} jitter / var / >3 Hz" for g in GROUPS]
    lines = ["| | " + " | ".join(head) + " |", "| --- | " + " | ".join("---:" for _ in head) + " |"]
    for name, res in results.items():
        motion = res.get("motion")
        if motion is None:
            continue
        cells = [f"{_fmt(m['jitter_ratio'])} / {_fmt(m['variance_ratio'])} / {100 * m['hf_share']:.0f}%"
                 for m in (motion[g] for g in GROUPS)]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    first = next((r["motion"] for r in results.values() if "motion" in r), None)
    if first is not None:
        lines.append("| true listeners | " + " | ".join(f"1 / 1 / {100 * first[g]['hf_share_true']:.0f}%"
                                                      for g in GROUPS) + " |")
    return lines


def seam_line(seams: dict, sampling: dict) -> str:
    """The model's jitter at its window joins against inside its windows (motion.seam_jitter), in words."""
    cells = ", ".join(f"{g} {seams[g]['joins_ratio']:.2f} / {seams[g]['inside_ratio']:.2f}" for g in GROUPS)
    return (f"Window joins (the model samples {sampling['window']}-frame windows one after another, cross-fading "
            f"{sampling['overlap']} frames; {seams['joins']} of {seams['steps']} frame steps lie at a join): jitter "
            f"ratio at the joins / inside the windows: {cells}. Higher at the joins: the windows disagree where "
            f"they meet.")


def band_table(results: dict) -> list[str]:
    """Power per frequency band, generated / true listeners (band_power.py), for every row that has it."""
    rows = {name: res["bands"] for name, res in results.items() if res.get("bands")}
    if not rows:
        return []
    first = next(iter(rows.values()))
    bands = " / ".join(band_label(b) for b in first["bands_hz"])
    lines = [f"Power per frequency band within {first['segment']}-frame stretches (each one's mean removed), "
             f"generated / true listeners (1.0 = human; per frequency: bands.png). Bands: {bands}.", "",
             "| | " + " | ".join(GROUPS) + " |", "| --- | " + " | ".join("---:" for _ in GROUPS) + " |"]
    for name, b in rows.items():
        lines.append(f"| {name} | " + " | ".join(band_cells(b)) + " |")
    lines.append("| true listeners: share of the power | " + " | ".join(
        " / ".join(f"{100 * v:.0f}%" for v in first[g]["share_true"]) for g in GROUPS) + " |")
    return lines


def band_plot_rows(results: dict) -> dict:
    """The rows worth a line in bands.png: not a still face (no power) nor the ground truth (the line at 1)."""
    return {name: res["bands"] for name, res in results.items()
            if res.get("bands") and name not in ("baseline: mean", "reference: ground truth")}


def coupling_table(couplings: dict) -> list[str]:
    lines = ["| speaker -> listener | true: peak lag (frames) / r | generated: peak lag / r |", "| --- | ---: | ---: |"]
    for name, entry in couplings["pairs"].items():
        cells = [f"{entry[w]['peak_lag']} / {entry[w]['peak']:.3f}" if w in entry else "n/a"
                 for w in ("true", "generated")]
        lines.append(f"| {name.removeprefix('speaker ')} | " + " | ".join(cells) + " |")
    return lines


def verdict(results: dict, corr_key: str = "FRCorr", dist_key: str = "FRDist") -> str | None:
    """Does the model beat the honest baselines (FRDist below every baseline, FRCorr above mean and random)?
    (The MARS protocols call them FRD and FRC.) Where it does not and a reference row of real-looking reactions
    (any `reference:` row but the ground truth) does not either, the target is out of reach on this data: said so."""
    model = results.get("model")
    base = {n: r for n, r in results.items() if n.startswith("baseline:")}
    if model is None or not base:
        return None
    refs = {n.split(": ", 1)[1]: r for n, r in results.items()
            if n.startswith("reference:") and n != "reference: ground truth"}
    best_dist = min(base, key=lambda n: base[n][dist_key])
    corr = {n: r for n, r in base.items() if n in ("baseline: mean", "baseline: random")}
    best_corr = max(corr, key=lambda n: corr[n][corr_key]) if corr else None
    dist_ok = model[dist_key] < base[best_dist][dist_key]
    corr_ok = best_corr is None or model[corr_key] > corr[best_corr][corr_key]

    def reach(ok: bool, key: str, beats) -> str:
        missed = {n: r[key] for n, r in refs.items() if not beats(r[key])}
        if ok or not missed:
            return ""
        return "; out of reach on this data: " + ", ".join(f"{n} {v:.4g}" for n, v in missed.items()) + " misses it too"

    parts = [f"{dist_key} below every baseline: {'yes' if dist_ok else 'no'} (model {model[dist_key]:.4g}, best "
             f"baseline {best_dist.split(': ')[1]} {base[best_dist][dist_key]:.4g}"
             f"{reach(dist_ok, dist_key, lambda v: v < base[best_dist][dist_key])})"]
    if best_corr is not None:
        parts.append(f"{corr_key} above mean and random: {'yes' if corr_ok else 'no'} (model {model[corr_key]:.4g}, "
                     f"{best_corr.split(': ')[1]} {corr[best_corr][corr_key]:.4g}"
                     f"{reach(corr_ok, corr_key, lambda v: v > corr[best_corr][corr_key])})")
    return ("**The model beats the honest baselines.** " if dist_ok and corr_ok else
            "**The model does not beat the honest baselines.** ") + "; ".join(parts) + "."


def _mars_header(report: dict) -> list[str]:
    frames, kind = report["frames"], report["kind"]
    scored = ("the 25 facial attributes (the leaderboard's score)" if kind == "attributes" else
              "3DMM: the model predicts no facial attributes, so this is **not** the leaderboard's attribute score")
    direction = "both directions" if report["protocol"] == "react2025" else "speaker -> listener only"
    skipped = report["appropriate_missing"]
    skipped = (f"; {skipped} appropriate reactions named by the sets are not in the shards (rejected or cut clips) "
               f"and were skipped" if skipped else "")
    tlcc = "the first reaction only (reference quirk)" if report["reference_quirks"] else "all K reactions"
    return ["# REACT metrics (MARS)", "",
            f"Protocol `{report['protocol']}` ({direction}): {report['rows']} speaker clips x {report['k']} "
            f"reactions, whole clips of {frames['min']}-{frames['max']} frames ({frames['total']} in all) at "
            f"{report['fps']:g} fps, scored on {scored}. Appropriate reactions: the paired listener and up to 9 of "
            f"the same session, each brought to the clip's length by nearest-frame time stretching (our rule; the "
            f"challenge aligns with a pretrained autoencoder){skipped}. FRC/FRD summed over the K reactions; TLCC "
            f"over {tlcc}, lags within 2 s."]


def markdown(report: dict) -> str:
    sampling = report["sampling"]
    names = report.get("metric_names", METRICS)
    descriptions = report.get("descriptions", DESCRIPTIONS)
    summed = "summed" if report["convention"] == "react2024" else "averaged"
    lines = _mars_header(report) if "protocol" in report else [
        "# REACT metrics", "",
        f"{report['rows']} speaker clips x {report['k']} reactions x {report['frames']} frames; convention "
        f"`{report['convention']}` (FRCorr/FRDist {summed} over the K samples); FRSyn over "
        f"{'the first sample only (reference quirk)' if report['reference_quirks'] else 'all K samples'}."]
    lines += [f"Samples: `{report['samples']}` ({sampling.get('weights')}, {sampling.get('sampler')} "
             f"{sampling.get('steps')} steps). Ground truth: `{report['shards']}`. Baselines drawn from: "
             f"`{report.get('baseline_shards') or 'none'}`.", "",
             "| | " + " | ".join(names) + " |", "| --- | " + " | ".join("---:" for _ in names) + " |"]
    for name, res in report["results"].items():
        lines.append(f"| {name} | " + " | ".join(_fmt(res.get(m)) for m in names) + " |")
    lines += [""] + [f"- **{name}**: {descriptions[name]}" for name in report["results"] if name in descriptions]
    summary = verdict(report["results"], *(("FRC", "FRD") if "protocol" in report else ()))
    if summary:
        lines += ["", summary]
    rea = report["results"]["model"].get("frrea")
    if rea is not None:
        rows = rea.get("row_selection", rea.get("rows"))  # `rows` in reports written before the rename
        lines += ["", f"FRRea (Frechet distance of rendered listener frames, lower is better): "
                      f"**{report['results']['model']['FRRea']:.4f}**, {rea['generated_videos']} generated vs "
                      f"{rea['real_videos']} true listener videos (rows {rows}, K {rea['k']}, frames "
                      f"{rea['frames']}), every {rea['frame_step']}th frame, {rea['renderer']} (`{rea['renders']}`)."]
    legend = ("FRC: higher is better (appropriateness). FRD: lower is better. S-MSE/FRVar: diversity (higher = more "
              "diverse). TLCC: lower is better (frames of lag to the speaker). MAE: mean absolute error of valence, "
              "arousal and expressions against the appropriate reactions." if "protocol" in report else
              "FRCorr: higher is better (appropriateness). FRDist: lower is better. FRDiv/FRDvs/FRVar: diversity "
              "(higher = more diverse). FRSyn: lower is better (frames of lag to the speaker).")
    lines += ["", "![metrics of the model, the baselines and the reference](metrics.png)", "", legend, "",
              "## Motion", "",
              "Per stream group: frame-to-frame jitter and temporal variance relative to the true listeners of the "
              "same clips (1.0 = human), and the share of the power above 3 Hz.", ""]
    lines += motion_table(report["results"])
    seams = report["results"].get("model", {}).get("seams")
    if seams is not None:
        lines += ["", seam_line(seams, report["sampling"])]
    bands = band_table(report["results"])
    if bands:
        lines += [""] + bands + ["", "![power per frequency, generated / true listeners](bands.png)"]
    if "couplings" in report:
        c = report["couplings"]
        which = (f"the {c['clips']} clips long enough for the lags, frame-weighted ({c['skipped']} shorter ones left "
                 f"out)" if "skipped" in c else "clips")
        lines += ["", f"Speaker -> listener cross-correlation, pooled over {which} and reactions (positive lag: the "
                      "listener follows):", ""]
        lines += coupling_table(report["couplings"]) + ["", "![cross-correlation against lag](couplings.png)"]
    return "\n".join(lines) + "\n"


def write_report(report: dict, out: Path, wandb: str = "disabled") -> None:
    """metrics.json, metrics.png, couplings.png, bands.png and report.md into `out`; then a copy to wandb (offline /
    online), whose failure only warns: the files are written."""
    atomic.write_json(out / "metrics.json", report)
    plot_metrics(report, out / "metrics.png")
    if "couplings" in report:  # (absent where no clip is long enough for the lags)
        plot_couplings(report["couplings"], out / "couplings.png")
    plotted = band_plot_rows(report["results"])
    if plotted:
        plot_band_power(plotted, out / "bands.png")
    atomic.write_text(out / "report.md", markdown(report))
    try:
        report["wandb"] = log_evaluation(report, out, wandb)
    except Exception as exc:  # noqa: BLE001 - the metrics are written; wandb is a copy of them
        print(f"reactdiff evaluate: warning: wandb logging failed ({type(exc).__name__}: {exc}); "
              f"{out / 'metrics.json'} and report.md are written", file=sys.stderr)
        report["wandb"] = None
