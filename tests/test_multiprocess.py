"""Two local JAX processes (gloo collectives on CPU) train data-parallel like one process."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from opacity_jax import distributed

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT_S = 240      # generous for a loaded 2-core machine; a hang fails instead of blocking CI


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_single_process(tmp_path):
    addr = f"127.0.0.1:{_free_port()}"
    # One CPU device per process, so the 'data' axis (and the gradient all-reduce) spans the
    # two processes; a forced device count inherited from the caller would keep it local.
    env = dict(os.environ, PYTHONPATH=str(ROOT), JAX_PLATFORMS="cpu", XLA_FLAGS="",
               JAX_CPU_COLLECTIVES_IMPLEMENTATION="gloo")
    procs = [subprocess.Popen(
        [sys.executable, str(ROOT / "bin" / "multihost_check"), f"--coordinator_address={addr}",
         "--num_processes=2", f"--process_id={i}", f"--timeout_s={TIMEOUT_S}",
         f"--output_dir={tmp_path}"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for i in range(2)]
    # The single-process reference runs here while the two processes start up.
    ref = distributed.data_parallel_check(sharded=False)
    deadline = time.monotonic() + TIMEOUT_S
    logs = []
    try:
        for p in procs:
            logs.append(p.communicate(timeout=max(1.0, deadline - time.monotonic()))[0])
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    for i, (p, log) in enumerate(zip(procs, logs)):
        assert p.returncode == 0, f"process {i} exited {p.returncode}:\n{log[-3000:]}"
    outs = [json.loads((tmp_path / f"process_{i}.json").read_text()) for i in range(2)]
    for i, o in enumerate(outs):
        assert (o["process_index"], o["process_count"]) == (i, 2)
        assert o["local_devices"] == 1 and o["global_devices"] == 2
        assert o["mesh"] == {"entity": 1, "data": 2}
        assert len(o["params"]) == len(ref["params"])
        for got, want in zip(o["params"], ref["params"]):
            np.testing.assert_allclose(np.asarray(got, np.float32), want, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(o["best_val"], ref["best_val"], rtol=1e-5)
    # Each process holds the same replicated result.
    assert outs[0]["params"] == outs[1]["params"]
    # The updates did something: with no-op steps the full-epoch mean loss would repeat exactly.
    assert np.all(np.abs(ref["train_loss"][1] - ref["train_loss"][0]) > 1e-3 * ref["train_loss"][0])
    np.testing.assert_allclose(outs[0]["train_loss"], ref["train_loss"], rtol=1e-5)
