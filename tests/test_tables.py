"""README tables and plots come from ok records on real data only."""
import json
import re
import shutil

import pytest

from scripts import make_tables
from common import catalogue, records
from conftest import ROOT, run_script


INTEL = {"vendor": "GenuineIntel", "family": "6", "model": "207", "vector_flags": ["avx2", "amx_bf16"]}
ZEN5 = {"vendor": "AuthenticAMD", "family": "26", "model": "2", "vector_flags": ["avx2", "fma", "avx512f"]}


def record(tmp, name, framework, task, status="ok", synthetic=False, profile="cpu", folder=None,
           mixed_precision=False, cpu_id=None, error="boom", rates=None, device=None,
           finished_at="2026-11-28T12:00:00+00:00", file=None, params=None, **metrics):
    """A record written to tmp/<folder or profile>/<file or name.json>; `rates`: the machine's
    matmul rates measured before and after it (harness.machine_gflops_before_after)."""
    rec = {
        "schema": 1, "notebook": name, "framework": framework, "task": task, "profile": profile,
        "status": status, "error": None if status == "ok" else error, "synthetic_data": synthetic,
        "device": device or {"kind": "cpu", "name": "Test CPU 9000", "threads": 2},
        "versions": {"python": "3.11", "torch": "2.13.0"},
        "params": dict({"epochs": 1, "mixed_precision": mixed_precision}, **(params or {})),
        "metrics": metrics, "finished_at": finished_at,
        "environment": {"memory_gib": 23.4, "cpu_id": cpu_id or {}},
    }
    if rates is not None:
        rec["harness"] = {"machine_gflops_before_after": list(rates)}
    records.write_json_atomic(str(tmp / (folder or profile) / (file or name + ".json")), rec)


def empty_readme(tmp_path):
    """A README holding only the markers make_tables.py fills."""
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:start -->\n<!-- results:end -->\n<!-- fidelity:start -->\n<!-- fidelity:end -->\n")
    return readme


def cnn_table(res, readme):
    """make_tables.py on the records in `res` into `readme` (which must succeed), and the CNN section."""
    proc = run_script("make_tables", "--results", res, "--readme", readme)
    assert proc.returncode == 0, proc.stdout
    return readme.read_text().split("### VGG-style")[1].split("###")[0]


def test_tables_from_records(tmp_path):
    res = tmp_path / "results"
    shutil.copy(ROOT / "results" / "original_2018.csv", res.mkdir() or res)
    record(res, "PyTorch_CNN", "PyTorch", "cnn", train_seconds=412.3, test_accuracy=0.6543, cpu_id=INTEL)
    record(res, "Fake_CNN", "Fake", "cnn", synthetic=True, train_seconds=1, test_accuracy=0.99, cpu_id=INTEL)
    record(res, "Other_CNN", "Other", "cnn", status="failed", cpu_id=INTEL)
    record(res, "PyTorch_Inference", "PyTorch", "inference", cpu_id=INTEL,
           seconds_per_1000_images=61.25, images_per_second=16.33)
    record(res, "MXNet_Inference", "MXNet", "inference", seconds_per_1000_images=50.0, cpu_id=INTEL,
           images_per_second=20.0, inference_seconds=64.0,
           inference_passes={"median": 64.0, "min": 62.72, "max": 65.28, "repeats": 2, "seconds": [62.72, 65.28]})
    record(res, "PyTorch_RNN", "PyTorch", "rnn", profile="smoke", train_seconds=1, test_accuracy=0.5)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- results:start -->\nold\n<!-- results:end -->\n"
                      "<!-- fidelity:start -->\n<!-- fidelity:end -->\noutro\n")

    proc = run_script("make_tables", "--results", res, "--readme", readme)
    assert proc.returncode == 0, proc.stdout
    text = readme.read_text()
    assert text.startswith("intro\n") and text.endswith("outro\n") and "old" not in text
    cnn = text.split("### VGG-style")[1].split("###")[0]
    assert "| PyTorch | 65.4% in 412 s | torch 2.13.0 |" in cnn
    assert "99.0%" not in text, "synthetic results never reach a table"
    assert "| Other | failed |" in cnn
    assert "`cpu` (1 epoch) on H1" in cnn
    assert "61.2 s (16 img/s)" in text
    assert "| MXNet | 50.0 s (49.0-51.0 over 2 passes; 20 img/s) |" in text
    rnn = text.split("### GRU on IMDB")[1].split("###")[0]
    assert "No results on real data yet" in rnn, "smoke records never reach a table"
    assert "H1: Test CPU 9000, 2 threads, 23.4 GiB memory (CPU; GenuineIntel family 6 model 207, avx2 amx_bf16)" in text
    assert "| Knet (Julia) | 78 | 159 |" in text
    assert (res / "plots" / "cnn.png").stat().st_size > 1000
    assert not (res / "plots" / "rnn.png").exists()

    assert run_script("make_tables", "--results", res, "--readme", readme, "--check").returncode == 0
    record(res, "PyTorch_CNN", "PyTorch", "cnn", train_seconds=300, test_accuracy=0.7, cpu_id=INTEL)
    stale = run_script("make_tables", "--results", res, "--readme", readme, "--check")
    assert stale.returncode != 0 and "stale" in stale.stdout


def test_readme_is_up_to_date():
    proc = run_script("make_tables", "--check")
    assert proc.returncode == 0, proc.stdout


def test_every_framework_keeps_a_row(spec):
    rows = make_tables.readme_rows(spec, [])
    notes = make_tables.envspec.framework_notes(spec)
    text = make_tables.render([], rows, notes=notes)
    for _, row in make_tables.envspec.framework_table(spec).values():
        assert "| %s (not run yet) |" % row in text
    assert "Theano" in notes, "the Theano row says why it is not Lasagne"
    for row, note in notes.items():
        assert text.count("- %s: %s" % (row, note)) == len(catalogue.TASK_TITLES)


def test_rnn_table_names_each_gru_variant(tmp_path):
    record(tmp_path, "A_RNN", "A", "rnn", train_seconds=30, test_accuracy=0.86)
    rec = records.load_records(str(tmp_path))[0]
    rec["params"]["gru_variant"] = "reset_after, two biases"
    rec["harness"] = {"notebook_wall_seconds": 42.0, "timed_seconds": 30.0, "untimed_seconds": 12.0,
                      "machine_gflops_before_after": [301.2, 288.0]}
    text = make_tables.render([rec], ["A", "B"])
    assert "Outside the timed blocks" in text and "RNN 12 s (12-12 s, 1 notebook(s))" in text
    assert "before and after 1 of the runs: 288-301 GFLOP/s" in text
    rnn = text.split("### GRU on IMDB")[1].split("###")[0]
    assert "| Framework | GRU variant |" in rnn
    assert "| A | reset_after, two biases | 86.0% in 30 s |" in rnn
    assert "| B |  | not run yet |" in rnn


def test_fidelity_table(tmp_path):
    tol = {"outputs": 1e-4, "after one step": 1e-3, "loss after the step": 1e-4}
    entries = [
        {"notebook": "PyTorch_RNN", "framework": "PyTorch", "task": "rnn", "passed": True,
         "max_abs_diff": {"outputs": 2e-7, "after one step": 3e-6, "loss after the step": 4e-8}, "tolerance": tol,
         "variant": {"gru": "reset_after", "bias_vectors": 2, "adam_epsilon": "v_hat", "adam_iteration": 1}},
        {"notebook": "Other_CNN", "framework": "Other", "task": "cnn", "passed": False,
         "max_abs_diff": {"outputs": 0.5, "after one step": 0.6, "loss after the step": 0.1}, "tolerance": tol},
        {"notebook": "Other_Inference", "framework": "Other", "task": "inference", "passed": False,
         "error": "the notebook has no fidelity section"},
    ]
    path = tmp_path / "fidelity.json"
    records.write_json_atomic(str(path), {"schema": 1, "generated_at": "2026-12-02T01:00:00+00:00",
                                          "notebooks": entries})
    text = make_tables.render_fidelity(path, ["Other", "PyTorch", "Quiet"])
    assert "| PyTorch | not checked | pass: 2.0e-07 / 3.0e-06 / 4.0e-08 | reset after, 2 bias vectors; Adam eps on v-hat | not checked |" in text
    assert "| Other | **FAILED**: outputs 5.0e-01 > 1e-04, after one step 6.0e-01 > 1e-03" in text
    assert "**FAILED**: the notebook has no fidelity section |" in text
    assert "| Quiet | not checked | not checked |  | not checked |" in text
    assert "GRU 2.0e-07 (PyTorch)" in text


def test_mixed_precision_gets_its_own_column(tmp_path):
    res = tmp_path / "results"
    shutil.copy(ROOT / "results" / "original_2018.csv", res.mkdir() or res)
    record(res, "PyTorch_CNN", "PyTorch", "cnn", train_seconds=400, test_accuracy=0.65)
    record(res, "PyTorch_CNN", "PyTorch", "cnn", folder="cpu-amp", mixed_precision="bfloat16",
           train_seconds=250, test_accuracy=0.64)
    readme = empty_readme(tmp_path)
    cnn = cnn_table(res, readme)
    assert "| `cpu` (1 epoch) on H1 | `cpu` (1 epoch), mixed precision (bfloat16) on H1 |" in cnn
    assert "| PyTorch | 65.0% in 400 s | 64.0% in 250 s |" in cnn
    assert cnn.count("- H1:") <= 1 and readme.read_text().count("- H1: Test CPU 9000") == 1


def test_tf32_gets_its_own_column(tmp_path):
    """A TF32 run (record arithmetic "tf32") and a strict float32 one on the same GPU: two columns."""
    res = tmp_path / "results"
    shutil.copy(ROOT / "results" / "original_2018.csv", res.mkdir() or res)
    gpu = {"kind": "cuda", "name": "NVIDIA H200", "threads": 16}
    record(res, "PyTorch_CNN", "PyTorch", "cnn", profile="full", device=gpu, params={"epochs": 10},
           train_seconds=30, test_accuracy=0.75)
    path = res / "full-tf32" / "PyTorch_CNN.json"
    record(res, "PyTorch_CNN", "PyTorch", "cnn", profile="full", folder="full-tf32", device=gpu,
           params={"epochs": 10}, train_seconds=20, test_accuracy=0.74)
    rec = json.loads(path.read_text())
    rec["arithmetic"] = "tf32"
    path.write_text(json.dumps(rec))
    readme = empty_readme(tmp_path)
    cnn = cnn_table(res, readme)
    assert "| `full` (10 epochs) on H1 | `full` (10 epochs), TF32 on H1 |" in cnn
    assert "| PyTorch | 75.0% in 30 s | 74.0% in 20 s |" in cnn


def test_stale_records_are_marked(tmp_path):
    import nbformat
    res, nbs = tmp_path / "results", tmp_path / "notebooks"
    nbs.mkdir()
    shutil.copy(ROOT / "results" / "original_2018.csv", res.mkdir() or res)
    record(res, "PyTorch_CNN", "PyTorch", "cnn", train_seconds=412.3, test_accuracy=0.6543)
    record(res, "MXNet_CNN", "MXNet", "cnn", train_seconds=300.0, test_accuracy=0.6)
    for name in ("PyTorch_CNN", "MXNet_CNN"):
        cells = [nbformat.v4.new_code_cell(src) for src in ("x = 1", "loop()", "check()")]
        for cell, step in zip(cells, ("setup", "train", "fidelity")):
            cell.metadata["tags"] = ["step:" + step]
        nbformat.write(nbformat.v4.new_notebook(cells=cells), str(res / "cpu" / (name + ".ipynb")))
        cells[2].source = "check(more=True)"  # a check changed: not stale
        if name == "PyTorch_CNN":
            cells[1].source = "faster_loop()"
        nbformat.write(nbformat.v4.new_notebook(cells=cells), str(nbs / (name + ".ipynb")))
    readme = empty_readme(tmp_path)
    proc = run_script("make_tables", "--results", res, "--readme", readme, "--notebooks", nbs)
    assert proc.returncode == 0, proc.stdout
    cnn = readme.read_text().split("### VGG-style")[1].split("###")[0]
    assert "| PyTorch | 65.4% in 412 s † |" in cnn
    assert "| MXNet | 60.0% in 300 s |" in cnn
    assert "steps named here have changed since" in cnn and ": PyTorch (Train)." in cnn
    listing = run_script("stale_records", "--results", res, "--notebooks", nbs).stdout
    assert "cpu/PyTorch_CNN.json: changed since the run: Train" in listing and "1 stale record(s)" in listing


MALFORMED = {  # file name: (what it holds, the reason make_tables must give)
    "Cut_CNN.json": ('{"schema": 1, "notebook": "Cut_CNN", "status": "ok", "metr', "invalid JSON"),
    "Weird_CNN.json": ({"status": "weird"}, "status is 'weird', not one of ('ok', 'failed', 'skipped')"),
    "List_CNN.json": ({"metrics": [412.3, 0.65]}, "metrics is [412.3, 0.65], not a dict"),
    "Text_CNN.json": ({"metrics": {"train_seconds": "412", "test_accuracy": 0.65}},
                      "metrics.train_seconds is '412', not a positive number"),
    "Empty_CNN.json": ({"metrics": {}}, "cnn record lacks metrics ['train_seconds', 'test_accuracy']"),
    "Percent_CNN.json": ({"metrics": {"train_seconds": 412.3, "test_accuracy": 48.7}},
                         "metrics.test_accuracy is 48.7, not a number in [0, 1]"),
    "Negative_CNN.json": ({"metrics": {"train_seconds": -257, "test_accuracy": 0.487}},
                          "metrics.train_seconds is -257, not a positive number"),
    "NaN_CNN.json": ({"metrics": {"train_seconds": float("nan"), "test_accuracy": 0.487}},
                     "metrics.train_seconds is nan, not a positive number"),
}


def test_malformed_records_are_named_and_skipped(tmp_path):
    res = tmp_path / "results"
    shutil.copy(ROOT / "results" / "original_2018.csv", res.mkdir() or res)
    record(res, "PyTorch_CNN", "PyTorch", "cnn", train_seconds=412.3, test_accuracy=0.6543)
    record(res, "Gpu_CNN", "Gpu", "cnn", status="skipped", error="needs a CUDA GPU | none here\nmore detail")
    good = json.loads((res / "cpu" / "PyTorch_CNN.json").read_text())
    for name, (content, _) in MALFORMED.items():
        if isinstance(content, dict):
            content = json.dumps(dict(good, notebook=name[:-5], framework=name.split("_")[0], **content))
        (res / "cpu" / name).write_text(content)
    (res / "roofline.json").write_text(json.dumps({"machines": []}))
    (res / "layer_ceiling.json").write_text(json.dumps({"peak_gflops": 1.0}))
    (res / "fidelity.json").write_text(json.dumps({"schema": 1, "generated_at": "2026-12-02", "notebooks": []}))
    readme = empty_readme(tmp_path)

    proc = run_script("make_tables", "--results", res, "--readme", readme)
    assert proc.returncode != 0 and "Traceback" not in proc.stdout, proc.stdout
    skipped = dict(re.findall(r"^skipping (.+?): (.+)$", proc.stdout, re.M))
    assert set(skipped) == {str(res / "cpu" / name) for name in MALFORMED}, proc.stdout
    for name, (_, reason) in MALFORMED.items():
        assert skipped[str(res / "cpu" / name)].startswith(reason), proc.stdout
    text = readme.read_text()
    cnn = text.split("### VGG-style")[1].split("###")[0]
    assert "| PyTorch | 65.4% in 412 s |" in cnn, "the valid record still makes its table"
    assert "| Gpu | skipped: needs a CUDA GPU / none here |" in cnn
    assert "4870" not in text and "-257" not in text and not re.search(r"\bnan\b", text)
    assert (res / "plots" / "cnn.png").exists()

    check = run_script("make_tables", "--results", res, "--readme", readme, "--check")
    assert check.returncode != 0 and "skipping %s" % (res / "cpu" / "NaN_CNN.json") in check.stdout
    listing = run_script("stale_records", "--results", res, "--notebooks", tmp_path)
    assert listing.returncode != 0 and "skipping %s: metrics.test_accuracy is 48.7" % (
        res / "cpu" / "Percent_CNN.json") in listing.stdout


def test_cell_never_prints_an_impossible_figure(tmp_path):
    record(tmp_path, "A_CNN", "A", "cnn", train_seconds=-257, test_accuracy=48.7)
    rec = json.loads((tmp_path / "cpu" / "A_CNN.json").read_text())
    rec["_path"] = "cpu/A_CNN.json"
    with pytest.raises(records.RecordError, match=r"^cpu/A_CNN.json: metrics.test_accuracy is 48.7"):
        make_tables.cell(rec, {"peak_gflops": 100.0})
    rec["metrics"]["test_accuracy"] = 0.487
    with pytest.raises(records.RecordError, match="train_seconds is -257"):
        make_tables.render([rec], ["A"])


def inference(tmp, framework, images_per_second=20.0, **kw):
    """An inference record of `framework`: 20 images/s is 154 GFLOP/s (common/flops.py)."""
    record(tmp, framework + "_Inference", framework, "inference", images_per_second=images_per_second,
           seconds_per_1000_images=1000.0 / images_per_second, **kw)


def section(text, heading):
    return text.split(heading)[1].split("###")[0]


def test_fraction_is_of_the_rate_measured_beside_the_run(tmp_path):
    """Each record's FLOP rate is a share of the mean of the matmul rates measured before and after
    it; a run whose two rates differ by more than RATE_TOLERANCE is marked; a run without them falls
    back to the stored peak, and says so."""
    rate = 20.0 * make_tables.FLOPS_PER_IMAGE["inference"]() / 1e9  # 154 GFLOP/s
    inference(tmp_path, "Steady", rates=[180.0, 220.0])  # 18% apart: within the tolerance
    inference(tmp_path, "Shaky", rates=[224.0, 163.0])  # 27% apart
    inference(tmp_path, "Old")  # no rates measured: the stored peak
    record(tmp_path, "Shaky_RNN", "Shaky", "rnn", train_seconds=30, test_accuracy=0.86, rates=[300.0, 150.0])
    recs = records.load_records(str(tmp_path))
    roof = {"machines": [{"hardware": {"name": "Test CPU 9000", "threads": 2}, "peak_gflops": 400.0,
                          "median_gflops": 380.0, "size": 4096, "repeats": 7, "blas": "someblas 1.0",
                          "numpy": "2.4.6"}]}
    text = make_tables.render(recs, ["Old", "Shaky", "Steady"], roof)
    inf = section(text, "### ResNet-50")
    assert "| Steady | 50.0 s (20 img/s); %.0f GFLOP/s, %.0f%% of measured rate |" % (rate, rate / 2) in inf
    assert "| Shaky | 50.0 s (20 img/s); %.0f GFLOP/s, %.0f%% of measured rate § |" % (
        rate, 100 * rate / 193.5) in inf
    assert "| Old | 50.0 s (20 img/s); %.0f GFLOP/s, %.0f%% of stored peak |" % (rate, rate / 4) in inf
    assert make_tables.RATE_TOLERANCE == 0.2
    caption = inf.split("\n|")[0]
    assert "*of measured rate*: of the mean of the rates the runner measured just before and just after" in caption
    assert "*of stored peak*: of the best rate stored for the machine" in caption
    assert "§: the rates measured before and after the run differ by more than 20% of the larger" in caption
    assert "changed during the run by more than 20%" in inf and "re-run it: Shaky (224 -> 163 GFLOP/s)." in inf
    rnn = section(text, "### GRU on IMDB")
    assert "| Shaky | 86.0% in 30 s § |" in rnn and "Shaky (300 -> 150 GFLOP/s)" in rnn, "timings are marked too"
    assert "of measured rate" not in rnn
    assert ("stored peak 400 GFLOP/s (float32 4096 x 4096 matmul, best of 7, median 380; someblas 1.0, numpy 2.4.6)"
            "; measured by the runner before and after 3 of the runs: 150-300 GFLOP/s") in text


def test_cells_name_the_threads_the_thread_rule_chose(tmp_path):
    """A record the runner's thread rule probed says the count it ran with and how the others did."""
    def probed(name, used, probe):
        record(tmp_path, name + "_RNN", name, "rnn", train_seconds=30, test_accuracy=0.86,
               device={"kind": "cpu", "name": "Test CPU 9000", "threads": used})
        path = tmp_path / "cpu" / (name + "_RNN.json")
        rec = json.loads(path.read_text())
        rec["harness"] = {"thread_probe": probe}
        records.write_json_atomic(str(path), rec)
    probed("One", 1, {"1": 2.0, "2": 5.0})
    probed("Two", 2, {"1": 3.0, "2": 2.0})
    record(tmp_path, "Plain_RNN", "Plain", "rnn", train_seconds=30, test_accuracy=0.86)
    rnn = section(make_tables.render(records.load_records(str(tmp_path)), ["One", "Plain", "Two"]), "### GRU on IMDB")
    row = {line.split(" | ")[0]: line for line in rnn.splitlines() if line.startswith("| ")}
    assert "| 86.0% in 30 s; 1 thread (probe: 2 threads took 2.5x as long) |" in row["| One"]
    assert "| 86.0% in 30 s; 2 threads (probe: 1 thread took 1.5x as long) |" in row["| Two"]
    assert "| 86.0% in 30 s |" in row["| Plain"]
    assert "the thread rule (the same for every framework)" in rnn.split("\n|")[0]
    assert rnn.count("| `cpu` (1 epoch) on H1 |") == 1 and "on H2" not in rnn, "one column: the machine's 2 threads"


def test_one_column_per_cpu_kind(tmp_path):
    """Two CPUs of one name but of different kinds (envinfo.cpu_id) get their own columns and
    hardware tags; records without a cpu_id (older ones) form their own; a GPU column is its GPU's,
    whatever the host CPU."""
    gpu = {"kind": "gpu", "name": "NVIDIA H100", "threads": 2}
    for day, (cpu_id, folder, accuracy) in enumerate(((INTEL, "cpu-intel", 0.61), (ZEN5, "cpu-zen5", 0.62),
                                                      (None, "cpu", 0.63)), 1):
        record(tmp_path, "PyTorch_CNN", "PyTorch", "cnn", folder=folder, cpu_id=cpu_id,
               train_seconds=400, test_accuracy=accuracy)
        record(tmp_path, "PyTorch_CNN", "PyTorch", "cnn", folder=folder + "-gpu", cpu_id=cpu_id, device=gpu,
               train_seconds=day, test_accuracy=0.65, finished_at="2026-11-0%dT12:00:00+00:00" % day)
    text = make_tables.render(records.load_records(str(tmp_path)), ["PyTorch"])
    cnn = section(text, "### VGG-style")
    assert ("| Framework | `cpu` (1 epoch) on H1 | `cpu` (1 epoch) on H2 | `cpu` (1 epoch) on H3 "
            "| `cpu` (1 epoch) on H4 | Versions |") in cnn
    assert "| PyTorch | 63.0% in 400 s | 62.0% in 400 s | 61.0% in 400 s | 65.0% in 3 s |" in cnn
    assert "- H1: Test CPU 9000, 2 threads, 23.4 GiB memory (CPU); `cpu`: 1 of 3 notebooks\n" in text
    assert "- H2: Test CPU 9000, 2 threads, 23.4 GiB memory (CPU; AuthenticAMD family 26 model 2, avx2 fma avx512f)" in text
    assert "- H3: Test CPU 9000, 2 threads, 23.4 GiB memory (CPU; GenuineIntel family 6 model 207, avx2 amx_bf16)" in text
    assert "- H4: NVIDIA H100, 2 threads, 23.4 GiB memory (GPU)" in text and "- H5" not in text


def test_failures_and_skips_stay_in_their_column(tmp_path):
    """A failed re-run beside a kept ok record marks that cell; a failure or a skip on one machine
    shows in that machine's column only."""
    res, epyc = tmp_path / "results", {"kind": "cpu", "name": "AMD EPYC", "threads": 2}
    # H1, a Zen 5 machine: PyTorch ok, MXNet failed, Gpu skipped
    record(res, "PyTorch_CNN", "PyTorch", "cnn", folder="cpu-epyc", device=epyc, cpu_id=ZEN5,
           train_seconds=300, test_accuracy=0.6)
    record(res, "MXNet_CNN", "MXNet", "cnn", folder="cpu-epyc", device=epyc, cpu_id=ZEN5, status="failed")
    record(res, "Gpu_CNN", "Gpu", "cnn", folder="cpu-epyc", device=epyc, cpu_id=ZEN5, status="skipped",
           error="needs a CUDA GPU")
    # and an earlier failure there, which a later ok run superseded: no mark
    record(res, "PyTorch_CNN", "PyTorch", "cnn", folder="cpu-epyc-old", device=epyc, cpu_id=ZEN5,
           status="failed", finished_at="2026-11-01T12:00:00+00:00")
    # H2 (an older record, without a cpu_id): the runner kept it when its re-run failed, and the
    # failure, written by today's runner, names its CPU's kind
    record(res, "PyTorch_CNN", "PyTorch", "cnn", train_seconds=400, test_accuracy=0.65)
    record(res, "PyTorch_CNN", "PyTorch", "cnn", status="failed", error="Traceback\nMemoryError",
           file="PyTorch_CNN.failed.json", cpu_id=INTEL, finished_at="2026-12-01T12:00:00+00:00")
    text = make_tables.render(records.load_records(str(res)), ["Gpu", "MXNet", "PyTorch"])
    cnn = section(text, "### VGG-style")
    assert "| Framework | `cpu` (1 epoch) on H1 | `cpu` (1 epoch) on H2 | Versions |" in cnn
    assert "| PyTorch | 60.0% in 300 s | 65.0% in 400 s ‡ |" in cnn
    assert "| MXNet | failed | not run yet |" in cnn
    assert "| Gpu | skipped: needs a CUDA GPU | not run yet |" in cnn
    assert ("‡ The last re-run did not succeed; the cell keeps the result of the run before it: "
            "PyTorch in `cpu` on H2 (failed; see %s)." % (res / "cpu" / "PyTorch_CNN.failed.json")) in cnn
    assert text.count("- H") == 2, "the failed re-run beside H2's record is H2's, though it names its CPU's kind"


def test_damaged_roofline_file_is_skipped(tmp_path):
    res = tmp_path / "results"
    shutil.copy(ROOT / "results" / "original_2018.csv", res.mkdir() or res)
    inference(res, "PyTorch")
    readme = empty_readme(tmp_path)
    entry = {"hardware": {"name": "Test CPU 9000", "threads": 2}, "peak_gflops": 200.0}
    for content, reason in (('{"machines": [{"hardware": {"na', "invalid JSON ("),
                            (json.dumps({"machines": [dict(entry, peak_gflops="fast")]}),
                             "machines[0].peak_gflops is 'fast', not a positive number"),
                            (json.dumps([entry]), "not an object with a list of machines")):
        (res / "roofline.json").write_text(content)
        proc = run_script("make_tables", "--results", res, "--readme", readme)
        assert proc.returncode != 0 and "Traceback" not in proc.stdout, proc.stdout
        assert "skipping %s: %s" % (res / "roofline.json", reason) in proc.stdout
        text = readme.read_text()
        assert "| PyTorch | 50.0 s (20 img/s) |" in text and "peak" not in text, "no stored peak used"
    (res / "roofline.json").write_text(json.dumps({"machines": [entry]}))
    proc = run_script("make_tables", "--results", res, "--readme", readme)
    assert proc.returncode == 0 and "% of stored peak |" in readme.read_text(), proc.stdout
