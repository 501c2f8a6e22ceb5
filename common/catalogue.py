"""The tasks and the steps of their notebooks, named once for the runner, the step tagger, the
tables, the side-by-side pages and the tests."""
from collections import OrderedDict

# A notebook is <Framework>_<suffix>.ipynb; its task is the suffix's.
TASK_OF_SUFFIX = OrderedDict([("CNN", "cnn"), ("RNN", "rnn"), ("Inference", "inference")])
TASKS = tuple(TASK_OF_SUFFIX.values())
TASK_TITLES = OrderedDict([
    ("cnn", "VGG-style CNN on CIFAR-10 (training)"),
    ("rnn", "GRU on IMDB (training)"),
    ("inference", "ResNet-50 feature extraction (inference)"),
])
MODEL_NAMES = OrderedDict([("cnn", "CNN"), ("rnn", "GRU"), ("inference", "ResNet-50")])
# The timed figure a notebook's run is judged by (what the tables rank, what the thread rule compares).
HEADLINE_SECONDS = {"cnn": "train_seconds", "rnn": "train_seconds", "inference": "inference_seconds"}

# (section heading, step tag, what the step is) in notebook order, per task. A code cell carries
# the tag "step:<tag>" of the section it is in (scripts/tag_steps.py writes them). What is true of
# every framework is said here, once; the side-by-side pages show it above each step.
STEP_PREFIX = "step:"


def _training(model, batch, optimizer):
    return [
        ("Set-up", "setup", "Imports, the run record, seeds, thread count and device."),
        ("Data", "data", "The shared arrays from `common`, in the layout the framework wants."),
        ("Model", "model", model),
        ("Loss and optimizer", "loss-optimizer", "The loss (softmax inside it) and the optimizer."),
        ("Train", "train", "The timed training loop over mini-batches."),
        ("Evaluate", "evaluate", "A timed, gradient-free pass over the test set, with dropout off."),
        ("Fidelity", "fidelity",
         "The shared, seeded weights of `common.reference` go into this model, which must then match the "
         "NumPy float64 reference on %s, before and after one %s step from a fresh optimizer, with "
         "dropout off." % (batch, optimizer)),
        ("Record", "record", "The result record: metrics, the parameters the framework chose, versions, device."),
    ]


STEPS = {
    "cnn": _training("The network, its initialisation and its parameter count. In every framework ReLU "
                     "comes after max-pooling: equivalent, and four times cheaper.", "16 real test images", "SGD"),
    "rnn": _training("The network, its initialisation and its parameter count.", "8 real test reviews", "Adam"),
    "inference": [
        ("Set-up", "setup", "Imports, the run record, seeds, thread count and device."),
        ("Data", "data", "The shared images from `common`, in the layout the framework wants."),
        ("Model", "load-weights", "ResNet-50 built and loaded with the shared ImageNet weights."),
        ("Check on real photographs", "photo-check",
         "Two real photographs classified, to prove the weights were loaded right."),
        ("Feature extraction", "extract-features",
         "The timed pass: 2048 pooled features per image, and back to NumPy."),
        ("Fidelity", "fidelity", "The model already holds the shared ImageNet weights (loaded in Model); its "
                                 "2048 features of the two photographs must match the NumPy float64 reference "
                                 "ResNet-50 of `common.reference`."),
        ("Record", "record", "The result record: metrics, the parameters the framework chose, versions, device."),
    ],
}
# The header every notebook opens with, under its title: these fields, in this order, one bullet each.
HEADER_FIELDS = {
    "cnn": ("API", "Execution", "Layout", "On the CPU / a GPU", "Model", "Needs"),
    "rnn": ("API", "Execution", "Layout", "On the CPU / a GPU", "Model", "Needs"),
    "inference": ("API", "Execution", "Layout", "On the CPU / a GPU", "Needs"),
}
UNTAGGED_SECTIONS = ("Parameters",)  # first in every notebook, the same everywhere: nothing to translate
UNTIMED_STEPS = ("photo-check", "fidelity", "record")  # checks and the record: outside every timed block
HEADINGS = {tag: title for steps in STEPS.values() for title, tag, _ in steps}  # "extract-features": "Feature extraction"


def sections(task):
    """The `## ` headings of a notebook of `task`, in order."""
    return list(UNTAGGED_SECTIONS) + [title for title, _, _ in STEPS[task]]


def task_of(name):
    """The task ('cnn', 'rnn', 'inference') of a notebook named <Framework>_<CNN|RNN|Inference>
    (a path or a stem), or ValueError."""
    stem = str(name).replace("\\", "/").rsplit("/", 1)[-1]
    stem = stem[:-len(".ipynb")] if stem.endswith(".ipynb") else stem
    suffix = stem.rsplit("_", 1)[-1]
    if "_" not in stem or suffix not in TASK_OF_SUFFIX:
        raise ValueError("%s: notebook names are <Framework>_<%s>.ipynb" % (stem, "|".join(TASK_OF_SUFFIX)))
    return TASK_OF_SUFFIX[suffix]
