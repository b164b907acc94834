"""The video plan of a render: which videos a render makes, where each goes, and the index (render.json) written once
every one of them exists. Task R of W renders videos R, R + W, R + 2W, ... of the plan."""
from __future__ import annotations

import json
from pathlib import Path

from .. import atomic
from ..sampling.writer import load_manifest

RENDER_JSON = "render.json"
SETTINGS_JSON = "settings.json"


def row_selection(settings: dict) -> str | None:
    """The rows a render was asked for ("3,7" or None: all). Named `rows` in folders rendered before it was
    renamed (the sampler's settings use `rows` for the number of rows)."""
    return settings.get("row_selection", settings.get("rows"))


def upgrade_settings(settings: dict) -> dict:
    """A settings.json of an older render in today's names, so it still compares equal and resumes."""
    if "rows" in settings and "row_selection" not in settings:
        settings = {("row_selection" if k == "rows" else k): v for k, v in settings.items()}
    return settings


def plan(samples: Path, rows: str | None = None, k: int | None = None, ground_truth: bool = False,
         grid: bool = False):
    """(manifest, every video of the render as (entry, name) in a fixed order, K used). Task R of W renders
    videos R, R + W, R + 2W, ... of this list. grid: one "grid" video per row."""
    manifest = load_manifest(samples)
    entries = manifest["entries"]
    if rows:
        wanted = {int(r) for r in str(rows).split(",")}
        missing = sorted(wanted - {e["row"] for e in entries})
        if missing:
            raise ValueError(f"rows {missing} are not in {samples} (it has {len(entries)} rows)")
        entries = [e for e in entries if e["row"] in wanted]
    k_all = int(manifest["settings"]["k"])
    k = min(k or k_all, k_all)
    jobs = []
    for e in entries:
        if grid:
            jobs.append((e, "grid"))
            continue
        jobs += [(e, f"k{i}") for i in range(k)]
        if ground_truth:
            jobs.append((e, "gt"))
    return manifest, jobs, k


def video_path(out: Path, entry: dict, name: str) -> Path:
    return Path(out) / f"{entry['row']:05d}" / f"{name}.mp4"


def write_index(out: Path) -> tuple[dict | None, list[str]]:
    """(render.json's content, written once every video of the plan in settings.json exists, else None; the
    videos still missing)."""
    out = Path(out)
    if not (out / SETTINGS_JSON).is_file():
        raise FileNotFoundError(f"{out / SETTINGS_JSON} not found: nothing was rendered into {out}")
    settings = json.loads((out / SETTINGS_JSON).read_text())
    _, videos, _ = plan(Path(settings["samples"]), row_selection(settings), settings["k"], settings["ground_truth"],
                      settings.get("grid", False))
    missing = [str(video_path(out, e, name)) for e, name in videos if not video_path(out, e, name).is_file()]
    if missing:
        return None, missing
    doc = {"settings": settings, "videos": [{"row": e["row"], "key": e["key"], "role": e["role"],
                                             "video": f"{e['row']:05d}/{name}.mp4"} for e, name in videos]}
    atomic.write_json(out / RENDER_JSON, doc)
    return doc, []


def finish_index(out: Path) -> dict:
    """The fan-out's last step: render.json, or an error that lists the missing videos."""
    doc, missing = write_index(out)
    if doc is None:
        raise ValueError(f"{len(missing)} videos are missing in {out} (e.g. {missing[:3]}); run the render again "
                         f"to make them")
    return doc


