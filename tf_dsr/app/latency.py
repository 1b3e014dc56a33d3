"""Interleaved latency measurement of TFLite models (and any callable).

`tf-dsr train --export-tflite` and `benchmarks/inference.py` both compare
a sparse model's latency with its dense architecture's. On a shared
machine the load changes from second to second, so the two are timed in
interleaved rounds: every round runs a chunk of calls of each model in
turn, the latency is the median over rounds of the per-call time, and
the speed-up the median over rounds of the paired ratio (same round).
"""

import statistics
import time
import warnings

import numpy as np
import tensorflow as tf


class TFLiteRunner:
    """Calls a TFLite flatbuffer's interpreter on fixed random inputs.

    Args:
        flatbuffer: bytes, a TFLite model with one float input.
        batch: int, the batch size the input is resized to.
        num_threads: int. Defaults to 1.
    """

    def __init__(self, flatbuffer, batch=1, num_threads=1):
        with warnings.catch_warnings():
            # tf.lite.Interpreter warns that it moves to ai_edge_litert.
            warnings.simplefilter("ignore")
            self.interpreter = tf.lite.Interpreter(
                model_content=flatbuffer, num_threads=num_threads)
        detail = self.interpreter.get_input_details()[0]
        shape = (batch,) + tuple(int(d) for d in detail["shape"][1:])
        self.interpreter.resize_tensor_input(detail["index"], shape)
        self.interpreter.allocate_tensors()
        x = np.random.default_rng(0).standard_normal(shape).astype("float32")
        self.interpreter.set_tensor(detail["index"], x)

    def __call__(self):
        self.interpreter.invoke()


def _calls_per_chunk(run, chunk_seconds):
    for _ in range(3):
        run()  # warm up: allocation, tracing, caches
    start = time.perf_counter()
    run()
    once = max(time.perf_counter() - start, 1e-7)
    return max(1, int(chunk_seconds / once))


def interleaved_times(runners, rounds=9, chunk_seconds=0.02):
    """Times each runner in interleaved rounds.

    Args:
        runners: dict `key -> callable()` (one inference each call).
        rounds: int, rounds of one chunk per runner.
        chunk_seconds: float, about how long each chunk takes.

    Returns:
        dict `key -> [seconds per call, one per round]`.
    """
    chunks = {key: _calls_per_chunk(run, chunk_seconds) for key, run in runners.items()}
    times = {key: [] for key in runners}
    for _ in range(rounds):
        for key, run in runners.items():
            n = chunks[key]
            start = time.perf_counter()
            for _ in range(n):
                run()
            times[key].append((time.perf_counter() - start) / n)
    return times


def median_and_speedup(times, reference):
    """`(median seconds per call, median paired ratio reference / times)`."""
    return (statistics.median(times),
            statistics.median(r / t for r, t in zip(reference, times)))
