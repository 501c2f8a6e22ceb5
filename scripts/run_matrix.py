#!/usr/bin/env python3
"""Run notebooks through papermill, each with its environment's kernel, and collect result records.

    python -m scripts.run_matrix --profile cpu                      # everything
    python -m scripts.run_matrix --frameworks PyTorch --tasks cnn rnn --profile smoke
    python -m scripts.run_matrix --list
    python -m scripts.run_matrix --profile full --amp               # mixed precision, where a notebook has it

Records belong to the machine that made them. Executed notebooks and records go to
results/<profile>/<machine>/ (--results for another results folder; --out for any other folder),
<machine> being this machine's key (common.envinfo.machine_key: on the CPU, the CPU's model name,
family, model and thread count, e.g. intel-xeon-processor-6-167-2t; on a GPU, its name and the GPU
count, e.g. nvidia-h200-1x), so every machine resumes in its own folder and gets its own table
column. An --out that is another machine's folder (a machine folder of the results tree under
another key, or one holding a record measured elsewhere) is refused without --force.

The device is chosen once per run: a GPU where nvidia-smi lists one, else the CPU (ROSETTA_DEVICE=
cpu|gpu forces either). Each notebook runs with its framework's environment and kernel for that
device (scripts/envspec.py: framework_env; on a GPU, e.g. rosetta-torch-gpu for PyTorch). Where
that GPU environment's kernels cannot run on this GPU (its compute capability or driver:
envspec.gpu_skip_reason), the notebook gets a `skipped` record with the reason in `error` and the
GPU in `device`, and does not run; an ok record already there is kept. On resume a skipped record
stands while its reason still holds (the reason is checked again every time: a newer environment
spec may run it). --list shows each notebook's environment, kernel and any reason to skip it.

A notebook whose `ok` record is already there is skipped (resume) unless --force, or unless the
code of its timed steps has changed since (scripts/stale_records.py); a record from another machine
is never replaced without --force. A record that does not pass common.records.load_record is
reported ("FILE: reason") and its notebook runs again. A failing notebook gets a `failed` record
and the others go on; the exit status is non-zero when anything failed.

A previous result is never lost. Each notebook runs in a staging folder, <out>/.staging-<name>/
(papermill's executed notebook, and the record: the notebook's RECORD_DIR points there). Only a
complete run whose record is ok is moved into place: the executed notebook first, the record
last, so that a reader who sees the new record also sees its notebook (Ctrl-C and the signals
below are held back between the two moves; a runner killed between them has its record moved in
at the next start). A failure beside a kept ok record goes to <name>.failed.json (and its
executed notebook to <name>.failed.ipynb), which a later ok run removes; without an ok record it
is written as <name>.json. The next start removes what an interrupted run left in staging.

Stopping. SIGTERM and SIGHUP end the runner like Ctrl-C (unless ignored when it started, as under
nohup): the running notebook is killed, nothing is recorded for it, its previous result stays, and
the exit status is 128 + the signal's number. Each papermill runs under a guard process (this
script with --guard; Linux: prctl and /proc), started in its own session, that the kernel cannot
escape: the guard is a child subreaper (the kernel, which jupyter_client starts in a session of its
own, stays its descendant even when papermill dies) and gets SIGTERM when the runner dies, even by
SIGKILL (PR_SET_PDEATHSIG); told to stop, or once papermill exits, it SIGKILLs every process below
it. Papermill itself dies with the guard (PR_SET_PDEATHSIG, SIGKILL). One runner per output folder:
<out>/.runner.lock (flock, so a crash releases it) names the runner's pid, host and start; a second
runner on the folder exits at once, and a lock left by a runner that ended without releasing it is
taken over with a line saying so. The guard holds the lock too, so a runner started while a killed
runner's processes are being stopped waits for that (up to 15 s).

An environment that is not built, or whose kernel is not registered, is a failed record naming the
set-up command (`python3 -m scripts.setup_env --device gpu torch-gpu` for a GPU one), before
papermill starts.

Threads (the thread rule, the same for every framework): a run grants every notebook the machine's
threads (ROSETTA_THREADS, else the CPU's), and a notebook may use fewer where that is faster for its
framework. On the CPU, each notebook first runs its probe profile (common.params: real data, 20
training batches or 2 batches of images) with all threads and with FEWER_THREADS_TRIED, through a
copy of the kernel whose thread variables say so, and then runs with the count whose probe step
was fastest (all threads unless fewer were PROBE_MARGIN faster); its record names the count
(device.threads) and the probe's times (harness.thread_probe). An ok record without a probe where
the rule asks for one runs again. --threads N... probes other counts. The smoke profile probes none.

--tf32 sets the TF32 parameter of the notebooks that have one (common.precision.TF32_NOTEBOOKS):
TF32 matrix products and convolutions on an NVIDIA GPU, through each framework's own switch, where
by default every run computes in strict float32; records go to results/<profile>-tf32/<machine>/
(after -amp when both are given), and it refuses to run on the CPU.

--amp sets the notebooks' MIXED_PRECISION parameter (float32 weights, float16 or bfloat16 products, as
each notebook chooses and records); records go to results/<profile>-amp/<machine>/ and form their
own table column. Every notebook declares MIXED_PRECISION; those not in
common.precision.MIXED_PRECISION_NOTEBOOKS (the notebooks whose steps use it, as
tests/test_notebooks.py checks) have no mixed-precision path: they are listed and left out.
"""
import argparse
import contextlib
import ctypes
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

GUARD = "--guard"
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
PR_SET_PDEATHSIG, PR_SET_CHILD_SUBREAPER = 1, 36  # linux/prctl.h


def prctl(option, value):
    if ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(%d, %d) failed" % (option, value))


def descendants(pid):
    """The pids of the live processes below `pid` (Linux /proc; zombies left out)."""
    children = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, ppid = stat.read_text().rsplit(")", 1)[1].split()[:2]
        except (OSError, IndexError, ValueError):
            continue  # gone meanwhile
        if state != "Z":
            children.setdefault(int(ppid), []).append(int(stat.parent.name))
    found, todo = [], [pid]
    while todo:
        below = children.get(todo.pop(), [])
        found += below
        todo += below
    return found


def kill_descendants(deadline=10.0):
    """SIGKILL every process below this one until none is left (or `deadline` seconds passed)."""
    end = time.time() + deadline
    while time.time() < end:
        pids = descendants(os.getpid())
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            while os.waitpid(-1, os.WNOHANG)[0]:  # reap the orphans this subreaper was given
                pass
        time.sleep(0.05)


def guard(runner_pid, cmd):
    """The --guard process: run `cmd` (papermill); when it exits, when the guard is told to stop
    (SIGTERM, SIGHUP, SIGINT), or when the runner dies, kill everything below the guard. Returns
    papermill's exit status, or 128 + the signal's number."""
    watched = set(STOP_SIGNALS) | {signal.SIGCHLD}
    signal.pthread_sigmask(signal.SIG_BLOCK, watched)  # taken with sigtimedwait below
    prctl(PR_SET_CHILD_SUBREAPER, 1)
    prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    status = 128 + signal.SIGTERM
    if os.getppid() == runner_pid:  # else the runner died before prctl

        def in_papermill():
            signal.pthread_sigmask(signal.SIG_UNBLOCK, watched)
            prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # should the guard itself be SIGKILLed

        papermill = subprocess.Popen(cmd, preexec_fn=in_papermill)
        while True:
            info = signal.sigtimedwait(watched, 1.0)  # the timeout: a SIGCHLD may merge with another
            if info and info.si_signo != signal.SIGCHLD:
                status = 128 + info.si_signo
                break
            if papermill.poll() is not None:
                status = papermill.returncode
                break
    kill_descendants()
    return status


if __name__ == "__main__" and sys.argv[1:2] == [GUARD]:
    # Before the imports below: numpy's threads would not block the signals the guard waits for,
    # and a SIGTERM taken by one of them would end the guard before it killed the run.
    sys.exit(guard(int(sys.argv[2]), sys.argv[3:]))

from common import catalogue, envinfo, precision, records  # noqa: E402
from scripts import envspec, roofline, stale_records  # noqa: E402

# papermill's own bookkeeping lines, left out of the streamed output
NOISE = re.compile(r"^(Executing|Ending) Cell \d+-*$|^(Input|Output) Notebook:|^Executing notebook with kernel|^Executing:"
                   r"|^\[IPKernelApp\] WARNING \| Kernel is running over TCP without encryption")
# The thread rule (the same for every framework and task). Every notebook may use all the threads
# the run grants (N), or fewer where that is faster for its framework: each notebook's probe profile
# (real data, 20 training batches or 2 batches of images) is timed with N threads and with one, and
# the notebook runs with the count whose probe was fastest, N unless fewer were at least
# PROBE_MARGIN faster; its record names the count (device.threads) and the probe's times
# (harness.thread_probe). (A framework whose steps are many small operations can lose more waiting
# for a second thread than it gains: results/TUNING.md.)
FEWER_THREADS_TRIED = (1,)
PROBE, PROBE_MARGIN = "probe", 0.05
NOTEBOOK_NAME = re.compile(r"^(?P<framework>.+)_(?P<task>%s)$" % "|".join(catalogue.TASK_OF_SUFFIX))
LOCK_FILE = ".runner.lock"
LOCK_WAIT = 15.0  # seconds a runner waits for the processes of a dead runner to be stopped
STAGING = ".staging-"  # + notebook name: a folder in the output folder
FAILED = ".failed"  # <name>.failed.json: a failure beside a kept ok record
PROFILE_FOLDER = re.compile(r"^(smoke|cpu|full)(-amp)?(-tf32)?$")  # results/<profile>[-amp][-tf32]/<machine key>/
NOT_RUNNABLE = "not runnable here"  # a notebook given a skipped record: its GPU environment cannot run here


def discover(notebooks_dir, spec):
    """[(path, framework prefix, task, CPU env name, README row)] for every notebook in the folder."""
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
        found.append((path, prefix, catalogue.TASK_OF_SUFFIX[m.group("task")], env, row))
    return found


def ok_record(path):
    """The record at `path` if it is a valid `ok` one, else None."""
    try:
        rec = records.load_record(str(path)) if Path(path).exists() else None
    except records.RecordError:
        return None
    return rec if rec and rec["status"] == "ok" else None


def measured_here(rec):
    """Whether a record's device is this machine's: the same CPU (name, and kind where the record
    names it: envinfo.cpu_id()) and thread count, or one of its GPUs."""
    dev = rec.get("device") or {}
    if not envinfo.same_cpu((rec.get("environment") or {}).get("cpu_id"), envinfo.cpu_id()):
        return False
    if dev.get("kind", "cpu") == "cpu":
        threads = dev.get("threads")  # a record may have used fewer (the thread rule)
        return dev.get("name") == envinfo.cpu_model() and (threads is None or threads <= envspec.thread_count())
    return dev.get("name") in [g["name"] for g in envinfo.nvidia_gpus()]


def resume_decision(record_path, notebooks_dir, skip_reason=None, probe_wanted=False):
    """(skip, why) for a notebook whose output folder may hold a record: an `ok` record is kept,
    unless the code of its notebook's timed steps has changed since (then it runs again); a
    `skipped` one while its reason is still `skip_reason` (why the notebook cannot run here now,
    or None); one from another machine is kept in any case (replacing it would drop that
    machine's figure). An invalid record is named with its fault, and its notebook runs again."""
    record_path = Path(record_path)
    if not record_path.exists():
        return False, None
    try:
        rec = records.load_record(str(record_path))
    except records.RecordError as e:
        return False, f"{e}; running it again"
    if rec["status"] == "failed":
        return False, None
    dev = rec.get("device") or {}
    if not measured_here(rec):
        return True, ("its record was measured on another machine (%s, %s threads): kept (this machine's "
                      "records go to its own folder, the default), or --force to replace it"
                      % (dev.get("name"), dev.get("threads")))
    if rec["status"] == "skipped":
        if skip_reason is None:
            return False, "its skipped record's reason no longer holds: running it"
        return rec["error"] == skip_reason, None
    if probe_wanted and not records.thread_probe(rec):
        return False, "running again: the thread rule's probe did not choose its thread count"
    steps = stale_records.record_changes(record_path, notebooks_dir)
    if steps:
        return False, "running again: %s changed since its record" % ", ".join(
            catalogue.HEADINGS.get(step, step) for step in steps)
    failure = record_path.with_name(record_path.stem + FAILED + ".json")
    return True, "done already (use --force to re-run)" + (
        f"; its last re-run failed: {failure.name}" if failure.exists() else "")


def thread_trials(task, device, profile, chosen=None):
    """The thread counts a notebook of `task` is probed with, all the run's first: on the CPU, the
    thread rule's (not in the untimed smoke profile) or --threads `chosen`; [None] (no probe) on a GPU."""
    if device == "gpu" or not (chosen or profile != "smoke"):
        return [None]
    most = envspec.thread_count()
    return [most] + sorted({t for t in (chosen or FEWER_THREADS_TRIED) if t < most}, reverse=True)


def probe_threads(item, args, spec, env, lock_fd):
    """(threads, {threads: probe seconds}) to run the notebook with, by the thread rule: (None, None)
    where it tries one count (all threads); None where a probe failed (its record says why)."""
    trials = thread_trials(item[2], args.device, args.profile, args.threads)
    if len(trials) < 2:
        return trials[0], None
    probe = {}
    for t in trials:
        if run_one(item, args, spec, env, lock_fd, t, timed_into=probe) != "ok":
            return None
    fewer = min(trials[1:], key=probe.get)
    chosen = fewer if probe[fewer] < (1 - PROBE_MARGIN) * probe[trials[0]] else trials[0]
    print("    thread probe (its timed step on the %s profile): %s -> %d thread%s" % (
        PROBE, ", ".join("%d: %.2f s" % (t, probe[t]) for t in trials), chosen,
        "" if chosen == 1 else "s"), flush=True)
    return chosen, probe


def kernel_with_threads(spec, env_name, threads, jupyter_dirs, into):
    """A copy of the environment's registered kernel spec whose thread variables say `threads`,
    written under `into`/kernels/ (put `into` first on JUPYTER_PATH); return its kernel name."""
    from jupyter_client.kernelspec import KernelSpecManager
    name = envspec.kernel_name(env_name)
    dirs = [os.path.join(d, "kernels") for d in jupyter_dirs] + KernelSpecManager().kernel_dirs
    kernel = KernelSpecManager(kernel_dirs=dirs).get_kernel_spec(name).to_dict()
    fewer = envspec.kernel_env(spec, env_name, threads)
    kernel["env"] = dict(kernel.get("env") or {}, **{k: fewer[k] for k in envspec.thread_keys(spec, env_name)})
    folder = Path(into) / "kernels" / f"{name}-{threads}t"
    folder.mkdir(parents=True)
    (folder / "kernel.json").write_text(json.dumps(kernel, indent=1))
    return folder.name


def setup_command(spec, env_name):
    """The command that builds an environment and registers its kernel."""
    device = "--device gpu " if "gpu_of" in spec["env"][env_name] else ""
    return f"python3 -m scripts.setup_env {device}{env_name}"


def kernel_problem(spec, env_name, jupyter_dirs):
    """Why papermill could not start the environment's kernel (it is registered nowhere that
    jupyter_client looks, JUPYTER_PATH being `jupyter_dirs`), or None."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    kernel = envspec.kernel_name(env_name)
    dirs = [os.path.join(d, "kernels") for d in jupyter_dirs] + KernelSpecManager().kernel_dirs
    try:
        KernelSpecManager(kernel_dirs=dirs).get_kernel_spec(kernel)
    except NoSuchKernel:
        return (f"kernel {kernel!r} is not registered (papermill would stop with NoSuchKernel): run "
                f"`{setup_command(spec, env_name)}`")
    return None


def this_machine():
    """(device, gpus, machine key) of this run: "gpu" where nvidia-smi lists a GPU, else "cpu"
    (ROSETTA_DEVICE=cpu|gpu forces either), the GPUs listed, and the name of this machine's
    records folder (envinfo.machine_key: the GPU's on a GPU, else the CPU's)."""
    gpus = envinfo.nvidia_gpus()
    try:
        device = envspec.device(gpus=gpus)
    except ValueError as e:
        raise SystemExit(str(e))
    if device == "gpu" and not gpus:
        raise SystemExit("ROSETTA_DEVICE=gpu, but nvidia-smi lists no GPU (is the first nvidia-smi on PATH "
                         "the driver's?): unset ROSETTA_DEVICE to run on the CPU")
    return device, gpus, envinfo.machine_key(envspec.thread_count(), gpus if device == "gpu" else None)


def record_device(device, gpus):
    """The `device` of the records the runner writes itself (failed, skipped)."""
    kind = "cuda" if device == "gpu" else "cpu"
    return {"kind": kind, "name": records.device_name(kind, gpus), "threads": envspec.thread_count()}


def placement(spec, prefix, device, gpus):
    """(environment, why it cannot run here or None) of a framework on this device."""
    env_name = envspec.framework_env(spec, prefix, device)
    return env_name, envspec.gpu_skip_reason(spec, env_name, gpus) if device == "gpu" else None


def other_machines_folder(out, results_root, key):
    """Why folder `out` belongs to another machine, or None: it is a machine folder of the results
    tree (<results>/<profile>/<key>) under another key, or it holds a record measured elsewhere."""
    out = Path(out).resolve()
    if (out.parent.parent == Path(results_root).resolve() and PROFILE_FOLDER.match(out.parent.name)
            and out.name != key):
        return f"its name is the machine key {out.name!r}; this machine's is {key!r}"
    for path in sorted(out.glob("*.json")):
        try:
            rec = records.load_record(str(path))
        except records.RecordError:
            continue
        if not measured_here(rec):
            dev = rec["device"]
            return f"{path.name} was measured on another machine ({dev.get('name')}, {dev.get('threads')} threads)"
    return None


def papermill_command(nb, out_nb, kernel, profile, record_dir, notebooks_dir, amp=False, tf32=False):
    return ([sys.executable, "-m", "papermill", str(nb), str(out_nb), "-k", kernel,
             "-p", "PROFILE", profile, "-p", "RECORD_DIR", str(record_dir)]
            + (["-p", "MIXED_PRECISION", "True"] if amp else [])
            + (["-p", "TF32", "True"] if tf32 else [])
            + ["--cwd", str(notebooks_dir), "--log-output", "--no-progress-bar"])


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, SIGTERM or SIGHUP."""

    def __init__(self, signum):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


_held = None  # inside uninterrupted(): the signals that arrived meanwhile


def on_stop_signal(signum, frame):
    if _held is not None:
        _held.append(signum)
    else:
        raise Interrupted(signum)


@contextlib.contextmanager
def uninterrupted():
    """Hold Ctrl-C, SIGTERM and SIGHUP back until the block is done (not nestable)."""
    global _held
    _held = []
    try:
        yield
    finally:
        held, _held = _held, None
        if held:
            raise Interrupted(held[0])


def start_guarded(cmd, env, lock_fd):
    """Start `cmd` under a guard in a session of its own (its stdout and stderr: one text pipe).
    The guard holds the output folder's lock until all it started is gone."""
    return subprocess.Popen([sys.executable, "-m", "scripts.run_matrix", GUARD, str(os.getpid())] + cmd,
                            cwd=str(envspec.ROOT), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, start_new_session=True, pass_fds=(lock_fd,))


def stop_guarded(proc, grace=15.0):
    """Have the guard kill the run; kill the guard's group (papermill too) if it is not gone in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def lock_output(out, wait=LOCK_WAIT):
    """Take <out>/.runner.lock for this runner and return its descriptor; exit when another runner
    holds it. A lock held on after its runner died (by the guard stopping that runner's notebook)
    is waited for, up to `wait` seconds."""
    path = Path(out) / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    end = time.time() + wait
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            owner = lock_owner(fd)
            if owner_alive(owner) or time.time() > end:
                os.close(fd)
                raise SystemExit(f"another runner (pid {owner.get('pid', '?')}) is using {out}"
                                 + ("" if owner_alive(owner) else ": it has ended, but what it started is "
                                    "still being stopped; try again in a moment"))
            time.sleep(0.2)
    owner = lock_owner(fd)
    if owner:
        print(f"{path}: runner pid {owner.get('pid')} ({owner.get('host')}, started {owner.get('started_at')}) "
              "ended without releasing it: taken over", flush=True)
    me = {"pid": os.getpid(), "host": socket.gethostname(), "started_at": records.now()}
    os.ftruncate(fd, 0)
    os.pwrite(fd, json.dumps(me).encode(), 0)
    return fd


def lock_owner(fd):
    """{pid, host, started_at} written in the lock file, or {}."""
    try:
        owner = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}
    return owner if isinstance(owner, dict) else {}


def owner_alive(owner):
    """Whether the lock's runner is alive (assumed so when it is unknown or on another host)."""
    if not isinstance(owner.get("pid"), int) or owner.get("host") != socket.gethostname():
        return True
    try:
        os.kill(owner["pid"], 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def unlock_output(fd):
    os.ftruncate(fd, 0)  # a clean end: no "taken over" line next time
    os.close(fd)


def clean_staging(out):
    """Remove what interrupted runs left in staging; a record whose notebook had already been moved
    in (the runner died between the two moves) is moved in too."""
    for stage in sorted(Path(out).glob(STAGING + "*")):
        name = stage.name[len(STAGING):]
        staged = stage / (name + ".json")
        if not (stage / (name + ".ipynb")).exists() and "harness" in (ok_record(staged) or {}):
            os.replace(staged, Path(out) / staged.name)
            print(f"{name}: moved in the record an interrupted runner had left in {stage.name}", flush=True)
        else:
            print(f"{name}: removed the unfinished run an interrupted runner left in {stage.name}", flush=True)
        shutil.rmtree(stage)


def run_one(item, args, spec, env, lock_fd, threads=None, probe=None, timed_into=None):
    """Run the notebook with `threads` (default: all); its record keeps `probe`, the thread rule's
    {threads: seconds}. With `timed_into` (a dict) it is a probe instead: the notebook runs its probe
    profile, its timed seconds go into timed_into[threads], and nothing is moved into place."""
    path, prefix, task, env_name, row = item
    out = Path(args.out)
    stage = out / (STAGING + path.stem)
    python = envspec.env_python(spec, env_name)
    if not python.exists():
        return write_failure(item, args, f"environment {env_name!r} is not built: run "
                                         f"`{setup_command(spec, env_name)}`")
    problem = kernel_problem(spec, env_name, env["JUPYTER_PATH"].split(os.pathsep))
    if problem:
        return write_failure(item, args, problem)
    shutil.rmtree(stage, ignore_errors=True)
    stage.mkdir()
    kernel = envspec.kernel_name(env_name)
    if threads and threads != envspec.thread_count():
        kernel = kernel_with_threads(spec, env_name, threads, env["JUPYTER_PATH"].split(os.pathsep), stage / "jupyter")
        env = dict(env, JUPYTER_PATH=os.pathsep.join([str(stage / "jupyter"), env["JUPYTER_PATH"]]))
    try:
        return run_staged(item, args, env, lock_fd, stage, kernel, threads, probe, timed_into)
    finally:
        shutil.rmtree(stage, ignore_errors=True)


def run_staged(item, args, env, lock_fd, stage, kernel, threads=None, probe=None, timed_into=None):
    """Run the notebook into `stage` with `kernel`; move its executed notebook and ok record into
    place, or record the failure (see run_one for `probe`)."""
    path, prefix, task, env_name, row = item
    out = Path(args.out)
    staged_nb, staged_record = stage / path.name, stage / (path.stem + ".json")
    probing = timed_into is not None
    rate_before = None if probing else machine_rate()
    if args.profile != "smoke" and not probing:
        warning = slow_machine_warning(rate_before)
        if warning:
            print("    " + warning, flush=True)
    start = time.time()
    # absolute paths: the guard that starts papermill runs in the repository's root
    cmd = papermill_command(path.resolve(), staged_nb.resolve(), kernel, PROBE if probing else args.profile,
                            stage.resolve(), path.parent.resolve(), args.amp, args.tf32)
    log_tail, timed_out, proc = [], threading.Event(), None

    def kill():  # the guard kills the run; the stream below then ends
        timed_out.set()
        proc.send_signal(signal.SIGTERM)

    watchdog = threading.Timer(args.timeout, kill)
    try:
        with uninterrupted():  # no guard starts unknown to this runner
            proc = start_guarded(cmd, env, lock_fd)
        watchdog.start()
        for line in proc.stdout:  # stream the notebook's own progress lines
            if not args.quiet and line.strip() and not NOISE.match(line.strip()):
                print("    " + line.rstrip(), flush=True)
            log_tail = (log_tail + [line.rstrip()])[-30:]
        proc.wait()
    finally:
        watchdog.cancel()
        if proc:
            with uninterrupted():  # interrupted: do not leave the kernel behind
                stop_guarded(proc)
    if timed_out.is_set():
        return write_failure(item, args, f"timed out after {args.timeout:.0f} s", staged_nb)
    if proc.returncode != 0:
        return write_failure(item, args, "papermill failed:\n" + "\n".join(log_tail), staged_nb)
    if not staged_record.exists():
        return write_failure(item, args, "the notebook ran but wrote no ok record", staged_nb)
    try:
        status = records.load_record(str(staged_record))["status"]
    except records.RecordError as e:
        return write_failure(item, args, f"the notebook ran but its record is invalid: {e}", staged_nb)
    if status != "ok":
        return write_failure(item, args, f"the notebook ran but wrote a {status!r} record", staged_nb)
    if probing:
        timed_into[threads] = records.load_record(str(staged_record))["metrics"][catalogue.HEADLINE_SECONDS[task]]
        return "ok"
    add_harness_time(staged_record, time.time() - start, (rate_before, machine_rate()), probe)
    with uninterrupted():  # the notebook first: whoever sees the new record sees its notebook
        os.replace(staged_nb, out / path.name)
        os.replace(staged_record, out / staged_record.name)
        for superseded in (out / (path.stem + FAILED + ".json"), out / (path.stem + FAILED + ".ipynb")):
            superseded.unlink(missing_ok=True)
    return "ok"


def machine_rate():
    """The machine's float32 matrix-multiply rate in GFLOP/s right now (roofline.rate_now: the
    median of several short products, in the kernels' thread settings), or None: taken before and
    after each notebook, it is what the tables judge the run's FLOP rate against, and shows
    whether the machine's speed changed during the run (a shared VM's may)."""
    try:
        return round(roofline.rate_now()["median_gflops"], 1)
    except (OSError, ValueError, subprocess.CalledProcessError):
        return None


def slow_machine_warning(rate, roofline_file=envspec.ROOT / "results" / "roofline.json", below=0.7):
    """A warning when the matmul rate just measured is under `below` times the peak stored for this CPU
    and thread count in roofline.json (a shared VM in a slow spell: its timings would be too)."""
    if not rate:
        return None
    try:
        stored = roofline.load(roofline_file)
    except roofline.RooflineError as e:
        return "warning: no stored peak to compare with (%s)" % e
    entry = roofline.entry_for(stored, envinfo.cpu_model(), envspec.thread_count(), envinfo.cpu_id())
    if not entry or rate >= below * entry["peak_gflops"]:
        return None
    peak = entry["peak_gflops"]
    return ("warning: the machine multiplies at %.0f GFLOP/s now, %.0f%% of the %.0f GFLOP/s measured for "
            "this CPU (%s): this run's timings will be slow too" % (rate, 100 * rate / peak, peak,
                                                                   Path(roofline_file).name))


TIMED_METRICS = ("train_seconds", "test_seconds", "inference_seconds")


def add_harness_time(record_path, wall_seconds, machine_gflops=(None, None), thread_probe=None):
    """Put into the record how long the whole notebook took through papermill, how much of it
    was outside the timed blocks (kernel start, imports, data loading, model building, warm-up),
    the machine's matrix-multiply rate measured just before and after, and the thread rule's
    probe times ({threads: seconds}), if any."""
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
    if thread_probe:
        rec["harness"]["thread_probe"] = {str(t): round(s, 3) for t, s in sorted(thread_probe.items())}
    records.write_json_atomic(str(record_path), rec)


def runner_params(args):
    """The `params` of the records the runner writes itself: --amp, so that they join that column."""
    return {"mixed_precision": True} if args.amp else {}


def runner_extra(args):
    """The arithmetic of the records the runner writes itself: --tf32's, so that they join that column."""
    return {"arithmetic": "tf32" if args.tf32 else "float32"}


def write_failure(item, args, error, executed=None):
    """A `failed` record for the notebook (with its executed notebook, if any): beside a kept ok
    record as <name>.failed.json and <name>.failed.ipynb, otherwise as <name>.json and <name>.ipynb."""
    path, prefix, task, env_name, row = item
    out = Path(args.out)
    kept = ok_record(out / (path.stem + ".json"))
    base = out / (path.stem + (FAILED if kept else ""))
    rec = records.Run(path.stem, row, task, args.profile, str(out)).record(
        "failed", error=error, device=args.record_device, params=runner_params(args),
        extra=runner_extra(args))
    if executed and executed.exists():
        os.replace(executed, str(base) + ".ipynb")
    elif kept:
        Path(str(base) + ".ipynb").unlink(missing_ok=True)  # an earlier failure's
    records.write_json_atomic(str(base) + ".json", rec)
    print("    " + error.strip().splitlines()[-1], flush=True)
    if kept:
        print(f"    kept the previous ok record and executed notebook; this failure: {base.name}.json", flush=True)
    return "failed"


def write_skipped(item, args, reason):
    """A `skipped` record: the notebook cannot run on this GPU (`reason`). It replaces a failed or
    skipped record (and a failure's executed notebook), never an ok one."""
    path, prefix, task, env_name, row = item
    out = Path(args.out)
    print("    " + reason, flush=True)
    if ok_record(out / (path.stem + ".json")):
        print("    kept its ok record (a skipped record never replaces one)", flush=True)
        return "skipped"
    rec = records.Run(path.stem, row, task, args.profile, str(out)).record(
        "skipped", error=reason, device=args.record_device, params=runner_params(args),
        extra=runner_extra(args))
    with uninterrupted():
        (out / path.name).unlink(missing_ok=True)  # a failed run's executed notebook
        records.write_json_atomic(str(out / (path.stem + ".json")), rec)
    return NOT_RUNNABLE


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="cpu", choices=["smoke", "cpu", "full"])
    ap.add_argument("--frameworks", nargs="*", help="notebook prefixes, e.g. PyTorch Keras_TF")
    ap.add_argument("--tasks", nargs="*", choices=sorted(catalogue.TASKS))
    ap.add_argument("--notebooks", default=str(envspec.ROOT / "notebooks"), help="notebook folder")
    ap.add_argument("--results", default=str(envspec.ROOT / "results"),
                    help="the results folder, whose <profile>[-amp]/<machine key>/ is the default --out")
    ap.add_argument("--out", help="output folder (default: results/<profile>[-amp]/<this machine's key>)")
    ap.add_argument("--force", action="store_true",
                    help="re-run notebooks that already have a record; run into another machine's --out")
    ap.add_argument("--timeout", type=float, default=4 * 3600, help="seconds per notebook")
    ap.add_argument("--quiet", action="store_true", help="do not stream notebook output")
    ap.add_argument("--amp", action="store_true",
                    help="mixed precision (MIXED_PRECISION=True) in the notebooks that have it")
    ap.add_argument("--tf32", action="store_true",
                    help="TF32 (TF32=True) on an NVIDIA GPU in the notebooks that have it")
    ap.add_argument("--threads", type=int, nargs="+", metavar="N",
                    help="on the CPU, probe each notebook with these fewer threads too and run it with the "
                         "fastest count (default: the thread rule, FEWER_THREADS_TRIED)")
    ap.add_argument("--list", action="store_true", help="list the selected notebooks and stop")
    args = ap.parse_args(argv)
    device, gpus, key = this_machine()
    args.device, args.record_device = device, record_device(device, gpus)
    if args.tf32 and device != "gpu":
        ap.error("--tf32 is an NVIDIA GPU's arithmetic, and this run is on the CPU")
    own_folder = Path(args.results) / (args.profile + ("-amp" if args.amp else "") + ("-tf32" if args.tf32 else "")) / key
    args.out = args.out or str(own_folder)

    spec = envspec.load_spec()
    items = discover(args.notebooks, spec)
    unknown = set(args.frameworks or []) - {i[1] for i in items}
    if unknown:
        ap.error(f"no notebooks for {sorted(unknown)}; known: {sorted({i[1] for i in items})}")
    items = [i for i in items if (not args.frameworks or i[1] in args.frameworks)
             and (not args.tasks or i[2] in args.tasks)]
    if args.amp:
        without = [i[0].stem for i in items if i[0].stem not in precision.MIXED_PRECISION_NOTEBOOKS]
        if without:
            print("No mixed-precision path (left out): " + ", ".join(without), flush=True)
        items = [i for i in items if i[0].stem not in without]
    if args.tf32:
        without = [i[0].stem for i in items if i[0].stem not in precision.TF32_NOTEBOOKS]
        if without:
            print("No TF32 path (left out): " + ", ".join(without), flush=True)
        items = [i for i in items if i[0].stem not in without]
    skip_reasons = {}
    for n, (path, prefix, task, _, row) in enumerate(items):  # the CPU environment, replaced by the device's
        env_name, skip_reasons[path.stem] = placement(spec, prefix, device, gpus)
        items[n] = (path, prefix, task, env_name, row)
    if args.list:
        gpu = gpus[0] if device == "gpu" else {}
        print(f"device: {device.upper()} ({args.record_device['name']}, " + (
            f"compute capability {gpu.get('compute_cap')}, driver {gpu.get('driver')}" if gpu
            else f"{envspec.thread_count()} threads") + f"); records: {args.out}")
        for path, prefix, task, env_name, row in items:
            kernel = envspec.kernel_name(env_name)
            print(f"{path.name:32s} {task:10s} env={env_name:12s} kernel={kernel:20s} row={row}"
                  + (f"\n    skipped: {skip_reasons[path.stem]}" if skip_reasons[path.stem] else ""))
        return 0
    foreign = other_machines_folder(args.out, args.results, key)
    if foreign and not args.force:
        raise SystemExit(f"{args.out} is another machine's records folder ({foreign}): refused; this machine's "
                         f"records go to {own_folder} (the default, no --out needed), or --force to run into it")

    env = dict(os.environ, PYTHONUNBUFFERED="1",
               JUPYTER_PATH=os.pathsep.join(envspec.jupyter_path(spec)),
               PYTHONPATH=os.pathsep.join([str(envspec.ROOT)] + os.environ.get("PYTHONPATH", "").split(os.pathsep)).rstrip(os.pathsep))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    previous_handlers = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    for s, handler in previous_handlers.items():
        if handler != signal.SIG_IGN:  # nohup, or a background job: left ignored
            signal.signal(s, on_stop_signal)
    results, t0, name, lock_fd = {}, time.time(), None, None
    try:
        lock_fd = lock_output(args.out)
        clean_staging(args.out)
        for n, item in enumerate(items, 1):
            name = item[0].stem
            reason = skip_reasons[name]
            probe_wanted = len(thread_trials(item[2], device, args.profile, args.threads)) > 1
            skip, why = (False, None) if args.force else resume_decision(Path(args.out) / (name + ".json"),
                                                                          args.notebooks, reason, probe_wanted)
            if skip:
                print(f"[{n}/{len(items)}] {name}: {why or 'skipped already: ' + reason}", flush=True)
                results[name] = "skipped"
                continue
            if reason:
                print(f"[{n}/{len(items)}] {name}: not run on this GPU", flush=True)
                results[name] = write_skipped(item, args, reason)
                continue
            print(f"[{n}/{len(items)}] {name} ({args.profile}, kernel {envspec.kernel_name(item[3])})"
                  + (f": {why}" if why else ""), flush=True)
            start = time.time()
            chosen = probe_threads(item, args, spec, env, lock_fd)
            results[name] = run_one(item, args, spec, env, lock_fd, *chosen) if chosen else "failed"
            print(f"[{n}/{len(items)}] {name}: {results[name]} in {time.time() - start:.0f}s", flush=True)
    except KeyboardInterrupt as e:
        signum = getattr(e, "signum", signal.SIGINT)
        print(f"interrupted ({signal.Signals(signum).name})" + (
            f" while running {name}: stopped, nothing recorded for it, any previous result kept"
            if name and name not in results else "") + f"; {len(results)} notebooks done before", flush=True)
        return 128 + signum
    finally:
        if lock_fd is not None:
            unlock_output(lock_fd)
        for s, handler in previous_handlers.items():
            signal.signal(s, handler)
    failed = sorted(k for k, v in results.items() if v == "failed")
    print(f"{len(results)} notebooks in {time.time() - t0:.0f}s: "
          f"{sum(v == 'ok' for v in results.values())} ok, "
          f"{sum(v == 'skipped' for v in results.values())} skipped, {len(failed)} failed"
          + (f" ({', '.join(failed)})" if failed else "")
          + (f", {list(results.values()).count(NOT_RUNNABLE)} {NOT_RUNNABLE} (skipped records)"
             if NOT_RUNNABLE in results.values() else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
