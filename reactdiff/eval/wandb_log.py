"""An evaluation's metrics, plots and report in wandb, grouped with the training run it scores.

The sample folder's config.yaml is the export's: its `name` is the training run's name (and wandb group), its
`train.wandb_project` the project. The wandb run lives in the evaluation's output folder (offline by default:
`wandb sync <out>/wandb/offline-run-*` uploads it).
"""
from __future__ import annotations

import os
from pathlib import Path

from .metrics import METRICS



def training_run(samples: Path) -> tuple[str | None, str]:
    """(the training run's name, the wandb project) from the sample folder's saved config."""
    path = Path(samples) / "config.yaml"
    if not path.is_file():
        return None, "reactdiff"
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(path)
    return OmegaConf.select(cfg, "name"), OmegaConf.select(cfg, "train.wandb_project") or "reactdiff"


def log_evaluation(report: dict, out: Path, mode: str = "offline") -> str | None:
    """Log `report` (evaluate's) and out/{metrics,couplings,bands}.png + report.md; returns the wandb run's folder."""
    if mode == "disabled":
        return None
    if mode not in ("offline", "online"):
        raise ValueError(f"wandb mode {mode!r}: expected offline, online or disabled")
    import wandb

    out = Path(out)
    group, project = training_run(Path(report["samples"]))
    os.environ.setdefault("WANDB_SILENT", "true")
    run = wandb.init(project=project, group=group, job_type="eval", mode=mode, dir=str(out),
                     name=f"eval {group or out.name} {Path(report['shards']).name}",
                     config={"samples": report["samples"], "shards": report["shards"], "k": report["k"],
                             "convention": report["convention"], "protocol": report.get("protocol", "react2024"),
                             "sampling": report["sampling"]})
    try:
        results = report["results"]
        columns = (*report.get("metric_names", METRICS), "FRRea")  # the MARS protocols name theirs
        summary = {}
        for row, values in results.items():
            for m in columns:
                if isinstance(values.get(m), (int, float)):
                    summary[f"eval/{row}/{m}"] = values[m]
            for group_name, stats in values.get("motion", {}).items():
                summary[f"eval/{row}/jitter_ratio/{group_name}"] = stats["jitter_ratio"]
                summary[f"eval/{row}/variance_ratio/{group_name}"] = stats["variance_ratio"]
        table = wandb.Table(columns=["row", *columns],
                            data=[[row, *(values.get(m) for m in columns)] for row, values in results.items()])
        media = {f"eval/{p.stem}": wandb.Image(str(p)) for p in
                 (out / "metrics.png", out / "couplings.png", out / "bands.png") if p.is_file()}
        run.log({**summary, "eval/table": table, **media})
        if (out / "report.md").is_file():
            run.save(str(out / "report.md"), base_path=str(out), policy="now")
        return str(Path(run.dir).parent)
    finally:
        run.finish()
