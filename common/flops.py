"""Floating-point operations per image of the benchmark models, counted from their layers.

Only convolutions and dense layers are counted (one multiply-add = 2 FLOPs); biases, BatchNorm,
activations, pooling and the loss add well under 1% and are left out, as in the usual counts.
A training step costs 3 times the forward pass: the backward pass computes the gradient with
respect to the layer inputs and to the weights, each as large as the forward product.
"""
from . import resnet50
from .architecture import CNN_INPUT, CNN_KERNEL, CNN_LAYERS
from .params import IMAGE_SIZE

TRAINING_FACTOR = 3


def conv_macs(height, width, c_in, c_out, kernel):
    """Multiply-adds of a convolution whose OUTPUT is height x width."""
    return height * width * c_out * c_in * kernel * kernel


def cnn_forward_flops():
    _, size, _ = CNN_INPUT
    macs = 0
    for layer in CNN_LAYERS:
        if layer[0] == "conv":  # "same" padding, stride 1: the output keeps the size
            macs += conv_macs(size, size, layer[2], layer[3], CNN_KERNEL)
        elif layer[0] == "pool":
            size //= 2
        else:
            macs += layer[2] * layer[3]
    return 2 * macs


def cnn_training_flops():
    """FLOPs to train on one image (forward and backward)."""
    return TRAINING_FACTOR * cnn_forward_flops()


def resnet50_forward_flops():
    """FLOPs of one 224 x 224 image up to the 2048 pooled features (no classifier)."""
    size = (IMAGE_SIZE + 2 * resnet50.CONV1_PADDING - resnet50.CONV1_KERNEL) // resnet50.CONV1_STRIDE + 1
    macs = conv_macs(size, size, 3, resnet50.CONV1_FILTERS, resnet50.CONV1_KERNEL)
    size = (size + 2 * resnet50.POOL1_PADDING - resnet50.POOL1_SIZE) // resnet50.POOL1_STRIDE + 1
    for block in resnet50.BLOCKS:
        out = size // block["stride"]  # the stride sits on the first 1x1 convolution (v1)
        for _, _, _, kernel, c_in, c_out, _ in resnet50.block_layers(block):
            macs += conv_macs(out, out, c_in, c_out, kernel)
        size = out
    return 2 * macs


# FLOPs per image the tables' throughput is measured in, by task (the GRU task is not counted:
# its time goes to small sequential matrix products, far from any matrix-multiply peak)
FLOPS_PER_IMAGE = {"cnn": cnn_training_flops, "inference": resnet50_forward_flops}
