#!/usr/bin/env python3
"""Tag each notebook's code cells with the step they implement, from the `## ` section headings.

    python -m scripts.tag_steps [--check] [NOTEBOOK_OR_FOLDER ...]   (default: notebooks/)

A step tag (`step:data`, `step:train`, ...) goes into the code cells of its section, in
`metadata.tags`, beside any other tag (`parameters`). Nothing else in the file changes, and a
second run changes nothing. --check writes nothing and exits non-zero naming every notebook with
a step tag missing, duplicated, unknown for its task, or out of step with its headings.
"""
import argparse
import json
import sys
from collections import Counter
from pathlib import Path

from common.catalogue import STEP_PREFIX as PREFIX, STEPS, UNTAGGED_SECTIONS, task_of  # noqa: F401

ROOT = Path(__file__).resolve().parent.parent


def step_tags(task):
    return [PREFIX + tag for _, tag, _ in STEPS[task]]


def source(cell):
    src = cell.get("source", "")
    return src if isinstance(src, str) else "".join(src)


def heading(cell):
    """The `## ` heading a markdown cell opens with, or None."""
    if cell.get("cell_type") != "markdown":
        return None
    first = source(cell).lstrip("\n").split("\n", 1)[0]
    return first[3:].strip() if first.startswith("## ") else None


def wanted_steps(cells, task):
    """The step tag each cell should carry (None for none), from the headings above it."""
    by_heading = {h: PREFIX + tag for h, tag, _ in STEPS[task]}
    current, wanted = None, []
    for cell in cells:
        title = heading(cell)
        if title is not None:
            if title not in by_heading and title not in UNTAGGED_SECTIONS:
                raise ValueError(f"unknown section heading '## {title}'")
            current = by_heading.get(title)
        wanted.append(current if cell.get("cell_type") == "code" else None)
    return wanted


def retag(nb, task):
    """Set the step tags of every cell in place; return True if anything changed."""
    changed = False
    for cell, step in zip(nb["cells"], wanted_steps(nb["cells"], task)):
        meta = cell.setdefault("metadata", {})
        old = list(meta.get("tags", []))
        new = [t for t in old if not t.startswith(PREFIX)] + ([step] if step else [])
        if new != old:
            changed = True
            if new:
                meta["tags"] = new
            else:
                del meta["tags"]
    return changed


def problems(nb, task):
    """What is wrong with a notebook's step tags, as short phrases (empty when all is well)."""
    counts = Counter(t for c in nb["cells"] for t in c.get("metadata", {}).get("tags", [])
                     if t.startswith(PREFIX))
    expected = step_tags(task)
    out = ["missing " + t for t in expected if counts[t] == 0]
    out += ["duplicated %s (%d cells)" % (t, n) for t, n in counts.items() if n > 1]
    out += ["unknown " + t for t in counts if t not in expected]
    on_markdown = [t for c in nb["cells"] if c.get("cell_type") != "code"
                   for t in c.get("metadata", {}).get("tags", []) if t.startswith(PREFIX)]
    out += ["%s on a markdown cell" % t for t in on_markdown]
    if not out:
        copy = json.loads(json.dumps(nb))
        try:
            if retag(copy, task):
                out.append("step tags disagree with the section headings")
        except ValueError as e:
            out.append(str(e))
    return out


def dump_like(text):
    """A function that serialises a notebook exactly as `text` was, or None if none matches."""
    data = json.loads(text)
    for indent in (1, 2, 4):
        for sort_keys in (True, False):
            def dump(nb, indent=indent, sort_keys=sort_keys):
                out = json.dumps(nb, indent=indent, sort_keys=sort_keys, ensure_ascii=False)
                return out + "\n" if text.endswith("\n") else out
            if dump(data) == text:
                return dump
    return None


def tag_file(path):
    """Tag one notebook in place; return True if it was rewritten."""
    text = Path(path).read_text(encoding="utf-8")
    dump = dump_like(text)
    if dump is None:
        raise ValueError("unusual JSON layout; save it with nbformat first")
    nb = json.loads(text)
    if not retag(nb, task_of(path)):
        return False
    Path(path).write_text(dump(nb), encoding="utf-8")
    return True


def notebooks(paths):
    out = []
    for p in map(Path, paths):
        out += sorted(p.glob("*.ipynb")) if p.is_dir() else [p]
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("paths", nargs="*", default=[str(ROOT / "notebooks")])
    ap.add_argument("--check", action="store_true", help="write nothing; fail on bad step tags")
    args = ap.parse_args(argv)
    failed = []
    for path in notebooks(args.paths):
        try:
            if not args.check and tag_file(path):
                print(f"{path.name}: tagged")
            issues = problems(json.loads(path.read_text(encoding="utf-8")), task_of(path))
        except ValueError as e:
            issues = [str(e)]
        if issues:
            failed.append(path.name)
            print(f"{path.name}: " + "; ".join(issues), file=sys.stderr)
    if failed:
        print("bad step tags in: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
