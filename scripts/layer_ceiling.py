#!/usr/bin/env python3
"""How close to the matrix-multiply peak can the VGG-style CNN's training step get on this machine?

Times each convolution and dense layer of the CNN alone (forward plus both backward products, batch
64, PyTorch on oneDNN, channels-last, the agreed thread count) and the whole training step, and sets
their FLOP rates against the peak matrix-multiply rate measured right before them (scripts/roofline.py's
measurement: a shared VM's speed can change from hour to hour). The layers' own rates bound what any
framework built on the same kernels can reach; the gap between their summed time and the step's is
what the other work (pooling, activations, dropout, the loss, the optimizer) costs.

    python -m scripts.layer_ceiling [--repeats 7] [--inner 10] [--out results/layer_ceiling.json]

The measurement runs in a child process in the `modern` environment (torch), with the same thread
settings as every notebook kernel. The machine must be otherwise idle.
"""
import argparse
import json
import statistics
import sys

from common import BATCHSIZE, envinfo, records
from common.architecture import CNN_INPUT, CNN_KERNEL, CNN_LAYERS
from common.flops import TRAINING_FACTOR, conv_macs
from common.timing import time_runs
from scripts import envspec, roofline

ROOT = envspec.ROOT


def layer_shapes():
    """[(name, kind, in, out, kernel, size of the input map)] of the CNN's layers with weights."""
    size, shapes = CNN_INPUT[1], []
    for layer in CNN_LAYERS:
        if layer[0] == "pool":
            size //= 2
        elif layer[0] == "conv":
            shapes.append((layer[1], "conv", layer[2], layer[3], CNN_KERNEL, size))
        else:
            shapes.append((layer[1], "dense", layer[2], layer[3], None, None))
    return shapes


def median_seconds(fn, repeats, inner):
    """Median seconds per call over `repeats` runs of `inner` calls, after one untimed call (oneDNN
    picks and caches its kernels then)."""
    def run():
        for _ in range(inner):
            fn()
    return statistics.median(time_runs(run, repeats=repeats, warmup=1)) / inner


def measure(repeats, inner):
    import torch
    import torch.nn as nn

    torch.set_num_threads(envinfo.threads())
    fmt = torch.channels_last
    rows = []
    for name, kind, c_in, c_out, kernel, size in layer_shapes():
        if kind == "conv":
            module = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2).to(memory_format=fmt)
            x = torch.randn(BATCHSIZE, c_in, size, size).to(memory_format=fmt)
            flops = 2 * conv_macs(size, size, c_in, c_out, kernel) * TRAINING_FACTOR
        else:
            module = nn.Linear(c_in, c_out)
            x = torch.randn(BATCHSIZE, c_in)
            flops = 2 * c_in * c_out * TRAINING_FACTOR
        x.requires_grad_(True)

        def step():
            module.zero_grad(set_to_none=True)
            x.grad = None
            module(x).sum().backward()

        seconds = median_seconds(step, repeats, inner)
        rows.append({"layer": name, "seconds": seconds, "gflops_per_second": BATCHSIZE * flops / seconds / 1e9})

    model = nn.Sequential(
        nn.Conv2d(3, 50, 3, padding=1), nn.ReLU(),
        nn.Conv2d(50, 50, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Dropout(0.25),
        nn.Conv2d(50, 100, 3, padding=1), nn.ReLU(),
        nn.Conv2d(100, 100, 3, padding=1), nn.MaxPool2d(2), nn.ReLU(), nn.Dropout(0.25),
        nn.Flatten(), nn.Linear(6400, 512), nn.ReLU(), nn.Dropout(0.5), nn.Linear(512, 10),
    ).to(memory_format=fmt)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    xb = torch.randn(BATCHSIZE, *CNN_INPUT).to(memory_format=fmt)
    yb = torch.randint(0, 10, (BATCHSIZE,))
    loss_fn = nn.CrossEntropyLoss()

    def train_step():
        optimizer.zero_grad(set_to_none=True)
        loss_fn(model(xb), yb).backward()
        optimizer.step()

    step_seconds = median_seconds(train_step, repeats, inner)
    step_flops = sum(r["gflops_per_second"] * r["seconds"] for r in rows) * 1e9
    return {"layers": rows, "train_step": {"seconds": step_seconds, "gflops_per_second": step_flops / step_seconds / 1e9},
            "torch": torch.__version__, "thread_settings": envinfo.thread_settings()}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=7, help="timed repetitions (the median is kept)")
    ap.add_argument("--inner", type=int, default=10, help="steps per repetition")
    ap.add_argument("--out", default=str(ROOT / "results" / "layer_ceiling.json"))
    args = ap.parse_args(argv)
    if args.repeats < 1 or args.inner < 1:
        ap.error("--repeats and --inner must be at least 1")

    if envspec.is_child():
        print(json.dumps(measure(args.repeats, args.inner)))
        return 0
    if not envspec.env_python(envspec.load_spec(), "modern").exists():
        sys.exit("the modern environment is not built: python3 -m scripts.setup_env modern")
    peak_run, threads = roofline.measure_in_kernel_env(4096, 7)
    peak = peak_run["peak_gflops"]
    print("peak now: %.1f GFLOP/s (float32 4096 x 4096 matmul, best of 7)" % peak)
    measured, _ = envspec.run_json("scripts.layer_ceiling", ["--repeats", args.repeats, "--inner", args.inner],
                                   "modern")
    rows, step = measured["layers"], measured["train_step"]
    print("%-8s %10s %12s %8s" % ("layer", "ms", "GFLOP/s", "of peak"))
    for r in rows:
        r["fraction_of_peak"] = r["gflops_per_second"] / peak
        print("%-8s %10.2f %12.1f %7.0f%%" % (r["layer"], 1e3 * r["seconds"], r["gflops_per_second"],
                                              100 * r["fraction_of_peak"]))
    layers_seconds = sum(r["seconds"] for r in rows)
    layers_rate = sum(r["gflops_per_second"] * r["seconds"] for r in rows) / layers_seconds
    step["fraction_of_peak"] = step["gflops_per_second"] / peak
    print("%-8s %10.2f %12.1f %7.0f%%" % ("layers", 1e3 * layers_seconds, layers_rate, 100 * layers_rate / peak))
    print("%-8s %10.2f %12.1f %7.0f%%" % ("step", 1e3 * step["seconds"], step["gflops_per_second"],
                                          100 * step["fraction_of_peak"]))
    result = {
        "measured_at": records.now(), "hardware": {"name": envinfo.cpu_model(), "threads": threads}, "peak_gflops": peak,
        "torch": measured["torch"], "batchsize": BATCHSIZE, "layers": rows,
        "layers_together": {"seconds": layers_seconds, "gflops_per_second": layers_rate,
                            "fraction_of_peak": layers_rate / peak},
        "train_step": step, "thread_settings": measured["thread_settings"],
    }
    records.write_json_atomic(args.out, result)
    print("written to %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
