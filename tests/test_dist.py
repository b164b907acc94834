"""reactdiff.dist: launcher detection (pure), SLURM hostlists, and real 1- and 2-process gloo runs in subprocesses."""
from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from reactdiff import dist
from reactdiff.dist import DistConfigError, DistEnv, detect, expand_nodelist

REPO = Path(__file__).resolve().parents[1]

TORCHRUN = {"RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
            "MASTER_ADDR": "node07", "MASTER_PORT": "29400"}
SLURM = {"SLURM_PROCID": "5", "SLURM_NTASKS": "8", "SLURM_LOCALID": "1", "SLURM_NODEID": "1",
         "SLURM_TASKS_PER_NODE": "4(x2)", "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "4242424"}


# ---------------------------------------------------------------- detect: the good cases

@pytest.mark.parametrize("env, want", [
    (TORCHRUN, DistEnv(3, 8, 1, 4, "node07", 29400, "torchrun")),
    # deepspeed launcher: LOCAL_SIZE instead of LOCAL_WORLD_SIZE
    ({**{k: v for k, v in TORCHRUN.items() if k != "LOCAL_WORLD_SIZE"}, "LOCAL_SIZE": "2", "CROSS_SIZE": "4"},
     DistEnv(3, 8, 1, 2, "node07", 29400, "torchrun")),
    # no local size, but clearly one node: loopback master, one torchrun group, one deepspeed node, world 1
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "1234"},
     DistEnv(1, 2, 1, 2, "127.0.0.1", 1234, "torchrun")),
    ({"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "h", "MASTER_PORT": "1",
      "GROUP_WORLD_SIZE": "1"},
     DistEnv(1, 2, 1, 2, "h", 1, "torchrun")),
    ({"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0", "MASTER_ADDR": "h", "MASTER_PORT": "1", "CROSS_SIZE": "1"},
     DistEnv(0, 2, 0, 2, "h", 1, "torchrun")),
    ({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0"}, DistEnv(0, 1, 0, 1, "127.0.0.1", 29500, "torchrun")),
    # torchrun wins over SLURM variables (torchrun inside an allocation)
    ({**SLURM, **TORCHRUN}, DistEnv(3, 8, 1, 4, "node07", 29400, "torchrun")),
    (SLURM, DistEnv(5, 8, 1, 4, "gpu07", 10000 + 4242424 % 20000, "slurm")),
    ({**SLURM, "SLURM_STEP_NODELIST": "a[3-4]", "MASTER_PORT": "777"}, DistEnv(5, 8, 1, 4, "a3", 777, "slurm")),
    ({**SLURM, "MASTER_ADDR": "10.0.0.9"}, DistEnv(5, 8, 1, 4, "10.0.0.9", 12424, "slurm")),
    ({**SLURM, "SLURM_JOB_NODELIST": "rack[2-3]-n[5-6],login"}, DistEnv(5, 8, 1, 4, "rack2-n5", 12424, "slurm")),
    # tasks per node: plain, step value first, uneven picked by node id, single node without per-node counts
    ({**SLURM, "SLURM_TASKS_PER_NODE": "4"}, DistEnv(5, 8, 1, 4, "gpu07", 12424, "slurm")),
    ({**SLURM, "SLURM_NTASKS_PER_NODE": "4", "SLURM_TASKS_PER_NODE": "9"},
     DistEnv(5, 8, 1, 4, "gpu07", 12424, "slurm")),
    ({**SLURM, "SLURM_STEP_TASKS_PER_NODE": "2(x4)"}, DistEnv(5, 8, 1, 2, "gpu07", 12424, "slurm")),
    ({**SLURM, "SLURM_NTASKS": "7", "SLURM_TASKS_PER_NODE": "3(x2),1", "SLURM_NODEID": "2", "SLURM_LOCALID": "0"},
     DistEnv(5, 7, 0, 1, "gpu07", 12424, "slurm")),
    ({**SLURM, "SLURM_NTASKS": "6", "SLURM_TASKS_PER_NODE": "3(x2),1", "SLURM_NODEID": "1"},
     DistEnv(5, 6, 1, 3, "gpu07", 12424, "slurm")),
    ({k: v for k, v in SLURM.items() if k != "SLURM_TASKS_PER_NODE"} | {"SLURM_NNODES": "1"},
     DistEnv(5, 8, 1, 8, "gpu07", 12424, "slurm")),
    # single
    ({}, dist.SINGLE),
    ({"MASTER_PORT": "4321", "MASTER_ADDR": "far.away"}, DistEnv(0, 1, 0, 1, "127.0.0.1", 4321, "single")),
    ({"SLURM_PROCID": "0", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0", "SLURM_JOB_ID": "5"}, dist.SINGLE),
])
def test_detect(env, want):
    assert detect(env) == want


def test_detect_reads_os_environ_by_default(monkeypatch):
    for k in list(os.environ):
        if k.startswith("SLURM_") or k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_PORT"):
            monkeypatch.delenv(k)
    assert detect() == dist.SINGLE
    monkeypatch.setattr(os, "environ", dict(TORCHRUN))
    assert detect().rank == 3


# ---------------------------------------------------------------- detect: the bad cases

def drop(env, *keys):
    return {k: v for k, v in env.items() if k not in keys}


@pytest.mark.parametrize("env, names, launcher", [
    (drop(TORCHRUN, "WORLD_SIZE"), ["WORLD_SIZE"], "torchrun"),
    (drop(TORCHRUN, "RANK"), ["RANK"], "torchrun"),
    (drop(TORCHRUN, "LOCAL_RANK", "WORLD_SIZE"), ["WORLD_SIZE", "LOCAL_RANK"], "torchrun"),
    ({"LOCAL_RANK": "0"}, ["RANK", "WORLD_SIZE"], "torchrun"),
    ({**TORCHRUN, "RANK": " "}, ["RANK"], "torchrun"),
    (drop(TORCHRUN, "MASTER_ADDR"), ["MASTER_ADDR"], "torchrun"),
    (drop(TORCHRUN, "MASTER_PORT", "MASTER_ADDR"), ["MASTER_ADDR", "MASTER_PORT"], "torchrun"),
    (drop(TORCHRUN, "LOCAL_WORLD_SIZE"), ["LOCAL_WORLD_SIZE"], "torchrun"),  # node07 may be one of many nodes
    (drop(SLURM, "SLURM_NTASKS"), ["SLURM_NTASKS"], "SLURM"),
    (drop(SLURM, "SLURM_LOCALID"), ["SLURM_LOCALID"], "SLURM"),
    ({"SLURM_PROCID": "0"}, ["SLURM_NTASKS", "SLURM_LOCALID"], "SLURM"),
    (drop(SLURM, "SLURM_TASKS_PER_NODE"), ["SLURM_NTASKS_PER_NODE", "SLURM_TASKS_PER_NODE"], "SLURM"),
    ({**SLURM, "SLURM_TASKS_PER_NODE": "3(x2),2", "SLURM_NODEID": ""}, ["SLURM_NODEID"], "SLURM"),
    (drop(SLURM, "SLURM_JOB_NODELIST"), ["SLURM_JOB_NODELIST", "MASTER_ADDR"], "SLURM"),
    (drop(SLURM, "SLURM_JOB_ID"), ["SLURM_JOB_ID"], "SLURM"),
])
def test_partial_environment_names_what_is_missing(env, names, launcher):
    with pytest.raises(DistConfigError) as info:
        detect(env)
    msg = str(info.value)
    assert launcher in msg and "missing" in msg
    for name in names:
        assert name in msg
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("env, name", [
    ({**TORCHRUN, "RANK": "three"}, "RANK"), ({**TORCHRUN, "WORLD_SIZE": "8.0"}, "WORLD_SIZE"),
    ({**TORCHRUN, "LOCAL_RANK": "x"}, "LOCAL_RANK"), ({**TORCHRUN, "MASTER_PORT": "http"}, "MASTER_PORT"),
    ({**TORCHRUN, "LOCAL_WORLD_SIZE": "four"}, "LOCAL_WORLD_SIZE"), ({"MASTER_PORT": "p"}, "MASTER_PORT"),
    ({**SLURM, "SLURM_PROCID": "a"}, "SLURM_PROCID"), ({**SLURM, "SLURM_NTASKS": "-"}, "SLURM_NTASKS"),
    ({**SLURM, "SLURM_LOCALID": "1.5"}, "SLURM_LOCALID"), ({**SLURM, "SLURM_JOB_ID": "12_3"}, "SLURM_JOB_ID"),
    ({**SLURM, "SLURM_TASKS_PER_NODE": "4(2)"}, "SLURM_TASKS_PER_NODE"),
    ({**SLURM, "SLURM_TASKS_PER_NODE": "3(x2),2", "SLURM_NODEID": "n1"}, "SLURM_NODEID"),
    ({**SLURM, "SLURM_JOB_NODELIST": "gpu[07-"}, "SLURM_JOB_NODELIST"),
])
def test_bad_integer_or_syntax_names_the_variable(env, name):
    with pytest.raises(DistConfigError, match=name):
        detect(env)


@pytest.mark.parametrize("env, what", [
    ({**TORCHRUN, "RANK": "8"}, "rank 8"), ({**TORCHRUN, "RANK": "-1"}, "rank -1"),
    ({**TORCHRUN, "WORLD_SIZE": "0", "RANK": "0"}, "rank 0"), ({**TORCHRUN, "LOCAL_RANK": "4"}, "local rank 4"),
    ({**TORCHRUN, "LOCAL_WORLD_SIZE": "9"}, "local world size 9"), ({**TORCHRUN, "MASTER_PORT": "70000"}, "port"),
    ({**SLURM, "SLURM_PROCID": "8"}, "rank 8"), ({**SLURM, "SLURM_LOCALID": "4"}, "local rank 4"),
    ({**SLURM, "SLURM_TASKS_PER_NODE": "3(x2),2", "SLURM_NODEID": "3"}, "SLURM_NODEID=3"),
    ({"SLURM_PROCID": "2", "SLURM_NTASKS": "1", "SLURM_LOCALID": "0", "SLURM_JOB_NODELIST": "a",
      "SLURM_TASKS_PER_NODE": "1", "SLURM_JOB_ID": "1"}, "rank 2"),
])
def test_out_of_range_raises(env, what):
    with pytest.raises(DistConfigError, match=what):
        detect(env)


# ---------------------------------------------------------------- hostlists

@pytest.mark.parametrize("nodelist, hosts", [
    ("node1", ["node1"]),
    ("node[1-3]", ["node1", "node2", "node3"]),
    ("node[01-03,7]", ["node01", "node02", "node03", "node7"]),
    ("n[08-11]", ["n08", "n09", "n10", "n11"]),
    ("n[8-10]", ["n8", "n9", "n10"]),
    ("n[007]", ["n007"]),
    ("gpu-a[1-2],gpu-b7", ["gpu-a1", "gpu-a2", "gpu-b7"]),
    ("rack[1-2]-node[1-2]", ["rack1-node1", "rack1-node2", "rack2-node1", "rack2-node2"]),
    ("a[1-2]b[3,5]c", ["a1b3c", "a1b5c", "a2b3c", "a2b5c"]),
    ("x,y[1-2],z", ["x", "y1", "y2", "z"]),
    ("c[1,3-4],d[10-11],e", ["c1", "c3", "c4", "d10", "d11", "e"]),
    ("10.0.0.[1-2]", ["10.0.0.1", "10.0.0.2"]),
    ("  node[1-2] ", ["node1", "node2"]),
    ("", []),
])
def test_expand_nodelist(nodelist, hosts):
    assert expand_nodelist(nodelist) == hosts


@pytest.mark.parametrize("bad", ["node[1-3", "node1-3]", "n[[1]]", "n[3-1]", "n[a-b]", "n[1-]", "a,,b", "n[]", ",a"])
def test_expand_nodelist_rejects(bad):
    with pytest.raises(ValueError):
        expand_nodelist(bad)


# ---------------------------------------------------------------- before init: single-process answers

def test_getters_and_collectives_before_init(capsys):
    assert dist._env is None
    assert (dist.rank(), dist.world_size(), dist.local_rank(), dist.is_main()) == (0, 1, 0, True)
    dist.barrier()
    t = torch.tensor([1, 2])
    m = dist.all_reduce_mean(t)
    assert m.dtype == torch.float32 and m.tolist() == [1.0, 2.0]
    f = torch.ones(2)
    assert dist.all_reduce_mean(f) is not f
    assert dist.all_reduce_max_int(7) == 7 and dist.broadcast_object({"a": 1}) == {"a": 1}
    dist.print0("hello", 1)
    assert capsys.readouterr().out == "hello 1\n"
    assert dist.backend_name() == ("nccl" if torch.cuda.is_available() else "gloo")
    assert dist.device() == (torch.device("cuda", 0) if torch.cuda.is_available() else torch.device("cpu"))


# ---------------------------------------------------------------- real process groups (subprocesses, gloo)

WORKER = textwrap.dedent("""
    import json, os, sys, torch, deepspeed.comm
    from reactdiff import dist
    env = dist.init(backend="gloo", timeout_s=60)
    assert dist.init() is env                                   # idempotent
    r, w = dist.rank(), dist.world_size()
    out = dict(env=list(env.__dict__.values()), rank=r, world=w, local_rank=dist.local_rank(), main=dist.is_main(),
               initialized=torch.distributed.is_initialized(), pg_world=torch.distributed.get_world_size(),
               deepspeed=deepspeed.comm.is_initialized() and deepspeed.comm.get_world_size(),
               exported=[os.environ[k] for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE",
                                                  "MASTER_ADDR", "MASTER_PORT")],
               mean=dist.all_reduce_mean(torch.tensor([r + 1.0, 10.0 * r])).tolist(),
               mean_int=dist.all_reduce_mean(torch.tensor(r + 1)).item(),
               max=dist.all_reduce_max_int(7 if r == w - 1 else r + 3), obj=dist.broadcast_object({"from": r}),
               obj1=dist.broadcast_object(["x", r], src=w - 1))
    dist.print0("printed by", r)
    dist.barrier()
    dist.shutdown()
    out.update(after=torch.distributed.is_initialized(), after_rank=dist.rank())
    open(sys.argv[1], "w").write(json.dumps(out))
""")

LAUNCH_VARS = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE", "LOCAL_SIZE", "MASTER_ADDR", "MASTER_PORT",
               "GROUP_WORLD_SIZE", "CROSS_SIZE")


def run_workers(tmp_path: Path, envs: list[dict], mains: int = 1) -> list[dict]:
    base = {k: v for k, v in os.environ.items() if k not in LAUNCH_VARS and not k.startswith("SLURM_")}
    base.update(OMP_NUM_THREADS="1", PYTHONPATH=f"{REPO}{os.pathsep}{base.get('PYTHONPATH', '')}")
    procs = [subprocess.Popen([sys.executable, "-c", WORKER, str(tmp_path / f"out{i}.json")], env={**base, **e},
                              cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for i, e in enumerate(envs)]
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=120)[0])
    finally:
        for p in procs:
            p.kill()
    for p, log in zip(procs, logs):
        assert p.returncode == 0, log[-3000:]
    assert sum(log.count("printed by 0") for log in logs) == mains and not any("printed by 1" in log for log in logs)
    return [json.loads((tmp_path / f"out{i}.json").read_text()) for i in range(len(envs))]


def free_port(lo: int = 1024, hi: int = 65535) -> int:
    for _ in range(200):
        port = random.randint(lo, hi)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
                return port
            except OSError:
                continue
    raise RuntimeError("no free port")


def check_two_ranks(outs: list[dict], source: str, port: int):
    for r, o in enumerate(outs):
        assert o["env"] == [r, 2, r, 2, "127.0.0.1", port, source]
        assert (o["rank"], o["world"], o["local_rank"], o["main"]) == (r, 2, r, r == 0)
        assert o["initialized"] and o["pg_world"] == 2 and o["deepspeed"] == 2
        assert o["exported"] == [str(r), "2", str(r), "2", "127.0.0.1", str(port)]  # what deepspeed reads
        assert o["mean"] == [1.5, 5.0] and o["mean_int"] == 1.5
        assert o["max"] == 7  # not the sum, 10
        assert o["obj"] == {"from": 0} and o["obj1"] == ["x", 1]
        assert o["after"] is False and o["after_rank"] == 0


def test_two_process_torchrun_env(tmp_path):
    port = free_port(30000, 60000)
    envs = [dict(RANK=str(r), WORLD_SIZE="2", LOCAL_RANK=str(r), MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
            for r in range(2)]  # no LOCAL_WORLD_SIZE: inferred from the loopback master
    check_two_ranks(run_workers(tmp_path, envs), "torchrun", port)


def test_two_process_slurm_env(tmp_path):
    port = free_port(10000, 29999)  # reachable as 10000 + SLURM_JOB_ID % 20000
    job_id = 20000 * 4711 + port - 10000
    envs = [dict(SLURM_PROCID=str(r), SLURM_NTASKS="2", SLURM_LOCALID=str(r), SLURM_NODEID="0", SLURM_NNODES="1",
                 SLURM_TASKS_PER_NODE="2", SLURM_JOB_NODELIST="127.0.0.[1-2]", SLURM_JOB_ID=str(job_id))
            for r in range(2)]
    check_two_ranks(run_workers(tmp_path, envs), "slurm", port)


def test_single_processes_side_by_side(tmp_path):
    """Two single-process jobs at once: each gets a world-1 group on its own free port."""
    outs = run_workers(tmp_path, [{}, {}], mains=2)
    for o in outs:
        assert o["env"][:5] == [0, 1, 0, 1, "127.0.0.1"] and o["env"][6] == "single"
        assert o["initialized"] and o["pg_world"] == 1 and o["deepspeed"] == 1
        assert o["exported"] == ["0", "1", "0", "1", "127.0.0.1", str(o["env"][5])]
        assert o["mean"] == [1.0, 0.0] and o["max"] == 7 and o["obj"] == {"from": 0} and o["obj1"] == ["x", 0]
    assert outs[0]["env"][5] != outs[1]["env"][5]
