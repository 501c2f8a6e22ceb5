"""Every notebook in notebooks/ runs end to end through papermill on the smoke profile."""
import json
import os
import re
import subprocess
import sys

from scripts import envspec
import pytest

from common import catalogue
from common.precision import MIXED_PRECISION_NOTEBOOKS, TF32_NOTEBOOKS
from conftest import ROOT, read_json, run_script

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One runner call for every notebook (kernels start once each); its records by notebook."""
    out = tmp_path_factory.mktemp("smoke")
    proc = run_script("run_matrix", "--profile", "smoke", "--out", out, "--force",
                      "--timeout", 1200)
    print(proc.stdout[-5000:])
    return out, proc


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_source_notebook_is_clean_and_structured(nb):
    data = json.loads(nb.read_text())
    code = [c for c in data["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in code), \
        "source notebooks are committed without outputs"
    tagged = [c for c in code if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, "exactly one cell tagged 'parameters'"
    assert "PROFILE" in "".join(tagged[0]["source"])
    headings = [line[3:].strip() for c in data["cells"] if c["cell_type"] == "markdown"
                for line in "".join(c["source"]).splitlines() if line.startswith("## ")]
    task = catalogue.task_of(nb)
    assert headings == catalogue.sections(task)
    # a fixed header: the title, then the task's fields in order, one bullet each
    header = "".join(data["cells"][0]["source"])
    fields = re.findall(r"^- \*\*(.+?):\*\*", header, re.M)
    assert header.startswith("# ") and fields == list(catalogue.HEADER_FIELDS[task]), fields
    # measured timings belong in results/TUNING.md, not in a notebook's text
    prose = "\n".join("".join(c["source"]) for c in data["cells"] if c["cell_type"] == "markdown")
    assert not re.search(r"\b\d[\d,.]*(-\d[\d,.]*)? ?(ms|s per|GFLOP/s)\b", prose), "timings: results/TUNING.md"
    # one code cell per section, so that the same step can be set side by side across frameworks
    section, code_cells = None, {}
    for c in data["cells"]:
        text = "".join(c["source"])
        if c["cell_type"] == "markdown" and text.startswith("## "):
            section = text.splitlines()[0][3:].strip()
        elif c["cell_type"] == "code":
            code_cells[section] = code_cells.get(section, 0) + 1
    assert code_cells == {h: 1 for h in headings}, "exactly one code cell per section"
    title = "".join(data["cells"][0]["source"]).splitlines()[0]
    assert title.startswith("# ") and ":" in title


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_notebook_smoke(nb, smoke_run, spec):
    out, proc = smoke_run
    record = read_json(out / (nb.stem + ".json"))
    assert record["status"] == "ok", record.get("error")
    assert record["profile"] == "smoke"
    assert (out / nb.name).exists(), "executed notebook saved"
    prefix, task = nb.stem.rsplit("_", 1)
    assert record["task"] == catalogue.TASK_OF_SUFFIX[task]
    assert record["framework"] == envspec.framework_table(spec)[prefix][1]
    assert record["device"]["threads"] >= 1
    assert record["versions"]["python"]
    assert record["arithmetic"] == "float32", "strict float32 unless TF32 is asked for"
    if nb.stem in MIXED_PRECISION_NOTEBOOKS:
        assert record["params"]["mixed_precision"] is False, "mixed precision is off unless --amp asks"
    m = record["metrics"]
    if record["task"] == "inference":
        assert m["images_per_second"] > 0
        assert abs(m["seconds_per_1000_images"] * m["images_per_second"] - 1000) < 1e-6 * 1000
    else:
        assert record["synthetic_data"] is True, "smoke training runs on synthetic data"
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["train_seconds"] > 0
        if record["task"] == "cnn":
            assert m["parameters"] == 3441592
    if record["task"] == "inference":
        passes = m["inference_passes"]
        assert passes["repeats"] == len(passes["seconds"]) >= 2, "inference reports every timed pass"
    fid = record.get("fidelity")
    assert fid, "the notebook has a Fidelity section whose verdict reaches the record"
    failed = [c for c in fid["checks"] if not c["passed"]]
    assert fid["passed"], "fidelity failed: %s; not run: %s" % (failed, fid["missing"])
    assert record["data_source"].get("fidelity_cifar10" if record["task"] == "cnn" else "fidelity_imdb"
                                      if record["task"] == "rnn" else "photo_check"), "the fixed batch is real data"


def test_fidelity_command_collects_every_notebook(smoke_run, tmp_path):
    """scripts/fidelity.py over the smoke run's records: one passing entry per notebook."""
    out, _ = smoke_run
    proc = run_script("fidelity", "--from", out, "--out", tmp_path / "fidelity.json")
    print(proc.stdout[-3000:])
    entries = read_json(tmp_path / "fidelity.json")["notebooks"]
    assert sorted(e["notebook"] for e in entries) == sorted(p.stem for p in NOTEBOOKS)
    assert proc.returncode == 0, "a notebook failed its fidelity check"
    assert all(e["passed"] and e["max_abs_diff"] for e in entries)


def mixed_precision_notebooks(tasks):
    return [nb for nb in NOTEBOOKS if nb.stem.rsplit("_", 1)[1] in tasks and nb.stem in MIXED_PRECISION_NOTEBOOKS]


def uses_parameter(nb, name):
    """Whether a step of the notebook (its parameters cell aside) reads the parameter `name`."""
    cells = json.loads(nb.read_text())["cells"]
    return any(tag.startswith("step:") and re.search(r"\b%s\b" % name, "".join(c["source"]))
               for c in cells for tag in c.get("metadata", {}).get("tags", []))


@pytest.mark.parametrize("nb", NOTEBOOKS, ids=[p.stem for p in NOTEBOOKS])
def test_arithmetic_parameters_match_common_precision(nb):
    """Every notebook declares MIXED_PRECISION = False, and those with a TF32 path TF32 = False;
    common.precision lists exactly the notebooks whose steps use each (start_run stops the others
    when one is True)."""
    cells = json.loads(nb.read_text())["cells"]
    params = "".join(next(c for c in cells if "parameters" in c.get("metadata", {}).get("tags", []))["source"])
    assert re.search(r"^MIXED_PRECISION = False\b", params, re.M)
    assert uses_parameter(nb, "MIXED_PRECISION") == (nb.stem in MIXED_PRECISION_NOTEBOOKS)
    assert bool(re.search(r"^TF32 = False\b", params, re.M)) == (nb.stem in TF32_NOTEBOOKS)
    assert uses_parameter(nb, "TF32") == (nb.stem in TF32_NOTEBOOKS)


@pytest.mark.parametrize("name, parameter, message", [
    ("Chainer_RNN", "MIXED_PRECISION", "Chainer_RNN has no mixed-precision path"),
    ("Chainer_RNN", "TF32", "Chainer_RNN has no TF32 path"),
    ("PyTorch_RNN", "TF32", "TF32 is an NVIDIA GPU's arithmetic")])
def test_arithmetic_without_a_path_stops(tmp_path, name, parameter, message):
    """MIXED_PRECISION or TF32 passed as True through papermill directly, to a notebook with no
    such path (or, for TF32, on a machine without an NVIDIA GPU): it stops at Set-up with the
    reason, and writes no record."""
    nb = ROOT / "notebooks" / (name + ".ipynb")
    env = dict(os.environ, JUPYTER_PATH=os.pathsep.join(envspec.jupyter_path(envspec.load_spec())))
    proc = subprocess.run([sys.executable, "-m", "papermill", str(nb), str(tmp_path / nb.name),
                           "-p", "PROFILE", "smoke", "-p", "RECORD_DIR", str(tmp_path),
                           "-p", parameter, "True", "--cwd", str(nb.parent)],
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, timeout=600)
    assert proc.returncode != 0
    assert message in proc.stdout
    assert not (tmp_path / (name + ".json")).exists()


def test_mixed_precision_smoke(tmp_path):
    """--amp on the CNN and GRU notebooks with a mixed-precision path: each trains in bfloat16 on
    this CPU and still passes its Fidelity check (made in float32); notebooks without the path are
    left out. (ResNet-50 is not run here: without AVX512-BF16 one batch of 32 takes Keras (PyTorch)
    about 100 s in bfloat16.)"""
    with_amp = mixed_precision_notebooks(("CNN", "RNN"))
    assert len([nb for nb in with_amp if nb.stem.endswith("_CNN")]) >= 6, \
        "PyTorch, TensorFlow, JAX (Flax) and Keras 3 on three backends"
    assert len(with_amp) >= 10, "and the GRUs of PyTorch and Keras 3"
    proc = run_script("run_matrix", "--profile", "smoke", "--out", tmp_path, "--force", "--amp",
                      "--tasks", "cnn", "rnn", "--timeout", 900)
    print(proc.stdout[-5000:])
    assert proc.returncode == 0
    for nb in NOTEBOOKS:
        path = tmp_path / (nb.stem + ".json")
        if nb not in with_amp:
            assert not path.exists(), "a notebook without MIXED_PRECISION, or of another task, must not run"
            continue
        record = read_json(path)
        assert record["status"] == "ok", (nb.stem, record.get("error"))
        assert record["params"]["mixed_precision"] == "bfloat16", "no GPU here: bfloat16"
        assert 0.0 <= record["metrics"]["test_accuracy"] <= 1.0
        assert record["fidelity"]["passed"], [c for c in record["fidelity"]["checks"] if not c["passed"]]
