"""The sweep's table: every point's REACT metrics and motion statistics on the validation shards, the honest
baselines once, the mean and spread over seeds, and the validation curves side by side -> sweep.json (results),
sweep.md, sweep_val.png; then, with --test, the best settings' evaluation on the test shards (`test_best`)."""
from __future__ import annotations

import json
import math
from pathlib import Path

from .. import atomic
from ..data.frame_layout import STREAM_GROUPS

METRICS = ("FRCorr", "FRDist", "FRDiv", "FRVar", "FRSyn")
HIGHER_IS_BETTER = {"FRCorr": True, "FRDist": False}  # what --best may select by
GROUPS = tuple(STREAM_GROUPS)


def point_row(folder: Path, point: dict) -> dict:
    from ..train.run_log import read_rows

    metrics = json.loads((folder / "evals" / point["name"] / "metrics.json").read_text())
    model = metrics["results"]["model"]
    run = folder / "runs" / point.get("run", point["name"])  # points that differ only in sample.* share a run
    curve = [(r["step"], r["val/loss_ema"]) for r in read_rows(run / "metrics.jsonl", "validation")
             if "val/loss_ema" in r]
    return {"name": point["name"], "settings": point["settings"], **{m: model[m] for m in METRICS},
            "jitter_ratio": {g: model["motion"][g]["jitter_ratio"] for g in GROUPS}, "val_curve": curve}


def _mean_std(values: list[float]) -> tuple[float, float]:
    m = sum(values) / len(values)
    return m, (math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0)


def tabulate(folder: str | Path) -> dict:
    folder = Path(folder)
    doc = json.loads((folder / "sweep.json").read_text())
    points = doc["plan"]["points"]
    missing = [p["name"] for p in points if not (folder / "evals" / p["name"] / "metrics.json").is_file()]
    if missing:
        raise RuntimeError(f"{folder}: points without an evaluation: {missing}; rerun the sweep to finish them")
    rows = [point_row(folder, p) for p in points]
    first = json.loads((folder / "evals" / points[0]["name"] / "metrics.json").read_text())["results"]
    baselines = {name: {m: r[m] for m in METRICS} for name, r in first.items() if name != "model"}
    groups: dict = {}
    for row in rows:
        key = json.dumps({k: v for k, v in row["settings"].items() if k != "seed"}, sort_keys=True)
        groups.setdefault(key, []).append(row)
    summary = [{"settings": json.loads(key), "points": [r["name"] for r in members],
                **{m: dict(zip(("mean", "std"), _mean_std([r[m] for r in members]))) for m in METRICS}}
               for key, members in groups.items()]
    doc.update({"points": rows, "baselines": baselines, "groups": summary})
    doc.pop("test", None)  # of an earlier table: test_best adds it again for the best point of this one
    atomic.write_json(folder / "sweep.json", doc)
    atomic.write_text(folder / "sweep.md", _markdown(doc))
    _plot(folder / "sweep_val.png", rows)
    return {"points": len(rows), "out": str(folder / "sweep.md")}


def test_best(folder: str | Path, shards: str, best: str, baseline_shards: str) -> dict:
    """The settings with the best mean `best` over seeds on the validation shards, their first point evaluated on
    the test shards (reactions and metrics in <folder>/test/<point>/) -> sweep.json "test" and sweep.md."""
    from ..eval.evaluate import evaluate
    from ..sampling.job import SampleJob
    from ..sampling.run import sample

    folder = Path(folder)
    doc = json.loads((folder / "sweep.json").read_text())
    pick = max if HIGHER_IS_BETTER[best] else min
    group = pick(doc["groups"], key=lambda g: g[best]["mean"])
    name = group["points"][0]
    point = next(p for p in doc["plan"]["points"] if p["name"] == name)
    out = folder / "test" / name
    # overwrite: reactions of the point's earlier weights are replaced (the same settings resume instead)
    sample(SampleJob(shards=shards, out=str(out), export=str(folder / "runs" / point.get("run", name) / "export"),
                     overrides=tuple(point.get("sample_overrides", ())), quiet=True, overwrite=True), 0, 1)
    results = evaluate(out, Path(shards), out, baseline_shards=Path(baseline_shards))["results"]
    doc["test"] = {"point": name, "settings": group["settings"], "selected_by": best, "shards": shards,
                   "model": {m: results["model"][m] for m in METRICS},
                   "baselines": {n: {m: r[m] for m in METRICS} for n, r in results.items() if n != "model"}}
    atomic.write_json(folder / "sweep.json", doc)
    atomic.write_text(folder / "sweep.md", _markdown(doc))
    return {"point": name, "out": str(out / "metrics.json")}


def _markdown(doc: dict) -> str:
    rows, summary, baselines, plan = doc["points"], doc["groups"], doc["baselines"], doc["plan"]
    keys = plan.get("keys") or list(dict.fromkeys(k for r in rows for k in r["settings"]))
    head = "| point | " + " | ".join(keys) + " | " + " | ".join(METRICS) + " | jitter ratio (exp / rot / trans) |"
    lines = [f"# Sweep: {len(rows)} points on {plan['val_shards']}", "",
             f"Base: `{plan['base']['config']}` {' '.join(plan['base']['overrides'])}", "", head,
             "|" + " --- |" * (len(keys) + len(METRICS) + 2)]
    for r in rows:
        jitter = " / ".join(f"{r['jitter_ratio'][g]:.2f}" for g in GROUPS)
        lines.append(f"| {r['name']} | " + " | ".join(str(r["settings"].get(k, "")) for k in keys) + " | " +
                     " | ".join(f"{r[m]:.4g}" for m in METRICS) + f" | {jitter} |")
    for name, b in baselines.items():
        lines.append(f"| {name} | " + " | ".join("" for _ in keys) + " | " +
                     " | ".join(f"{b[m]:.4g}" for m in METRICS) + " | |")
    if any(len(g["points"]) > 1 for g in summary):
        gkeys = [k for k in keys if k != "seed"]
        row = lambda cells: "| " + " | ".join(cells) + " |"  # noqa: E731
        lines += ["", "Mean ± std over seeds:", "", row([*gkeys, "seeds", *METRICS]),
                  "|" + " --- |" * (len(gkeys) + len(METRICS) + 1)]
        for g in summary:
            lines.append(row([*(str(g["settings"].get(k, "")) for k in gkeys), str(len(g["points"])),
                              *(f"{g[m]['mean']:.4g} ± {g[m]['std']:.2g}" for m in METRICS)]))
    test = doc.get("test")
    if test:
        settings = " ".join(f"{k}={v}" for k, v in test["settings"].items())
        lines += ["", f"Test ({test['shards']}): point {test['point']} ({settings}), the best mean "
                      f"{test['selected_by']} on validation", "", "| row | " + " | ".join(METRICS) + " |",
                  "|" + " --- |" * (len(METRICS) + 1)]
        for name, m in {"model": test["model"], **test["baselines"]}.items():
            lines.append(f"| {name} | " + " | ".join(f"{m[k]:.4g}" for k in METRICS) + " |")
    lines += ["", "Validation loss (EMA weights) against step: sweep_val.png", ""]
    return "\n".join(lines)


def _plot(path: Path, rows: list[dict]) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for r in rows:
        if r["val_curve"]:
            steps, losses = zip(*r["val_curve"])
            label = r["name"] + " " + " ".join(f"{k.split('.')[-1]}={v}" for k, v in r["settings"].items())
            ax.plot(steps, losses, marker="o", label=label)
    ax.set_xlabel("step")
    ax.set_ylabel("validation loss (EMA)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    atomic.save_figure(fig, path, dpi=110)
    plt.close(fig)
