"""MultiWorkerMirroredStrategy with two real worker processes on localhost."""

import json
import os
import socket
import subprocess
import sys

import numpy as np

JOB = os.path.join(os.path.dirname(__file__), "multi_worker_job.py")
TIMEOUT_SECONDS = 240


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def test_two_workers_reallocate_in_lockstep(tmp_path):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
    processes, outputs = [], []
    try:
        for index in range(2):
            output = tmp_path / f"worker{index}.npz"
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
            log = open(tmp_path / f"worker{index}.log", "w")
            processes.append(subprocess.Popen(
                [sys.executable, JOB, str(output)], env=env, stdout=log,
                stderr=subprocess.STDOUT))
            outputs.append(output)
        for index, process in enumerate(processes):
            code = process.wait(timeout=TIMEOUT_SECONDS)
            log = (tmp_path / f"worker{index}.log").read_text()[-3000:]
            assert code == 0, f"worker {index} failed:\n{log}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()

    first, second = (np.load(path) for path in outputs)
    assert int(first["num_reallocations"]) == 20 // 4
    assert first["num_active_before"] == first["num_active_after"]
    assert float(first["threshold"]) == float(second["threshold"])
    assert sorted(first.files) == sorted(second.files)
    masks = [name for name in first.files if name.startswith("mask_")]
    assert masks
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)
