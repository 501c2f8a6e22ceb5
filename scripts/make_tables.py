#!/usr/bin/env python3
"""Regenerate the README's result tables and the bar charts from result records.

    python -m scripts.make_tables [--results results] [--readme README.md] [--check]

Only `ok` records measured on real data reach a table (smoke and synthetic runs never do). One
column per profile and machine (CPU or GPU name, thread count, and the CPU's vendor, family, model
and vector flags where the record names them) and mixed precision; every framework of
environments.toml keeps its row, marked "failed", "skipped: <why>" or "not run yet" in a column
where it has no result, or marked ‡ where its last re-run there failed. A CNN or inference
result's FLOP rate is shown as a share of the machine's matrix-multiply rate that the runner
measured just before and after it (marked § where the two differ by more than RATE_TOLERANCE), or
else of the peak stored in results/roofline.json. --check exits non-zero when the README is stale.
A record that does not pass common.records.validate (or a truncated one), or a damaged
roofline.json, is left out with a line "skipping FILE: reason" on stderr; the README and plots are
written from the rest, and the exit status is non-zero.
"""
import argparse
import csv
import json
import os
import sys
from collections import OrderedDict
from pathlib import Path

from common import envinfo
from common.catalogue import HEADINGS, MODEL_NAMES, TASK_TITLES
from common.flops import FLOPS_PER_IMAGE
from common.records import (PUBLISHED_PROFILES, RecordError, load_records, machine_threads,
                            publishable, thread_probe, validate)
from scripts import envspec
from scripts.roofline import RooflineError, entry_for as roofline_entry, load as load_roofline
from scripts.stale_records import record_changes

START, END = "<!-- results:start -->", "<!-- results:end -->"


# A run whose matrix-multiply rates measured just before and just after it differ by more than
# this share of the larger is marked unreliable: the machine's speed changed during it, and the
# mean of the two, which its fraction is of, may then be more than 11% off the speed it ran at.
RATE_TOLERANCE = 0.2
RATE_CHANGED, RERUN_FAILED = "§", "‡"
FAILED_SUFFIX = ".failed.json"  # the runner's <name>.failed.json: a failed re-run beside a kept <name>.json


def cpu_kind(rec):
    """(vendor, family, model, vector flags) of a CPU record's envinfo.cpu_id(), or None: a GPU
    record, or one without a cpu_id (older records)."""
    if rec.get("device", {}).get("kind", "cpu") != "cpu":
        return None
    return envinfo.cpu_kind((rec.get("environment") or {}).get("cpu_id"))


def arithmetic(rec):
    """A record's arithmetic beyond strict float32: "mixed" (mixed precision), "tf32", both, or ""."""
    return "+".join(a for a, used in (("mixed", bool(rec.get("params", {}).get("mixed_precision"))),
                                      ("tf32", rec.get("arithmetic") == "tf32")) if used)


ARITHMETIC_LABELS = {"mixed": "mixed precision", "tf32": "TF32"}


def column_key(rec):
    """(profile, device kind, device name, threads, arithmetic, CPU kind): one table column
    each. Two CPUs of one name but of different kinds (cpu_kind) get two columns; records that do
    not name their CPU's kind one of their own."""
    dev = rec.get("device", {})
    return (rec["profile"], dev.get("kind", "cpu"), dev.get("name", "?"), machine_threads(rec),
            arithmetic(rec), cpu_kind(rec))



def machine(col):
    """The (kind, CPU or GPU name, threads, CPU kind) a column ran on."""
    return col[1:4] + col[5:]


def machine_order(m):
    kind, name, threads, ident = m
    return (kind, name, threads or 0, ident is not None, ident or ())


def column_order(col):
    return machine_order(machine(col)) + (col[0], col[4])


def latest(records):
    """The newest ok record per (task, framework, column), and the newest failed or skipped one per
    (task, framework, column). A failure the runner wrote beside a kept ok record
    (<name>.failed.json beside <name>.json) belongs to that record's column."""
    ok = {os.path.abspath(r["_path"]): r for r in records if publishable(r) and r.get("_path")}
    best, unrun = {}, {}
    for rec in sorted(records, key=lambda r: r.get("finished_at") or ""):
        key = (rec["task"], rec["framework"])
        if publishable(rec):
            best[key + (column_key(rec),)] = rec
        elif rec.get("status") in ("failed", "skipped") and rec.get("profile") in PUBLISHED_PROFILES:
            path = rec.get("_path") or ""
            kept = path.endswith(FAILED_SUFFIX) and ok.get(os.path.abspath(path[:-len(FAILED_SUFFIX)] + ".json"))
            unrun[key + (column_key(kept or rec),)] = rec
    return best, unrun


def rerun_failed(rec, unrun_rec):
    """Whether a failed or skipped run of the same column came after the ok record `rec`."""
    return bool(rec and unrun_rec and (unrun_rec.get("finished_at") or "") >= (rec.get("finished_at") or ""))


def shown_path(path):
    """A record's path as the README shows it: relative to the repository where it lies inside."""
    try:
        return str(Path(path).resolve().relative_to(envspec.ROOT))
    except ValueError:
        return str(path)


def unrun_text(rec):
    """A table cell for a failed or skipped record: "failed", or "skipped: <its reason, short>"."""
    if rec["status"] != "skipped":
        return "failed"
    reason = rec["error"].strip().splitlines()[0].replace("|", "/")
    return "skipped: " + (reason if len(reason) <= 80 else reason[:77].rstrip() + "...")


def achieved_gflops(rec):
    """The FLOP rate a CNN or inference result reached, from common/flops.py's counts."""
    m, p = rec["metrics"], rec.get("params", {})
    if rec["task"] == "inference":
        images_per_second = m["images_per_second"]
    elif rec["task"] == "cnn" and p.get("train_images") and p.get("batchsize"):
        images = (p["train_images"] // p["batchsize"]) * p["batchsize"] * p.get("epochs", 1)
        images_per_second = images / m["train_seconds"]
    else:
        return None
    return images_per_second * FLOPS_PER_IMAGE[rec["task"]]() / 1e9


def peak_for(col, roofline):
    """The roofline file's entry (the stored peak) for a column's CPU, thread count and CPU kind, if
    there is one."""
    _, kind, name, threads, _, ident = col
    cpu_id = None if ident is None else dict(zip(("vendor", "family", "model"), ident[:3]),
                                              vector_flags=list(ident[3]))
    return roofline_entry(roofline, name, threads, cpu_id) if kind == "cpu" else None


def machine_rates(rec):
    """The matrix-multiply rates (GFLOP/s) the runner measured just before and after a CPU record's
    run, those it has (a reading may have failed); [] for a GPU record or an older one."""
    if rec.get("device", {}).get("kind", "cpu") != "cpu":
        return []
    return [x for x in (rec.get("harness") or {}).get("machine_gflops_before_after") or [] if x]


def speed_changed(rec):
    """Whether the rates measured before and after the run differ by more than RATE_TOLERANCE of
    the larger: the machine's speed changed during the run, whose figures are then unreliable."""
    rates = machine_rates(rec)
    return len(rates) == 2 and abs(rates[0] - rates[1]) > RATE_TOLERANCE * max(rates)


def cell(rec, peak=None):
    try:  # load_records validated it; a record from elsewhere must not print impossible figures
        validate(rec)
    except RecordError as e:
        raise RecordError(e.reason, rec.get("_path") or rec.get("notebook"))
    m = rec["metrics"]
    if rec["task"] == "inference":
        text = "%.1f s (%.0f img/s)" % (m["seconds_per_1000_images"], m["images_per_second"])
        passes = m.get("inference_passes")
        if passes and passes["repeats"] > 1:  # the median pass, and the range of all passes
            scale = m["seconds_per_1000_images"] / passes["median"]  # a pass's seconds -> per 1,000 images
            text = "%.1f s (%.1f-%.1f over %d passes; %.0f img/s)" % (
                m["seconds_per_1000_images"], passes["min"] * scale, passes["max"] * scale,
                passes["repeats"], m["images_per_second"])
    else:
        text = "%.1f%% in %.0f s" % (100 * m["test_accuracy"], m["train_seconds"])
    share = rate_share(rec, peak)
    if share:
        text += "; %.0f GFLOP/s, %.0f%% of %s" % share
    return text + thread_note(rec)


def thread_note(rec):
    """"; 1 thread (probe: 2 threads took 1.4x as long)": the count the run used, chosen by the
    thread rule's probe, and how the other counts compared there."""
    probe = thread_probe(rec)
    used = rec["device"].get("threads")
    if len(probe) < 2 or used not in probe:
        return ""
    plural = lambda n: "%d thread%s" % (n, "" if n == 1 else "s")  # noqa: E731
    return "; %s (probe: %s)" % (plural(used), ", ".join(
        "%s took %.1fx as long" % (plural(n), s / probe[used]) for n, s in sorted(probe.items(), reverse=True)
        if n != used))


def rate_share(rec, peak=None):
    """(FLOP rate reached, its percentage of the machine's rate, "measured rate" or "stored peak"),
    or None. The machine's rate is the mean of the rates the runner measured beside the run where
    it has them (the speed the machine ran at then), else the stored peak (`peak`, roofline.json's
    entry)."""
    rate, measured = achieved_gflops(rec), machine_rates(rec)
    if rate and measured:
        return rate, 100 * rate * len(measured) / sum(measured), "measured rate"
    if rate and peak and peak.get("peak_gflops", 0) > 0:
        return rate, 100 * rate / peak["peak_gflops"], "stored peak"
    return None


def column_label(col, hardware, records):
    profile, kind, name, threads, extra, _ = col
    epochs = sorted({r["params"].get("epochs") for r in records if column_key(r) == col
                     and r["task"] != "inference"} - {None})
    ep = " (%s epoch%s)" % ("/".join(map(str, epochs)), "" if epochs == [1] else "s") if epochs else ""
    # a record names its half type ("bfloat16", "float16"); older ones said only True
    halves = sorted({str(r["params"].get("mixed_precision")) for r in records if column_key(r) == col} - {"True"})
    amp = ", mixed precision%s" % (" (%s)" % "/".join(halves) if halves else "") if "mixed" in extra else ""
    tf32 = ", TF32" if "tf32" in extra else ""
    return "`%s`%s%s%s on %s" % (profile, ep, amp, tf32, hardware[col])


def framework_versions(recs):
    skip = {"python", "numpy"}
    out = []
    for rec in recs:
        for k, v in sorted(rec.get("versions", {}).items()):
            if k not in skip and "%s %s" % (k, v) not in out:
                out.append("%s %s" % (k, v))
    return ", ".join(out)


def hardware_tags(*keyed):
    """H1, H2, ... for every column of the (task, framework, column) keys given, one tag per
    machine (kind, CPU or GPU name, threads, CPU kind), in a stable order."""
    cols = sorted({k[2] for keys in keyed for k in keys}, key=column_order)
    machines = sorted({machine(c) for c in cols}, key=machine_order)
    tag = {m: "H%d" % (i + 1) for i, m in enumerate(machines)}
    return OrderedDict((c, tag[machine(c)]) for c in cols)


def run_kind(col):
    """A column's profile and arithmetic: "`cpu`", "`cpu`, mixed precision"."""
    return "`%s`%s" % (col[0], "".join(", " + ARITHMETIC_LABELS[a] for a in col[4].split("+") if a))


def short_label(col, hardware):
    """A column in a footnote: "`cpu` on H1", "`cpu`, mixed precision on H1"."""
    return "%s on %s" % (run_kind(col), hardware[col])


def hardware_line(tag, col, example, peak, runs):
    """A machine's line under the tables: what it is, its stored peak, the rates measured beside
    its runs."""
    env = example.get("environment") or {}
    ident = col[5]
    kind = "" if ident is None else "; %s family %s model %s, %s" % (ident[0], ident[1], ident[2],
                                                                     " ".join(ident[3]) or "no AVX2")
    roof = ""
    if peak:
        how = "best of %d" % peak["repeats"] if peak.get("repeats") else "best"
        if peak.get("median_gflops"):
            how += ", median %.0f" % peak["median_gflops"]
        roof = "; stored peak %.0f GFLOP/s (float32 %s x %s matmul, %s; %s, numpy %s)" % (
            peak["peak_gflops"], peak.get("size", "?"), peak.get("size", "?"), how, peak.get("blas", "?"),
            peak.get("numpy", "?"))
    rates = sorted(x for run in runs for x in run)
    if rates:
        roof += ("; measured by the runner before and after %d of the runs: %.0f-%.0f GFLOP/s"
                 % (sum(1 for run in runs if run), rates[0], rates[-1]))
    return "- %s: %s, %s threads, %s GiB memory (%s%s)%s" % (
        tag, col[2], col[3], env.get("memory_gib"), col[1].upper(), kind, roof)


def render(records, rows, roofline=None, notes=None):
    roofline, notes = roofline or {}, notes or {}
    best, unrun = latest(records)
    hardware = hardware_tags(best, unrun)
    peaks = {c: peak_for(c, roofline) for c in hardware}
    out = []
    for task, title in TASK_TITLES.items():
        task_recs = [r for k, r in best.items() if k[0] == task]
        task_cols = [c for c in hardware if any(k[0] == task and k[2] == c for k in list(best) + list(unrun))]
        where = (lambda c: " in " + short_label(c, hardware)) if len(task_cols) > 1 else (lambda c: "")
        variant = task == "rnn" and any(r["params"].get("gru_variant") for r in task_recs)
        header = (["Framework"] + (["GRU variant"] if variant else [])
                  + [column_label(c, hardware, task_recs) for c in task_cols] + ["Versions"])
        table = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
        stale, changed, failed_reruns, shares = [], [], [], set()
        for row in rows:
            recs = [best[(task, row, c)] for c in task_cols if (task, row, c) in best]
            cells = []
            for c in task_cols:
                rec, other = best.get((task, row, c)), unrun.get((task, row, c))
                if not rec:
                    cells.append(unrun_text(other) if other else "not run yet")
                    continue
                marks = ""
                if rec.get("_stale_steps"):
                    marks += " †"
                    stale.append("%s%s (%s)" % (row, where(c), ", ".join(HEADINGS.get(step, step)
                                                                         for step in rec["_stale_steps"])))
                if speed_changed(rec):
                    marks += " " + RATE_CHANGED
                    changed.append("%s%s (%.0f -> %.0f GFLOP/s)" % ((row, where(c)) + tuple(machine_rates(rec))))
                if rerun_failed(rec, other):
                    marks += " " + RERUN_FAILED
                    failed_reruns.append("%s%s (%s; see %s)" % (row, where(c), unrun_text(other),
                                                               shown_path(other.get("_path") or other["notebook"])))
                cells.append(cell(rec, peaks[c]) + marks)
                shares.add((rate_share(rec, peaks[c]) or (None, None, None))[2])
            if variant:
                cells.insert(0, next((r["params"]["gru_variant"] for r in recs
                                      if r["params"].get("gru_variant")), ""))
            status = "" if task_cols else " (not run yet)"
            table.append("| " + " | ".join([row + status] + cells + [framework_versions(recs)]) + " |")
        out.append("### %s\n" % title)
        out.append("Cells: %s.\n" % caption(task, shares, any(len(machine_rates(r)) == 2 for r in task_recs),
                                             any(len(thread_probe(r)) > 1 for r in task_recs)))
        out.extend(table)
        if stale:
            out.append("\n† Measured with an earlier version of the notebook, whose steps named here have "
                       "changed since (scripts/stale_records.py); the runner re-runs such notebooks when it "
                       "resumes on the machine that measured them: %s." % "; ".join(stale))
        if changed:
            out.append("\n%s The machine's matrix-multiply rate changed during the run by more than %.0f%% "
                       "(measured just before -> just after it): its timing and fraction are unreliable; "
                       "re-run it: %s." % (RATE_CHANGED, 100 * RATE_TOLERANCE, "; ".join(changed)))
        if failed_reruns:
            out.append("\n%s The last re-run did not succeed; the cell keeps the result of the run before "
                       "it: %s." % (RERUN_FAILED, "; ".join(failed_reruns)))
        if task_recs:
            out.append("\n![%s](results/plots/%s.png)\n" % (title, task))
        else:
            out.append("\nNo results on real data yet.\n")
        for row in rows:
            if row in notes:
                out.append("- %s: %s" % (row, notes[row]))
        if any(row in notes for row in rows):
            out.append("")
    overhead = harness_overhead(best.values())
    if overhead:
        out.append(overhead + "\n")
    if hardware:
        out.append("Hardware:\n")
        listed = set()
        for col, tag in hardware.items():
            if tag in listed:
                continue
            listed.add(tag)
            example = next(r for keyed in (best, unrun) for k, r in keyed.items() if k[2] == col)
            runs = [machine_rates(r) for k, r in best.items() if machine(k[2]) == machine(col)]
            out.append(hardware_line(tag, col, example, peaks[col], runs)
                       + completeness([c for c in hardware if machine(c) == machine(col)], best, len(rows)))
        out.append("")
    return "\n".join(out)


def completeness(cols, best, n_rows):
    """"; `cpu`: all 42 notebooks" (or "30 of 42"): how complete each of a machine's columns is."""
    total = n_rows * len(TASK_TITLES)
    parts = []
    for col in cols:
        done = sum(1 for k in best if k[2] == col)
        count = "all %d" % total if done >= total else "%d of %d" % (done, total)
        parts.append("%s: %s notebooks" % (run_kind(col), count))
    return "; " + ", ".join(parts) if parts else ""


def caption(task, shares, rates_measured, threads_tried=False):
    """What a task's cells hold; `shares`: the kinds of rate_share() its cells show;
    `rates_measured`: whether any of its runs has both rates measured beside it; `threads_tried`:
    whether any was timed with several thread counts (the runner's thread rule)."""
    text = ("seconds per 1,000 images (images per second)" if task == "inference"
            else "test accuracy after training, and training time")
    if shares - {None}:
        how = []
        if "measured rate" in shares:
            how.append("*of measured rate*: of the mean of the rates the runner measured just before and "
                       "just after that run (or the one of them it has)")
        if "stored peak" in shares:
            how.append("*of stored peak*: of the best rate stored for the machine in `results/roofline.json` "
                       "(a run without the runner's measurements)")
        text += ("; then the FLOP rate reached (%s) and its share of the machine's float32 matrix-multiply "
                 "rate, %s" % ("forward and backward" if task == "cnn" else "forward", "; ".join(how)))
    if task == "rnn":
        text += ("; GRU variant: whether the reset gate acts after the recurrent matrix product "
                 "(cuDNN, PyTorch, Keras 3) or before it (Keras 2's default), and the bias vectors per gate")
    if threads_tried:
        text += ("; the thread rule (the same for every framework): each notebook's step was first timed "
                 "on a short probe with all the machine's threads and with one, and the run used the faster "
                 "count (all unless one was at least 5% faster); the cell names it and the probe's ratio")
    if rates_measured:
        text += ("; %s: the rates measured before and after the run differ by more than %.0f%% of the larger: "
                 "the machine's speed changed during the run, whose figures are unreliable"
                 % (RATE_CHANGED, 100 * RATE_TOLERANCE))
    return text


def harness_overhead(recs):
    """A sentence on the time the runner measured outside the notebooks' timed blocks."""
    by_task = OrderedDict()
    for task in TASK_TITLES:
        untimed = sorted(r["harness"]["untimed_seconds"] for r in recs
                         if r["task"] == task and r.get("harness", {}).get("untimed_seconds") is not None)
        if untimed:
            by_task[task] = untimed
    if not by_task:
        return ""
    parts = ["%s %.0f s (%.0f-%.0f s, %d notebook(s))" % (
        {"cnn": "CNN", "rnn": "RNN", "inference": "inference"}[t], v[len(v) // 2], v[0], v[-1], len(v))
        for t, v in by_task.items()]
    return ("Outside the timed blocks, measured by the runner around each notebook (kernel start, "
            "imports, data loading, model building, warm-up, record): median " + ", ".join(parts)
            + ". None of it enters the figures above.")


FIDELITY_START, FIDELITY_END = "<!-- fidelity:start -->", "<!-- fidelity:end -->"
FIDELITY_CHECKS = ("outputs", "after one step", "loss after the step", "features")


def variant_text(variant):
    """The GRU variant and Adam convention a notebook was checked against, in words."""
    if "gru" not in variant:
        return ""
    text = "%s, %d bias vector%s" % (variant["gru"].replace("_", " "), variant["bias_vectors"],
                                      "" if variant["bias_vectors"] == 1 else "s")
    text += "; Adam eps on %s" % ("v-hat" if variant["adam_epsilon"] == "v_hat" else "v")
    if variant.get("adam_iteration", 1) != 1:
        text += ", first step counted as %d" % variant["adam_iteration"]
    if variant.get("adam_embedding", "dense") == "per_occurrence":
        text += ", embedding's second moment per word occurrence"
    if variant.get("adam_gradient", "mean") != "mean":
        text += ", on the %s gradient" % ("summed" if variant["adam_gradient"] == "sum" else variant["adam_gradient"])
    return text


def fidelity_cell(e):
    if e is None:
        return "not checked"
    if not e["passed"]:
        return "**FAILED**: " + (e.get("error") or ", ".join(
            "%s %.1e > %.0e" % (k, e["max_abs_diff"][k], e["tolerance"][k]) for k in FIDELITY_CHECKS
            if k in e["max_abs_diff"] and not e["max_abs_diff"][k] <= e["tolerance"][k]) or "parameters %s, expected %s" % (e.get("parameters"), e.get("expected_parameters")))
    d = e["max_abs_diff"]
    if e["task"] == "inference":
        return "pass: %.1e" % d["features"]
    ties = " (max pool's gradient to every tie)" if e.get("variant", {}).get("pool_gradient") == "all" else ""
    return "pass: %.1e / %.1e / %.1e%s" % (d["outputs"], d["after one step"], d["loss after the step"], ties)


def render_fidelity(path, rows):
    """The README's fidelity table from results/fidelity.json (written by scripts/fidelity.py)."""
    if not path.exists():
        return "No fidelity results yet: run `make fidelity`.\n"
    fidelity = json.loads(path.read_text())
    entries = fidelity["notebooks"]
    by = dict(((e["framework"], e["task"]), e) for e in entries)
    tol = next((e["tolerance"] for e in entries if e["task"] == "cnn" and e.get("tolerance")), {})
    ftol = next((e["tolerance"] for e in entries if e["task"] == "inference" and e.get("tolerance")), {})
    out = ["Largest absolute difference from the NumPy float64 reference (`common/reference.py`): for "
           "the CNN and the GRU, the outputs on a fixed batch of real test data / the outputs after one "
           "optimizer step from the shared weights / the loss after that step; for ResNet-50, the 2048 "
           "features of the two photographs. Tolerances: %s; features %s. Checked %s.\n" % (
               " / ".join("%.0e" % tol[k] for k in ("outputs", "after one step", "loss after the step") if k in tol),
               "%.0e" % ftol["features"] if "features" in ftol else "-",
               fidelity["generated_at"][:10]),
           "| Framework | CNN | GRU | GRU variant checked | ResNet-50 |", "|---|---|---|---|---|"]
    for row in rows:
        rnn = by.get((row, "rnn"))
        out.append("| %s | %s | %s | %s | %s |" % (
            row, fidelity_cell(by.get((row, "cnn"))), fidelity_cell(rnn),
            variant_text(rnn.get("variant", {})) if rnn else "", fidelity_cell(by.get((row, "inference")))))
    largest = []
    for task, name in MODEL_NAMES.items():
        passed = [e for e in entries if e["task"] == task and e["passed"]]
        if passed:
            key = "features" if task == "inference" else "outputs"
            worst = max(passed, key=lambda e: e["max_abs_diff"][key])
            largest.append("%s %.1e (%s)" % (name, worst["max_abs_diff"][key], worst["framework"]))
    if largest:
        out.append("\nLargest output difference among passing notebooks: " + ", ".join(largest) + ".")
    return "\n".join(out) + "\n"


def replace_between(text, start, end, body, name):
    if start not in text or end not in text:
        sys.exit(f"{name}: markers {start} and {end} not found")
    head, rest = text.split(start, 1)
    return head + start + "\n" + body + "\n" + end + rest.split(end, 1)[1]


def render_original(path):
    with open(path) as f:
        rows = list(csv.DictReader(f))
    out = ["### The original's published figures (2017-2018, GPU, hand-typed there; for reference)\n",
           "| Framework | CNN acc % | CNN K80 s | CNN P100 s | RNN acc % | RNN K80 s | RNN P100 s "
           "| ResNet-50 K80 s/1000 img | ResNet-50 P100 s/1000 img |", "|" + "---|" * 9]
    for r in rows:
        out.append("| " + " | ".join(r.values()) + " |")
    return "\n".join(out) + "\n"


def plot(records, out_dir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    best, _ = latest(records)
    hardware = hardware_tags(best)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for task, title in TASK_TITLES.items():
        recs = sorted((r for k, r in best.items() if k[0] == task),
                      key=lambda r: (r["framework"].lower(), hardware[column_key(r)]))
        if not recs:
            continue
        labels = ["%s (%s%s, %s)" % (r["framework"], r["profile"], "".join(", " + {"mixed": "AMP", "tf32": "TF32"}[a] for a in column_key(r)[4].split("+") if a),
                                     hardware[column_key(r)]) for r in recs]
        key = "seconds_per_1000_images" if task == "inference" else "train_seconds"
        values = [r["metrics"][key] for r in recs]
        fig, ax = plt.subplots(figsize=(7, 0.45 * len(recs) + 1.2))
        ax.barh(labels, values, color="#4878a8")
        for y, v in enumerate(values):
            ax.text(v, y, " %.1f" % v, va="center", fontsize=8)
        ax.set_xlabel("seconds per 1,000 images" if task == "inference" else "training seconds")
        ax.set_title(title, fontsize=10)
        ax.invert_yaxis()
        fig.tight_layout()
        path = out_dir / ("%s.png" % task)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)
    return written


def readme_rows(spec, records):
    rows = [row for _, row in envspec.framework_table(spec).values()]
    rows += [r["framework"] for r in records if r["framework"] not in rows]
    return sorted(set(rows), key=str.lower)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--results", default=str(envspec.ROOT / "results"))
    ap.add_argument("--readme", default=str(envspec.ROOT / "README.md"))
    ap.add_argument("--notebooks", default=str(envspec.ROOT / "notebooks"),
                    help="source notebooks, against which each record's executed copy is compared")
    ap.add_argument("--check", action="store_true", help="fail if the README is not up to date")
    args = ap.parse_args(argv)
    results = Path(args.results)
    problems = []
    records = [r for r in load_records(str(results), problems) if r.get("profile") != "smoke"]
    for path, reason in problems:
        print(f"skipping {path}: {reason}", file=sys.stderr)
    for rec in records:
        rec["_stale_steps"] = record_changes(rec["_path"], args.notebooks) if publishable(rec) else None
    roofline_file = results / "roofline.json"
    try:
        roofline = load_roofline(roofline_file)
    except RooflineError as e:  # the tables go on without stored peaks
        print(f"skipping {e.path}: {e.reason}", file=sys.stderr)
        problems.append((e.path, e.reason))
        roofline = {}
    spec = envspec.load_spec()
    body = render(records, readme_rows(spec, records), roofline, envspec.framework_notes(spec))
    body += "\n" + render_original(results / "original_2018.csv")
    readme = Path(args.readme)
    text = readme.read_text()
    new = replace_between(text, START, END, body, readme)
    new = replace_between(new, FIDELITY_START, FIDELITY_END,
                          render_fidelity(results / "fidelity.json", readme_rows(spec, records)), readme)
    if args.check:
        if new != text:
            sys.exit(f"{readme} is stale: run python -m scripts.make_tables")
        return 1 if problems else 0
    readme.write_text(new)
    plots = plot(records, results / "plots")
    print(f"{readme}: tables from {sum(publishable(r) for r in records)} records; plots: "
          + ", ".join(str(p) for p in plots))
    if problems:
        print(f"{len(problems)} file(s) skipped: fix or remove them", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
