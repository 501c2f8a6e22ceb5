#!/usr/bin/env python3
"""Measure this machine's peak float32 matrix-multiply rate, the roof the tables compare against.

    python scripts/roofline.py [--size 4096] [--repeats 7] [--out results/roofline.json]

Multiplies two large square float32 matrices with numpy's BLAS, in a child process started with
the same thread settings as every notebook kernel ([threads] in environments.toml), and records
the best and median rate in GFLOP/s (2 n^3 FLOPs per product) for this CPU and thread count.
The machine must be otherwise idle. make_tables.py divides each CNN and inference result's
achieved rate (FLOPs per image from common/flops.py) by this peak.
"""
import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envspec  # noqa: E402

sys.path.insert(0, str(envspec.ROOT))
from common import envinfo  # noqa: E402
from common.timing import time_runs  # noqa: E402
from common.records import now, write_json_atomic  # noqa: E402


def measure(size, repeats):
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    # one untimed product first: thread pool start-up, page faults
    times = sorted(time_runs(lambda: np.matmul(a, b, out=c), repeats=repeats, warmup=1))
    flops = 2.0 * size ** 3
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return {"peak_gflops": flops / times[0] / 1e9, "median_gflops": flops / times[len(times) // 2] / 1e9,
            "size": size, "repeats": repeats, "numpy": np.__version__,
            "blas": "%s %s" % (blas.get("name", "?"), blas.get("version", "")),
            "thread_settings": envinfo.thread_settings()}


def hardware(threads):
    gpus = envinfo.nvidia_gpus()
    return {"kind": "cpu", "name": envinfo.cpu_model(), "threads": threads, "cpu_id": envinfo.cpu_id(),
            "gpus": [g["name"] for g in gpus]}


def entry_for(data, name, threads, cpu_id=None):
    """The roofline file's entry (loaded as `data`) for this CPU name, thread count and cpu_id
    (envinfo.cpu_id(): one model name may cover CPUs of different generations), or None. An entry
    of the same CPU kind comes before one measured without a cpu_id."""
    same = [m for m in data.get("machines", [])
            if (m["hardware"]["name"], m["hardware"]["threads"]) == (name, threads)
            and envinfo.same_cpu(m["hardware"].get("cpu_id"), cpu_id)]
    return next((m for m in same if m["hardware"].get("cpu_id")), same[0] if same else None)


def update(path, entry):
    """Keep one entry per (CPU, threads): a new measurement replaces the entry it matches."""
    data = json.loads(path.read_text()) if path.exists() else {"machines": []}
    hw = entry["hardware"]
    old = entry_for(data, hw["name"], hw["threads"], hw.get("cpu_id"))
    data["machines"] = [m for m in data["machines"] if m is not old] + [entry]
    write_json_atomic(str(path), data)


def measure_in_kernel_env(size, repeats):
    """measure() in a child process with the notebook kernels' thread settings: (result, threads)."""
    return envspec.run_json(__file__, ["--size", size, "--repeats", repeats], "tools", python=sys.executable)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--out", default=str(envspec.ROOT / "results" / "roofline.json"))
    args = ap.parse_args(argv)
    if args.size < 256 or args.repeats < 1:
        ap.error("--size must be at least 256 and --repeats at least 1")
    if envspec.is_child():
        print(json.dumps(measure(args.size, args.repeats)))
        return 0
    result, threads = measure_in_kernel_env(args.size, args.repeats)
    entry = {"hardware": hardware(threads), "measured_at": now(), **result}
    update(Path(args.out), entry)
    print("%s, %d threads: peak %.1f GFLOP/s (median %.1f) with %s x %s float32 matmul, %s" % (
        entry["hardware"]["name"], entry["hardware"]["threads"], entry["peak_gflops"],
        entry["median_gflops"], args.size, args.size, entry["blas"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
