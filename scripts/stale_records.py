#!/usr/bin/env python3
"""Which result records were measured with code their notebook no longer has.

    python -m scripts.stale_records [--results results] [--notebooks notebooks]

A record's executed copy (the .ipynb beside it) holds the code that ran. Every step of a notebook
(the step tags of tag_steps.py) shapes the timed figures, except the checks (photographs,
Fidelity) and the record: set-up, data, model, the timed loops. When one of those steps' code
differs between the executed copy and the source notebook, the record is stale: its figures
describe an earlier version of the notebook. The README marks such cells, and run_matrix.py
re-runs such notebooks when it resumes. A record file that does not validate is named on stderr
("skipping FILE: reason") and makes the exit status non-zero.
"""
import argparse
import json
import sys
from pathlib import Path

from common.catalogue import HEADINGS, STEP_PREFIX as PREFIX, UNTIMED_STEPS  # noqa: F401
from common.records import load_records
from scripts import envspec
from scripts.tag_steps import source


def step_code(nb_path):
    """{step: [source of each of its code cells]} of a notebook, in notebook order."""
    nb = json.loads(Path(nb_path).read_text())
    steps = {}
    for cell in nb["cells"]:
        if cell["cell_type"] != "code":
            continue
        for tag in cell.get("metadata", {}).get("tags", []):
            if tag.startswith(PREFIX):
                steps.setdefault(tag[len(PREFIX):], []).append(source(cell).rstrip())
    return steps


def changed_steps(source_nb, executed_nb):
    """The steps, the checks and the record aside, whose code differs between the two notebooks."""
    new, old = step_code(source_nb), step_code(executed_nb)
    steps = list(new) + [s for s in old if s not in new]
    return [s for s in steps if s not in UNTIMED_STEPS and new.get(s) != old.get(s)]


def record_changes(record_path, notebooks_dir):
    """changed_steps for the record at record_path, against its source notebook; None when the
    executed copy or the source is missing (nothing to compare)."""
    record_path = Path(record_path)
    executed = record_path.with_suffix(".ipynb")
    try:
        name = json.loads(record_path.read_text())["notebook"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    source_nb = Path(notebooks_dir) / (name + ".ipynb")
    if not (executed.exists() and source_nb.exists()):
        return None
    return changed_steps(source_nb, executed)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(envspec.ROOT / "results"))
    ap.add_argument("--notebooks", default=str(envspec.ROOT / "notebooks"))
    args = ap.parse_args(argv)
    stale, problems = 0, []
    for rec in sorted(load_records(args.results, problems), key=lambda r: r["_path"]):
        if rec.get("status") != "ok":
            continue
        steps = record_changes(rec["_path"], args.notebooks)
        if steps:
            stale += 1
            print("%s: changed since the run: %s" % (Path(rec["_path"]).relative_to(args.results),
                                                     ", ".join(HEADINGS.get(s, s) for s in steps)))
    print("%d stale record(s)" % stale)
    for path, reason in problems:
        print("skipping %s: %s" % (path, reason), file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
