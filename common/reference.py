"""The NumPy reference of the benchmark models, in float64: the shared initial weights of the
training tasks (seeded, float32, neutral layouts: common/fidelity.py's docstring), the CNN's and
the GRU model's forward and backward passes, ResNet-50's forward pass to the pooled features, and
the first optimizer steps. common.fidelity's Check compares every notebook with these.

Standard library + numpy (1.19+), Python 3.6+.
"""
import collections

import numpy as np

from . import resnet50
from .architecture import CNN_KERNEL, GRU_GATES, cnn_layers
from .params import BETA_1, BETA_2, EMBEDSIZE, EPS, LR, MAXFEATURES, NUMHIDDEN, RNN_LR, SEED


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
    k = CNN_KERNEL
    for name, cin, cout in cnn_layers("conv"):
        weights[name + "/kernel"] = _glorot(rng, (cout, cin, k, k), cin * k * k, cout * k * k)
        weights[name + "/bias"] = _bias(rng, cout)
    for name, cin, cout in cnn_layers("dense"):
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
