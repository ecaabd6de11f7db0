"""numbert.kernels: the Numba twins of numbert.layers (same names, same signatures)."""
