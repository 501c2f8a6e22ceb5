"""Which arithmetic a run asked for, and which notebooks can give it.

Timed runs compute in strict float32 by default, on every device and in every framework. Two
notebook parameters ask for more (papermill, or run_matrix.py --amp / --tf32):
- MIXED_PRECISION: float32 weights, float16 or bfloat16 products, in the notebooks listed in
  MIXED_PRECISION_NOTEBOOKS;
- TF32: TF32 matrix products and convolutions on an NVIDIA GPU (Ampere and later), in the notebooks
  listed in TF32_NOTEBOOKS, each through its framework's own switch in Set-up.
Every notebook declares MIXED_PRECISION, and those of TF32_NOTEBOOKS declare TF32; start_run stops
a notebook asked for an arithmetic it has no path for (or TF32 without a GPU), so that no run is
recorded under an arithmetic it did not use. tests/test_notebooks.py checks both lists against the
notebooks' code (a path uses the parameter in one of its steps). The record names the arithmetic.
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


# The frameworks with a TF32 switch: PyTorch's allow_tf32 flags, TensorFlow's
# enable_tensor_float_32_execution, JAX's default matmul precision (Keras 3: its backend's).
TF32_NOTEBOOKS = frozenset(
    "%s_%s" % (framework, task)
    for framework in ("PyTorch", "Tensorflow", "JAX_Flax", "Keras_TF", "Keras_JAX", "Keras_PyTorch")
    for task in ("CNN", "RNN", "Inference"))


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


def check_tf32(notebook, gpus):
    """Raise ValueError if the running notebook asks for TF32 and has no such path, or runs where
    there is no NVIDIA GPU (`gpus`: envinfo.nvidia_gpus()), whose arithmetic TF32 is."""
    if not notebook_parameter("TF32", False):
        return
    if notebook not in TF32_NOTEBOOKS:
        raise ValueError("%s has no TF32 path: it computes in strict float32 only; run it with TF32=False "
                         "(run_matrix.py without --tf32)" % notebook)
    if not gpus:
        raise ValueError("TF32 is an NVIDIA GPU's arithmetic and this machine has no NVIDIA GPU: run %s "
                         "with TF32=False (run_matrix.py without --tf32)" % notebook)


def arithmetic():
    """What the running notebook's float32 operations compute in, for its record: "tf32" where
    its TF32 parameter asked for it (start_run has checked that it can), else "float32"."""
    return "tf32" if notebook_parameter("TF32", False) else "float32"
