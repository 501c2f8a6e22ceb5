"""The original protocol's hyperparameters, defined once, and the run profiles."""

# CNN: VGG-style network on CIFAR-10
EPOCHS = 10
BATCHSIZE = 64  # the mini-batch of both training tasks, the GRU's too
LR = 0.01
MOMENTUM = 0.9
N_CLASSES = 10  # the CNN's layers and parameter count: common/architecture.py

# RNN: GRU sentiment model on IMDB
RNN_EPOCHS = 3
EMBEDSIZE = 125
NUMHIDDEN = 100
RNN_LR = 0.001  # the GRU notebooks import it as LR
BETA_1 = 0.9
BETA_2 = 0.999
EPS = 1e-08
MAXLEN = 150
MAXFEATURES = 30000
# Sequences are truncated and padded at the FRONT (Keras's pad_sequences default), so the GRU's
# output at the last step is read right after the review's last word, never after padding.
PADDING = "pre"

# ResNet-50 feature extraction
BATCH_SIZE = 32  # images per inference batch (BATCHSIZE is the training tasks')
RESNET_FEATURES = 2048
INFERENCE_BATCHES = 40  # 40 x 32 = 1,280 images
IMAGE_SIZE = 224

SEED = 42

# Run profiles: papermill passes PROFILE; notebooks read their settings from here.
#   smoke: seconds per notebook, synthetic data in the real formats, for tests only
#   cpu:   real data, one epoch of CNN and RNN training, the full test sets, inference unchanged
#   full:  the original protocol, for GPU machines
#   probe: real data, 20 training batches: the runner's thread rule times a notebook's step with it
# Inference times `inference_repeats` passes over the images and reports their median and spread:
# a pass takes seconds on a GPU, minutes on a CPU.
PROFILES = {
    "smoke": {
        "synthetic_data": True,
        "cnn_epochs": 1, "rnn_epochs": 1,
        "train_limit": 256, "test_limit": 128,
        "inference_batches": 2, "inference_repeats": 2,
    },
    "cpu": {
        "synthetic_data": False,
        "cnn_epochs": 1, "rnn_epochs": 1,
        "train_limit": None, "test_limit": None,
        "inference_batches": INFERENCE_BATCHES, "inference_repeats": 2,
    },
    "probe": {
        "synthetic_data": False,
        "cnn_epochs": 1, "rnn_epochs": 1,
        "train_limit": 20 * BATCHSIZE, "test_limit": 2 * BATCHSIZE,
        "inference_batches": 2, "inference_repeats": 1,
    },
    "full": {
        "synthetic_data": False,
        "cnn_epochs": EPOCHS, "rnn_epochs": RNN_EPOCHS,
        "train_limit": None, "test_limit": None,
        "inference_batches": INFERENCE_BATCHES, "inference_repeats": 5,
    },
}


def profile(name):
    """The settings of a named profile, with a clear error for an unknown name."""
    try:
        settings = dict(PROFILES[name])
    except KeyError:
        raise ValueError("unknown profile %r; choose one of %s" % (name, ", ".join(sorted(PROFILES))))
    settings["name"] = name
    return settings
