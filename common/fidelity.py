"""Rosetta fidelity: a checked proof that every notebook builds the same model.

Per task: one framework-neutral set of weights (seeded, float32), one fixed batch of real data and
a NumPy reference (float64, common/reference.py) of the forward pass and of one optimizer step.
A notebook's Fidelity section loads `Check(task).weights` into its own model (converting layouts
its way), gives the batch's outputs to `check_outputs`, takes one optimizer step on the batch with
dropout off from a fresh optimizer, gives the outputs after it to `check_step`, and stores
`result()` in its record.

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
import hashlib
import inspect
import sys

import numpy as np

from . import images, resnet50
from .datasets import cifar10, imdb, provenance, resnet50_weights, sources
from .architecture import CNN_PARAMETERS, GRU_GATES, rnn_parameters  # noqa: F401  (GRU_GATES: for notebooks)
from .params import MAXFEATURES, MAXLEN
from .reference import (_conv_nhwc, _im2col, adam_step, cnn_forward, cnn_weights, cross_entropy,  # noqa: F401
                        fold_biases, gate, resnet50_features, rnn_forward, rnn_weights, sgd_step)

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
CNN_VARIANT_DEFAULTS = {"pool_gradient": "first"}
RNN_VARIANT_DEFAULTS = {"gru": "reset_after", "bias_vectors": 2, "adam_epsilon": "v_hat", "adam_iteration": 1,
                        "adam_gradient": "mean", "adam_embedding": "dense"}


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
    x, y = _noted_apart("cifar10", lambda: cifar10.cifar_uint8_test(limit=n))  # NHWC uint8
    x = x.astype(np.float32) / np.float32(255.0)
    if channel_first:
        x = x.transpose(0, 3, 1, 2)
    return np.ascontiguousarray(x), y.astype(np.int32)


def rnn_batch(n=BATCH["rnn"]):
    """The first n IMDB test reviews, padded and capped as for training, and their labels."""
    _, x_test, _, y_test = _noted_apart("imdb", lambda: imdb.imdb_sequences(test_limit=n))
    return imdb.pad_sequences(x_test, MAXLEN, MAXFEATURES), y_test.astype(np.int32)


def reference_features(weights, x_nchw):
    """resnet50_features of the shared weights (load_resnet50_weights(), verified against
    WEIGHTS_ARRAYS_SHA256), computed once per machine (about 30 s) and kept in the cache, keyed by
    that hash, the images and the reference's own code."""
    key = hashlib.sha256()
    key.update(resnet50_weights.WEIGHTS_ARRAYS_SHA256.encode("ascii"))
    key.update(np.ascontiguousarray(x_nchw, dtype=np.float32).tobytes())
    for function in (_im2col, _conv_nhwc, resnet50_features):
        key.update(inspect.getsource(function).encode("utf-8"))
    key.update(repr((resnet50.BN_EPSILON, resnet50.CONV1_STRIDE, resnet50.CONV1_PADDING, resnet50.BLOCKS)).encode("utf-8"))
    return sources.cached_array("resnet50-features", key.hexdigest()[:24],
                                lambda: resnet50_features(weights, x_nchw))


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
            self.weights = resnet50_weights.load_resnet50_weights()
            self.x = images.photo_check_images(channel_first=channel_first)
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
