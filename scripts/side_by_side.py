#!/usr/bin/env python3
"""Translation pages: the same step of every framework side by side, one static page per task.

    python -m scripts.side_by_side [--check] [--screenshot]
        [--notebooks notebooks] [--results results] [--out results/side_by_side]

Writes <out>/cnn.html, rnn.html and inference.html (for the tasks that have notebooks): one row
per step (the cells tagged `step:*` by scripts/tag_steps.py; an untagged notebook is an error),
one column per framework, code highlighted by Pygments. Column headers carry each notebook's
latest publishable result (common.records.publishable, the tables' rule too: an `ok` record on
real data; profile cpu first, then full) and links to its executed notebook: rendered to HTML by
nbconvert into <out>/executed/<name>.html (a browser shows an .ipynb as raw JSON), and the .ipynb
itself for Jupyter. Pages are self-contained: they work from disk, offline.
--check writes nothing and exits non-zero when the pages are stale. --screenshot also saves
<out>/screenshot.png of the CNN page (needs Debian's chromium).
"""
import argparse
import html
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pygments import highlight
from pygments.formatters import HtmlFormatter
from pygments.lexers import PythonLexer

from common import catalogue
from common.catalogue import TASK_TITLES
from common.records import PUBLISHED_PROFILES as PROFILES, load_records, publishable
from scripts import envspec, tag_steps

FIRST = "PyTorch"  # the framework most readers translate from
FORMATTER = HtmlFormatter(style="default", cssclass="highlight")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run"]


class Untagged(ValueError):
    """A notebook whose step tags are missing or wrong."""


# ---- reading notebooks and records ----

def read_notebook(path):
    """{'name', 'prefix', 'task', 'intro', 'steps': {tag: (notes, code)}} of a tagged notebook."""
    nb = json.loads(Path(path).read_text(encoding="utf-8"))
    task = catalogue.task_of(path)
    issues = tag_steps.problems(nb, task)
    if issues:
        raise Untagged(f"{Path(path).name}: {'; '.join(issues)} (run python -m scripts.tag_steps)")
    cells = nb["cells"]
    steps = {}
    for i, cell in enumerate(cells):
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith(catalogue.STEP_PREFIX):
                steps[tag[len(catalogue.STEP_PREFIX):]] = (notes_before(cells, i),
                                                      tag_steps.source(cell).strip("\n"))
    intro = tag_steps.source(cells[0]).strip().split("\n", 1) if cells else [""]
    return {"name": Path(path).stem, "prefix": Path(path).stem.rsplit("_", 1)[0], "task": task,
            "intro": intro[1].strip() if len(intro) > 1 else "", "steps": steps}


def notes_before(cells, i):
    """The markdown of the section above code cell i, without its `## ` heading line."""
    texts = []
    for cell in reversed(cells[:i]):
        if cell.get("cell_type") != "markdown":
            break
        text = tag_steps.source(cell).strip()
        if tag_steps.heading(cell) is not None:
            texts.insert(0, text.split("\n", 1)[1].strip() if "\n" in text else "")
            break
        texts.insert(0, text)
    return "\n\n".join(t for t in texts if t)


def best_record(records, name):
    """The latest usable record of a notebook, from the most preferred profile that has one."""
    mine = [r for r in records if r.get("notebook") == name and publishable(r)]
    for profile in PROFILES:
        runs = [r for r in mine if r["profile"] == profile]
        if runs:
            return max(runs, key=lambda r: (r.get("finished_at") or "", r["_path"]))
    return None


def column_order(prefixes, table):
    """PyTorch first, then the order of environments.toml, then any other prefix by name."""
    known = [p for p in table if p in prefixes]
    ordered = known + sorted(p for p in prefixes if p not in table)
    return sorted(ordered, key=lambda p: p != FIRST)


# ---- rendering ----

def inline_md(text):
    """Escaped text with `code`, **bold** and [links](url) rendered."""
    out = []
    for i, part in enumerate(re.split(r"`([^`]*)`", text)):
        part = html.escape(part)
        if i % 2:
            out.append("<code>%s</code>" % part)
            continue
        part = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", part)
        out.append(re.sub(r"\[([^\]]+)\]\(([^)\s]+)\)", r'<a href="\2">\1</a>', part))
    return "".join(out)


def markdown_html(text):
    """Just enough Markdown for the notebooks' short notes: paragraphs, lists, inline marks."""
    blocks = []
    for para in re.split(r"\n\s*\n", text.strip()):
        if not para.strip():
            continue
        if re.match(r"\s*[-*] ", para):
            items = re.split(r"\n\s*[-*] ", "\n" + para.strip())[1:]
            blocks.append("<ul>%s</ul>" % "".join("<li>%s</li>" % inline_md(i) for i in items))
        else:
            blocks.append("<p>%s</p>" % inline_md(para))
    return "".join(blocks)


def rel(target, start):
    return Path(os.path.relpath(target, start)).as_posix()


def executed_notebook(nb, rec):
    """The executed notebook beside a record (the run the header shows), or None."""
    executed = Path(rec["_path"]).with_name(nb["name"] + ".ipynb") if rec else None
    return executed if executed and executed.exists() else None


def header_cell(nb, label, rec, out_dir, notebooks_dir):
    """The sticky column header: name, measured result, links: the executed notebook rendered to
    HTML (a browser shows an .ipynb as raw JSON) and as .ipynb for Jupyter, and the source."""
    links = []
    executed = executed_notebook(nb, rec)
    if executed:
        links.append('<a href="%s/%s.html">executed notebook</a> (<a href="%s">.ipynb</a>)' % (
            EXECUTED, nb["name"], rel(executed, out_dir)))
    links.append('<a href="%s">source</a>' % rel(Path(notebooks_dir) / (nb["name"] + ".ipynb"),
                                                  out_dir))
    return ('<th data-fw="%s" scope="col"><div class="fw-name">%s</div>%s'
            '<div class="fw-links">%s</div></th>' % (
                html.escape(nb["prefix"]), html.escape(label), result_html(rec),
                " · ".join(links)))


def result_html(rec):
    if rec is None:
        return '<div class="fw-result none">not run yet</div>'
    m, dev = rec["metrics"], rec.get("device", {})
    if rec["task"] == "inference":
        result = "%.2f s per 1,000 images · %.0f images/s" % (
            m["seconds_per_1000_images"], m["images_per_second"])
        run = "%s profile" % rec["profile"]
    else:
        result = "%.1f%% accuracy · %.0f s training" % (100 * m["test_accuracy"], m["train_seconds"])
        epochs = rec.get("params", {}).get("epochs")
        run = "%s profile, %s epoch%s" % (rec["profile"], epochs, "" if epochs == 1 else "s")
    where = "%s, %s threads" % (dev.get("kind", "cpu").upper(), dev.get("threads", "?"))
    title = "%s; finished %s" % (dev.get("name", "?"), rec.get("finished_at", "?"))
    return ('<div class="fw-result" title="%s">%s</div><div class="fw-run">%s · %s · %s</div>' % (
        html.escape(title), html.escape(result), html.escape(run), html.escape(where),
        html.escape((rec.get("finished_at") or "?")[:10])))


def code_cell(nb, tag):
    notes, code = nb["steps"][tag]
    note = '<div class="note">%s</div>' % markdown_html(notes) if notes else ""
    return '<td data-fw="%s">%s%s</td>' % (html.escape(nb["prefix"]), note,
                                           highlight(code, PythonLexer(), FORMATTER))


def step_rows(task, nbs):
    rows = ['<tr class="step-head"><th colspan="%d" class="step-title">Overview '
            '<span class="step-what">What is particular to each framework</span></th></tr>'
            % len(nbs),
            '<tr data-step="overview">%s</tr>' % "".join(
                '<td data-fw="%s"><div class="note">%s</div></td>' % (
                    html.escape(nb["prefix"]), markdown_html(nb["intro"])) for nb in nbs)]
    for title, tag, what in catalogue.STEPS[task]:
        rows.append('<tr class="step-head"><th colspan="%d" class="step-title">%s '
                    '<span class="step-what">%s</span> <code class="tag">step:%s</code></th></tr>'
                    % (len(nbs), html.escape(title), inline_md(what), tag))
        rows.append('<tr data-step="%s">%s</tr>' % (tag, "".join(code_cell(nb, tag) for nb in nbs)))
    return "\n".join(rows)


def legend(task):
    return '<ul class="legend">%s</ul>' % "".join(
        "<li><strong>%s</strong>: %s</li>" % (html.escape(title), inline_md(what))
        for title, _, what in catalogue.STEPS[task])


def chooser(nbs, labels):
    return "".join('<label><input type="checkbox" value="%s"> %s</label>' % (
        html.escape(nb["prefix"]), html.escape(labels[nb["prefix"]])) for nb in nbs)


CSS = """
body { font: 15px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d232b; margin: 0 1rem 3rem; }
h1 { font-size: 1.35rem; margin: .8rem 0 .3rem; }
nav, .about { font-size: .9rem; margin: .3rem 0; }
#chooser { margin: .6rem 0; padding: .4rem .6rem; background: #eef2f7; border-radius: 6px; }
#chooser label { margin-right: 1rem; white-space: nowrap; cursor: pointer; }
#chooser .opts { float: right; font-size: .85rem; }
.legend { display: grid; grid-template-columns: repeat(auto-fill, minmax(19rem, 1fr));
  gap: .1rem 1.2rem; font-size: .85rem; margin: .4rem 0 .8rem; padding: 0; list-style: none; }
table { width: 100%; table-layout: fixed; border-collapse: separate; border-spacing: 0; }
thead th { position: sticky; top: 0; z-index: 2; background: #f7f9fc; text-align: left;
  vertical-align: top; padding: .35rem .6rem; border-bottom: 2px solid #8d99ab; }
.fw-name { font-size: 1.05rem; font-weight: 700; }
.fw-result { font-weight: 600; color: #0b5d1e; }
.fw-result.none { color: #8a6d00; }
.fw-run, .fw-links { font-size: .78rem; font-weight: 400; color: #555; }
th.step-title { text-align: left; background: #dfe7f1; padding: .3rem .6rem; font-size: .95rem; }
.step-what { font-weight: 400; color: #444; margin-left: .5rem; }
code.tag { float: right; font-weight: 400; font-size: .75rem; color: #667; }
td { vertical-align: top; padding: .35rem .6rem .8rem; border-left: 1px solid #dde3ea;
  overflow: hidden; }
td:first-child { border-left: 0; }
.note { font-size: .86rem; color: #333; }
.note p, .note ul { margin: 0 0 .4rem; }
.highlight { background: #f8f8f8; border-radius: 4px; }
.highlight pre { font: 12.5px/1.4 "DejaVu Sans Mono", "Liberation Mono", monospace;
  margin: 0; padding: .45rem .55rem; white-space: pre-wrap; overflow-wrap: anywhere; }
body.nowrap .highlight pre { white-space: pre; overflow-x: auto; }
code { font-family: "DejaVu Sans Mono", "Liberation Mono", monospace; font-size: .92em; }
#empty { color: #8a6d00; }
[hidden] { display: none !important; }
"""

JS = """
(function () {
  var boxes = [].slice.call(document.querySelectorAll('#chooser input[value]'));
  var names = boxes.map(function (b) { return b.value; });
  var defaults = document.body.getAttribute('data-default').split(',');
  function fromHash() {
    var want = decodeURIComponent(location.hash.slice(1)).split(',').filter(function (n) {
      return names.indexOf(n) >= 0; });
    return want.length ? want : defaults;
  }
  function show(chosen) {
    boxes.forEach(function (b) { b.checked = chosen.indexOf(b.value) >= 0; });
    [].forEach.call(document.querySelectorAll('th[data-fw], td[data-fw]'), function (el) {
      el.hidden = chosen.indexOf(el.getAttribute('data-fw')) < 0; });
    [].forEach.call(document.querySelectorAll('th.step-title'), function (th) {
      th.colSpan = Math.max(chosen.length, 1); });
    document.getElementById('empty').hidden = chosen.length > 0;
    document.body.setAttribute('data-shown', chosen.join(','));
  }
  function choose(chosen) {
    history.replaceState(null, '', '#' + chosen.join(','));
    show(chosen);
  }
  boxes.forEach(function (b) { b.addEventListener('change', function () {
    choose(boxes.filter(function (x) { return x.checked; }).map(function (x) { return x.value; }));
  }); });
  document.getElementById('all').addEventListener('click', function () { choose(names); });
  document.getElementById('wrap').addEventListener('change', function (e) {
    document.body.classList.toggle('nowrap', !e.target.checked); });
  window.addEventListener('hashchange', function () { show(fromHash()); });
  show(fromHash());
})();
"""


def render_page(task, nbs, labels, records, out_dir, notebooks_dir, tasks):
    out_dir = Path(out_dir)
    heads = "".join(header_cell(nb, labels[nb["prefix"]], best_record(records, nb["name"]),
                                out_dir, notebooks_dir) for nb in nbs)
    short = {t: s for s, t in catalogue.TASK_OF_SUFFIX.items()}
    nav = "Pages: " + " · ".join("<strong>%s</strong>" % short[t] if t == task else
                                 '<a href="%s.html">%s</a>' % (t, short[t]) for t in tasks)
    return """<!DOCTYPE html>
<!-- Generated by scripts/side_by_side.py from the notebooks and result records; do not edit. -->
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(title)s: side by side</title>
<style>%(css)s
%(pygments)s</style></head>
<body data-default="%(default)s">
<h1>%(title)s: the same step in every framework</h1>
<nav>%(nav)s</nav>
<p class="about">Each row is one step, each column one framework. Tick the frameworks to compare
(two fit a laptop screen); the choice is kept in the address (<code>#%(default)s</code>) for
bookmarks and links. Headers: the latest result on real data (cpu profile first, else full).</p>
<div id="chooser">%(chooser)s <button id="all" type="button">all</button>
<span class="opts"><label><input id="wrap" type="checkbox" checked> wrap long lines</label></span></div>
%(legend)s
<p id="empty" hidden>Choose at least one framework above.</p>
<table id="steps"><thead><tr>%(heads)s</tr></thead>
<tbody>
%(rows)s
</tbody></table>
<script>%(js)s</script>
</body></html>
""" % {"title": html.escape(TASK_TITLES[task]), "css": CSS,
       "pygments": FORMATTER.get_style_defs(".highlight"),
       "default": ",".join(nb["prefix"] for nb in nbs[:2]), "nav": nav,
       "chooser": chooser(nbs, labels), "legend": legend(task), "heads": heads,
       "rows": step_rows(task, nbs), "js": JS}


EXECUTED = "executed"  # the folder, beside the pages, of the executed notebooks rendered to HTML
NOTEBOOK_CSS = """
body { font: 15px/1.45 system-ui, "DejaVu Sans", sans-serif; color: #1d232b; max-width: 60rem;
       margin: 1rem auto 3rem; padding: 0 1rem; }
.jp-Cell { margin: .7rem 0; }
.jp-InputArea .highlight { background: #f6f8fa; padding: .3rem .6rem; border-radius: 4px; overflow-x: auto; }
.jp-OutputArea pre { background: #fff; border-left: 3px solid #c9d3df; margin: .2rem 0; padding: .2rem .6rem;
                     overflow-x: auto; }
.jp-InputPrompt, .jp-OutputPrompt { display: none; }
pre { font: 13px/1.4 "DejaVu Sans Mono", monospace; white-space: pre-wrap; }
"""


def executed_page(ipynb):
    """An executed notebook as a self-contained HTML page: nbconvert's basic template (cells and
    outputs, code highlighted by Pygments) inside this page's own styles."""
    from nbconvert import HTMLExporter
    body, _ = HTMLExporter(template_name="basic").from_filename(str(ipynb))
    return """<!DOCTYPE html>
<!-- Generated by scripts/side_by_side.py from %(source)s (nbconvert); do not edit. -->
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%(name)s (executed)</title>
<style>%(css)s
%(pygments)s</style></head>
<body>
%(body)s
</body></html>
""" % {"source": html.escape(Path(ipynb).name), "name": html.escape(Path(ipynb).stem), "css": NOTEBOOK_CSS,
       "pygments": FORMATTER.get_style_defs(".highlight"), "body": body.strip()}


def build(notebooks_dir, results_dir, out_dir, problems=None):
    """{file name: page} for every task that has notebooks, and for every executed notebook a
    header links to (EXECUTED/<name>.html); record files that do not validate are left out, and
    (path, reason) appended to `problems` if given."""
    table = {p: row for p, (_, row) in envspec.framework_table(envspec.load_spec()).items()}
    by_task = {}
    for path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        nb = read_notebook(path)
        by_task.setdefault(nb["task"], {})[nb["prefix"]] = nb
    records = load_records(str(results_dir), problems) if Path(results_dir).is_dir() else []
    tasks = [t for t in TASK_TITLES if t in by_task]
    pages = {}
    for task in tasks:
        nbs = [by_task[task][p] for p in column_order(list(by_task[task]), table)]
        labels = {nb["prefix"]: table.get(nb["prefix"], nb["prefix"]) for nb in nbs}
        pages[task + ".html"] = render_page(task, nbs, labels, records, out_dir, notebooks_dir, tasks)
        for nb in nbs:
            executed = executed_notebook(nb, best_record(records, nb["name"]))
            if executed:
                pages["%s/%s.html" % (EXECUTED, nb["name"])] = executed_page(executed)
    return pages


# ---- headless Chromium ----

def chromium(url, *flags, timeout=120):
    """Run headless Chromium on a URL with a throwaway profile; return the CompletedProcess."""
    exe = shutil.which("chromium")
    if exe is None:
        raise RuntimeError("chromium is missing: run the set-up (python3 -m scripts.setup_env "
                           "tools), which installs Debian's chromium package")
    with tempfile.TemporaryDirectory(prefix="chromium-") as profile:
        cmd = [exe] + CHROMIUM_FLAGS + ["--user-data-dir=" + profile,
                                        "--virtual-time-budget=3000"] + list(flags) + [url]
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              timeout=timeout)


def screenshot(page, png, fragment="", size="1400,900"):
    url = Path(page).resolve().as_uri() + ("#" + fragment if fragment else "")
    proc = chromium(url, "--screenshot=" + str(Path(png).resolve()), "--window-size=" + size)
    if proc.returncode != 0 or not Path(png).exists():
        raise RuntimeError("chromium screenshot failed: " + proc.stderr[-2000:])


# ---- command line ----

def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--notebooks", default=str(envspec.ROOT / "notebooks"))
    ap.add_argument("--results", default=str(envspec.ROOT / "results"))
    ap.add_argument("--out", default=str(envspec.ROOT / "results" / "side_by_side"))
    ap.add_argument("--check", action="store_true", help="fail if the pages are not up to date")
    ap.add_argument("--screenshot", action="store_true", help="also save <out>/screenshot.png")
    args = ap.parse_args(argv)
    out = Path(args.out)
    problems = []
    try:
        pages = build(args.notebooks, args.results, out, problems)
    except ValueError as e:  # an untagged or badly named notebook
        sys.exit(f"side_by_side: {e}")
    for path, reason in problems:
        print(f"skipping {path}: {reason}", file=sys.stderr)
    existing = {p.relative_to(out).as_posix() for pattern in ("*.html", EXECUTED + "/*.html")
                for p in out.glob(pattern)}
    if args.check:
        stale = sorted(n for n, text in pages.items()
                       if not (out / n).exists() or (out / n).read_text(encoding="utf-8") != text)
        stale += sorted(existing - set(pages))
        if stale:
            sys.exit(f"{out}: stale pages {', '.join(stale)}: run python -m scripts.side_by_side")
        return 1 if problems else 0
    (out / EXECUTED).mkdir(parents=True, exist_ok=True)
    for name in sorted(existing - set(pages)):
        (out / name).unlink()
    for name, text in pages.items():
        (out / name).write_text(text, encoding="utf-8")
    print(f"{out}: {sum('/' not in n for n in pages)} pages, {sum('/' in n for n in pages)} executed notebooks")
    if args.screenshot and "cnn.html" in pages:
        screenshot(out / "cnn.html", out / "screenshot.png")
        print(f"{out / 'screenshot.png'}")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
