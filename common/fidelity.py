"""Rosetta fidelity: a checked proof that every notebook builds the same model.

Per task: one framework-neutral set of weights (seeded, float32), one fixed batch of real data and
a NumPy reference (float64) of the forward pass and of one optimizer step. A notebook's Fidelity
section loads `Check(task).weights` into its own model (converting layouts its way), gives the
batch's outputs to `check_outputs`, takes one optimizer step on the batch with dropout off from a
fresh optimizer, gives the outputs after it to `check_step`, and stores `result()` in its record.

Neutral layouts (docs/WEIGHTS.md says how each framework converts them):
  cnn   "convN/kernel" OIHW (out, in, kh, kw), "convN/bias"; "denseN/kernel" (in, out) used as
        x @ W + b; dense1's rows in the channels-first flatten order (c, h, w) of the (100, 8, 8) map.
  rnn   "embedding" (MAXFEATURES, EMBEDSIZE); "gru/input_kernel" (EMBEDSIZE, 3 * NUMHIDDEN),
        "gru/recurrent_kernel" (NUMHIDDEN, 3 * NUMHIDDEN), "gru/input_bias", "gru/recurrent_bias"
        (3 * NUMHIDDEN,), each with its gates side by side in the order r (reset), z (update),
        n (candidate); h' = (1 - z) * n + z * h; "dense/kernel" (NUMHIDDEN, 2), "dense/bias".
  inference  the shared ImageNet ResNet-50 weights of common.resnet50 (Keras layout, HWIO), as they
        are; the outputs are the 2048 pooled features.

Biases are drawn non-zero on purpose: a bias loaded into the wrong place must show.

Standard library + numpy (1.19+), Python 3.6+.
"""
import collections
import hashlib
import inspect
import sys

import numpy as np

from . import data, provenance, resnet50, sources
from .params import (BETA_1, BETA_2, EMBEDSIZE, EPS, LR, MAXFEATURES, MAXLEN,
                     N_CLASSES, NUMHIDDEN, RNN_LR, SEED, CNN_PARAMETERS)

BATCH = {"cnn": 16, "rnn": 8, "inference": 2}  # the fixed batch: the first test images / reviews, the two photos
# Tolerances on the largest absolute difference from the float64 reference (logits and
# log-probabilities are on the same scale). Correct float32 conversions in every framework here
# differ by at most 5e-7 (outputs, after one step; the loss 1.3e-6, Gluon's) and 5e-6 (ResNet-50
# features, values up to ~9): the tolerances are 8-20x that. They are 5x below the smallest real
# difference the check has found between frameworks: where Adam adds epsilon (5e-5 after one
# step), the max pool's gradient to tied maxima (6e-5), Keras 2.2's hard-sigmoid gates (9e-5); a
# wrong layout gives 1e-3 to 1e-1.
TOLERANCES = {
    "cnn": {"outputs": 1e-5, "step_outputs": 1e-5, "step_loss": 1e-5},
    "rnn": {"outputs": 1e-5, "step_outputs": 1e-5, "step_loss": 1e-5},
    "inference": {"outputs": 1e-4},
}
# With the max pool's gradient to every tied maximum, the step also depends on which of the
# reference's exact float64 ties stay ties in float32. A float32 GEMM need not give two identical
# patches the same result: OpenBLAS's AVX2 kernels on a Zen 3 EPYC put them up to 1.3e-5 apart (on
# values near 20), so Theano's convolutions broke some of the 99 ties and its step landed 1.0e-5 to
# 1.2e-5 from the reference (AVX-512 kernels: 2e-7). Between all ties kept (0) and all broken
# (the "first" variant, 6e-5 off) this tolerance still tells the two variants apart.
TIED_POOL_STEP_TOLERANCE = 3e-5
CNN_CONVS = (("conv1", 3, 50), ("conv2", 50, 50), ("conv3", 50, 100), ("conv4", 100, 100))
CNN_DENSES = (("dense1", 100 * 8 * 8, 512), ("dense2", 512, N_CLASSES))
GRU_GATES = ("r", "z", "n")
CNN_VARIANT_DEFAULTS = {"pool_gradient": "first"}
RNN_VARIANT_DEFAULTS = {"gru": "reset_after", "bias_vectors": 2, "adam_epsilon": "v_hat", "adam_iteration": 1,
                        "adam_gradient": "mean", "adam_embedding": "dense"}


# ---------------------------------------------------------------- shared weights

def _glorot(rng, shape, fan_in, fan_out):
    limit = np.sqrt(6.0 / (fan_in + fan_out))
    return rng.uniform(-limit, limit, size=shape).astype(np.float32)


def _bias(rng, n):
    return rng.uniform(-0.1, 0.1, size=n).astype(np.float32)


def cnn_weights(seed=SEED):
    """The CNN's shared initial weights: {name: float32 array}, neutral layout."""
    rng = np.random.RandomState(seed)
    weights = collections.OrderedDict()
    for name, cin, cout in CNN_CONVS:
        weights[name + "/kernel"] = _glorot(rng, (cout, cin, 3, 3), cin * 9, cout * 9)
        weights[name + "/bias"] = _bias(rng, cout)
    for name, cin, cout in CNN_DENSES:
        weights[name + "/kernel"] = _glorot(rng, (cin, cout), cin, cout)
        weights[name + "/bias"] = _bias(rng, cout)
    return weights


def rnn_weights(seed=SEED, gru="reset_after", bias_vectors=2):
    """The GRU model's shared initial weights: {name: float32 array}, neutral layout. With one bias
    vector and reset_after (Flax), the candidate's recurrent bias cannot be folded into the input
    bias, so it is zero here; every other one-vector convention loads input_bias + recurrent_bias."""
    rng = np.random.RandomState(seed + 1)
    h3 = 3 * NUMHIDDEN
    weights = collections.OrderedDict()
    weights["embedding"] = rng.uniform(-0.05, 0.05, size=(MAXFEATURES, EMBEDSIZE)).astype(np.float32)
    weights["gru/input_kernel"] = _glorot(rng, (EMBEDSIZE, h3), EMBEDSIZE, h3)
    # orthogonal per gate (QR of a Gaussian), as the notebooks initialise recurrent weights
    q, r = np.linalg.qr(rng.normal(size=(h3, NUMHIDDEN)))
    weights["gru/recurrent_kernel"] = np.ascontiguousarray((q * np.sign(np.diag(r))).T, dtype=np.float32)
    weights["gru/input_bias"] = _bias(rng, h3)
    weights["gru/recurrent_bias"] = _bias(rng, h3)
    weights["dense/kernel"] = _glorot(rng, (NUMHIDDEN, 2), NUMHIDDEN, 2)
    weights["dense/bias"] = _bias(rng, 2)
    _check_gru_variant(gru, bias_vectors)
    if gru == "reset_after" and bias_vectors == 1:
        weights["gru/recurrent_bias"][2 * NUMHIDDEN:] = 0.0
    return weights


def _check_gru_variant(gru, bias_vectors):
    if gru not in ("reset_after", "reset_before"):
        raise ValueError("gru must be 'reset_after' or 'reset_before', not %r" % (gru,))
    if bias_vectors not in (1, 2):
        raise ValueError("bias_vectors must be 1 or 2, not %r" % (bias_vectors,))


def rnn_parameters(bias_vectors=2):
    """The GRU model's parameter count: 3,818,302 with two bias vectors, 3,818,002 with one."""
    return (MAXFEATURES * EMBEDSIZE + 3 * NUMHIDDEN * (EMBEDSIZE + NUMHIDDEN) + bias_vectors * 3 * NUMHIDDEN
            + NUMHIDDEN * 2 + 2)


def fold_biases(weights):
    """The model with one bias vector: input_bias + recurrent_bias in the input bias, the recurrent
    bias zero. The same function (rnn_weights zeroes what cannot fold), but a different model to
    train: an optimizer steps one vector instead of two, so the reference steps the folded one."""
    folded = collections.OrderedDict(weights)
    folded["gru/input_bias"] = weights["gru/input_bias"] + weights["gru/recurrent_bias"]
    folded["gru/recurrent_bias"] = np.zeros_like(weights["gru/recurrent_bias"])
    return folded


def gate(array, name):
    """One gate's block (r, z or n) of a neutral GRU kernel or bias (gates on the last axis)."""
    i = GRU_GATES.index(name)
    return array[..., i * NUMHIDDEN:(i + 1) * NUMHIDDEN]


# ---------------------------------------------------------------- the fixed batches (real data)

def _noted_apart(dataset, load):
    """Run a loader without replacing the record's note of what the notebook trained on (a smoke
    run trains on synthetic data): its note goes under "fidelity_<dataset>" instead."""
    saved = dict(provenance.DATA_SOURCES)
    try:
        return load()
    finally:
        entry = provenance.DATA_SOURCES.get(dataset)
        provenance.DATA_SOURCES.clear()
        provenance.DATA_SOURCES.update(saved)
        if entry is not None:
            provenance.DATA_SOURCES["fidelity_" + dataset] = entry


def cnn_batch(n=BATCH["cnn"], channel_first=True):
    """The first n CIFAR-10 test images, float32 in [0, 1], and their int32 labels (real data)."""
    x, y = _noted_apart("cifar10", lambda: data.cifar_uint8_test(limit=n))  # NHWC uint8
    x = x.astype(np.float32) / np.float32(255.0)
    if channel_first:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), y.astype(np.int32)


def rnn_batch(n=BATCH["rnn"]):
    """The first n IMDB test reviews, padded and capped as for training, and their labels."""
    _, x_test, _, y_test = _noted_apart("imdb", lambda: data.imdb_sequences(test_limit=n))
    return data.pad_sequences(x_test, MAXLEN, MAXFEATURES), y_test.astype(np.int32)


# ---------------------------------------------------------------- NumPy reference: the CNN

def _im2col(x, k, stride=1, pad=0):
    """x (N, C, H, W) -> (N * Ho * Wo, C * k * k), rows in (n, ho, wo) order."""
    n, c, h, w = x.shape
    if pad:
        x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)), mode="constant")
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    cols = np.empty((n, c, k, k, ho, wo), dtype=x.dtype)
    for i in range(k):
        for j in range(k):
            cols[:, :, i, j] = x[:, :, i:i + stride * ho:stride, j:j + stride * wo:stride]
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * ho * wo, c * k * k), (n, ho, wo)


def _conv_same(x, kernel, bias):
    cols, (n, h, w) = _im2col(x, 3, pad=1)
    out = cols.dot(kernel.reshape(len(kernel), -1).T) + bias
    return out.reshape(n, h, w, -1).transpose(0, 3, 1, 2), cols


def _conv_same_backward(dout, x_shape, kernel, cols):
    n, c, h, w = x_shape
    d2 = dout.transpose(0, 2, 3, 1).reshape(-1, len(kernel))
    dkernel = d2.T.dot(cols).reshape(kernel.shape)
    dcols = d2.dot(kernel.reshape(len(kernel), -1)).reshape(n, h, w, c, 3, 3)
    dxp = np.zeros((n, c, h + 2, w + 2))
    for i in range(3):
        for j in range(3):
            dxp[:, :, i:i + h, j:j + w] += dcols[:, :, :, :, i, j].transpose(0, 3, 1, 2)
    return dxp[:, :, 1:-1, 1:-1], dkernel, d2.sum(axis=0)


def _pool2(x):
    n, c, h, w = x.shape
    windows = x.reshape(n, c, h // 2, 2, w // 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, h // 2, w // 2, 4)
    arg = windows.argmax(axis=-1)
    out = np.take_along_axis(windows, arg[..., None], axis=-1)[..., 0]
    return out, (arg, windows == out[..., None])


def _pool2_backward(dout, arg, ties=None):
    """The max pool's gradient to the first maximum of each window (`arg`), or, given the windows'
    tie mask `ties`, to every maximum (Caffe2's and Theano's CPU max-pool gradients)."""
    n, c, h2, w2 = dout.shape
    if ties is None:
        dwin = np.zeros((n, c, h2, w2, 4))
        np.put_along_axis(dwin, arg[..., None], dout[..., None], axis=-1)
    else:
        dwin = ties * dout[..., None]
    return dwin.reshape(n, c, h2, w2, 2, 2).transpose(0, 1, 2, 4, 3, 5).reshape(n, c, 2 * h2, 2 * w2)


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def cross_entropy(logits, y):
    """Mean softmax cross-entropy of (N, classes) logits against int labels."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
    return float(-logp[np.arange(len(y)), y].mean())


def cnn_forward(weights, x, y=None, pool_gradient="first"):
    """Logits of the CNN (dropout off) for NCHW x; with labels y also the loss's gradients, the max
    pools' going to the first maximum of a window or, with pool_gradient="all", to every tied one."""
    if pool_gradient not in ("first", "all"):
        raise ValueError("pool_gradient must be 'first' or 'all', not %r" % (pool_gradient,))
    w = dict((k, v.astype(np.float64)) for k, v in weights.items())
    a = x.astype(np.float64)
    tape = []
    for name, pool in (("conv1", False), ("conv2", True), ("conv3", False), ("conv4", True)):
        z, cols = _conv_same(a, w[name + "/kernel"], w[name + "/bias"])
        arg = None
        if pool:
            z, arg = _pool2(z)
        tape.append((name, a.shape, cols, arg, z))
        a = np.maximum(z, 0.0)  # ReLU after the pool, as in every notebook
    flat = a.reshape(len(a), -1)  # (c, h, w) order
    hidden_pre = flat.dot(w["dense1/kernel"]) + w["dense1/bias"]
    hidden = np.maximum(hidden_pre, 0.0)
    logits = hidden.dot(w["dense2/kernel"]) + w["dense2/bias"]
    if y is None:
        return logits
    grads = {}
    dlogits = _softmax(logits)
    dlogits[np.arange(len(y)), y] -= 1.0
    dlogits /= len(y)
    grads["dense2/kernel"], grads["dense2/bias"] = hidden.T.dot(dlogits), dlogits.sum(axis=0)
    dhidden = dlogits.dot(w["dense2/kernel"].T) * (hidden_pre > 0)
    grads["dense1/kernel"], grads["dense1/bias"] = flat.T.dot(dhidden), dhidden.sum(axis=0)
    da = dhidden.dot(w["dense1/kernel"].T).reshape(a.shape)
    for name, x_shape, cols, arg, z in reversed(tape):
        dz = da * (z > 0)
        if arg is not None:
            first, ties = arg
            dz = _pool2_backward(dz, first, ties if pool_gradient == "all" else None)
        da, grads[name + "/kernel"], grads[name + "/bias"] = _conv_same_backward(dz, x_shape, w[name + "/kernel"], cols)
    return logits, grads


# ---------------------------------------------------------------- NumPy reference: the GRU model

def _sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def rnn_forward(weights, x, y=None, gru="reset_after"):
    """Logits of the GRU model for int ids x (N, T); with labels y also the loss's gradients."""
    _check_gru_variant(gru, 2)
    w = dict((k, v.astype(np.float64)) for k, v in weights.items() if k != "embedding")
    emb = weights["embedding"][x].astype(np.float64)  # (N, T, D)
    wi, wh, bi, bh = w["gru/input_kernel"], w["gru/recurrent_kernel"], w["gru/input_bias"], w["gru/recurrent_bias"]
    H = NUMHIDDEN
    h = np.zeros((len(x), H))
    steps = []
    for t in range(x.shape[1]):
        xi = emb[:, t].dot(wi) + bi
        if gru == "reset_after":
            hh = h.dot(wh) + bh
            r = _sigmoid(xi[:, :H] + hh[:, :H])
            z = _sigmoid(xi[:, H:2 * H] + hh[:, H:2 * H])
            n = np.tanh(xi[:, 2 * H:] + r * hh[:, 2 * H:])
            steps.append((h, r, z, n, hh[:, 2 * H:]))
        else:
            hrz = h.dot(wh[:, :2 * H]) + bh[:2 * H]
            r = _sigmoid(xi[:, :H] + hrz[:, :H])
            z = _sigmoid(xi[:, H:2 * H] + hrz[:, H:])
            n = np.tanh(xi[:, 2 * H:] + (r * h).dot(wh[:, 2 * H:]) + bh[2 * H:])
            steps.append((h, r, z, n, None))
        h = (1.0 - z) * n + z * h
    logits = h.dot(w["dense/kernel"]) + w["dense/bias"]
    if y is None:
        return logits
    dlogits = _softmax(logits)
    dlogits[np.arange(len(y)), y] -= 1.0
    dlogits /= len(y)
    grads = {"dense/kernel": h.T.dot(dlogits), "dense/bias": dlogits.sum(axis=0)}
    dwi, dwh, dbi, dbh = np.zeros_like(wi), np.zeros_like(wh), np.zeros_like(bi), np.zeros_like(bh)
    demb = np.zeros_like(emb)
    dh = dlogits.dot(w["dense/kernel"].T)
    for t in reversed(range(x.shape[1])):
        h_prev, r, z, n, hn = steps[t]
        dn = dh * (1.0 - z)
        dz = dh * (h_prev - n)
        dh_prev = dh * z
        da_n = dn * (1.0 - n * n)
        da_z = dz * z * (1.0 - z)
        if gru == "reset_after":
            dr = da_n * hn
            da_r = dr * r * (1.0 - r)
            dhh = np.concatenate([da_r, da_z, da_n * r], axis=1)
            dwh += h_prev.T.dot(dhh)
            dbh += dhh.sum(axis=0)
            dh_prev += dhh.dot(wh.T)
        else:
            drh = da_n.dot(wh[:, 2 * H:].T)
            da_r = drh * h_prev * r * (1.0 - r)
            drz = np.concatenate([da_r, da_z], axis=1)
            dwh[:, :2 * H] += h_prev.T.dot(drz)
            dwh[:, 2 * H:] += (r * h_prev).T.dot(da_n)
            dbh[:2 * H] += drz.sum(axis=0)
            dbh[2 * H:] += da_n.sum(axis=0)
            dh_prev += drz.dot(wh[:, :2 * H].T) + drh * r
        dxi = np.concatenate([da_r, da_z, da_n], axis=1)
        dwi += emb[:, t].T.dot(dxi)
        dbi += dxi.sum(axis=0)
        demb[:, t] = dxi.dot(wi.T)
        dh = dh_prev
    dembedding, squares = np.zeros(weights["embedding"].shape), np.zeros(weights["embedding"].shape)
    np.add.at(dembedding, x, demb)
    np.add.at(squares, x, demb * demb)  # per occurrence: for adam_step's `squares` (Keras 3 on TensorFlow)
    grads.update({"embedding": dembedding, "embedding/occurrence_squares": squares, "gru/input_kernel": dwi, "gru/recurrent_kernel": dwh,
                  "gru/input_bias": dbi, "gru/recurrent_bias": dbh})
    return logits, grads


# ---------------------------------------------------------------- NumPy reference: ResNet-50 features

def _conv_nhwc(x, kernel, bias, stride=1, pad=0):
    """x (N, H, W, C) float64, kernel HWIO."""
    k = kernel.shape[0]
    if k == 1:
        xs = x[:, ::stride, ::stride, :]
        return xs.dot(kernel[0, 0]) + bias
    cols, (n, ho, wo) = _im2col(x.transpose(0, 3, 1, 2), k, stride, pad)  # rows: (c, kh, kw)
    w = kernel.transpose(2, 0, 1, 3).reshape(-1, kernel.shape[3])  # (c, kh, kw) x out
    return (cols.dot(w) + bias).reshape(n, ho, wo, -1)


def resnet50_features(weights, x_nchw):
    """The 2048 pooled features of ResNet-50 (v1, Keras layout) for a preprocessed NCHW batch."""
    def bn(a, name):
        p = weights[name]
        scale = p["gamma"].astype(np.float64) / np.sqrt(p["moving_variance"].astype(np.float64) + resnet50.BN_EPSILON)
        return (a - p["moving_mean"]) * scale + p["beta"]

    def conv(a, name, stride=1, pad=0):
        return _conv_nhwc(a, weights[name]["kernel"].astype(np.float64), weights[name]["bias"], stride, pad)

    a = x_nchw.astype(np.float64).transpose(0, 2, 3, 1)
    a = np.maximum(bn(conv(a, "conv1", resnet50.CONV1_STRIDE, resnet50.CONV1_PADDING), "bn_conv1"), 0.0)
    a = np.pad(a, ((0, 0), (1, 1), (1, 1), (0, 0)), mode="constant")  # zero padding: a >= 0 after the ReLU
    n, h, w, c = a.shape
    ho, wo = (h - 3) // 2 + 1, (w - 3) // 2 + 1
    a = np.max([a[:, i:i + 2 * ho:2, j:j + 2 * wo:2] for i in range(3) for j in range(3)], axis=0)
    for block in resnet50.BLOCKS:
        layers = dict((branch, (conv_name, bn_name, stride)) for branch, conv_name, bn_name, _, _, _, stride
                      in resnet50.block_layers(block))
        out = a
        for branch, relu in (("2a", True), ("2b", True), ("2c", False)):
            conv_name, bn_name, stride = layers[branch]
            out = bn(conv(out, conv_name, stride, 1 if branch == "2b" else 0), bn_name)
            out = np.maximum(out, 0.0) if relu else out
        if "1" in layers:
            conv_name, bn_name, stride = layers["1"]
            shortcut = bn(conv(a, conv_name, stride), bn_name)
        else:
            shortcut = a
        a = np.maximum(out + shortcut, 0.0)
    return a.mean(axis=(1, 2))


def reference_features(weights, x_nchw):
    """resnet50_features of the shared weights (load_resnet50_weights(), verified against
    WEIGHTS_ARRAYS_SHA256), computed once per machine (about 30 s) and kept in the cache, keyed by
    that hash, the images and the reference's own code."""
    key = hashlib.sha256()
    key.update(resnet50.WEIGHTS_ARRAYS_SHA256.encode("ascii"))
    key.update(np.ascontiguousarray(x_nchw, dtype=np.float32).tobytes())
    for function in (_im2col, _conv_nhwc, resnet50_features):
        key.update(inspect.getsource(function).encode("utf-8"))
    key.update(repr((resnet50.BN_EPSILON, resnet50.CONV1_STRIDE, resnet50.CONV1_PADDING, resnet50.BLOCKS)).encode("utf-8"))
    return sources.cached_array("resnet50-features", key.hexdigest()[:24],
                                lambda: resnet50_features(weights, x_nchw))


# ---------------------------------------------------------------- optimizer steps

def sgd_step(weights, grads, lr=LR):
    """The first step of SGD with momentum from zero velocity: w - lr * g (any momentum)."""
    return collections.OrderedDict((k, v.astype(np.float64) - lr * grads[k]) for k, v in weights.items())


def adam_step(weights, grads, lr=RNN_LR, beta_1=BETA_1, beta_2=BETA_2, eps=EPS, iteration=1, epsilon="v_hat",
              squares=None):
    """The first Adam step from zero moments. epsilon="v_hat" adds eps to the bias-corrected root
    (PyTorch, Optax); "v" adds it before the correction (Keras, Chainer, CNTK, Caffe2).
    `iteration` is the step count Adam's bias correction uses (1, or 2 where a framework counts
    the step before the update, as Caffe2 does). `squares` {name: array} replaces g * g in the second
    moment of the named weights: Keras 3 on TensorFlow squares the embedding's gradient rows per word
    occurrence (tf.IndexedSlices, duplicates not summed first), so v gets sum(g_i^2), not (sum g_i)^2. A framework whose Adam gets the batch's summed
    gradient (CNTK's learners) is Check's adam_gradient="sum": epsilon then weighs 1/batch as much."""
    if epsilon not in ("v_hat", "v"):
        raise ValueError("epsilon must be 'v_hat' or 'v', not %r" % (epsilon,))
    new = collections.OrderedDict()
    for k, v in weights.items():
        g = grads[k]
        m, s = (1 - beta_1) * g, (1 - beta_2) * (squares[k] if squares and k in squares else g * g)
        m_hat, s_hat = m / (1 - beta_1 ** iteration), s / (1 - beta_2 ** iteration)
        if epsilon == "v_hat":
            step = m_hat / (np.sqrt(s_hat) + eps)
        else:
            step = m_hat / (np.sqrt(s_hat) + eps / np.sqrt(1 - beta_2 ** iteration))
        new[k] = v.astype(np.float64) - lr * step
    return new


# ---------------------------------------------------------------- the check a notebook runs

def _sha(*arrays):
    digest = hashlib.sha256()
    for a in arrays:
        digest.update(np.ascontiguousarray(a).tobytes())
    return digest.hexdigest()[:16]


class Check(object):
    """The fidelity check of one notebook.

    Check("cnn", channel_first=True, pool_gradient="first"): .weights (neutral layout), .x (16
    CIFAR-10 test images, NCHW or NHWC), .y; pool_gradient="all" where the max pool's gradient goes
    to every tied maximum (real images have flat regions: this batch has 99 tied windows).
    Check("rnn", **variant): .weights, .x (8 reviews), .y, for the variant this framework implements
    (RNN_VARIANT_DEFAULTS; see rnn_weights, adam_step): gru "reset_after" | "reset_before",
    bias_vectors 2 | 1, adam_epsilon "v_hat" | "v", adam_iteration 1 | 2, adam_gradient "mean" |
    "sum", adam_embedding "dense" | "per_occurrence".
    Check("inference", channel_first=True): .weights (common.resnet50's), .x (the two photos).
    """

    def __init__(self, task, channel_first=True, **variant):
        if task not in BATCH:
            raise ValueError("task must be one of %s, not %r" % (sorted(BATCH), task))
        self.task = task
        self.rows = []
        self.parameters = None
        if task == "cnn":
            self.variant = self._variant(variant, CNN_VARIANT_DEFAULTS)
            self.weights = cnn_weights()
            self.x, self.y = cnn_batch(channel_first=channel_first)
            x_nchw = self.x if channel_first else self.x.transpose(0, 3, 1, 2)
            self.expected_parameters = CNN_PARAMETERS
            self._logits, grads = cnn_forward(self.weights, x_nchw, self.y, self.variant["pool_gradient"])
            self._after = cnn_forward(sgd_step(self.weights, grads), x_nchw)
        elif task == "rnn":
            self.variant = self._variant(variant, RNN_VARIANT_DEFAULTS)
            gru, vectors = self.variant["gru"], self.variant["bias_vectors"]
            self.weights = rnn_weights(gru=gru, bias_vectors=vectors)
            self.x, self.y = rnn_batch()
            self.expected_parameters = rnn_parameters(vectors)
            reference = fold_biases(self.weights) if vectors == 1 else self.weights
            self._logits, grads = rnn_forward(reference, self.x, self.y, gru)
            if vectors == 1:  # one trained bias vector: the recurrent one is not a parameter
                grads["gru/recurrent_bias"][:] = 0.0
            if self.variant["adam_gradient"] not in ("mean", "sum"):
                raise ValueError("adam_gradient must be 'mean' or 'sum', not %r" % (self.variant["adam_gradient"],))
            if self.variant["adam_gradient"] == "sum":  # Adam's ratio is scale-free; only epsilon sees the sum
                grads = dict((k, g * len(self.x) ** (2 if k.endswith("squares") else 1)) for k, g in grads.items())
            if self.variant["adam_embedding"] not in ("dense", "per_occurrence"):
                raise ValueError("adam_embedding must be 'dense' or 'per_occurrence', not %r" % (self.variant["adam_embedding"],))
            squares = ({"embedding": grads["embedding/occurrence_squares"]}
                       if self.variant["adam_embedding"] == "per_occurrence" else None)
            stepped = adam_step(reference, grads, iteration=self.variant["adam_iteration"],
                                epsilon=self.variant["adam_epsilon"], squares=squares)
            self._after = rnn_forward(stepped, self.x, gru=gru)
        else:
            self.variant = self._variant(variant, {})  # none: any keyword is an error
            self.weights = resnet50.load_resnet50_weights()
            self.x, _ = resnet50.photo_check_images(channel_first=channel_first)
            self.y = None
            self.expected_parameters = resnet50.PARAMETERS
            self._logits = reference_features(self.weights, self.x if channel_first else self.x.transpose(0, 3, 1, 2))
        self.batch_sha256 = _sha(self.x) if self.y is None else _sha(self.x, self.y)

    def _variant(self, variant, defaults):
        unknown = set(variant) - set(defaults)
        if unknown:
            raise ValueError("unknown %s variant keys %s; known: %s" % (self.task, sorted(unknown), sorted(defaults)))
        return dict(defaults, **variant)


    def _compare(self, what, got, want, tolerance, note=""):
        got = np.asarray(got, dtype=np.float64)
        if got.shape != np.shape(want):
            raise ValueError("%s: expected shape %s, got %s" % (what, np.shape(want), got.shape))
        diff = float(np.max(np.abs(got - want)))
        ok = bool(np.isfinite(diff) and diff <= tolerance)
        self.rows.append({"check": what, "max_abs_diff": diff, "tolerance": tolerance, "passed": ok, "note": note})
        print("%-22s max |diff| %.2e  (tolerance %.0e)  %s%s" % (what, diff, tolerance, "ok" if ok else "FAILED",
                                                                  "  " + note if note else ""))
        sys.stdout.flush()
        return ok

    @staticmethod
    def _comparable(outputs, reference, kind):
        """(got, want) on the logits' scale: probabilities are compared as log-probabilities with the
        reference's log-softmax (as probabilities, near 0.5, every difference would look 4x smaller)."""
        got = np.asarray(outputs, dtype=np.float64)
        if kind == "logits":
            return got, reference
        if kind == "probabilities":
            z = reference - reference.max(axis=1, keepdims=True)
            return np.log(np.maximum(got, 1e-30)), z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        raise ValueError("kind must be 'logits' or 'probabilities', not %r" % (kind,))

    def check_parameters(self, n_params):
        """The model's parameter count, against the reference model's (variant-aware)."""
        self.parameters = int(n_params)
        ok = self.parameters == self.expected_parameters
        self.rows.append({"check": "parameters", "value": self.parameters, "expected": self.expected_parameters,
                          "passed": ok})
        print("%-22s %d (reference %d)  %s" % ("parameters", self.parameters, self.expected_parameters,
                                               "ok" if ok else "FAILED"))
        return ok

    def check_outputs(self, outputs, kind="logits"):
        """The batch's outputs in evaluation mode (dropout off): logits, softmax probabilities
        (kind="probabilities", for models that end with the softmax) or, for inference, features."""
        if self.task == "inference":
            return self._compare("features", outputs, self._logits, TOLERANCES["inference"]["outputs"])
        got, want = self._comparable(outputs, self._logits, kind)
        return self._compare("outputs (%s)" % ("logits" if kind == "logits" else "log-probabilities"), got, want,
                             TOLERANCES[self.task]["outputs"], "evaluation mode")

    def check_step(self, outputs_after, loss_after=None, kind="logits"):
        """After one optimizer step on the batch from the shared weights (fresh optimizer, dropout
        off): the batch's outputs in evaluation mode and, if given, the framework's own loss on them."""
        if self.task == "inference":
            raise ValueError("the inference task has no training step")
        tol = TOLERANCES[self.task]
        step_tol = (TIED_POOL_STEP_TOLERANCE if self.variant.get("pool_gradient") == "all"
                    else tol["step_outputs"])
        got, want = self._comparable(outputs_after, self._after, kind)
        ok = self._compare("after one step", got, want, step_tol)
        want = cross_entropy(self._after, self.y)
        if loss_after is None:
            got = np.asarray(outputs_after, dtype=np.float64)
            loss_after = cross_entropy(got if kind == "logits" else np.log(np.maximum(got, 1e-300)), self.y)
            note = "from the outputs"
        else:
            note = "the framework's loss"
        return self._compare("loss after the step", float(loss_after), want, tol["step_loss"], note) and ok

    def result(self):
        """The verdict for the record: every check, the variant, the batch; passed only if every
        check ran and passed."""
        ran = set(row["check"].split(" (")[0] for row in self.rows)
        needed = {"parameters", "features"} if self.task == "inference" else {
            "parameters", "outputs", "after one step", "loss after the step"}
        missing = sorted(needed - ran)
        passed = not missing and all(row["passed"] for row in self.rows)
        print("Fidelity: %s%s" % ("PASSED" if passed else "FAILED",
                                  " (checks not run: %s)" % ", ".join(missing) if missing else ""))
        return {"task": self.task, "passed": passed, "missing": missing, "checks": self.rows,
                "variant": self.variant, "parameters": self.parameters,
                "expected_parameters": self.expected_parameters,
                "batch": {"size": BATCH[self.task], "sha256": self.batch_sha256}}
