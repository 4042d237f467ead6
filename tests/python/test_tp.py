"""Tensor parallelism across processes: a worker process offloads its 8-head vLLM-like cache
into a shared pool and exits; two processes of another TP size (2 ranks, 4 heads each, each
with its own cache layout and block ids) onboard their head slices at the same time and check
them against the worker's data sliced with numpy / torch. Every process has its own client and
session; the pool is shared by name. Host memory (CPU executor) and CUDA memory (gpu)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import kvshuttle

SCRIPT = Path(__file__).with_name("tp_scenario.py")
WORKER_BLOCKS = [5, 0, 3]
RANK_BLOCKS = {0: [4, 1, 0], 1: [6, 2, 3]}
TIMEOUT_S = 120


def child_env() -> dict[str, str]:
    """This environment, with the children importing kvshuttle (and its stubs) from where this
    process does."""
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p))


def start(argv: list[str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, str(SCRIPT), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=child_env())


def finish(process: subprocess.Popen, what: str) -> dict:
    """Waits for a scenario process; its last stdout line (JSON) once it exited 0."""
    out, err = process.communicate(timeout=TIMEOUT_S)
    assert process.returncode == 0, f"{what} exited {process.returncode}:\n{out}\n{err}"
    return json.loads(out.strip().splitlines()[-1])


def test_tp2_ranks_onboard_their_heads_of_a_tp1_offload(kit) -> None:
    pool_name = f"pytest-tp-{uuid.uuid4().hex[:10]}"
    dtype = "f16" if kit.memory == "host" else "bf16"
    common = ["--target", kit.daemon.target, "--pool", pool_name, "--memory", kit.memory,
              "--dtype", dtype, "--seed", "11", "--blocks", ",".join(map(str, WORKER_BLOCKS))]
    try:
        pool_blocks = finish(start(["worker", *common]), "worker")["pool_blocks"]
        assert len(pool_blocks) == len(WORKER_BLOCKS)
        # The worker is gone: the pool alone holds its data now.
        assert kit.session.pool(pool_name).blocks_in_use == len(WORKER_BLOCKS)

        ranks = {rank: start(["rank", *common, "--rank", str(rank), "--tp", "2",
                              "--pool-blocks", ",".join(map(str, pool_blocks)),
                              "--dst-blocks", ",".join(map(str, blocks))])
                 for rank, blocks in RANK_BLOCKS.items()}  # both run at once
        for rank, process in ranks.items():
            report = finish(process, f"rank {rank}")
            assert report == {"rank": rank, "checked": 3, "failures": []}
    finally:
        try:
            kit.session.pool(pool_name).destroy()
        except kvshuttle.NotFoundError:
            pass
