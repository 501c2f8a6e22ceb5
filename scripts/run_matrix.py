#!/usr/bin/env python3
"""Run notebooks through papermill, each with its environment's kernel, and collect result records.

    python scripts/run_matrix.py --profile cpu                      # everything
    python scripts/run_matrix.py --frameworks PyTorch --tasks cnn rnn --profile smoke
    python scripts/run_matrix.py --list
    python scripts/run_matrix.py --profile full --amp               # mixed precision, where a notebook has it

Executed notebooks and records go to results/<profile>/ (or --out). A notebook whose `ok` record
is already there is skipped (resume) unless --force, or unless the code of its timed steps has
changed since (scripts/stale_records.py); a record from another machine is never replaced without
--force. A failing notebook gets a `failed` record and the others go on; the exit status is
non-zero when anything failed.

--amp sets the notebooks' MIXED_PRECISION parameter (float32 weights, float16 or bfloat16 products, as
each notebook chooses and records); records go to results/<profile>-amp/ and form their own table
column. Notebooks without that parameter (no mixed-precision path yet) are listed and left out.
"""
import argparse
import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import envspec  # noqa: E402
import roofline  # noqa: E402
import stale_records  # noqa: E402

sys.path.insert(0, str(envspec.ROOT))
from common import envinfo, records  # noqa: E402

# papermill's own bookkeeping lines, left out of the streamed output
NOISE = re.compile(r"^(Executing|Ending) Cell \d+-*$|^(Input|Output) Notebook:|^Executing notebook with kernel|^Executing:"
                   r"|^\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption")
TASKS = {"CNN": "cnn", "RNN": "rnn", "Inference": "inference"}
NOTEBOOK_NAME = re.compile(r"^(?P<framework>.+)_(?P<task>CNN|RNN|Inference)$")


def discover(notebooks_dir, spec):
    """[(path, framework prefix, task, env name, README row)] for every notebook in the folder."""
    table = envspec.framework_table(spec)
    found = []
    for path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        m = NOTEBOOK_NAME.match(path.stem)
        if not m:
            raise SystemExit(f"{path.name}: notebook names are <Framework>_<CNN|RNN|Inference>.ipynb")
        prefix = m.group("framework")
        if prefix not in table:
            raise SystemExit(f"{path.name}: framework {prefix!r} is in no environment of environments.toml")
        env, row = table[prefix]
        found.append((path, prefix, TASKS[m.group("task")], env, row))
    return found


def read_record(path):
    import json
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def measured_here(rec):
    """Whether a record's device is this machine's: the same CPU (name, and kind where the record
    names it: envinfo.cpu_id()) and thread count, or one of its GPUs."""
    dev = rec.get("device") or {}
    if not envinfo.same_cpu((rec.get("environment") or {}).get("cpu_id"), envinfo.cpu_id()):
        return False
    if dev.get("kind", "cpu") == "cpu":
        return dev.get("name") == envinfo.cpu_model() and dev.get("threads") in (None, envspec.thread_count())
    return dev.get("name") in [g["name"] for g in envinfo.nvidia_gpus()]


def resume_decision(record_path, notebooks_dir):
    """(skip, why) for a notebook whose output folder may hold a record: an `ok` record is kept,
    unless the code of its notebook's timed steps has changed since (then it runs again); one
    from another machine is kept in any case (replacing it would drop that machine's figure)."""
    rec = read_record(record_path)
    if not rec or rec.get("status") != "ok":
        return False, None
    dev = rec.get("device") or {}
    if not measured_here(rec):
        return True, ("its record was measured on another machine (%s, %s threads): kept; --out for this "
                      "machine's records, or --force to replace it" % (dev.get("name"), dev.get("threads")))
    steps = stale_records.record_changes(record_path, notebooks_dir)
    if steps:
        return False, "running again: %s changed since its record" % ", ".join(
            stale_records.HEADINGS.get(step, step) for step in steps)
    return True, "done already (use --force to re-run)"


def has_parameter(nb_path, name):
    """Whether the notebook's `parameters` cell assigns `name`."""
    import json
    with open(nb_path) as f:
        cells = json.load(f)["cells"]
    pattern = re.compile(r"^%s\s*=" % re.escape(name), re.M)
    return any("parameters" in c.get("metadata", {}).get("tags", []) and pattern.search("".join(c["source"]))
               for c in cells)


def papermill_command(nb, out_nb, kernel, profile, record_dir, notebooks_dir, amp=False):
    return ([sys.executable, "-m", "papermill", str(nb), str(out_nb), "-k", kernel,
             "-p", "PROFILE", profile, "-p", "RECORD_DIR", str(record_dir)]
            + (["-p", "MIXED_PRECISION", "True"] if amp else [])
            + ["--cwd", str(notebooks_dir), "--log-output", "--no-progress-bar"])


def run_one(item, args, spec, env):
    path, prefix, task, env_name, row = item
    out = Path(args.out)
    out_nb, record_path = out / path.name, out / (path.stem + ".json")
    python = envspec.env_python(spec, env_name)
    if not python.exists():
        error = (f"environment {env_name!r} is not built: run "
                 f"`python3 scripts/setup_env.py {env_name}`")
        return write_failure(path.stem, row, task, args.profile, out, error)
    if record_path.exists():
        record_path.unlink()  # a stale record must not pass for this run's
    rate_before = machine_rate()
    if args.profile != "smoke":
        warning = slow_machine_warning(rate_before)
        if warning:
            print("    " + warning, flush=True)
    start = time.time()
    cmd = papermill_command(path, out_nb, envspec.kernel_name(env_name), args.profile,
                            out.resolve(), path.parent.resolve(), args.amp)
    log_tail, timed_out = [], threading.Event()
    # Its own session, so that a kill also takes the kernel papermill started.
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)

    def kill():
        timed_out.set()
        os.killpg(proc.pid, signal.SIGKILL)

    watchdog = threading.Timer(args.timeout, kill)
    watchdog.start()
    try:
        for line in proc.stdout:  # stream the notebook's own progress lines
            if not args.quiet and line.strip() and not NOISE.match(line.strip()):
                print("    " + line.rstrip(), flush=True)
            log_tail = (log_tail + [line.rstrip()])[-30:]
        proc.wait()
    finally:
        watchdog.cancel()
        if proc.poll() is None:  # interrupted (Ctrl-C): do not leave the kernel behind
            os.killpg(proc.pid, signal.SIGKILL)
    if timed_out.is_set():
        return write_failure(path.stem, row, task, args.profile, out,
                             f"timed out after {args.timeout:.0f} s")
    if proc.returncode != 0:
        return write_failure(path.stem, row, task, args.profile, out,
                             "papermill failed:\n" + "\n".join(log_tail))
    if (read_record(record_path) or {}).get("status") != "ok":
        return write_failure(path.stem, row, task, args.profile, out,
                             "the notebook ran but wrote no ok record")
    add_harness_time(record_path, time.time() - start, (rate_before, machine_rate()))
    return "ok"


def machine_rate():
    """The machine's float32 matrix-multiply rate in GFLOP/s right now (roofline.py's measurement at
    4096, best of 3, about 2 s; at 2048 OpenBLAS's rate swung by 2x on its own), or None: taken
    before and after each notebook, it shows in the record whether the machine ran at its usual
    speed (a shared VM may not)."""
    try:
        return round(roofline.measure_in_kernel_env(4096, 3)[0]["peak_gflops"], 1)
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


def slow_machine_warning(rate, roofline_file=envspec.ROOT / "results" / "roofline.json", below=0.7):
    """A warning when the matmul rate just measured is under `below` times the peak stored for this CPU
    and thread count in roofline.json (a shared VM in a slow spell: its timings would be too)."""
    import json
    if not rate or not Path(roofline_file).exists():
        return None
    entry = roofline.entry_for(json.loads(Path(roofline_file).read_text()), envinfo.cpu_model(),
                               envspec.thread_count(), envinfo.cpu_id())
    if not entry or rate >= below * entry["peak_gflops"]:
        return None
    peak = entry["peak_gflops"]
    return ("warning: the machine multiplies at %.0f GFLOP/s now, %.0f%% of the %.0f GFLOP/s measured for "
            "this CPU (%s): this run's timings will be slow too" % (rate, 100 * rate / peak, peak,
                                                                   Path(roofline_file).name))


TIMED_METRICS = ("train_seconds", "test_seconds", "inference_seconds")


def add_harness_time(record_path, wall_seconds, machine_gflops=(None, None)):
    """Put into the record how long the whole notebook took through papermill, how much of it
    was outside the timed blocks (kernel start, imports, data loading, model building, warm-up),
    and the machine's matrix-multiply rate measured just before and after."""
    import json
    with open(record_path) as f:
        rec = json.load(f)
    m = rec["metrics"]
    timed = sum(m.get(k) or 0.0 for k in TIMED_METRICS)
    if m.get("inference_passes"):  # inference_seconds is then the median of several timed passes
        timed += sum(m["inference_passes"]["seconds"]) - m["inference_seconds"]
    rec["harness"] = {"notebook_wall_seconds": round(wall_seconds, 2), "timed_seconds": round(timed, 2),
                      "untimed_seconds": round(wall_seconds - timed, 2),
                      "machine_gflops_before_after": list(machine_gflops)}
    records.write_json_atomic(str(record_path), rec)


def write_failure(notebook, framework, task, profile, out, error):
    run = records.Run(notebook, framework, task, profile, str(out))
    rec = run.record("failed", error=error)
    records.write_json_atomic(run.path, rec)
    print("    " + error.strip().splitlines()[-1], flush=True)
    return "failed"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    ap.add_argument("--frameworks", nargs="*", help="notebook prefixes, e.g. PyTorch Keras_TF")
    ap.add_argument("--tasks", nargs="*", choices=sorted(TASKS.values()))
    ap.add_argument("--notebooks", default=str(envspec.ROOT / "notebooks"), help="notebook folder")
    ap.add_argument("--out", help="output folder (default: results/<profile>)")
    ap.add_argument("--force", action="store_true", help="re-run notebooks that already have an ok record")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per notebook")
    ap.add_argument("--quiet", action="store_true", help="do not stream notebook output")
    ap.add_argument("--amp", action="store_true",
                    help="mixed precision (MIXED_PRECISION=True) in the notebooks that have it")
    ap.add_argument("--list", action="store_true", help="list the selected notebooks and stop")
    args = ap.parse_args(argv)
    args.out = args.out or str(envspec.ROOT / "results" / (args.profile + ("-amp" if args.amp else "")))

    spec = envspec.load_spec()
    items = discover(args.notebooks, spec)
    unknown = set(args.frameworks or []) - {i[1] for i in items}
    if unknown:
        ap.error(f"no notebooks for {sorted(unknown)}; known: {sorted({i[1] for i in items})}")
    items = [i for i in items if (not args.frameworks or i[1] in args.frameworks)
             and (not args.tasks or i[2] in args.tasks)]
    if args.amp:
        without = [i[0].stem for i in items if not has_parameter(i[0], "MIXED_PRECISION")]
        if without:
            print("No mixed-precision path (left out): " + ", ".join(without), flush=True)
        items = [i for i in items if i[0].stem not in without]
    if args.list:
        for path, prefix, task, env_name, row in items:
            print(f"{path.name:32s} {task:10s} env={env_name:8s} row={row}")
        return 0

    env = dict(os.environ, PYTHONUNBUFFERED="1",
               JUPYTER_PATH=os.pathsep.join(envspec.jupyter_path(spec)),
               PYTHONPATH=os.pathsep.join([str(envspec.ROOT)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)).rstrip(os.pathsep))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    results, t0 = {}, time.time()
    for n, item in enumerate(items, 1):
        name = item[0].stem
        skip, why = (False, None) if args.force else resume_decision(Path(args.out) / (name + ".json"),
                                                                      args.notebooks)
        if skip:
            print(f"[{n}/{len(items)}] {name}: {why}", flush=True)
            results[name] = "skipped"
            continue
        print(f"[{n}/{len(items)}] {name} ({args.profile}, kernel {envspec.kernel_name(item[3])})"
              + (f": {why}" if why else ""), flush=True)
        start = time.time()
        results[name] = run_one(item, args, spec, env)
        print(f"[{n}/{len(items)}] {name}: {results[name]} in {time.time() - start:.0f}s", flush=True)
    failed = sorted(k for k, v in results.items() if v == "failed")
    print(f"{len(results)} notebooks in {time.time() - t0:.0f}s: "
          f"{sum(v == 'ok' for v in results.values())} ok, "
          f"{sum(v == 'skipped' for v in results.values())} skipped, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
