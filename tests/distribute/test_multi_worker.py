"""examples/multi_worker.py with two real worker processes on localhost."""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import tensorflow as tf

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
EXAMPLE = os.path.join(REPO, "examples", "multi_worker.py")
TIMEOUT_SECONDS = 240
# 1,438 training digits in global batches of 50: 28 steps. With
# --stop_fraction=0.9 of one epoch, reallocations stop at step 28, so they
# run at steps 4, 8, ..., 24.
STEPS, PERIOD = 28, 4
NUM_REALLOCATIONS = 6
SPARSITY = 0.9


def _free_ports(count):
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def _run_workers(tmp_path, num_workers=2):
    workers = [f"127.0.0.1:{port}" for port in _free_ports(num_workers)]
    processes, logs = [], []
    try:
        for index in range(num_workers):
            env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", TF_CONFIG=json.dumps(
                {"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}}))
            logs.append(tmp_path / f"worker{index}.log")
            with open(logs[-1], "w") as log:
                processes.append(subprocess.Popen(
                    [sys.executable, EXAMPLE, "--epochs=1", f"--period={PERIOD}",
                     f"--sparsity={SPARSITY}", f"--output_dir={tmp_path}"],
                    env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT))
        for index, process in enumerate(processes):
            code = process.wait(timeout=TIMEOUT_SECONDS)
            assert code == 0, f"worker {index} failed:\n{logs[index].read_text()[-3000:]}"
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return [np.load(tmp_path / f"worker{index}.npz") for index in range(num_workers)], logs


def test_two_workers_agree_on_every_variable(tmp_path):
    (first, second), logs = _run_workers(tmp_path)
    assert sorted(first.files) == sorted(second.files)
    # Every kind of variable a checkpoint or SavedModel holds is compared.
    for kind in ("kernel", "mask", "bias", "gamma", "moving_mean", "moving_variance",
                 "momentum", "dsr_state/threshold", "dsr_state/num_reallocations"):
        assert any(kind in name for name in first.files), kind
    for name in first.files:
        np.testing.assert_array_equal(first[name], second[name], err_msg=name)

    assert int(first["sgd/iteration"]) == STEPS
    assert int(first["dsr_state/num_reallocations"]) == NUM_REALLOCATIONS
    masks = [name for name in first.files if name.endswith("/mask")]
    sizes = [first[name].size for name in masks]
    counts = [int(first[name].sum()) for name in masks]
    # DSR conserved the total and moved weights between layers.
    assert sum(counts) == sum(round((1 - SPARSITY) * size) for size in sizes)
    assert counts != [round((1 - SPARSITY) * size) for size in sizes]
    # BatchNorm's moving statistics were trained (and agree, above).
    means = [name for name in first.files if name.endswith("moving_mean")]
    assert means and all(np.any(first[name] != 0) for name in means)
    assert "worker 0 of 2: 28 steps, 6 reallocations" in logs[0].read_text()

    # The chief's SavedModel holds the masked kernels every worker has.
    loaded = tf.saved_model.load(str(tmp_path / "saved_model"))
    exported = {v.name.split(":")[0]: v.numpy() for v in loaded.variables}
    for name in masks:
        # A layer's masks live in a child of the layer, its mask set:
        # `lenet_300_100/dense_300/dense_300_masks/mask`.
        layer_path = name.rsplit("/", 2)[0]
        layer = layer_path.split("/")[1]
        kernel = first[f"{layer_path}/kernel"] * first[name]
        matches = [v for key, v in exported.items() if key.endswith(f"{layer}/kernel")]
        assert len(matches) == 1, (layer, sorted(exported))
        np.testing.assert_array_equal(matches[0], kernel)
