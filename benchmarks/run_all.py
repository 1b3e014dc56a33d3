"""Runs every benchmark of issue 5 in turn and reports the wall time of each.

The whole set is sized to finish within 10 minutes on the 2-core CPU:

    reallocation.py all      targets 2-4 and the per-stage breakdown
    train_step.py            target 1 (LeNet-300-100 and WRN-28-2)
    memory.py all            target 5 (peak RSS, mask dtype)
    export_size.py           file sizes of exported models

Each runs as its own process (so one crash or hang does not stop the
others, and each starts with a fresh TensorFlow runtime), with a timeout.
Output streams through as it comes; a summary of wall times follows.

Usage:

    TF_CPP_MIN_LOG_LEVEL=2 python benchmarks/run_all.py [--only NAME ...]
"""

import argparse
import os
import subprocess
import sys
import time

_HERE = os.path.dirname(os.path.abspath(__file__))

# name: (arguments, timeout in seconds)
_BENCHMARKS = {
    "reallocation": (["reallocation.py", "all", "--repeats", "5",
                      "--sizes", "1", "2", "5", "10", "25"], 330),
    "train_step": (["train_step.py", "--repeats", "7", "--lenet-steps", "150",
                    "--wrn-steps", "3"], 270),
    "memory": (["memory.py", "all", "--repeats", "5"], 200),
    "export_size": (["export_size.py"], 120),
}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", nargs="+", choices=sorted(_BENCHMARKS))
    args = parser.parse_args()
    env = dict(os.environ)
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    walls = []
    start = time.perf_counter()
    for name, (argv, timeout) in _BENCHMARKS.items():
        if args.only and name not in args.only:
            continue
        # Other processes share the 2 cores; the load says how much.
        load = os.getloadavg()[0]
        print(f"\n# {name}: python benchmarks/{' '.join(argv)} "
              f"(load average {load:.2f})", flush=True)
        t0 = time.perf_counter()
        try:
            code = subprocess.run([sys.executable, os.path.join(_HERE, argv[0])]
                                  + argv[1:], env=env, timeout=timeout).returncode
            status = "ok" if code == 0 else f"exit code {code}"
        except subprocess.TimeoutExpired:
            status = f"timed out after {timeout} s"
        walls.append((name, time.perf_counter() - t0, status, load))
    total = time.perf_counter() - start
    print("\n# wall time per benchmark")
    for name, seconds, status, load in walls:
        print(f"{name:<14} {seconds:7.1f} s  {status}; load average at start "
              f"{load:.2f}")
    print(f"{'total':<14} {total:7.1f} s  (budget 600 s)")


if __name__ == "__main__":
    main()
