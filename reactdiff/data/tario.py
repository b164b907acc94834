"""Deterministic WebDataset tar shards: fixed headers, sorted members, byte-identical for the same samples.

A shard is a plain tar whose members are `<key>.<field>` (e.g. `00003-NoXI-010_2016-03-25_Paris-1.a.fv.npy`),
grouped by key, so `tar`, `webdataset` and our reader all read it without any code of ours.
"""
from __future__ import annotations

import io
import tarfile
from typing import BinaryIO, Callable, Iterator

import webdataset.tariterators as wds_tar

FIXED_MTIME = 0  # 1970-01-01: the same bytes whenever and wherever a shard is written


def _member_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    info.mtime = FIXED_MTIME
    info.mode = 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    info.type = tarfile.REGTYPE
    return info


class ShardBuilder:
    """Builds one shard in memory; `offsets` are the byte positions where each sample's first header starts."""

    def __init__(self) -> None:
        self._buf = io.BytesIO()
        self._tar = tarfile.open(fileobj=self._buf, mode="w", format=tarfile.GNU_FORMAT)
        self.keys: list[str] = []
        self.offsets: list[int] = []

    def add_sample(self, key: str, fields: dict[str, bytes]) -> None:
        if "." in key or "/" in key:
            raise ValueError(f"sample key {key!r} must not contain '.' or '/' (WebDataset splits keys at the first "
                             f"dot)")
        self.offsets.append(self._buf.tell())
        self.keys.append(key)
        for field in sorted(fields):
            data = fields[field]
            self._tar.addfile(_member_info(f"{key}.{field}", len(data)), io.BytesIO(data))

    def finish(self) -> bytes:
        self._tar.close()
        return self._buf.getvalue()


def iter_samples(fileobj: BinaryIO, url: str = "", limit: int | None = None,
                 fields: Callable[[str], bool] | None = None) -> Iterator[dict]:
    """Yield WebDataset samples ({'__key__': key, field: bytes, ...}) from a tar stream positioned at a header.

    `fields(field)` selects which members are read at all (the others are skipped without being copied).
    """
    select = None if fields is None else (lambda fname: fields(fname.split(".", 1)[1]))
    members = wds_tar.tar_file_iterator(fileobj, select_files=select)  # webdataset's own tar stream parser
    members = ({**m, "__url__": url} for m in members)
    for i, sample in enumerate(wds_tar.group_by_keys(members)):
        if limit is not None and i >= limit:
            return
        yield sample


def _round_up(n: int) -> int:
    return (n + tarfile.BLOCKSIZE - 1) // tarfile.BLOCKSIZE * tarfile.BLOCKSIZE


def read_sample_at(f: BinaryIO, offset: int, key: str, fields: Callable[[str], bool] | None = None) -> dict:
    """Random access to one sample: parse its tar headers from `offset` and seek past the members not wanted.

    Stream parsing (webdataset's iterator) has to read every byte of a skipped member; real seeks make a
    training window cost only the 3DMM and features it uses, not the audio and images next to them.
    """
    sample = {"__key__": key}
    pos, prefix = offset, key + "."
    while True:
        f.seek(pos)
        block = f.read(tarfile.BLOCKSIZE)
        if len(block) < tarfile.BLOCKSIZE or block == tarfile.NUL * tarfile.BLOCKSIZE:
            break
        info = tarfile.TarInfo.frombuf(block, tarfile.ENCODING, "surrogateescape")
        pos += tarfile.BLOCKSIZE
        name = info.name
        if info.type == tarfile.GNUTYPE_LONGNAME:  # the real name is the data of this pseudo-member
            name = f.read(info.size).rstrip(tarfile.NUL).decode(tarfile.ENCODING, "surrogateescape")
            pos += _round_up(info.size)
            f.seek(pos)
            info = tarfile.TarInfo.frombuf(f.read(tarfile.BLOCKSIZE), tarfile.ENCODING, "surrogateescape")
            pos += tarfile.BLOCKSIZE
        if not name.startswith(prefix):
            break
        field = name[len(prefix):]
        if info.isreg() and (fields is None or fields(field)):
            f.seek(pos)
            sample[field] = f.read(info.size)
        pos += _round_up(info.size)
    if len(sample) == 1:
        raise ValueError(f"no member of sample {key!r} at byte {offset}")
    return sample
