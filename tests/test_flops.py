"""FLOP counts per image, the roofline file, and the fraction-of-peak column built from them."""
import json
import re
import shutil

import pytest

from scripts import roofline
from common import architecture, flops, resnet50
from common.records import write_json_atomic
from conftest import ROOT, run_script
from test_tables import record


def test_cnn_flops_by_hand():
    # multiply-adds: 32*32*50*27 + 32*32*50*450 + 16*16*100*450 + 16*16*100*900 + 6400*512 + 512*10
    assert flops.cnn_forward_flops() == 2 * 62264320
    assert flops.cnn_training_flops() == 3 * 2 * 62264320


def test_cnn_layer_table_is_the_benchmark_model():
    weights = sum(l[2] * l[3] * (architecture.CNN_KERNEL ** 2 if l[0] == "conv" else 1) + l[3]
                  for l in architecture.CNN_LAYERS if l[0] != "pool")
    assert weights == architecture.CNN_PARAMETERS == 3441592  # the original study's model
    assert architecture.rnn_parameters(2) == 3818302 and architecture.rnn_parameters(1) == 3818002


def test_resnet50_flops():
    # Keras's v1 ResNet-50 (stride on the first 1x1): 3.86 G multiply-adds to the pooled features
    assert flops.resnet50_forward_flops() == 7711850496
    conv_weights = 7 * 7 * 3 * 64 + sum(k * k * cin * cout for b in resnet50.BLOCKS
                                        for _, _, _, k, cin, cout, _ in resnet50.block_layers(b))
    assert conv_weights == 23454912  # the model's 25.6 M minus biases, BatchNorm and fc1000


def test_roofline_keeps_one_entry_per_machine(tmp_path):
    path = tmp_path / "roofline.json"
    for peak, cpu in ((100.0, "A"), (120.0, "A"), (50.0, "B")):
        roofline.update(path, {"hardware": {"name": cpu, "threads": 2}, "peak_gflops": peak})
    machines = json.loads(path.read_text())["machines"]
    assert sorted((m["hardware"]["name"], m["peak_gflops"]) for m in machines) == [("A", 120.0), ("B", 50.0)]


def test_roofline_tells_cpu_generations_apart(tmp_path):
    """One model name ("AMD EPYC") covers CPUs with and without AVX-512: their peaks stay apart."""
    path = tmp_path / "roofline.json"
    milan = {"vendor": "AuthenticAMD", "family": "25", "model": "1", "vector_flags": ["avx2", "fma"]}
    genoa = dict(milan, model="17", vector_flags=["avx2", "fma", "avx512f"])
    roofline.update(path, {"hardware": {"name": "AMD EPYC", "threads": 2}, "peak_gflops": 200.0})  # no cpu_id
    roofline.update(path, {"hardware": {"name": "AMD EPYC", "threads": 2, "cpu_id": milan}, "peak_gflops": 140.0})
    roofline.update(path, {"hardware": {"name": "AMD EPYC", "threads": 2, "cpu_id": genoa}, "peak_gflops": 210.0})
    data = json.loads(path.read_text())
    assert sorted(m["peak_gflops"] for m in data["machines"]) == [140.0, 200.0, 210.0], \
        "an entry of unknown kind may be another generation's: kept, not replaced"
    assert roofline.entry_for(data, "AMD EPYC", 2)["peak_gflops"] == 200.0, "records without a cpu_id: that entry"
    assert roofline.entry_for(data, "AMD EPYC", 2, milan)["peak_gflops"] == 140.0
    assert roofline.entry_for(data, "AMD EPYC", 2, genoa)["peak_gflops"] == 210.0
    assert roofline.entry_for(data, "AMD EPYC", 4, genoa) is None
    assert roofline.entry_for(data, "AMD EPYC", 2, dict(milan, model="160")) is None


def test_rate_is_the_median_of_several_products(monkeypatch):
    """The runner's reading is the median of several products, with the best and worst beside it."""
    summary = roofline.summarize([0.2, 0.1, 0.4, 0.25], 1000)  # 2 GFLOP each: 10, 20, 5, 8 GFLOP/s
    assert summary == {"peak_gflops": 20.0, "median_gflops": 9.0, "min_gflops": 5.0, "size": 1000, "repeats": 4}
    timed = []
    monkeypatch.setattr(roofline, "time_runs", lambda fn, repeats, warmup: timed.append((repeats, warmup))
                        or [0.3, 0.1, 2.0, 0.2, 0.25])  # 6.7, 20, 1 (a neighbour's burst), 10, 8 GFLOP/s
    result = roofline.measure(1000, 5)
    assert timed == [(5, 1)], "one untimed product, then the timed ones"
    assert (result["median_gflops"], result["peak_gflops"], result["min_gflops"]) == (8.0, 20.0, 1.0)
    asked = []
    monkeypatch.setattr(roofline, "measure_in_kernel_env", lambda size, repeats: (asked.append((size, repeats))
                                                                                 or result, 2))
    assert roofline.rate_now()["median_gflops"] == 8.0
    assert asked == [(roofline.RATE_SIZE, roofline.RATE_REPEATS)] and roofline.RATE_REPEATS >= 5


def test_damaged_roofline_file_is_named_and_kept(tmp_path):
    path = tmp_path / "roofline.json"
    path.write_text('{"machines": [{"hardware"')
    with pytest.raises(roofline.RooflineError, match=r"^%s: invalid JSON" % re.escape(str(path))):
        roofline.load(path)
    with pytest.raises(roofline.RooflineError):
        roofline.update(path, {"hardware": {"name": "A", "threads": 2}, "peak_gflops": 100.0})
    proc = run_script("roofline", "--out", path)  # stops before it measures anything
    assert proc.returncode != 0 and "%s: invalid JSON" % path in proc.stdout and "fix or remove it" in proc.stdout
    assert path.read_text() == '{"machines": [{"hardware"', "the other machines' entries are not overwritten"
    assert roofline.load(tmp_path / "none.json") == {"machines": []}


def test_roofline_rejects_bad_arguments():
    proc = run_script("roofline", "--size", "10")
    assert proc.returncode != 0 and "--size" in proc.stdout


def test_fraction_of_peak_in_tables(tmp_path):
    res = tmp_path / "results"
    shutil.copy(ROOT / "results" / "original_2018.csv", res.mkdir() or res)
    record(res, "PyTorch_Inference", "PyTorch", "inference",
           seconds_per_1000_images=50.0, images_per_second=20.0)
    record(res, "PyTorch_RNN", "PyTorch", "rnn", train_seconds=50, test_accuracy=0.85)
    write_json_atomic(str(res / "roofline.json"), {"machines": [{
        "hardware": {"kind": "cpu", "name": "Test CPU 9000", "threads": 2}, "peak_gflops": 200.0,
        "median_gflops": 190.0, "size": 4096, "blas": "someblas 1.0", "numpy": "2.4.6"}]})
    readme = tmp_path / "README.md"
    readme.write_text("<!-- results:start -->\n<!-- results:end -->\n<!-- fidelity:start -->\n<!-- fidelity:end -->\n")
    proc = run_script("make_tables", "--results", res, "--readme", readme)
    assert proc.returncode == 0, proc.stdout
    text = readme.read_text()
    rate = 20.0 * flops.resnet50_forward_flops() / 1e9  # 154 GFLOP/s
    assert "50.0 s (20 img/s); %.0f GFLOP/s, %.0f%% of stored peak" % (rate, rate / 2) in text
    assert "stored peak 200 GFLOP/s (float32 4096 x 4096 matmul, best, median 190; someblas 1.0" in text
    rnn = text.split("### GRU on IMDB")[1].split("###")[0]
    assert "GFLOP/s" not in rnn and "stored peak" not in rnn, "the GRU task has no FLOP count"


def test_layer_ceiling_measures_every_layer_and_the_step(tmp_path):
    out = tmp_path / "ceiling.json"
    proc = run_script("layer_ceiling", "--repeats", "1", "--inner", "1", "--out", out)
    assert proc.returncode == 0, proc.stdout
    result = json.loads(out.read_text())
    assert result["peak_gflops"] > 1.0  # measured right before the layers
    assert [r["layer"] for r in result["layers"]] == ["conv1", "conv2", "conv3", "conv4", "dense1", "dense2"]
    assert all(r["seconds"] > 0 and abs(r["fraction_of_peak"] - r["gflops_per_second"] / result["peak_gflops"]) < 1e-12
               for r in result["layers"])
    # the whole step does every layer's work and more
    assert result["train_step"]["seconds"] > 0.5 * result["layers_together"]["seconds"]
    assert "OMP_NUM_THREADS" in result["thread_settings"]


def test_layer_ceiling_rejects_bad_arguments():
    proc = run_script("layer_ceiling", "--repeats", "0")
    assert proc.returncode != 0 and "--repeats" in proc.stdout
