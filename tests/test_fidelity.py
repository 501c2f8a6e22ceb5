"""The NumPy reference (common/reference.py), its gradients against finite differences and its
variants; the fidelity check (common/fidelity.py) and its verdicts."""
import numpy as np
import pytest

from common import architecture, fidelity, reference
from common.architecture import CNN_PARAMETERS
from common.params import NUMHIDDEN


def _loss(forward, weights, x, y, **kw):
    return reference.cross_entropy(forward(weights, x, **kw), y)


def _check_gradients(forward, weights, x, y, names, rng, **kw):
    """Central differences on a few coordinates of each named weight, in float64."""
    weights = dict((k, v.astype(np.float64)) for k, v in weights.items())
    _, grads = forward(weights, x, y, **kw)
    for name in names:
        flat = weights[name].reshape(-1)
        for i in rng.choice(flat.size, 3, replace=False):
            if name == "embedding":  # only the rows of ids in the batch have gradients
                row = x.reshape(-1)[rng.randint(x.size)]
                i = row * weights[name].shape[1] + rng.randint(weights[name].shape[1])
            old = flat[i]
            flat[i] = old + 1e-5
            up = _loss(forward, weights, x, y, **kw)
            flat[i] = old - 1e-5
            down = _loss(forward, weights, x, y, **kw)
            flat[i] = old
            numeric = (up - down) / 2e-5
            assert abs(grads[name].reshape(-1)[i] - numeric) <= 1e-6 + 1e-4 * abs(numeric), (name, i)


def test_cnn_gradients_match_finite_differences():
    rng = np.random.RandomState(0)
    x = rng.uniform(0, 1, size=(2, 3, 32, 32))
    y = np.array([3, 7])
    _check_gradients(reference.cnn_forward, reference.cnn_weights(), x, y,
                     ["conv1/kernel", "conv1/bias", "conv4/kernel", "dense1/kernel", "dense2/bias"], rng)


@pytest.mark.parametrize("gru", ["reset_after", "reset_before"])
def test_gru_gradients_match_finite_differences(gru):
    rng = np.random.RandomState(1)
    x = rng.randint(0, 50, size=(2, 6))
    y = np.array([0, 1])
    _check_gradients(reference.rnn_forward, reference.rnn_weights(gru=gru), x, y,
                     ["embedding", "gru/input_kernel", "gru/recurrent_kernel", "gru/input_bias",
                      "gru/recurrent_bias", "dense/kernel"], rng, gru=gru)


def test_gru_variants_differ_and_parameter_counts():
    x = np.random.RandomState(2).randint(0, 50, size=(2, 6))
    after = reference.rnn_forward(reference.rnn_weights(gru="reset_after"), x, gru="reset_after")
    before = reference.rnn_forward(reference.rnn_weights(gru="reset_after"), x, gru="reset_before")
    assert np.max(np.abs(after - before)) > 1e-4
    assert architecture.rnn_parameters(2) == 3818302 and architecture.rnn_parameters(1) == 3818002
    assert sum(v.size for v in reference.cnn_weights().values()) == CNN_PARAMETERS
    one = reference.rnn_weights(gru="reset_after", bias_vectors=1)
    assert not one["gru/recurrent_bias"][2 * NUMHIDDEN:].any()
    with pytest.raises(ValueError):
        reference.rnn_weights(gru="reset_sideways")


def test_weights_are_seeded_and_biases_nonzero():
    a, b = reference.cnn_weights(), reference.cnn_weights()
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert all(a[k].dtype == np.float32 for k in a)
    assert all(np.abs(a[k]).min() > 0 for k in a if k.endswith("/bias"))


def test_adam_epsilon_conventions_and_iteration():
    w = {"p": np.array([1.0, 1.0, 1.0])}
    g = {"p": np.array([1e-1, 1e-8, 0.0])}
    hat = reference.adam_step(w, g)["p"]
    raw = reference.adam_step(w, g, epsilon="v")["p"]
    assert abs((1.0 - hat[0]) - 1e-3) < 1e-9  # a first Adam step is lr * sign(g) for large g
    assert hat[2] == raw[2] == 1.0
    assert abs(hat[1] - raw[1]) > 1e-5  # eps matters when |g| is near it
    second = reference.adam_step(w, g, iteration=2)["p"]
    ratio = (1 - second[0]) / (1 - hat[0])
    assert abs(ratio - np.sqrt(1 - 0.999 ** 2) / (1 - 0.9 ** 2) / (np.sqrt(0.001) / 0.1)) < 1e-6


def test_resnet_reference_conv_matches_direct_sum():
    rng = np.random.RandomState(3)
    x = rng.normal(size=(1, 7, 7, 2))
    k = rng.normal(size=(3, 3, 2, 4))
    out = reference._conv_nhwc(x, k, np.zeros(4), stride=2, pad=1)
    xp = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    direct = np.array([[[(xp[0, 2 * i:2 * i + 3, 2 * j:2 * j + 3, :, None] * k).sum(axis=(0, 1, 2))
                         for j in range(4)] for i in range(4)]])
    assert np.allclose(out, direct)


class _FakeCheck(fidelity.Check):
    """A Check on the CNN's reference without the real data: the batch is random."""

    def __init__(self):
        rng = np.random.RandomState(4)
        self.task, self.variant, self.rows, self.parameters = "cnn", {}, [], None
        self.weights = reference.cnn_weights()
        self.x, self.y = rng.uniform(0, 1, size=(4, 3, 32, 32)).astype(np.float32), np.array([0, 1, 2, 3])
        self.expected_parameters = CNN_PARAMETERS
        self._logits, grads = reference.cnn_forward(self.weights, self.x, self.y)
        self._after = reference.cnn_forward(reference.sgd_step(self.weights, grads), self.x)
        self.batch_sha256 = "test"


def test_check_passes_the_reference_and_fails_a_wrong_model():
    check = _FakeCheck()
    check.check_parameters(CNN_PARAMETERS)
    check.check_outputs(check._logits.astype(np.float32))
    check.check_step(check._after.astype(np.float32))
    assert check.result()["passed"]

    wrong = _FakeCheck()  # dense1 loaded without the channels-first flatten order
    w = dict(wrong.weights)
    w["dense1/kernel"] = w["dense1/kernel"].reshape(100, 8, 8, 512).transpose(1, 2, 0, 3).reshape(6400, 512)
    wrong.check_parameters(CNN_PARAMETERS)
    wrong.check_outputs(reference.cnn_forward(w, wrong.x))
    assert not wrong.result()["passed"]

    partial = _FakeCheck()
    partial.check_parameters(CNN_PARAMETERS)
    partial.check_outputs(partial._logits)
    result = partial.result()
    assert not result["passed"] and "after one step" in result["missing"]


def test_one_bias_vector_is_the_same_function_but_steps_one_vector():
    x, y = np.random.RandomState(5).randint(0, 50, size=(2, 6)), np.array([1, 0])
    for gru in ("reset_after", "reset_before"):
        w = reference.rnn_weights(gru=gru, bias_vectors=1)
        folded = reference.fold_biases(w)
        logits, grads = reference.rnn_forward(w, x, y, gru=gru)
        assert np.allclose(logits, reference.rnn_forward(folded, x, gru=gru))
        # two vectors get the same gradient for the foldable parts: a step moves their sum twice as far
        assert np.allclose(grads["gru/input_bias"][:200], grads["gru/recurrent_bias"][:200])


def test_pool_gradient_to_every_tie():
    x = np.full((1, 3, 32, 32), 0.5)  # a flat image: every window of the first pool is tied
    y = np.array([2])
    w = reference.cnn_weights()
    _, first = reference.cnn_forward(w, x, y)
    _, every = reference.cnn_forward(w, x, y, pool_gradient="all")
    assert np.allclose(first["dense2/kernel"], every["dense2/kernel"])  # after the pools: the same
    assert not np.allclose(first["conv1/kernel"], every["conv1/kernel"])
    with pytest.raises(ValueError):
        reference.cnn_forward(w, x, y, pool_gradient="some")


def test_adam_per_occurrence_squares_differ_only_for_repeated_ids():
    w = reference.rnn_weights()
    x, y = np.array([[5, 5, 7, 9, 5, 11]]), np.array([1])
    _, grads = reference.rnn_forward(w, x, y)
    sq = grads["embedding/occurrence_squares"]
    assert np.allclose(sq[7], grads["embedding"][7] ** 2)  # seen once: the same
    assert not np.allclose(sq[5], grads["embedding"][5] ** 2)  # seen three times: not
    dense = reference.adam_step(w, grads)["embedding"]
    sparse = reference.adam_step(w, grads, squares={"embedding": sq})["embedding"]
    assert np.allclose(dense[[7, 9, 11]], sparse[[7, 9, 11]]) and not np.allclose(dense[5], sparse[5])


def test_tied_pool_tolerance_still_tells_the_pool_variants_apart():
    """The 'all ties' variant's looser step tolerance (float32 GEMMs may break the reference's
    exact ties) still fails a model whose max pool sends the gradient to the first maximum."""
    assert fidelity.TIED_POOL_STEP_TOLERANCE < 0.5 * 6.4e-5
    first = fidelity.Check("cnn", pool_gradient="first")
    every = fidelity.Check("cnn", pool_gradient="all")
    assert np.abs(first._after - every._after).max() > 2 * fidelity.TIED_POOL_STEP_TOLERANCE
    every.check_parameters(CNN_PARAMETERS)
    every.check_outputs(first._logits.astype(np.float32))
    every.check_step(first._after.astype(np.float32))
    assert not every.result()["passed"], "the 'first' model's step checked against the 'all' reference"
    own = fidelity.Check("cnn", pool_gradient="all")
    own.check_parameters(CNN_PARAMETERS)
    own.check_outputs(own._logits.astype(np.float32))
    own.check_step(own._after.astype(np.float32) + np.float32(2e-5))  # some ties broken, within tolerance
    assert own.result()["passed"]
