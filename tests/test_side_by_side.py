"""Step tags (scripts/tag_steps.py) and the side-by-side pages (scripts/side_by_side.py).

Works on tagged copies of the notebooks in a temporary folder, with fabricated notebooks for
frameworks that have none yet (so every page has at least three columns) and fabricated records.
The pages are opened in headless Chromium (Debian's `chromium`, installed by the set-up).
"""
import difflib
import json
import re
import shutil
import struct
import tempfile
from html.parser import HTMLParser
from pathlib import Path

from scripts import envspec
import nbformat
import pytest
from scripts import side_by_side
from scripts import tag_steps
from common import catalogue

from conftest import ROOT, run_script

REAL = sorted((ROOT / "notebooks").glob("*.ipynb"))
TASK_SUFFIX = {t: s for s, t in catalogue.TASK_OF_SUFFIX.items()}
MIN_COLUMNS = 3


def require_chromium():
    assert shutil.which("chromium"), (
        "chromium is missing: run the set-up (python3 -m scripts.setup_env tools), which installs "
        "Debian's chromium package listed in environments.toml")


def fake_notebook(prefix, task):
    """A notebook with the task's sections and one small code cell each, untagged."""
    def md(text):
        return {"cell_type": "markdown", "metadata": {}, "source": text}

    def code(text, tags=None):
        return {"cell_type": "code", "execution_count": None, "metadata": {"tags": tags} if tags else {},
                "outputs": [], "source": text}
    cells = [md(f"# {prefix}: fabricated\n\nA **made-up** notebook for the tests."),
             md("## Parameters"), code('PROFILE = "cpu"\nRECORD_DIR = None', ["parameters"])]
    for title, tag, _ in catalogue.STEPS[task]:
        cells += [md(f"## {title}\n\nWhat `{prefix}` does here."), code(f'print("{prefix} {tag}")')]
    return {"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}


def put_record(folder, name, task, profile, month, status="ok", accuracy=0.5, synthetic=False):
    """Write a fabricated record of notebook `name`, finished in 2026-`month`, into `folder`."""
    metrics = ({"seconds_per_1000_images": 4.0, "images_per_second": 250.0} if task == "inference"
               else {"train_seconds": 321.0, "test_accuracy": accuracy})
    write_json(folder / f"{name}.json", {
        "schema": 1, "notebook": name, "framework": name.rsplit("_", 1)[0], "task": task,
        "profile": profile, "status": status, "error": None if status == "ok" else "boom",
        "synthetic_data": synthetic, "metrics": metrics if status == "ok" else {},
        "params": {"epochs": 1}, "device": {"kind": "cpu", "name": "Test CPU", "threads": 2},
        "finished_at": f"2026-{month:02d}-01T00:00:00+00:00"})


def write_json(path, data):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=1) + "\n")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """Tagged notebooks, records and generated pages in a temporary tree; what they should show."""
    base = tmp_path_factory.mktemp("sbs")
    nb_dir, results, out = base / "notebooks", base / "results", base / "results" / "side_by_side"
    nb_dir.mkdir()
    untagged_copies(nb_dir)
    table = envspec.framework_table(envspec.load_spec())
    columns = {}
    for task, suffix in TASK_SUFFIX.items():
        have = [p.stem.rsplit("_", 1)[0] for p in nb_dir.glob(f"*_{suffix}.ipynb")]
        for prefix in [p for p in table if p not in have][:max(0, MIN_COLUMNS - len(have))]:
            write_json(nb_dir / f"{prefix}_{suffix}.ipynb", fake_notebook(prefix, task))
        columns[task] = side_by_side.column_order(
            [p.stem.rsplit("_", 1)[0] for p in nb_dir.glob(f"*_{suffix}.ipynb")], table)
    proc = run_script("tag_steps", nb_dir)
    assert proc.returncode == 0, proc.stdout
    expect = {}
    for task, prefixes in columns.items():
        first, second, third = (f"{p}_{TASK_SUFFIX[task]}" for p in prefixes[:3])
        # first: two cpu runs (the newer counts), a newer full run, newer smoke and failed runs
        put_record(results / "cpu" / "old", first, task, "cpu", 1, accuracy=0.70)
        put_record(results / "cpu", first, task, "cpu", 2, accuracy=0.77)
        put_record(results / "full", first, task, "full", 3, accuracy=0.80)
        put_record(results / "smoke", first, task, "smoke", 4, synthetic=True)
        put_record(results / "cpu" / "failed", first, task, "cpu", 5, status="failed")
        # second: only a full run; third: a failure and a run on synthetic data
        put_record(results / "full", second, task, "full", 3, accuracy=0.66)
        put_record(results / "cpu", third, task, "cpu", 3, status="failed")
        put_record(results / "cpu" / "synthetic", third, task, "cpu", 4, synthetic=True)
        for folder, name in (("cpu", first), ("full", second)):  # the executed notebooks
            executed = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("print(6 * 7)")])
            executed.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="42 from %s\n" % name)]
            nbformat.write(executed, str(results / folder / f"{name}.ipynb"))
        expect[task] = {"first": first, "second": second, "third": third}
    proc = run_script("side_by_side", "--notebooks", nb_dir, "--results", results, "--out", out)
    assert proc.returncode == 0, proc.stdout
    return {"notebooks": nb_dir, "results": results, "out": out, "columns": columns, "expect": expect}


# ---- step tags ----

def without_step_tags(nb):
    for cell in nb["cells"]:
        tags = [t for t in cell["metadata"].get("tags", []) if not t.startswith("step:")]
        cell["metadata"].pop("tags", None)
        if tags:
            cell["metadata"]["tags"] = tags
    return nb


def untagged_copies(folder):
    """Copies of the real notebooks without step tags (whether or not they have them yet)."""
    for nb in REAL:
        text = nb.read_text()
        (folder / nb.name).write_text(tag_steps.dump_like(text)(without_step_tags(json.loads(text))))
    return sorted(folder.glob("*.ipynb"))


def test_tag_steps_tags_each_step_once_and_keeps_other_tags(tmp_path):
    copies = untagged_copies(tmp_path)
    untagged = {p: json.loads(p.read_text()) for p in copies}
    proc = run_script("tag_steps", tmp_path)
    assert proc.returncode == 0, proc.stdout
    for path in copies:
        nb = json.loads(path.read_text())
        task = tag_steps.task_of(path)
        code = [c for c in nb["cells"] if c["cell_type"] == "code"]
        tags = [t for c in code for t in c["metadata"].get("tags", [])]
        assert sorted(t for t in tags if t.startswith("step:")) == sorted(tag_steps.step_tags(task))
        assert "parameters" in tags
        assert without_step_tags(nb) == untagged[path], "only step tags may change"


def test_tag_steps_changes_nothing_but_tags_and_is_idempotent(tmp_path):
    copies = untagged_copies(tmp_path)
    before = {p: p.read_text().splitlines() for p in copies}
    run_script("tag_steps", tmp_path)
    allowed = re.compile(r'^\s*("metadata": \{\}?,?|"tags": \[|"step:[a-z-]+",?|"parameters",?'
                         r'|\],?|\},?)$')
    for path in copies:
        after = path.read_text().splitlines()
        changed = [l[2:] for l in difflib.ndiff(before[path], after) if l[:2] in ("- ", "+ ")]
        assert changed and all(allowed.match(l) for l in changed), changed
    tagged = {p: p.read_bytes() for p in copies}
    proc = run_script("tag_steps", tmp_path)
    assert proc.returncode == 0 and "tagged" not in proc.stdout
    assert {p: p.read_bytes() for p in copies} == tagged, "a second run changes nothing"
    assert run_script("tag_steps", "--check", tmp_path).returncode == 0


def test_tag_steps_check_names_missing_and_duplicated_tags(tmp_path):
    copies = untagged_copies(tmp_path)
    proc = run_script("tag_steps", "--check", tmp_path)
    assert proc.returncode != 0
    assert all(p.name in proc.stdout for p in copies), "untagged notebooks are named"
    run_script("tag_steps", tmp_path)
    nb = json.loads(copies[0].read_text())
    code = [c for c in nb["cells"] if c["cell_type"] == "code"]
    code[-1]["metadata"]["tags"] = ["step:data"]  # the record cell: data twice, record missing
    copies[0].write_text(json.dumps(nb, indent=1))
    proc = run_script("tag_steps", "--check", tmp_path)
    assert proc.returncode != 0
    assert "duplicated step:data" in proc.stdout and "missing step:record" in proc.stdout
    assert copies[0].name in proc.stdout


# ---- the pages, read as HTML ----

class Cells(HTMLParser):
    """Every th/td with a data-fw: (row's data-step or 'head', framework, hidden?)."""

    def __init__(self, text):
        super().__init__()
        self.in_head, self.row, self.cells, self.body = False, None, [], {}
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "body":
            self.body = attrs
        elif tag == "thead":
            self.in_head = True
        elif tag == "tr":
            self.row = "head" if self.in_head else attrs.get("data-step")
        elif tag in ("th", "td") and "data-fw" in attrs:
            self.cells.append((self.row, attrs["data-fw"], "hidden" in attrs))

    def handle_endtag(self, tag):
        if tag == "thead":
            self.in_head = False

    def shown(self):
        return {fw for row, fw, hidden in self.cells if row == "head" and not hidden}

    def grid(self):
        return {(row, fw) for row, fw, _ in self.cells}


def test_untagged_notebook_is_an_error(tmp_path):
    untagged_copies(tmp_path)
    proc = run_script("side_by_side", "--notebooks", tmp_path, "--results", tmp_path,
                      "--out", tmp_path / "out")
    assert proc.returncode != 0 and REAL[0].name in proc.stdout and "step:" in proc.stdout
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("task", list(TASK_SUFFIX))
def test_page_has_every_framework_and_step(site, task):
    text = (site["out"] / f"{task}.html").read_text()
    cells, columns = Cells(text), site["columns"][task]
    steps = [tag for _, tag, _ in catalogue.STEPS[task]]
    assert [fw for row, fw, _ in cells.cells if row == "head"] == columns
    assert cells.grid() >= {(s, fw) for s in steps for fw in columns}
    assert columns[0] == "PyTorch" or "PyTorch" not in columns
    assert cells.body["data-default"] == ",".join(columns[:2])
    assert '<span class="kn">import</span>' in text or '<span class="nb">print</span>' in text, \
        "code highlighted by Pygments"
    assert not re.search(r"<link|@import|url\(|src=\"http|<script src", text), "self-contained"


@pytest.mark.parametrize("task", list(TASK_SUFFIX))
def test_headers_show_the_latest_usable_record(site, task):
    text = (site["out"] / f"{task}.html").read_text()
    heads = dict(re.findall(r'<th data-fw="([^"]+)" scope="col">(.*?)</th>', text))
    first, second, third = (heads[n.rsplit("_", 1)[0]] for n in site["expect"][task].values())
    names = site["expect"][task]
    if task == "inference":
        assert "4.00 s per 1,000 images" in first
    else:
        assert "77.0% accuracy" in first and "66.0% accuracy" in second
    assert "cpu profile" in first and "full profile" in second
    assert f'href="../cpu/{names["first"]}.ipynb"' in first
    assert f'href="../full/{names["second"]}.ipynb"' in second
    for name, head in ((names["first"], first), (names["second"], second)):  # rendered for a browser
        assert f'href="executed/{name}.html">executed notebook</a>' in head
        page = (site["out"] / "executed" / f"{name}.html").read_text()
        assert "42 from %s" % name in page and '<span class="nb">print</span>' in page
        assert not re.search(r"<link|@import|url\(|src=\"http|<script src", page), "self-contained"
    assert not (site["out"] / "executed" / f"{names['third']}.html").exists()
    assert "not run yet" in third and "executed notebook" not in third
    assert f'href="../../notebooks/{names["third"]}.ipynb"' in third


def test_check_mode_spots_stale_pages(site):
    args = ("--notebooks", site["notebooks"], "--results", site["results"], "--out", site["out"])
    assert run_script("side_by_side", "--check", *args).returncode == 0
    page = site["out"] / "cnn.html"
    text = page.read_text()
    page.write_text(text.replace("accuracy", "accuracy!", 1))
    try:
        proc = run_script("side_by_side", "--check", *args)
        assert proc.returncode != 0 and "cnn.html" in proc.stdout
    finally:
        page.write_text(text)


# ---- the pages, in headless Chromium ----

def dump_dom(page, fragment=""):
    require_chromium()
    proc = side_by_side.chromium(page.resolve().as_uri() + fragment, "--dump-dom")
    assert proc.returncode == 0 and "<table" in proc.stdout, proc.stderr[-2000:]
    return Cells(proc.stdout)


@pytest.mark.parametrize("task", list(TASK_SUFFIX))
def test_chromium_shows_just_the_two_chosen_frameworks(site, task):
    columns = site["columns"][task]
    chosen = columns[1:3]
    cells = dump_dom(site["out"] / f"{task}.html", "#" + ",".join(chosen))
    assert cells.body.get("data-shown") == ",".join(chosen), "the page's script ran"
    assert [fw for row, fw, _ in cells.cells if row == "head"] == columns
    steps = [tag for _, tag, _ in catalogue.STEPS[task]]
    assert cells.grid() >= {(s, fw) for s in steps for fw in columns}
    visible = {(row, fw) for row, fw, hidden in cells.cells if not hidden}
    assert {fw for _, fw in visible} == set(chosen)
    assert visible >= {(s, fw) for s in steps + ["head"] for fw in chosen}


def test_chromium_default_is_pytorch_and_the_next(site):
    columns = site["columns"]["cnn"]
    assert dump_dom(site["out"] / "cnn.html").shown() == set(columns[:2])
    assert dump_dom(site["out"] / "cnn.html", "#NoSuchFramework").shown() == set(columns[:2])


def test_chromium_screenshot(site):
    """Saved outside pytest's temporary folders (removed after a pass), to be looked at."""
    require_chromium()
    png = Path(tempfile.gettempdir()) / "rosetta-side-by-side" / "cnn-two-columns.png"
    png.parent.mkdir(exist_ok=True)
    png.unlink(missing_ok=True)
    side_by_side.screenshot(site["out"] / "cnn.html", png, ",".join(site["columns"]["cnn"][:2]))
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert struct.unpack(">II", data[16:24]) == (1400, 900)
    assert len(data) > 30000, "a page with text and code, not a blank image"
    print("screenshot:", png)


# ---- the committed notebooks and pages (pass once the lead has tagged and regenerated) ----

@pytest.mark.parametrize("nb", REAL, ids=[p.stem for p in REAL])
def test_every_notebook_has_each_step_tag_once(nb):
    problems = tag_steps.problems(json.loads(nb.read_text()), tag_steps.task_of(nb))
    assert not problems, "%s (run python -m scripts.tag_steps)" % "; ".join(problems)


def test_committed_pages_are_up_to_date():
    proc = run_script("side_by_side", "--check")
    assert proc.returncode == 0, proc.stdout + "\n(regenerate: python -m scripts.tag_steps && " \
                                               "python -m scripts.side_by_side --screenshot)"
