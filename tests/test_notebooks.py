"""Every notebook in notebooks/ runs end to end through papermill on the smoke profile."""
import json
from pathlib import Path

import envspec
import pytest

from conftest import ROOT, read_json, run_script

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
SECTIONS = {
    "cnn": ["Parameters", "Set-up", "Data", "Model", "Loss and optimizer", "Train", "Evaluate", "Record"],
    "inference": ["Parameters", "Set-up", "Data", "Model", "Check on real photographs",
                  "Feature extraction", "Record"],
}
SECTIONS["rnn"] = SECTIONS["cnn"]
TASK = {"CNN": "cnn", "RNN": "rnn", "Inference": "inference"}


def test_there_are_notebooks():
    assert len(NOTEBOOKS) >= 3


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    """One runner call for every notebook (kernels start once each); its records by notebook."""
    out = tmp_path_factory.mktemp("smoke")
    proc = run_script("run_matrix.py", "--profile", "smoke", "--out", out, "--force",
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
    assert headings == SECTIONS[TASK[nb.stem.rsplit("_", 1)[1]]]
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
    assert record["task"] == TASK[task]
    assert record["framework"] == envspec.framework_table(spec)[prefix][1]
    assert record["device"]["threads"] >= 1
    assert record["versions"]["python"]
    m = record["metrics"]
    if record["task"] == "inference":
        assert m["images_per_second"] > 0
        assert abs(m["seconds_per_1000_images"] * m["images_per_second"] - 1000) < 1e-6 * 1000
    else:
        assert record["synthetic_data"] is True, "smoke training runs on synthetic data"
        assert 0.0 <= m["test_accuracy"] <= 1.0 and m["train_seconds"] > 0
        if record["task"] == "cnn":
            assert m["parameters"] == 3441592
