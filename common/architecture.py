"""The training tasks' models, stated once: the reference weights (fidelity), the FLOP counts
(flops), the layer benchmark and every notebook's parameter check derive from these tables.
ResNet-50's architecture is common.resnet50's."""
from .params import EMBEDSIZE, MAXFEATURES, N_CLASSES, NUMHIDDEN

CNN_INPUT = (3, 32, 32)  # channels, height, width
CNN_KERNEL = 3  # every convolution: 3 x 3, stride 1, "same" padding
# The VGG-style CNN in order: ("conv", name, in, out), ("pool", name) (2 x 2 max pool, halving
# the map), ("dense", name, in, out); dense1 reads the (100, 8, 8) map flattened.
CNN_LAYERS = (
    ("conv", "conv1", 3, 50), ("conv", "conv2", 50, 50), ("pool", "pool1"),
    ("conv", "conv3", 50, 100), ("conv", "conv4", 100, 100), ("pool", "pool2"),
    ("dense", "dense1", 100 * 8 * 8, 512), ("dense", "dense2", 512, N_CLASSES),
)
GRU_GATES = ("r", "z", "n")  # reset, update, candidate: the order of the shared GRU weights


def cnn_layers(kind):
    """[(name, in, out)] of the CNN's layers of one kind ("conv" or "dense"), in order."""
    return [layer[1:] for layer in CNN_LAYERS if layer[0] == kind]


def cnn_parameters():
    """The CNN's parameter count (weights and biases): 3,441,592."""
    return (sum(cin * cout * CNN_KERNEL ** 2 + cout for _, cin, cout in cnn_layers("conv"))
            + sum(cin * cout + cout for _, cin, cout in cnn_layers("dense")))


def rnn_parameters(bias_vectors=2):
    """The GRU model's parameter count: 3,818,302 with two bias vectors per gate, 3,818,002 with one."""
    return (MAXFEATURES * EMBEDSIZE + len(GRU_GATES) * NUMHIDDEN * (EMBEDSIZE + NUMHIDDEN)
            + bias_vectors * len(GRU_GATES) * NUMHIDDEN + NUMHIDDEN * 2 + 2)


CNN_PARAMETERS = cnn_parameters()
