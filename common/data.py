"""The benchmark data in the layouts the frameworks take, and mini-batching: what the notebooks
call. The data sets themselves (sources, verification, caches) are common/datasets/."""
import numpy as np

from .datasets.cifar10 import cifar_uint8
from .datasets.imdb import imdb_sequences, pad_sequences
from .params import MAXFEATURES, MAXLEN, SEED


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
