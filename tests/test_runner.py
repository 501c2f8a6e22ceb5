"""The runner isolates failures, resumes, times out, records why a notebook failed, keeps a
previous result until a new one is complete, and leaves no process behind when it is stopped."""
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import uuid
from pathlib import Path

import nbformat
import pytest

from conftest import ROOT, read_json, run_script, script_command

OK_CELL = """
import common
common.datasets.provenance.note_source("test", "synthetic", synthetic=True)
run = common.start_run(NAME, "PyTorch", TASK, PROFILE, RECORD_DIR)
run.finish(metrics={"train_seconds": 1.0, "test_accuracy": 0.5}, params={}, versions={})
"""


def notebook(path, body, name, task):
    params = nbformat.v4.new_code_cell('PROFILE = "cpu"\nRECORD_DIR = None')
    params.metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=[
        params, nbformat.v4.new_code_cell("NAME, TASK = %r, %r" % (name, task)),
        nbformat.v4.new_code_cell(body)])
    nb.metadata["kernelspec"] = {"name": "rosetta-modern", "display_name": "x", "language": "python"}
    nbformat.write(nb, str(path))


@pytest.fixture
def folder(tmp_path):
    nbs = tmp_path / "notebooks"
    nbs.mkdir()
    notebook(nbs / "PyTorch_CNN.ipynb", OK_CELL, "PyTorch_CNN", "cnn")
    notebook(nbs / "PyTorch_RNN.ipynb", "raise RuntimeError('deliberate failure 42')",
             "PyTorch_RNN", "rnn")
    return nbs, tmp_path / "out"


def run(nbs, out, *extra):
    return run_script("run_matrix", "--notebooks", nbs, "--out", out, "--profile", "smoke", *extra)


def test_failure_is_isolated_recorded_and_resumed(folder):
    nbs, out = folder
    proc = run(nbs, out)
    assert proc.returncode != 0, proc.stdout
    ok = read_json(out / "PyTorch_CNN.json")
    assert ok["status"] == "ok"
    harness = ok["harness"]  # the runner measures what lies outside the notebook's timed blocks
    assert harness["timed_seconds"] == 1.0
    assert harness["notebook_wall_seconds"] > 1.0, "papermill and a kernel start take time"
    assert abs(harness["untimed_seconds"] - (harness["notebook_wall_seconds"] - 1.0)) < 0.02
    before, after = harness["machine_gflops_before_after"]  # the machine's speed around the run
    assert before > 1.0 and after > 1.0
    failed = read_json(out / "PyTorch_RNN.json")
    assert failed["status"] == "failed"
    assert "deliberate failure 42" in failed["error"]
    assert not (out / "PyTorch_RNN.failed.json").exists(), "no ok record to keep: the failure took its place"
    assert (out / "PyTorch_CNN.ipynb").exists() and (out / "PyTorch_RNN.ipynb").exists()
    assert "1 ok, 0 skipped, 1 failed" in proc.stdout

    # Resume: the ok notebook is skipped, the failed one runs again (and now passes).
    notebook(nbs / "PyTorch_RNN.ipynb", OK_CELL, "PyTorch_RNN", "rnn")
    first = read_json(out / "PyTorch_CNN.json")["finished_at"]
    proc = run(nbs, out)
    assert proc.returncode == 0, proc.stdout
    assert "PyTorch_CNN: done already" in proc.stdout
    assert read_json(out / "PyTorch_RNN.json")["status"] == "ok"
    assert read_json(out / "PyTorch_CNN.json")["finished_at"] == first

    # A failing re-run keeps the ok record and its executed notebook; the failure goes beside them.
    kept_nb = (out / "PyTorch_CNN.ipynb").read_text()
    notebook(nbs / "PyTorch_CNN.ipynb", "raise RuntimeError('deliberate failure 43')", "PyTorch_CNN", "cnn")
    proc = run(nbs, out, "--force", "--tasks", "cnn")
    assert proc.returncode != 0
    assert read_json(out / "PyTorch_CNN.json")["finished_at"] == first
    assert (out / "PyTorch_CNN.ipynb").read_text() == kept_nb
    assert "deliberate failure 43" in read_json(out / "PyTorch_CNN.failed.json")["error"]
    assert "kept the previous ok record" in proc.stdout
    assert "deliberate failure 43" in (out / "PyTorch_CNN.failed.ipynb").read_text()
    assert "its last re-run failed: PyTorch_CNN.failed.json" in run(nbs, out, "--tasks", "cnn").stdout

    # A complete one replaces both and clears the failure.
    notebook(nbs / "PyTorch_CNN.ipynb", OK_CELL, "PyTorch_CNN", "cnn")
    proc = run(nbs, out, "--force", "--tasks", "cnn")
    assert proc.returncode == 0
    assert "1 ok, 0 skipped, 0 failed" in proc.stdout
    assert read_json(out / "PyTorch_CNN.json")["finished_at"] != first
    assert "deliberate failure 43" not in (out / "PyTorch_CNN.ipynb").read_text()
    assert not list(out.glob("PyTorch_CNN.failed.*")) and not list(out.glob(".staging-*"))


THREADED_CELL = """
import common
common.datasets.provenance.note_source("test", "synthetic", synthetic=True)
run = common.start_run(NAME, "PyTorch", TASK, PROFILE, RECORD_DIR)
seconds = SECONDS[common.envinfo.threads()] / (10 if PROFILE == "probe" else 1)
run.finish(metrics={"train_seconds": seconds, "test_accuracy": 0.5}, params={}, versions={})
"""


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two cores to try one thread against two")
def test_thread_rule_runs_with_the_count_whose_probe_was_faster(folder):
    nbs, out = folder
    threaded = THREADED_CELL.replace("SECONDS", "{1: 0.3, 2: 0.2}")
    notebook(nbs / "PyTorch_RNN.ipynb", threaded, "PyTorch_RNN", "rnn")
    assert run(nbs, out, "--tasks", "rnn").returncode == 0  # smoke: no probe unless asked for
    rec = read_json(out / "PyTorch_RNN.json")
    assert rec["device"]["threads"] == 2 and "thread_probe" not in rec["harness"]

    # Asked to try one thread: the probe profile runs with both counts (one through a kernel whose
    # thread variables say 1), and the run uses the faster.
    proc = run(nbs, out, "--tasks", "rnn", "--threads", "1", "--force")
    assert proc.returncode == 0 and "thread probe" in proc.stdout and "-> 2 threads" in proc.stdout, proc.stdout
    rec = read_json(out / "PyTorch_RNN.json")
    assert rec["device"]["threads"] == 2 and rec["harness"]["thread_probe"] == {"1": 0.03, "2": 0.02}
    assert rec["metrics"]["train_seconds"] == 0.2 and rec["profile"] == "smoke"

    notebook(nbs / "PyTorch_RNN.ipynb", threaded.replace("0.3", "0.15"), "PyTorch_RNN", "rnn")
    proc = run(nbs, out, "--tasks", "rnn", "--threads", "1", "--force")
    assert proc.returncode == 0 and "-> 1 thread\n" in proc.stdout, proc.stdout
    rec = read_json(out / "PyTorch_RNN.json")
    assert rec["device"]["threads"] == 1 and rec["harness"]["thread_probe"] == {"1": 0.015, "2": 0.02}
    assert rec["metrics"]["train_seconds"] == 0.15
    assert rec["environment"]["thread_settings"]["OMP_NUM_THREADS"] == "1"
    assert "done already" in run(nbs, out, "--tasks", "rnn", "--threads", "1").stdout
    assert not list(out.glob(".staging-*"))


def test_timeout_kills_and_records(folder):
    nbs, out = folder
    notebook(nbs / "PyTorch_CNN.ipynb", "import time; time.sleep(600)", "PyTorch_CNN", "cnn")
    proc = run(nbs, out, "--tasks", "cnn", "--timeout", "8")
    assert proc.returncode != 0
    rec = read_json(out / "PyTorch_CNN.json")
    assert rec["status"] == "failed" and "timed out" in rec["error"]


def test_notebook_without_record_fails(folder):
    nbs, out = folder
    notebook(nbs / "PyTorch_CNN.ipynb", "x = 1", "PyTorch_CNN", "cnn")
    proc = run(nbs, out, "--tasks", "cnn")
    assert proc.returncode != 0
    assert "wrote no ok record" in read_json(out / "PyTorch_CNN.json")["error"]


def test_bad_names_are_refused(tmp_path):
    nbs = tmp_path / "nbs"
    nbs.mkdir()
    notebook(nbs / "Nope_CNN.ipynb", "x = 1", "Nope_CNN", "cnn")
    proc = run(nbs, tmp_path / "out")
    assert proc.returncode != 0 and "in no environment" in proc.stdout


def declare_mixed_precision(path, tag):
    """Every notebook declares MIXED_PRECISION = False; `tag` goes on the cell that uses it."""
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[0].source += "\nMIXED_PRECISION = False"
    if tag:
        nb.cells[2].metadata["tags"] = [tag]
    nbformat.write(nb, str(path))


def test_amp_runs_only_notebooks_with_a_mixed_precision_path(tmp_path):
    nbs, out = tmp_path / "notebooks", tmp_path / "out"
    nbs.mkdir()
    amp_cell = OK_CELL.replace("params={}", "params={'mixed_precision': MIXED_PRECISION}")
    notebook(nbs / "PyTorch_CNN.ipynb", amp_cell, "PyTorch_CNN", "cnn")
    declare_mixed_precision(nbs / "PyTorch_CNN.ipynb", "step:record")
    notebook(nbs / "Tensorflow_RNN.ipynb", amp_cell, "Tensorflow_RNN", "rnn")  # not in common.precision's list
    declare_mixed_precision(nbs / "Tensorflow_RNN.ipynb", "step:record")
    proc = run(nbs, out, "--amp")
    assert proc.returncode == 0, proc.stdout
    assert "No mixed-precision path (left out): Tensorflow_RNN" in proc.stdout
    assert read_json(out / "PyTorch_CNN.json")["params"]["mixed_precision"] is True
    assert not (out / "Tensorflow_RNN.json").exists()


def test_tf32_needs_a_gpu_and_a_path(folder, tmp_path):
    """--tf32 is refused on the CPU; on a GPU (a stand-in nvidia-smi) it lists only the notebooks
    with a TF32 path and names the -tf32 records folder."""
    nbs, out = folder
    proc = run(nbs, out, "--tf32", "--list")
    assert proc.returncode != 0 and "--tf32 is an NVIDIA GPU's arithmetic" in proc.stdout
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    smi = bin_dir / "nvidia-smi"
    smi.write_text("#!/bin/sh\necho 'NVIDIA H200, 580.95.05, 143771 MiB, 9.0'\n")
    smi.chmod(0o755)
    (nbs / "Chainer_CNN.ipynb").write_text((nbs / "PyTorch_CNN.ipynb").read_text())
    env = dict(os.environ, PATH="%s%s%s" % (bin_dir, os.pathsep, os.environ["PATH"]), ROSETTA_DEVICE="gpu")
    proc = run_script("run_matrix", "--notebooks", nbs, "--results", tmp_path / "results", "--profile", "smoke",
                      "--tf32", "--list", env=env, timeout=120)
    assert proc.returncode == 0, proc.stdout
    assert "No TF32 path (left out): Chainer_CNN" in proc.stdout
    assert "PyTorch_CNN.ipynb" in proc.stdout and "smoke-tf32" in proc.stdout


def test_slow_machine_is_warned_about(tmp_path):
    import common
    from scripts import envspec
    from scripts import run_matrix
    roof = tmp_path / "roofline.json"
    hardware = {"name": common.envinfo.cpu_model(), "threads": envspec.thread_count(),
                "cpu_id": common.envinfo.cpu_id()}  # as roofline.py writes it: this CPU's entry
    roof.write_text(json.dumps({"machines": [{"hardware": hardware, "peak_gflops": 300.0}]}))
    warning = run_matrix.slow_machine_warning(150.0, roof)
    assert warning and "150 GFLOP/s now, 50% of the 300" in warning
    assert run_matrix.slow_machine_warning(250.0, roof) is None
    assert run_matrix.slow_machine_warning(None, roof) is None, "no measurement, no warning"
    assert run_matrix.slow_machine_warning(150.0, tmp_path / "missing.json") is None


def tagged_notebook(path, setup, fidelity=""):
    """A notebook whose cells carry step tags, as tag_steps.py writes them."""
    notebook(path, OK_CELL, path.stem, "cnn")
    nb = nbformat.read(str(path), as_version=4)
    nb.cells[1].source += "\n" + setup
    nb.cells[1].metadata["tags"] = ["step:setup"]
    nb.cells[2].metadata["tags"] = ["step:record"]
    nb.cells.insert(2, nbformat.v4.new_code_cell(fidelity or "pass"))
    nb.cells[2].metadata["tags"] = ["step:fidelity"]
    nbformat.write(nb, str(path))


def test_record_of_changed_code_runs_again(tmp_path):
    nbs, out = tmp_path / "notebooks", tmp_path / "out"
    nbs.mkdir()
    tagged_notebook(nbs / "PyTorch_CNN.ipynb", "THREADS = 2")
    assert run(nbs, out).returncode == 0
    first = read_json(out / "PyTorch_CNN.json")["finished_at"]

    tagged_notebook(nbs / "PyTorch_CNN.ipynb", "THREADS = 2", fidelity="x = 1  # a check, outside the timed steps")
    proc = run(nbs, out)
    assert "PyTorch_CNN: done already" in proc.stdout, proc.stdout
    assert read_json(out / "PyTorch_CNN.json")["finished_at"] == first

    tagged_notebook(nbs / "PyTorch_CNN.ipynb", "THREADS = 1")
    proc = run(nbs, out)
    assert proc.returncode == 0, proc.stdout
    assert "running again: Set-up changed since its record" in proc.stdout
    assert read_json(out / "PyTorch_CNN.json")["finished_at"] != first
    assert "PyTorch_CNN: done already" in run(nbs, out).stdout, "the new record matches the code"


def ok_record(name="PyTorch_CNN", task="cnn", **fields):
    """A valid ok record, as a notebook writes it, with `fields` replaced."""
    import common
    rec = common.records.Run(name, "PyTorch", task, "smoke", "unused").record(
        "ok", metrics={"train_seconds": 1.0, "test_accuracy": 0.5})
    rec.update(fields)
    return rec


def test_record_from_another_machine_is_kept(tmp_path):
    import common
    from scripts import run_matrix
    rec = ok_record(device={"kind": "cpu", "name": "Other CPU 1", "threads": 2})
    path = tmp_path / "PyTorch_CNN.json"
    path.write_text(json.dumps(rec))
    skip, why = run_matrix.resume_decision(path, tmp_path)
    assert skip and "another machine (Other CPU 1, 2 threads)" in why
    rec["device"]["name"] = common.envinfo.cpu_model()
    rec["device"]["threads"] = run_matrix.envspec.thread_count()
    path.write_text(json.dumps(rec))
    assert run_matrix.resume_decision(path, tmp_path) == (True, "done already (use --force to re-run)")
    rec["environment"] = {"cpu_id": dict(common.envinfo.cpu_id(), family="999")}  # same name, another CPU
    path.write_text(json.dumps(rec))
    assert run_matrix.resume_decision(path, tmp_path)[1].startswith("its record was measured on another machine")
    rec.update(status="failed", error="it broke")
    path.write_text(json.dumps(rec))
    assert run_matrix.resume_decision(path, tmp_path) == (False, None)


def test_resume_validates_what_it_skips(tmp_path):
    from scripts import run_matrix
    path = tmp_path / "PyTorch_CNN.json"
    rec = ok_record(device={"kind": "cpu", "name": "Other CPU 1", "threads": 2}, metrics={"train_seconds": 1.0})
    path.write_text(json.dumps(rec))  # it would be kept, were it valid: it lacks test_accuracy
    skip, why = run_matrix.resume_decision(path, tmp_path)
    assert not skip and why.startswith("%s: " % path) and why.endswith("; running it again"), why
    path.write_text('{"status": "ok", "notebook": "PyTorch_CNN"')  # cut short
    skip, why = run_matrix.resume_decision(path, tmp_path)
    assert not skip and why.startswith("%s: " % path), why


def test_stale_staging_is_cleaned(tmp_path):
    import common
    from scripts import run_matrix
    interrupted = tmp_path / ".staging-PyTorch_RNN"  # interrupted while running
    interrupted.mkdir()
    (interrupted / "PyTorch_RNN.ipynb").write_text("{}")
    common.records.write_json_atomic(str(interrupted / "PyTorch_RNN.json"), ok_record("PyTorch_RNN", "rnn"))
    between = tmp_path / ".staging-PyTorch_CNN"  # killed between moving in the notebook and the record
    between.mkdir()
    common.records.write_json_atomic(str(between / "PyTorch_CNN.json"), ok_record(harness={"timed_seconds": 1.0}))
    run_matrix.clean_staging(tmp_path)
    assert not list(tmp_path.glob(".staging-*"))
    assert read_json(tmp_path / "PyTorch_CNN.json")["harness"] == {"timed_seconds": 1.0}
    assert not (tmp_path / "PyTorch_RNN.json").exists()


def test_one_runner_per_output_folder(folder, capsys):
    from scripts import run_matrix
    nbs, out = folder
    out.mkdir()
    lock = run_matrix.lock_output(out)
    busy = r"another runner \(pid %d\) is using %s$" % (os.getpid(), re.escape(str(out)))
    with pytest.raises(SystemExit, match=busy):
        run_matrix.main(["--notebooks", str(nbs), "--out", str(out), "--profile", "smoke"])
    assert not list(out.glob("*.json")), "nothing ran"

    dead = dead_pid()
    os.ftruncate(lock, 0)
    os.pwrite(lock, json.dumps({"pid": dead, "host": socket.gethostname(), "started_at": "x"}).encode(), 0)
    with pytest.raises(SystemExit, match="it has ended, but what it started is still being stopped"):
        run_matrix.lock_output(out, wait=0.5)  # its guard still holds the lock
    os.close(lock)  # as a crash would: the lock is free, the file still names the runner
    capsys.readouterr()
    lock = run_matrix.lock_output(out)
    assert "runner pid %d (%s, started x) ended without releasing it: taken over" % (
        dead, socket.gethostname()) in capsys.readouterr().out
    run_matrix.unlock_output(lock)
    run_matrix.unlock_output(run_matrix.lock_output(out))
    assert capsys.readouterr().out == "", "a runner that ended cleanly left nothing to take over"


def dead_pid():
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_unregistered_kernel_names_the_setup_command(folder, spec, tmp_path):
    """An environment that is built but whose kernel is registered nowhere."""
    from scripts import envspec
    nbs, out = folder
    envs = tmp_path / "envs"
    python = envs / envspec.env_dir(spec, "modern").name / "bin" / "python"
    python.parent.mkdir(parents=True)
    python.symlink_to(envspec.env_python(spec, "modern"))
    proc = run_script("run_matrix", "--notebooks", nbs, "--out", out, "--profile", "smoke", "--tasks", "cnn",
                      env=dict(os.environ, ROSETTA_ENVS=str(envs)), timeout=300)
    assert proc.returncode != 0
    error = read_json(out / "PyTorch_CNN.json")["error"]
    assert "kernel 'rosetta-modern' is not registered" in error and "`python3 -m scripts.setup_env modern`" in error


SLEEPER = 'print("sleeping %s", flush=True)\nimport time\ntime.sleep(%d)\n' + OK_CELL


def start_runner(nbs, out, marker, *extra):
    """run_matrix.py in the background; `marker` in the environment of every process of the run."""
    return subprocess.Popen(script_command("run_matrix", "--notebooks", nbs, "--out", out, "--profile", "smoke",
                                           "--tasks", "cnn", *extra), cwd=ROOT,
                            env=dict(os.environ, ROSETTA_TEST_RUN=marker), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)


def wait_for_output(proc, text, timeout=120):
    """Read the runner's output up to the line holding `text`."""
    seen = []

    def read():
        for line in proc.stdout:
            seen.append(line)
            if text in line:
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout)
    assert any(text in line for line in seen), "".join(seen)


def processes_of(marker):
    """{pid: command line} of the processes whose environment holds the marker."""
    found = {}
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if ("ROSETTA_TEST_RUN=" + marker).encode() in (proc / "environ").read_bytes().split(b"\0"):
                found[int(proc.name)] = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue  # gone, or not ours
    return found


def wait_until_gone(marker, timeout):
    end = time.time() + timeout
    while processes_of(marker) and time.time() < end:
        time.sleep(0.2)
    return processes_of(marker)


@pytest.fixture
def marker():
    """A mark for the environment of a run's processes; any of them left at the end are killed."""
    mark = uuid.uuid4().hex
    yield mark
    for pid in processes_of(mark):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_killed_runner_leaves_no_process_and_no_record(folder, marker):
    nbs, out = folder
    sleep = 6
    notebook(nbs / "PyTorch_CNN.ipynb", SLEEPER % (marker, sleep), "PyTorch_CNN", "cnn")
    runner = start_runner(nbs, out, marker)
    wait_for_output(runner, "sleeping " + marker)
    assert any("ipykernel" in cmd for cmd in processes_of(marker).values()), "the kernel carries the marker"
    runner.kill()
    killed = time.time()
    runner.wait()
    assert wait_until_gone(marker, sleep / 2) == {}, "the run's processes died with the runner"
    time.sleep(max(0.0, killed + sleep + 2 - time.time()))  # past the end of the notebook's sleep
    assert not list(out.rglob("*.json")), "no record from an orphaned kernel"
    runner.stdout.close()


def test_terminated_runner_stops_and_keeps_the_previous_result(folder, marker):
    import common
    nbs, out = folder
    out.mkdir()
    common.records.write_json_atomic(str(out / "PyTorch_CNN.json"), ok_record())
    (out / "PyTorch_CNN.ipynb").write_text("the previous executed notebook")
    kept = {p.name: p.read_bytes() for p in out.iterdir()}
    notebook(nbs / "PyTorch_CNN.ipynb", SLEEPER % (marker, 60), "PyTorch_CNN", "cnn")
    runner = start_runner(nbs, out, marker, "--force")
    wait_for_output(runner, "sleeping " + marker)
    runner.send_signal(signal.SIGTERM)
    rest = runner.communicate(timeout=30)[0]
    assert runner.returncode == 128 + signal.SIGTERM, rest
    assert "interrupted (SIGTERM) while running PyTorch_CNN" in rest
    assert processes_of(marker) == {}, "the kernel was stopped before the runner exited"
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.name != ".runner.lock"} == kept
    assert (out / ".runner.lock").read_text() == "", "the lock was released"


# ---- the device, the machine's own folder ----

H200_SMI = 'echo "NVIDIA H200, 580.95.05, 143771 MiB, 9.0"\n'  # nvidia-smi --query-gpu=...,compute_cap
H200 = {"name": "NVIDIA H200", "driver": "580.95.05", "memory": "143771 MiB", "compute_cap": "9.0"}


def machine_env(tmp_path, device, smi=None):
    """The environment of a runner on `device` that finds no built environment (nothing runs),
    with a stand-in nvidia-smi first on PATH when `smi` (its shell script) is given."""
    env = dict(os.environ, ROSETTA_DEVICE=device, ROSETTA_ENVS=str(tmp_path / "no-envs"))
    if smi:
        exe = tmp_path / "bin" / "nvidia-smi"
        exe.parent.mkdir()
        exe.write_text("#!/bin/sh\n" + smi)
        exe.chmod(0o755)
        env["PATH"] = "%s%s%s" % (exe.parent, os.pathsep, env["PATH"])
    return env


def runner(env, *args):
    return run_script("run_matrix", "--profile", "smoke", *args, env=env, timeout=120)


def test_gpu_picks_gpu_kernels_and_skips_what_it_cannot_run(tmp_path):
    nbs, results = tmp_path / "notebooks", tmp_path / "results"
    nbs.mkdir()
    for name, task in (("PyTorch_CNN", "cnn"), ("MXNet_CNN", "cnn"), ("Gluon_RNN", "rnn")):
        notebook(nbs / (name + ".ipynb"), OK_CELL, name, task)
    env = machine_env(tmp_path, "gpu", H200_SMI)
    out = results / "smoke" / "nvidia-h200-1x"

    listed = runner(env, "--notebooks", nbs, "--results", results, "--list")
    assert listed.returncode == 0, listed.stdout
    assert "device: GPU (NVIDIA H200, compute capability 9.0, driver 580.95.05); records: %s" % out in listed.stdout
    lines = listed.stdout.splitlines()
    assert re.search(r"^PyTorch_CNN\.ipynb .* env=torch-gpu +kernel=rosetta-torch-gpu ", listed.stdout, re.M)
    mxnet = lines.index(next(line for line in lines if line.startswith("MXNet_CNN.ipynb")))
    assert "env=mxnet-gpu" in lines[mxnet] and "kernel=rosetta-mxnet-gpu" in lines[mxnet]
    assert lines[mxnet + 1] == "    skipped: mxnet-gpu: kernels sm_5.0-8.6, no PTX; this GPU is sm_9.0 (NVIDIA H200)"
    assert not results.exists(), "--list writes nothing"

    proc = runner(env, "--notebooks", nbs, "--results", results)  # no --out: this GPU's own folder
    assert proc.returncode != 0, proc.stdout  # PyTorch's GPU environment is not built here
    assert sorted(p.relative_to(results).as_posix() for p in results.rglob("*.json")) == [
        "smoke/nvidia-h200-1x/" + name for name in ("Gluon_RNN.json", "MXNet_CNN.json", "PyTorch_CNN.json")]
    for name in ("MXNet_CNN", "Gluon_RNN"):
        rec = read_json(out / (name + ".json"))
        assert rec["status"] == "skipped" and "this GPU is sm_9.0 (NVIDIA H200)" in rec["error"], rec
        assert rec["device"]["kind"] == "cuda" and rec["device"]["name"] == "NVIDIA H200"
        assert (out / (name + ".json")).stat().st_mode & 0o777 == 0o644, "readable by all, as records are shared"
    failed = read_json(out / "PyTorch_CNN.json")
    assert failed["status"] == "failed" and failed["error"] == (
        "environment 'torch-gpu' is not built: run `python3 -m scripts.setup_env --device gpu torch-gpu`")
    assert "0 ok, 0 skipped, 1 failed (PyTorch_CNN), 2 not runnable here (skipped records)" in proc.stdout

    # Resume: a skipped record stands while its reason holds; it never replaces an ok record.
    skipped_at = read_json(out / "MXNet_CNN.json")["finished_at"]
    kept_ok = ok_record("Gluon_RNN", "rnn", device={"kind": "cuda", "name": "NVIDIA H200", "threads": 2})
    (out / "Gluon_RNN.json").write_text(json.dumps(kept_ok))
    proc = runner(env, "--notebooks", nbs, "--results", results, "--tasks", "cnn")
    assert "MXNet_CNN: skipped already: mxnet-gpu: kernels" in proc.stdout, proc.stdout
    assert read_json(out / "MXNet_CNN.json")["finished_at"] == skipped_at
    proc = runner(env, "--notebooks", nbs, "--results", results, "--frameworks", "Gluon", "--force")
    assert proc.returncode == 0 and "kept its ok record" in proc.stdout, proc.stdout
    assert read_json(out / "Gluon_RNN.json") == kept_ok

    # Gluon_Inference has a mixed-precision path (common.precision), in the GPU's --amp column
    notebook(nbs / "Gluon_Inference.ipynb", "print(MIXED_PRECISION)", "Gluon_Inference", "inference")
    declare_mixed_precision(nbs / "Gluon_Inference.ipynb", "step:model")
    proc = runner(env, "--notebooks", nbs, "--results", results, "--frameworks", "Gluon", "--tasks", "inference",
                  "--amp")
    amp = read_json(results / "smoke-amp" / "nvidia-h200-1x" / "Gluon_Inference.json")
    assert amp["status"] == "skipped" and amp["params"]["mixed_precision"] is True, proc.stdout


def test_skipped_record_stands_while_its_reason_holds(tmp_path, monkeypatch):
    from scripts import run_matrix
    monkeypatch.setattr(run_matrix.envinfo, "nvidia_gpus", lambda: [H200])
    reason = "mxnet-gpu: kernels sm_5.0-8.6, no PTX; this GPU is sm_9.0 (NVIDIA H200)"
    path = tmp_path / "MXNet_CNN.json"
    rec = ok_record("MXNet_CNN", device={"kind": "cuda", "name": "NVIDIA H200", "threads": 2})
    path.write_text(json.dumps(dict(rec, status="skipped", error=reason, metrics={})))
    assert run_matrix.resume_decision(path, tmp_path, reason) == (True, None)
    assert run_matrix.resume_decision(path, tmp_path, None) == (
        False, "its skipped record's reason no longer holds: running it")  # e.g. a newer environment spec
    assert run_matrix.resume_decision(path, tmp_path, "mxnet-gpu: another reason") == (False, None), \
        "a new reason: a new skipped record"


def test_machine_key():
    import common
    key = common.envinfo.machine_key
    xeon = {"vendor": "GenuineIntel", "family": "6", "model": "207", "vector_flags": ["avx512f"]}
    assert key(2, name="Intel(R) Xeon(R) Processor", ident=xeon) == "intel-xeon-processor-6-207-2t"
    assert key(16, name="Intel(R) Xeon(R) Platinum 8480+ CPU @ 2.00GHz", ident=xeon) == \
        "intel-xeon-platinum-8480-cpu-6-207-16t"
    epyc = {"vendor": "AuthenticAMD", "family": "25", "model": "1"}
    assert key(2, name="QEMU Virtual CPU version 2.5+", ident=epyc) == "amd-qemu-virtual-cpu-version-2-5-25-1-2t"
    assert key(8, name="Apple M2", ident={"machine": "arm64"}) == "apple-m2-arm64-8t"
    assert key(2, gpus=[H200]) == key(64, gpus=[H200]) == "nvidia-h200-1x"
    assert key(2, gpus=[dict(H200, name="NVIDIA GeForce RTX 4090")] * 2) == "nvidia-geforce-rtx-4090-2x"


def test_committed_records_lie_in_their_machines_folder():
    """results/<profile>[-amp]/<machine key>/: the key from the record's CPU and threads (where
    it has no cpu_id, an older record, the model name and threads at least) or its GPU."""
    import common
    found = common.records.load_records(str(ROOT / "results"))
    assert found
    for rec in found:
        path = Path(rec["_path"]).relative_to(ROOT / "results")
        dev, cpu_id = rec["device"], rec["environment"].get("cpu_id")
        assert len(path.parts) == 3 and path.parts[0] == rec["profile"] + ("-amp" if rec["params"].get(
            "mixed_precision") else ""), path
        if dev["kind"] != "cpu":
            assert path.parts[1] == common.envinfo.machine_key(0, gpus=rec["environment"]["gpus"]), path
        elif cpu_id:  # the machine's threads, whatever count the run used (the thread rule)
            threads = common.records.machine_threads(rec)
            assert path.parts[1] == common.envinfo.machine_key(threads, name=dev["name"], ident=cpu_id), path
        else:
            name, threads = common.envinfo.machine_key(dev["threads"], name=dev["name"], ident={}).rsplit("-", 1)
            assert path.parts[1].startswith(name + "-") and path.parts[1].endswith("-" + threads), path


def test_each_machine_writes_its_own_folder_and_never_another(tmp_path):
    import common
    from scripts import envspec
    nbs, results = tmp_path / "notebooks", tmp_path / "results"
    nbs.mkdir()
    notebook(nbs / "PyTorch_CNN.ipynb", OK_CELL, "PyTorch_CNN", "cnn")
    env = machine_env(tmp_path, "cpu")
    mine = results / "smoke" / common.envinfo.machine_key(envspec.thread_count())
    other = results / "smoke" / "other-cpu-6-85-2t"
    other.mkdir(parents=True)
    other_rec = ok_record(device={"kind": "cpu", "name": "Other CPU", "threads": 2})
    (other / "PyTorch_CNN.json").write_text(json.dumps(other_rec))
    (other / "PyTorch_CNN.ipynb").write_text("its executed notebook")
    elsewhere = tmp_path / "elsewhere"  # a folder outside the results tree, holding another machine's record
    shutil.copytree(other, elsewhere)
    untouched = {p: p.read_bytes() for folder in (other, elsewhere) for p in folder.iterdir()}

    proc = runner(env, "--notebooks", nbs, "--results", results)
    assert "environment 'modern' is not built" in read_json(mine / "PyTorch_CNN.json")["error"], proc.stdout
    for out, why in ((other, "its name is the machine key 'other-cpu-6-85-2t'"),
                     (results / "smoke" / "nvidia-h200-1x", "its name is the machine key 'nvidia-h200-1x'"),
                     (elsewhere, "PyTorch_CNN.json was measured on another machine (Other CPU, 2 threads)")):
        proc = runner(env, "--notebooks", nbs, "--out", out, "--results", results)
        assert proc.returncode != 0 and "%s is another machine's records folder (%s" % (out, why) in proc.stdout
        assert "refused; this machine's records go to %s (the default" % mine in proc.stdout
    assert not (results / "smoke" / "nvidia-h200-1x").exists()
    assert sorted(p.name for p in results.glob("smoke/*")) == sorted([mine.name, other.name])
    assert {p: p.read_bytes() for folder in (other, elsewhere) for p in folder.iterdir()} == untouched
