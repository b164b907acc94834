"""Atomic file writes: write a temp file in the same folder, fsync, rename. Readers never see half a file."""
from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import IO, Iterator


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temp file next to `path`; on clean exit it replaces `path`, on error it is removed."""
    with replacing_file(path) as tmp:
        with open(tmp, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())


@contextlib.contextmanager
def replacing_file(path: str | os.PathLike) -> Iterator[Path]:
    """A temp file name next to `path`, for writers that want a name (safetensors, np.save): on clean exit it
    replaces `path`, on error it is removed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


@contextlib.contextmanager
def replacing_folder(path: str | os.PathLike) -> Iterator[Path]:
    """A fresh temp folder next to `path` to fill: on clean exit it replaces `path` (an older one is removed first),
    on error it is removed. Readers see the old folder or the whole new one, never part of it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent))
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.chmod(tmp, 0o755)
        if path.exists():
            shutil.rmtree(path)
        os.rename(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def write_json(path: str | os.PathLike, obj) -> None:
    write_text(path, json.dumps(obj, indent=1, sort_keys=True) + "\n")


def append_line(path: str | os.PathLike, line: str) -> None:
    """One line appended with a single write (O_APPEND), flushed to disk: a crash never leaves half a line."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line.rstrip("\n") + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)


def is_temp_file(name: str) -> bool:
    """Leftovers of an interrupted atomic write (safe to delete on resume)."""
    return name.startswith(".") and name.endswith(".tmp")


def save_figure(fig, path: str | os.PathLike, dpi: int = 90) -> None:
    """A matplotlib figure written atomically (the format follows the file name's suffix)."""
    path = Path(path)
    with atomic_open(path, "wb") as f:
        fig.savefig(f, dpi=dpi, format=path.suffix.lstrip(".") or "png")
