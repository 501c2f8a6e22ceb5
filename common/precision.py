"""Which arithmetic a run asked for, and which notebooks can give it.

A notebook's MIXED_PRECISION parameter (papermill, or run_matrix.py --amp) asks for mixed
precision. Only the notebooks below have a mixed-precision path; every other one declares the
parameter as False, and start_run stops it at Set-up when it is True, so that no float32 run is
recorded as a mixed-precision one. tests/test_notebooks.py checks this list against the notebooks'
code (a path uses MIXED_PRECISION in one of its steps).
"""
import sys

MIXED_PRECISION_NOTEBOOKS = frozenset([
    "PyTorch_CNN", "PyTorch_RNN", "PyTorch_Inference",
    "Tensorflow_CNN", "Tensorflow_Inference",
    "JAX_Flax_CNN", "JAX_Flax_Inference",
    "Keras_TF_CNN", "Keras_TF_RNN", "Keras_TF_Inference",
    "Keras_JAX_CNN", "Keras_JAX_RNN", "Keras_JAX_Inference",
    "Keras_PyTorch_CNN", "Keras_PyTorch_RNN", "Keras_PyTorch_Inference",
    "Gluon_Inference",
])


def notebook_parameter(name, default=None):
    """A parameter of the running notebook: the value its parameters cell (or papermill's injected
    cell) gave `name` in the kernel's namespace, which IPython keeps as module __main__."""
    return getattr(sys.modules.get("__main__"), name, default)


def check_mixed_precision(notebook):
    """Raise ValueError if the running notebook asks for mixed precision and has no such path."""
    if notebook_parameter("MIXED_PRECISION", False) and notebook not in MIXED_PRECISION_NOTEBOOKS:
        raise ValueError("%s has no mixed-precision path: it computes in float32 only, so it stops "
                         "here rather than record a float32 run as a mixed-precision one; run it with "
                         "MIXED_PRECISION=False (run_matrix.py without --amp)" % notebook)
