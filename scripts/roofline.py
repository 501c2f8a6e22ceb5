#!/usr/bin/env python3
"""Measure this machine's float32 matrix-multiply rate, the roof the tables compare against.

    python -m scripts.roofline [--size 4096] [--repeats 7] [--out results/roofline.json]

Multiplies two square float32 matrices `repeats` times with numpy's BLAS (OpenBLAS), in a child
process started with the same thread settings as every notebook kernel ([threads] in
environments.toml, OPENBLAS_CORETYPE included), and records for this CPU and thread count the
best (peak_gflops), median and worst rate in GFLOP/s (2 n^3 FLOPs per product). The machine must be
otherwise idle. make_tables.py divides a CNN or inference result's achieved rate (FLOPs per image
from common/flops.py) by this stored peak only where the runner did not measure the machine's rate
beside the run: rate_now(), the median of several shorter products, before and after each notebook.
"""
import argparse
import json
import math
import statistics
import sys
from pathlib import Path

from common import envinfo
from common.records import now, write_json_atomic
from common.timing import time_runs
from scripts import envspec


# The runner's reading of the machine's speed just before and after each notebook (rate_now): the
# median of 7 products of 3072 x 3072 matrices (about 0.3 s each at 200 GFLOP/s, 2.5 s in all), so
# that one product slowed or sped up by a neighbour on a shared VM does not decide it (the best of
# 3 at 4096 did); not smaller, since at 2048 a single product's rate swung by 2x on its own.
RATE_SIZE, RATE_REPEATS = 3072, 7


def summarize(seconds, size):
    """The rates (GFLOP/s) of products of two size x size matrices that took `seconds` each: the
    best (peak_gflops), the median and the worst."""
    rates = sorted(2.0 * size ** 3 / t / 1e9 for t in seconds)
    return {"peak_gflops": rates[-1], "median_gflops": statistics.median(rates), "min_gflops": rates[0],
            "size": size, "repeats": len(rates)}


def measure(size, repeats):
    import numpy as np
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    c = np.empty((size, size), np.float32)
    # one untimed product first: thread pool start-up, page faults
    seconds = time_runs(lambda: np.matmul(a, b, out=c), repeats=repeats, warmup=1)
    blas = np.show_config(mode="dicts").get("Build Dependencies", {}).get("blas", {})
    return dict(summarize(seconds, size), numpy=np.__version__,
                blas="%s %s" % (blas.get("name", "?"), blas.get("version", "")),
                thread_settings=envinfo.thread_settings())


def hardware(threads):
    gpus = envinfo.nvidia_gpus()
    return {"kind": "cpu", "name": envinfo.cpu_model(), "threads": threads, "cpu_id": envinfo.cpu_id(),
            "gpus": [g["name"] for g in gpus]}


def entry_for(data, name, threads, cpu_id=None):
    """The roofline file's entry (loaded as `data`) for this CPU name, thread count and cpu_id
    (envinfo.cpu_id(): one model name may cover CPUs of different generations), or None. A
    reading with a cpu_id takes only an entry of the same CPU kind, one without (older records)
    only an entry measured without one: an entry of unknown kind may be another generation's."""
    return next((m for m in data.get("machines", [])
                 if (m["hardware"]["name"], m["hardware"]["threads"]) == (name, threads)
                 and envinfo.identified(m["hardware"].get("cpu_id")) == envinfo.identified(cpu_id)
                 and envinfo.same_cpu(m["hardware"].get("cpu_id"), cpu_id)), None)


class RooflineError(ValueError):
    """A roofline file that cannot be used; str() is "<path>: <reason>"."""

    def __init__(self, reason, path):
        ValueError.__init__(self, "%s: %s" % (path, reason))
        self.reason, self.path = reason, path


def _positive(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


def load(path):
    """The roofline file at `path`, checked: {"machines": [entry, ...]}, each entry with its
    hardware's name and thread count and a positive peak_gflops; {"machines": []} when there is no
    file. RooflineError naming the file and the cause when it cannot be read, is not JSON (cut
    short) or does not hold that."""
    path = Path(path)
    if not path.exists():
        return {"machines": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise RooflineError("cannot be read (%s)" % (getattr(e, "strerror", None) or e), path)
    except ValueError as e:
        raise RooflineError("invalid JSON (%s)" % e, path)
    if not isinstance(data, dict) or not isinstance(data.get("machines"), list):
        raise RooflineError("not an object with a list of machines", path)
    for i, m in enumerate(data["machines"]):
        hw = m.get("hardware") if isinstance(m, dict) else None
        if not (isinstance(hw, dict) and isinstance(hw.get("name"), str) and isinstance(hw.get("threads"), int)):
            raise RooflineError("machines[%d] lacks hardware.name or hardware.threads" % i, path)
        for key in ("peak_gflops", "median_gflops", "min_gflops"):
            if (key == "peak_gflops" or key in m) and not _positive(m.get(key)):
                raise RooflineError("machines[%d].%s is %r, not a positive number" % (i, key, m.get(key)), path)
    return data


def update(path, entry):
    """Keep one entry per (CPU, threads): a new measurement replaces the entry it matches."""
    data = load(path)
    hw = entry["hardware"]
    old = entry_for(data, hw["name"], hw["threads"], hw.get("cpu_id"))
    data["machines"] = [m for m in data["machines"] if m is not old] + [entry]
    write_json_atomic(str(path), data)


def measure_in_kernel_env(size, repeats):
    """measure() in a child process with the notebook kernels' thread settings: (result, threads)."""
    return envspec.run_json("scripts.roofline", ["--size", size, "--repeats", repeats], "tools", python=sys.executable)


def rate_now(size=RATE_SIZE, repeats=RATE_REPEATS):
    """The machine's float32 matrix-multiply rate right now, as the runner takes it before and
    after each notebook: measure()'s result in the kernels' thread settings, whose median_gflops
    is the reading (min_gflops and peak_gflops its spread)."""
    return measure_in_kernel_env(size, repeats)[0]


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
    try:
        load(args.out)  # before measuring: a damaged file is not overwritten (it holds other machines)
    except RooflineError as e:
        sys.exit("%s; fix or remove it" % e)
    result, threads = measure_in_kernel_env(args.size, args.repeats)
    entry = {"hardware": hardware(threads), "measured_at": now(), **result}
    update(Path(args.out), entry)
    print("%s, %d threads: peak %.1f GFLOP/s (median %.1f, min %.1f of %d) with %s x %s float32 matmul, %s" % (
        entry["hardware"]["name"], entry["hardware"]["threads"], entry["peak_gflops"], entry["median_gflops"],
        entry["min_gflops"], args.repeats, args.size, args.size, entry["blas"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
