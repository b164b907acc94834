"""All distributed state: find out who we are (torchrun / deepspeed launcher / SLURM / single), init, collectives.

Launchers and what `detect` reads:
  torchrun, `deepspeed`: RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT, LOCAL_WORLD_SIZE (torchrun) or
      LOCAL_SIZE (deepspeed launcher). Without either, local_world_size = world_size only when the job is clearly on one
      node (world 1, GROUP_WORLD_SIZE=1, CROSS_SIZE=1, or a loopback MASTER_ADDR); otherwise that is an error.
  SLURM (srun / submitit), used only when RANK is unset: SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID, tasks per node from
      SLURM_STEP_TASKS_PER_NODE / SLURM_NTASKS_PER_NODE / SLURM_TASKS_PER_NODE ("2(x3),1", picked by SLURM_NODEID),
      master = first host of SLURM_STEP_NODELIST / SLURM_JOB_NODELIST (MASTER_ADDR overrides),
      port = MASTER_PORT or job_port(SLURM_JOB_ID) (10000 + id % 20000). SLURM_NTASKS=1 is "single".
  nothing: single process (127.0.0.1; init() picks a free port unless MASTER_PORT is set).
A partly set environment raises DistConfigError naming what is missing. Every rank gets a process group, world 1 too
(DeepSpeed wants one). The getters read the env stored by init(); before init they answer as a single process.
"""
from __future__ import annotations

import dataclasses
import datetime
import functools
import itertools
import os
import re
import socket
import zlib
from typing import Any, Mapping

import torch
import torch.distributed as tdist


class DistConfigError(ValueError):
    """The launcher environment is incomplete or inconsistent."""


@dataclasses.dataclass(frozen=True)
class DistEnv:
    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    master_addr: str
    master_port: int
    source: str  # "torchrun" (also the deepspeed launcher), "slurm" or "single"


SINGLE = DistEnv(0, 1, 0, 1, "127.0.0.1", 29500, "single")
_TORCHRUN = ("RANK", "WORLD_SIZE", "LOCAL_RANK")

_env: DistEnv | None = None  # set by init()
_owns_group = False  # True when init() created the process group (shutdown destroys only that)


# ---------------------------------------------------------------- detection (pure)

_HOST = r"(?:[^,\[\]\s]|\[[^\[\]]*\])+"  # one host expression: text and [ranges] groups, no top-level comma


def expand_nodelist(nodelist: str) -> list[str]:
    """SLURM hostlist -> host names: "gpu[01-03,7],cpu-b7", "rack[1-2]-node[1-2]" (cartesian, first group slowest)."""
    s = nodelist.strip()
    if s and not re.fullmatch(rf"{_HOST}(?:,{_HOST})*", s):
        raise ValueError(f"malformed hostlist {nodelist!r}")
    hosts: list[str] = []
    for expr in re.findall(_HOST, s):
        parts = re.split(r"\[([^\]]*)\]", expr)  # odd entries are bracket contents
        choices = [_expand_group(p, nodelist) if i % 2 else [p] for i, p in enumerate(parts)]
        hosts.extend("".join(c) for c in itertools.product(*choices))
    return hosts


def _expand_group(group: str, nodelist: str) -> list[str]:
    """"01-03,7" -> ["01", "02", "03", "7"]; the width of a range's lower bound sets its zero padding."""
    out = []
    for item in group.split(","):
        m = re.fullmatch(r"\s*(\d+)(?:-(\d+))?\s*", item)
        if not m or (m.group(2) is not None and int(m.group(2)) < int(m.group(1))):
            raise ValueError(f"bad range {item!r} in hostlist {nodelist!r}")
        lo, hi = m.group(1), m.group(2) or m.group(1)
        out.extend(str(i).zfill(len(lo)) for i in range(int(lo), int(hi) + 1))
    return out


class _Vars:
    """A launcher's variables; errors name the variable and the launcher."""
    def __init__(self, environ: Mapping[str, str], launcher: str):
        self.e, self.launcher = environ, launcher

    def get(self, name: str) -> str:
        return self.e.get(name, "").strip()

    def first(self, *names: str) -> str | None:
        return next((n for n in names if self.get(n)), None)

    def integer(self, name: str, default: int | None = None) -> int:
        if default is not None and not self.get(name):
            return default
        if not re.fullmatch(r"-?[0-9]+", self.get(name)):  # stricter than int(): no "1_000", no non-ASCII digits
            self.fail(f"{name}={self.e.get(name)!r} is not an integer")
        return int(self.get(name))

    def need(self, *names: str, why: str = "") -> None:
        lost = [n for n in names if not self.get(n)]
        if lost:
            self.fail(f"{', '.join(lost)} {'is' if len(lost) == 1 else 'are'} missing{why}")

    def fail(self, msg: str):
        raise DistConfigError(f"reactdiff.dist ({self.launcher} launch): {msg}")


def detect(environ: Mapping[str, str] | None = None) -> DistEnv:
    """Read the launcher's variables from `environ` (default os.environ) and return this process's DistEnv."""
    e = os.environ if environ is None else environ
    if any(k in e for k in _TORCHRUN):
        v = _Vars(e, "torchrun / deepspeed launcher")
        env = _detect_torchrun(v)
    elif "SLURM_PROCID" in e:
        v = _Vars(e, "SLURM")
        env = _detect_slurm(v)
    else:
        v = _Vars(e, "single-process")
        env = dataclasses.replace(SINGLE, master_port=v.integer("MASTER_PORT", 29500))
    for ok, what in [(0 <= env.rank < env.world_size, f"rank {env.rank} outside [0, world size {env.world_size})"),
                     (1 <= env.local_world_size <= env.world_size,
                      f"local world size {env.local_world_size} outside [1, world size {env.world_size}]"),
                     (0 <= env.local_rank < env.local_world_size,
                      f"local rank {env.local_rank} outside [0, local world size {env.local_world_size})"),
                     (0 < env.master_port < 65536, f"master port {env.master_port} outside 1..65535")]:
        if not ok:
            v.fail(what)
    return env


def _detect_torchrun(v: _Vars) -> DistEnv:
    v.need(*_TORCHRUN, why=f" ({', '.join(k for k in _TORCHRUN if k in v.e)} set)")
    rank, world, local = (v.integer(k) for k in _TORCHRUN)
    if world > 1:
        v.need("MASTER_ADDR", "MASTER_PORT", why=f" with WORLD_SIZE={world}")
    addr, port = v.get("MASTER_ADDR") or "127.0.0.1", v.integer("MASTER_PORT", 29500)
    local_name = v.first("LOCAL_WORLD_SIZE", "LOCAL_SIZE")  # torchrun, deepspeed launcher
    if local_name:
        local_world = v.integer(local_name)
    elif (world == 1 or v.get("GROUP_WORLD_SIZE") == "1" or v.get("CROSS_SIZE") == "1"
          or addr.startswith("127.") or addr in ("localhost", "::1")):  # clearly one node
        local_world = world
    else:
        v.fail(f"LOCAL_WORLD_SIZE (or LOCAL_SIZE) is missing, and WORLD_SIZE={world} with MASTER_ADDR={addr} "
               "may span nodes")
    return DistEnv(rank, world, local, local_world, addr, port, "torchrun")


def _detect_slurm(v: _Vars) -> DistEnv:
    v.need("SLURM_NTASKS", "SLURM_LOCALID", why=" (SLURM_PROCID is set, RANK is not)")
    rank, world, local = (v.integer(k) for k in ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"))
    if world == 1 and rank == local == 0:
        return dataclasses.replace(SINGLE, master_port=v.integer("MASTER_PORT", 29500))
    return DistEnv(rank, world, local, _slurm_local_world(v, world), _slurm_master(v), _slurm_port(v), "slurm")


def _slurm_local_world(v: _Vars, world: int) -> int:
    """Tasks on this node, from SLURM's tasks-per-node spec: "2(x3),1" means 2, 2, 2, 1 tasks on 4 nodes."""
    tpn = v.first("SLURM_STEP_TASKS_PER_NODE", "SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE")
    if not tpn:
        if v.get("SLURM_NNODES") == "1":
            return world
        v.fail("SLURM_NTASKS_PER_NODE and SLURM_TASKS_PER_NODE are missing (needed unless SLURM_NNODES=1)")
    spec = v.get(tpn).replace(" ", "")
    if not re.fullmatch(r"\d+(\(x\d+\))?(,\d+(\(x\d+\))?)*", spec):
        v.fail(f"cannot parse {tpn}={v.get(tpn)!r}")
    counts = [int(n) for n, r in re.findall(r"(\d+)(?:\(x(\d+)\))?", spec) for _ in range(int(r or 1))]
    if len(set(counts)) == 1:
        return counts[0]
    v.need("SLURM_NODEID", why=f" (uneven {tpn}={v.get(tpn)!r})")
    node = v.integer("SLURM_NODEID")
    if not 0 <= node < len(counts):
        v.fail(f"SLURM_NODEID={node} outside {tpn}={v.get(tpn)!r}")
    return counts[node]


def _slurm_master(v: _Vars) -> str:
    """MASTER_ADDR, else the first node of the step's (or job's) node list."""
    if v.get("MASTER_ADDR"):
        return v.get("MASTER_ADDR")
    nodelist = v.first("SLURM_STEP_NODELIST", "SLURM_JOB_NODELIST", "SLURM_NODELIST")
    if not nodelist:
        v.need("SLURM_JOB_NODELIST", "MASTER_ADDR", why=" (one of them names the master)")
    try:
        return expand_nodelist(v.get(nodelist))[0]
    except (ValueError, IndexError):
        v.fail(f"cannot parse {nodelist}={v.get(nodelist)!r}")


def _slurm_port(v: _Vars) -> int:
    if v.get("MASTER_PORT"):
        return v.integer("MASTER_PORT")
    v.need("SLURM_JOB_ID", why=" (or MASTER_PORT)")
    return job_port(v.integer("SLURM_JOB_ID"))


def job_port(job_id: int | str) -> int:
    """The rendezvous port of a job: the same on every node of it, different for jobs running side by side.
    10000 + id % 20000 for SLURM's numeric ids; other ids (array tasks "123_4", local executors) by their crc32."""
    text = str(job_id)
    return 10000 + (int(text) if text.isdigit() else zlib.crc32(text.encode())) % 20000


# ---------------------------------------------------------------- process group

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@functools.lru_cache(maxsize=None)
def backend_name() -> str:
    """"nccl" on CUDA, "gloo" on CPU, as DeepSpeed's accelerator says (torch.cuda when deepspeed is missing)."""
    try:
        from deepspeed.accelerator import get_accelerator
        return get_accelerator().communication_backend_name()
    except ImportError:
        return "nccl" if torch.cuda.is_available() else "gloo"


def _cuda_index(env: DistEnv) -> int:
    """local_rank, or 0 when each task sees only its own GPU (SLURM --gpus-per-task)."""
    visible = torch.cuda.device_count()
    if env.local_rank < visible:
        return env.local_rank
    if visible == 1:
        return 0
    raise DistConfigError(f"reactdiff.dist: local rank {env.local_rank} but only {visible} visible CUDA devices")


def init(backend: str | None = None, timeout_s: int = 1800) -> DistEnv:
    """Detect the launcher, export a torchrun-like environment, pin the GPU, create the process group (idempotent)."""
    global _env, _owns_group
    if _env is not None:
        return _env
    env = detect()
    if env.source == "single" and not os.environ.get("MASTER_PORT", "").strip():
        env = dataclasses.replace(env, master_port=_free_port())  # single-process jobs can run side by side
    os.environ.update(RANK=str(env.rank), WORLD_SIZE=str(env.world_size), LOCAL_RANK=str(env.local_rank),
                      LOCAL_WORLD_SIZE=str(env.local_world_size), MASTER_ADDR=env.master_addr,
                      MASTER_PORT=str(env.master_port))
    if torch.cuda.is_available():
        torch.cuda.set_device(_cuda_index(env))
    backend = backend or backend_name()
    timeout = datetime.timedelta(seconds=timeout_s)
    if not tdist.is_initialized():
        try:
            import deepspeed
        except ImportError:
            tdist.init_process_group(backend, timeout=timeout, rank=env.rank, world_size=env.world_size)
        else:
            deepspeed.init_distributed(dist_backend=backend, auto_mpi_discovery=False, timeout=timeout,
                                       rank=env.rank, world_size=env.world_size)
        _owns_group = True
    _env = env
    return env


def shutdown() -> None:
    """Destroy the process group if init() created it; the getters go back to single-process answers."""
    global _env, _owns_group
    if _owns_group and tdist.is_initialized():
        tdist.destroy_process_group()
    _env, _owns_group = None, False


# ---------------------------------------------------------------- getters and collectives

def _get() -> DistEnv:
    return _env if _env is not None else SINGLE


def rank() -> int: return _get().rank
def world_size() -> int: return _get().world_size
def local_rank() -> int: return _get().local_rank
def is_main() -> bool: return _get().rank == 0


def print0(*args, **kwargs) -> None:
    """print() on rank 0 only, flushed."""
    if is_main():
        print(*args, **{"flush": True, **kwargs})


def device() -> torch.device:
    """cuda:<this rank's GPU> when CUDA is available, else cpu."""
    return torch.device("cuda", _cuda_index(_get())) if torch.cuda.is_available() else torch.device("cpu")


def _comm_device() -> torch.device | None:
    """Where collective buffers live: this rank's GPU for NCCL, the CPU for gloo; None when alone."""
    if _env is None or _env.world_size == 1 or not tdist.is_initialized():
        return None
    return device() if tdist.get_backend() == "nccl" else torch.device("cpu")


def barrier() -> None:
    dev = _comm_device()
    if dev is not None:
        tdist.barrier(device_ids=[dev.index] if dev.type == "cuda" else None)


def all_reduce_mean(t: torch.Tensor) -> torch.Tensor:
    """Mean of `t` over ranks, as a new tensor on t's device (integer tensors become float32)."""
    x = all_reduce_sum(t if t.is_floating_point() or t.is_complex() else t.float())
    return x / _env.world_size if _comm_device() is not None else x


def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
    """Sum of `t` over ranks, as a new tensor on t's device."""
    x = t.detach().clone()
    dev = _comm_device()
    if dev is None:
        return x
    x = x.to(dev)
    tdist.all_reduce(x, op=tdist.ReduceOp.SUM)
    return x.to(t.device)


def all_reduce_max_int(value: int) -> int:
    """Largest `value` over ranks (e.g. "did any rank get a preemption signal")."""
    dev = _comm_device()
    if dev is None:
        return int(value)
    x = torch.tensor([int(value)], dtype=torch.int64, device=dev)
    tdist.all_reduce(x, op=tdist.ReduceOp.MAX)
    return int(x.item())


def broadcast_object(obj: Any, src: int = 0) -> Any:
    """`obj` (picklable) from rank `src`, returned on every rank."""
    dev = _comm_device()
    if dev is None:
        return obj
    box = [obj if rank() == src else None]
    tdist.broadcast_object_list(box, src=src, device=dev)
    return box[0]


def broadcast_(t: torch.Tensor, src: int = 0) -> torch.Tensor:
    """Rank `src`'s values of `t` into `t` on every rank (in place; t has the same shape everywhere)."""
    dev = _comm_device()
    if dev is None:
        return t
    x = t.detach().to(dev)
    tdist.broadcast(x, src=src)
    t.copy_(x)
    return t


def all_gather_objects(obj: Any) -> list:
    """Every rank's `obj` (picklable, from within this job), in rank order, on every rank."""
    if _comm_device() is None:
        return [obj]
    out = [None] * world_size()
    tdist.all_gather_object(out, obj)
    return out
