"""Read an offline wandb run back from its transaction log (run-<id>.wandb): wandb's own record format (LevelDB log
blocks of protobuf `Record`s, wandb.proto.wandb_internal_pb2), so tests check what wandb itself stored."""
from __future__ import annotations

import json
import struct
from pathlib import Path

BLOCK, HEADER = 32768, 7


def records(path: Path) -> list:
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a wandb transaction log"
    pos, chunks, partial = HEADER, [], b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        body = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == 1:  # full
            chunks.append(body)
        elif kind == 2:  # first
            partial = body
        elif kind == 3:  # middle
            partial += body
        elif kind == 4:  # last
            chunks.append(partial + body)
    out = []
    for raw in chunks:
        rec = pb.Record()
        rec.ParseFromString(raw)
        out.append(rec)
    return out


def offline_runs(folder: Path) -> list[Path]:
    return sorted(Path(folder).rglob("offline-run-*/run-*.wandb"))


def history(path: Path) -> list[dict]:
    """Every logged row: {key: value} (nested keys joined by '/'), values decoded from JSON."""
    rows = []
    for rec in records(path):
        if rec.WhichOneof("record_type") == "history":
            rows.append({(i.key or "/".join(i.nested_key)): json.loads(i.value_json) for i in rec.history.item})
    return rows


def run_info(path: Path) -> dict:
    for rec in records(path):
        if rec.WhichOneof("record_type") == "run":
            return {"group": rec.run.run_group, "job_type": rec.run.job_type, "id": rec.run.run_id,
                    "name": rec.run.display_name, "project": rec.run.project}
    raise AssertionError(f"{path}: no run record")
