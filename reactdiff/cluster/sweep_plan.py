"""A sweep's points: the grid (`--grid key=v1,v2`, several multiply), a sweep file (lists, zipped keys) and seeds,
each point a set of config overrides with a short name from a hash of its settings.

    grid:                          # every combination of these
      model.size: [tiny, small]
      train.lr: [1.0e-3, 3.0e-4]
    zip:                           # keys that move together (one axis)
      - {data.window: [32, 64], data.history: [16, 32]}
    seeds: 2                       # seed = 0, 1 for every point

The plan is written to the sweep folder (`sweep.json`'s "plan"); a rerun with another grid is refused unless told to
extend it (new points added, the old ones kept).
"""
from __future__ import annotations

import hashlib
import itertools
import json
from dataclasses import dataclass
from pathlib import Path

import yaml


class SweepError(ValueError):
    pass


@dataclass(frozen=True)
class Point:
    settings: tuple[tuple[str, object], ...]  # (key, value) in axis order, seed included when swept

    @property
    def name(self) -> str:
        # of the settings in key order: the name does not depend on the order the axes were given in
        settings = sorted(self.settings, key=lambda kv: kv[0])
        digest = hashlib.sha256(json.dumps(settings).encode()).hexdigest()
        return f"p{digest[:8]}"

    @property
    def overrides(self) -> list[str]:
        out = [f"{key}={json.dumps(value) if isinstance(value, (list, dict)) else value}"
               for key, value in self.settings]
        seed = dict(self.settings).get("seed")
        if seed is not None:  # the data order and the sampling noise follow the point's seed
            out += [f"data.seed={seed}", f"sample.seed={seed}"]
        return out

    @property
    def training(self) -> "Point":
        """The point without its sampling settings (`sample.*`): points that differ only in how they sample share
        one training run, named by this point (the same name as the point when it sweeps no sampling key)."""
        return Point(tuple((k, v) for k, v in self.settings if not k.startswith("sample.")))

    @property
    def sample_overrides(self) -> list[str]:
        """The overrides the point samples with on top of its training's export."""
        return [o for (key, _), o in zip(self.settings, self.overrides) if key.startswith("sample.")]

    @property
    def group(self) -> tuple:
        """The settings without the seed: the points whose metrics are averaged over seeds."""
        return tuple((k, v) for k, v in self.settings if k != "seed")

    def describe(self) -> dict:
        return {"name": self.name, "settings": dict(self.settings), "run": self.training.name,
                "sample_overrides": self.sample_overrides}


def _value(text: str):
    """'1e-3' -> 0.001, 'true' -> True, 'tiny' -> 'tiny' (YAML's reading, as a config file would have it)."""
    text = text.strip()
    value = yaml.safe_load(text)
    if isinstance(value, str):
        for kind in (int, float):  # YAML 1.1 reads 1e-3 as a string
            try:
                return kind(text)
            except ValueError:
                pass
        return text
    return value


def parse_grid(specs: list[str]) -> list[list[tuple[tuple[str, object], ...]]]:
    """['model.size=tiny,small', ...] -> axes, each a list of settings tuples."""
    axes = []
    for spec in specs:
        key, eq, values = spec.partition("=")
        if not eq or not key.strip() or not values.strip():
            raise SweepError(f"--grid {spec!r}: expected key=v1,v2,... (e.g. train.lr=1e-3,3e-4)")
        choices = [_value(v) for v in values.split(",") if v.strip()]
        if len(set(map(repr, choices))) != len(choices):
            raise SweepError(f"--grid {spec!r}: a value is listed twice")
        axes.append([((key.strip(), v),) for v in choices])
    return axes


def load_file(path: str | Path) -> tuple[list, int | None]:
    """A sweep YAML file -> (axes, seeds)."""
    path = Path(path)
    try:
        doc = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise SweepError(f"{path}: {exc}") from None
    unknown = set(doc) - {"grid", "zip", "seeds"}
    if unknown:
        raise SweepError(f"{path}: unknown keys {sorted(unknown)} (expected grid, zip, seeds)")
    axes = []
    for key, values in (doc.get("grid") or {}).items():
        if not isinstance(values, list) or not values:
            raise SweepError(f"{path}: grid.{key} must be a non-empty list of values")
        axes.append([((key, _read(v)),) for v in values])
    for i, group in enumerate(doc.get("zip") or []):
        lengths = {k: len(v) if isinstance(v, list) else -1 for k, v in group.items()}
        if len(set(lengths.values())) != 1 or -1 in lengths.values():
            raise SweepError(f"{path}: zip[{i}]: every key needs a list of the same length, got {lengths}")
        axes.append([tuple((k, _read(group[k][j])) for k in group) for j in range(next(iter(lengths.values())))])
    seeds = doc.get("seeds")
    return axes, seeds


def _read(value):
    """A file's value as --grid reads it (YAML 1.1 leaves 1e-3 a string): one value, one point name."""
    return _value(value) if isinstance(value, str) else value


def make_points(axes: list, seeds: int | None) -> list[Point]:
    if seeds is not None:
        if not isinstance(seeds, int) or seeds < 1:
            raise SweepError(f"seeds: a positive integer, got {seeds!r}")
        axes = [*axes, [(("seed", s),) for s in range(seeds)]]
    if not axes:
        raise SweepError("the sweep has no points: give --grid key=v1,v2 (or --file) and/or --seeds N")
    keys = [k for axis in axes for k, _ in axis[0]]
    if len(set(keys)) != len(keys):
        raise SweepError(f"a key is swept twice: {sorted(k for k in set(keys) if keys.count(k) > 1)}")
    return [Point(tuple(kv for part in combo for kv in part)) for combo in itertools.product(*axes)]


def check_plan(folder: Path, points: list[Point], base: dict, extend: bool) -> list[Point]:
    """Compare with the plan a sweep folder holds: the same points (and base) go on; new points need `extend`
    (the old ones are kept); a point that disappeared, or another base config, is refused. -> the points to run."""
    path = folder / "sweep.json"
    if not path.is_file():
        return points
    old = json.loads(path.read_text())["plan"]
    if old["base"] != base:
        raise SweepError(f"{folder} is a sweep of another base config/overrides ({old['base']}); use another "
                         f"--name or its own")
    before = {p["name"] for p in old["points"]}
    now = {p.name for p in points}
    if now == before:
        return points
    if not extend:
        raise SweepError(f"{folder} holds a sweep of other points ({len(before)} points, {len(before - now)} not in "
                         f"this grid, {len(now - before)} new); --extend adds the new ones to it")
    kept = [Point(tuple((k, v) for k, v in p["settings"].items())) for p in old["points"] if p["name"] not in now]
    return points + kept
