"""numbert.kernels: the Numba twins of numbert.layers (same names, same maths, same signatures).

A leaf: these functions take NumPy arrays and plain numbers and import nothing from numbert.
The dense layers run a Numba GEMM for short inputs and BLAS sgemm (through NumPy) for longer
ones (kernels/linear.py), and everything between the GEMMs is a fused Numba kernel: bias +
GELU, residual + LayerNorm, softmax, attention per (batch, head), embedding gather + sum +
LayerNorm. JIT options live in kernels/jit.py; each kernel's NumPy
reference is the function of the same name in numbert/layers.py (which alone also takes the
trace's `record`), and tests/test_kernels.py holds each to it. How the forward pass calls
them, and the weight layout they want (Q, K, V stacked), is numbert.backend's business.
"""

from .attention import attention, attention_mask_bias
from .embeddings import embeddings
from .gelu import erf, gelu, gelu_tanh, relu
from .layernorm import add_layer_norm, layer_norm
from .linear import linear, linear_act
from .softmax import softmax

__all__ = ["add_layer_norm", "attention", "attention_mask_bias", "embeddings", "erf", "gelu", "gelu_tanh",
           "layer_norm", "linear", "linear_act", "relu", "softmax"]
