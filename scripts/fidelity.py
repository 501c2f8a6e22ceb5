#!/usr/bin/env python3
"""Run every notebook's fidelity section and write results/fidelity.json.

    python -m scripts.fidelity                        # every notebook, smoke profile, through papermill
    python -m scripts.fidelity --frameworks PyTorch   # some of them (the others keep their entries)
    python -m scripts.fidelity --from DIR             # collect from records a smoke run left in DIR

A notebook's Fidelity section (common/fidelity.py) loads the shared weights into its model and
compares its outputs, and its outputs after one optimizer step, with a NumPy reference; the
verdict is in its result record. This collects the verdicts, one entry per notebook. The exit
status is non-zero when a notebook failed its check, ran without one, or did not run.
"""
import argparse
import json
import sys
import tempfile
from pathlib import Path

from common import catalogue, records
from scripts import envspec, run_matrix

OUT = envspec.ROOT / "results" / "fidelity.json"


def entry(item, record, absent="no record: the notebook did not run"):
    """One notebook's line of fidelity.json from its smoke record (or, if None, why it has none)."""
    path, prefix, task, env_name, row = item
    base = {"notebook": path.stem, "framework": row, "task": task}
    if record is None:
        return dict(base, passed=False, error=absent)
    if record.get("status") != "ok":
        return dict(base, passed=False, error=(record.get("error") or "failed").strip().splitlines()[-1])
    fid = record.get("fidelity")
    if not fid:
        return dict(base, passed=False, error="the notebook has no fidelity section (no 'fidelity' in its record)")
    checks = dict((c["check"].split(" (")[0], c) for c in fid["checks"])
    diff = dict((k, checks[k]["max_abs_diff"]) for k in ("outputs", "features", "after one step", "loss after the step")
                if k in checks)
    tolerance = dict((k, checks[k]["tolerance"]) for k in diff)
    return dict(base, passed=bool(fid["passed"]), parameters=fid["parameters"],
                expected_parameters=fid["expected_parameters"], max_abs_diff=diff, tolerance=tolerance,
                variant=fid.get("variant", {}), batch=fid.get("batch"), missing=fid.get("missing", []),
                versions=record.get("versions", {}))


def collect(items, folder):
    problems = []
    by_name = dict((r["notebook"], r) for r in records.load_records(str(folder), problems))
    invalid = {}
    for path, reason in problems:
        print("skipping %s: %s" % (path, reason), file=sys.stderr)
        invalid[Path(path).stem] = "invalid record: " + reason
    return [entry(item, by_name.get(item[0].stem), invalid.get(item[0].stem, "no record: the notebook did not run"))
            for item in items]


def merge(old_file, new_entries):
    """Keep entries of notebooks not run this time; replace the others."""
    kept = []
    if old_file.exists():
        fresh = set(e["notebook"] for e in new_entries)
        kept = [e for e in json.loads(old_file.read_text())["notebooks"] if e["notebook"] not in fresh]
    return sorted(kept + new_entries, key=lambda e: (e["task"], e["framework"].lower(), e["notebook"]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--frameworks", nargs="*", help="notebook prefixes, e.g. PyTorch Keras_TF")
    ap.add_argument("--tasks", nargs="*", choices=sorted(catalogue.TASKS))
    ap.add_argument("--from", dest="source", help="collect from this folder of smoke records instead of running")
    ap.add_argument("--out", default=str(OUT), help="where to write (default: results/fidelity.json)")
    args = ap.parse_args(argv)

    items = run_matrix.discover(envspec.ROOT / "notebooks", envspec.load_spec())
    items = [i for i in items if (not args.frameworks or i[1] in args.frameworks)
             and (not args.tasks or i[2] in args.tasks)]
    if not items:
        ap.error("no notebooks selected")
    if args.source:
        entries = collect(items, Path(args.source))
    else:
        with tempfile.TemporaryDirectory(prefix="rosetta-fidelity-") as tmp:
            selection = (["--frameworks"] + args.frameworks if args.frameworks else []) + (
                ["--tasks"] + args.tasks if args.tasks else [])
            run_matrix.main(["--profile", "smoke", "--out", tmp, "--force", "--quiet"] + selection)
            entries = collect(items, Path(tmp))
    out = Path(args.out)
    everything = merge(out, entries) if not args.source else entries
    records.write_json_atomic(str(out), {"schema": 1, "generated_at": records.now(), "notebooks": everything})
    for e in entries:
        diffs = ", ".join("%s %.1e" % (k, v) for k, v in sorted(e.get("max_abs_diff", {}).items()))
        print("%-28s %-4s %s" % (e["notebook"], "ok" if e["passed"] else "FAIL", e.get("error") or diffs))
    failed = [e["notebook"] for e in everything if not e["passed"]]
    print("%s: %d notebooks, %d passed%s" % (out, len(everything), len(everything) - len(failed),
                                             ", failed: " + ", ".join(failed) if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
