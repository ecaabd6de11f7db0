"""numbert.kernels: the Numba twins of numbert.layers (same names, same signatures).

The forward pass (numbert.modeling) runs on either module. Here the dense layers stay on
BLAS sgemm (through NumPy) and everything between the GEMMs is a fused Numba kernel:
bias + GELU, residual + LayerNorm, scaled masked softmax, attention per (batch, head),
embedding gather + sum + LayerNorm. JIT options live in kernels/jit.py; each kernel's
NumPy reference is the function of the same name in numbert/layers.py, and
tests/test_kernels.py holds each to it.
"""

if __name__ == "numbert.kernels":
    from .attention import attention, attention_mask_bias
    from .embeddings import embeddings
    from .gelu import erf, gelu, gelu_tanh, relu
    from .layernorm import add_layer_norm, layer_norm
    from .linear import linear, linear_act, prepare, qkv
    from .softmax import masked_softmax, softmax
# else: this folder was found as a top-level `kernels` because the repo root is on sys.path
# (`python -m pytest` from the root). transformers probes for the PyPI package `kernels` by
# importing it; an empty module without __version__ tells it "not installed" instead of
# failing on the relative imports above.

__all__ = ["add_layer_norm", "attention", "attention_mask_bias", "embeddings", "erf", "gelu", "gelu_tanh",
           "layer_norm", "linear", "linear_act", "masked_softmax", "prepare", "qkv", "relu", "softmax"]
