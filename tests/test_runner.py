"""The runner isolates failures, resumes, times out, and records why a notebook failed."""
import json

import nbformat
import pytest

from conftest import read_json, run_script

OK_CELL = """
import common
common.provenance.note_source("test", "synthetic", synthetic=True)
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
    return run_script("run_matrix.py", "--notebooks", nbs, "--out", out, "--profile", "smoke", *extra)


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

    proc = run(nbs, out, "--force", "--tasks", "cnn")
    assert proc.returncode == 0
    assert "1 ok, 0 skipped, 0 failed" in proc.stdout


def test_timeout_kills_and_records(folder):
    nbs, out = folder
    notebook(nbs / "PyTorch_CNN.ipynb", "import time; time.sleep(600)", "PyTorch_CNN", "cnn")
    proc = run(nbs, out, "--tasks", "cnn", "--timeout", "20")
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


def test_amp_runs_only_notebooks_with_a_mixed_precision_path(tmp_path):
    nbs, out = tmp_path / "notebooks", tmp_path / "out"
    nbs.mkdir()
    amp_cell = OK_CELL.replace("params={}", "params={'mixed_precision': MIXED_PRECISION}")
    notebook(nbs / "PyTorch_CNN.ipynb", amp_cell, "PyTorch_CNN", "cnn")
    nb = nbformat.read(str(nbs / "PyTorch_CNN.ipynb"), as_version=4)
    nb.cells[0].source += "\nMIXED_PRECISION = False"
    nbformat.write(nb, str(nbs / "PyTorch_CNN.ipynb"))
    notebook(nbs / "PyTorch_RNN.ipynb", OK_CELL, "PyTorch_RNN", "rnn")
    proc = run(nbs, out, "--amp")
    assert proc.returncode == 0, proc.stdout
    assert "No mixed-precision path (left out): PyTorch_RNN" in proc.stdout
    assert read_json(out / "PyTorch_CNN.json")["params"]["mixed_precision"] is True
    assert not (out / "PyTorch_RNN.json").exists()


def test_slow_machine_is_warned_about(tmp_path):
    import common
    import envspec
    import run_matrix
    roof = tmp_path / "roofline.json"
    hardware = {"name": common.envinfo.cpu_model(), "threads": envspec.thread_count()}
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


def test_record_from_another_machine_is_kept(tmp_path):
    import common
    import run_matrix
    rec = {"status": "ok", "notebook": "PyTorch_CNN", "device": {"kind": "cpu", "name": "Other CPU 1", "threads": 2}}
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
    rec["status"] = "failed"
    path.write_text(json.dumps(rec))
    assert run_matrix.resume_decision(path, tmp_path) == (False, None)
