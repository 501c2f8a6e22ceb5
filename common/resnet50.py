"""ResNet-50 for the inference task, the same for every framework: its architecture. (Its ImageNet
weights: common/datasets/resnet50_weights.py; the images it is given and the check on two
photographs: common/images.py.)

The architecture is ResNet-50 "v1" as Keras builds it, and differs from torchvision's "v1.5":
stride 2 on the FIRST 1x1 convolution of a down-sampling block, biases on every convolution,
BatchNorm epsilon 1e-3 (read from model.json), explicit zero padding before conv1 and before the
first max pool. The constants below state it; `check_architecture` compares them with model.json
every time the weights are parsed, so a framework that builds from them builds what the weights
were trained for.

Standard library + numpy (1.19+).
"""
PARAMETERS = 25636712  # including BatchNorm's moving means and variances, as Keras counts them
IMAGENET_CLASSES = 1000

# ---------------------------------------------------------------- the architecture (checked against model.json)

BN_EPSILON = 1e-3  # every BatchNormalization layer in model.json (Keras 2's default; Keras 3 uses 1.001e-5)
CONV1_FILTERS, CONV1_KERNEL, CONV1_STRIDE = 64, 7, 2
CONV1_PADDING = 3  # layer conv1_pad: ZeroPadding2D 3 on each side, then conv1 7x7/2 "valid"
POOL1_SIZE, POOL1_STRIDE = 3, 2
POOL1_PADDING = 1  # layer pool1_pad: ZeroPadding2D 1 on each side, then MaxPooling2D 3x3/2 "valid";
#                    its input is a ReLU output (>= 0), so zero padding equals a max pool's usual -inf padding
STAGES = (  # (stage, blocks, filters of the block's 1x1, 3x3, 1x1 convolutions, stride of its first block)
    (2, 3, (64, 64, 256), 1),
    (3, 4, (128, 128, 512), 2),
    (4, 6, (256, 256, 1024), 2),
    (5, 3, (512, 512, 2048), 2),
)
# A block computes relu(bn(conv 2c)(relu(bn(conv 2b)(relu(bn(conv 2a)(x))))) + shortcut(x)), where
# conv 2a is 1x1 with the block's stride, 2b 3x3 "same" (padding 1), 2c 1x1; the shortcut is
# bn(conv 1)(x), a 1x1 convolution with the block's stride, in each stage's first block, else x.
# Keras names: convolution "res<block>_branch<branch>", BatchNorm "bn<block>_branch<branch>"
# (e.g. res3a_branch2b, bn3a_branch1); stem "conv1", "bn_conv1"; classifier "fc1000" (softmax),
# after the global average pool that gives the 2048 features.
PARAM_ORDER = ("kernel", "bias", "gamma", "beta", "moving_mean", "moving_variance")


def _blocks():
    blocks, channels = [], CONV1_FILTERS
    for stage, count, filters, stride in STAGES:
        for i in range(count):
            blocks.append({"name": "%d%s" % (stage, "abcdef"[i]), "in_channels": channels,
                           "filters": filters, "stride": stride if i == 0 else 1, "shortcut": i == 0})
            channels = filters[2]
    return blocks


# The 16 bottleneck blocks in order: name ("2a" ... "5c"), in_channels, filters (1x1, 3x3, 1x1),
# stride (of conv 2a and of the shortcut), shortcut (True: projection branch1; False: identity).
BLOCKS = _blocks()


def block_layers(block):
    """[(branch, conv name, bn name, kernel size, in channels, filters, stride)] of one block."""
    name, (f1, f2, f3) = block["name"], block["filters"]
    rows = [("2a", 1, block["in_channels"], f1, block["stride"]), ("2b", 3, f1, f2, 1), ("2c", 1, f2, f3, 1)]
    if block["shortcut"]:
        rows.append(("1", 1, block["in_channels"], f3, block["stride"]))
    return [(branch, "res%s_branch%s" % (name, branch), "bn%s_branch%s" % (name, branch), k, cin, cout, s)
            for branch, k, cin, cout, s in rows]


def check_architecture(model):
    """Compare a TF.js model.json (as a dict) with the constants above; raise ValueError listing
    every difference. Returns the facts a framework needs, for the record."""
    layers = model["modelTopology"]["model_config"]["config"]["layers"]
    by_name = dict((layer["name"], layer) for layer in layers)
    problems = []

    def expect(what, got, want):
        if got != want:
            problems.append("%s is %r, expected %r" % (what, got, want))

    def config(name):
        if name not in by_name:
            problems.append("no layer %s" % name)
            return {}
        return by_name[name]["config"]

    def of_class(class_name):
        return [layer for layer in layers if layer["class_name"] == class_name]

    def check_conv(name, kernel, filters, stride, padding):
        c = config(name)
        expect(name + " kernel_size", c.get("kernel_size"), [kernel, kernel])
        expect(name + " filters", c.get("filters"), filters)
        expect(name + " strides", c.get("strides"), [stride, stride])
        expect(name + " padding", c.get("padding"), padding)
        expect(name + " use_bias", c.get("use_bias"), True)
        expect(name + " dilation_rate", c.get("dilation_rate", [1, 1]), [1, 1])

    expect("conv1_pad padding", config("conv1_pad").get("padding"), [[CONV1_PADDING] * 2] * 2)
    check_conv("conv1", CONV1_KERNEL, CONV1_FILTERS, CONV1_STRIDE, "valid")
    expect("pool1_pad padding", config("pool1_pad").get("padding"), [[POOL1_PADDING] * 2] * 2)
    pools = of_class("MaxPooling2D")
    expect("number of MaxPooling2D layers", len(pools), 1)
    if pools:
        c = pools[0]["config"]
        expect("max pool pool_size", c.get("pool_size"), [POOL1_SIZE, POOL1_SIZE])
        expect("max pool strides", c.get("strides"), [POOL1_STRIDE, POOL1_STRIDE])
        expect("max pool padding", c.get("padding"), "valid")
    n_conv = 1
    for block in BLOCKS:
        for _, conv, bn, kernel, _, filters, stride in block_layers(block):
            check_conv(conv, kernel, filters, stride, "same" if kernel == 3 else "valid")
            config(bn)
            n_conv += 1
    expect("number of Conv2D layers", len(of_class("Conv2D")), n_conv)
    bns = of_class("BatchNormalization")
    expect("number of BatchNormalization layers", len(bns), n_conv)
    for layer in bns:
        c = layer["config"]
        expect(layer["name"] + " epsilon", c.get("epsilon"), BN_EPSILON)
        expect(layer["name"] + " axis", c.get("axis") in ([3], 3, -1, [-1]), True)
        expect(layer["name"] + " center and scale", (c.get("center"), c.get("scale")), (True, True))
    expect("number of GlobalAveragePooling2D layers", len(of_class("GlobalAveragePooling2D")), 1)
    fc = config("fc1000")
    expect("fc1000 units", fc.get("units"), IMAGENET_CLASSES)
    expect("fc1000 activation", fc.get("activation"), "softmax")
    if problems:
        raise ValueError("model.json does not describe the ResNet-50 this module states:\n  " +
                         "\n  ".join(problems))
    return {"keras_version": model["modelTopology"].get("keras_version"), "bn_epsilon": BN_EPSILON,
            "conv1_padding": CONV1_PADDING, "pool1_padding": POOL1_PADDING,
            "top_activation": fc.get("activation")}
