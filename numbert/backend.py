"""The backend adapters: what the forward pass calls `ops`, one object per backend.

`numbert.modeling` is written once against this interface:

    embeddings(input_ids, token_type_ids, word, position, token_type, ln_weight, ln_bias, eps, record,
               position_ids=None)            # token_type None: a family without token types
    attention_mask_bias(attention_mask)
    qkv(x, query, key, value, record)        # three nn.Linear nodes of the weight tree -> q, k, v
    attention(q, k, v, mask_bias, num_heads, output_attentions, record,
              position_bias=None)            # MPNet's [1, nh, T, T] relative position bias
    linear(x, weight, bias)
    linear_act(x, weight, bias, act, record)  # act: a function name of numbert.config.ACTIVATIONS
    add_layer_norm(x, residual, weight, bias, eps)
    layer_norm(x, weight, bias, eps)           # without a residual: the masked-LM head (numbert.heads)

- NumpyOps: numbert.layers as it is, on the checkpoint's layout: the reference, and the
  only backend that records intermediate tensors (the trace runs it).
- NumbaOps: the kernels of numbert.kernels, which take arrays and numbers only. The adapter
  owns the layout they want: it is built for one weight tree and keeps, beside it, each
  attention's query, key and value stacked into one [3H, H] matrix, so the three projections
  are one GEMM. The checkpoint tree itself is never changed.

The backend names a user can ask for (numbert.load(backend=...), the CLI's --backend):
- "auto" (the default): the Numba kernels when Numba's cache holds them; on a fresh install,
  NumPy while the kernels compile in a background process, then the kernels (numbert.warmup).
- "numba": the kernels, compiled in this process at their first call if the cache lacks them.
- "numpy": the reference, always.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from dataclasses import fields, is_dataclass

import numpy as np

from . import layers
from .record import NO_RECORD
from .weights import Linear

BACKENDS = ("auto", "numba", "numpy")


class NumpyOps:
    """The NumPy reference: every op is the numbert.layers function of the same name."""

    name = "numpy"

    def __getattr__(self, name):  # looked up at each call, so a test can swap a layer function
        return getattr(layers, name)

    def qkv(self, x, query: Linear, key: Linear, value: Linear, record=NO_RECORD):  # [B, T, H] -> 3 x [B, T, H]
        # BertSelfAttention's three projections: what each token looks for (query), what it
        # offers to be found by (key), and what it passes on when found (value).
        q = layers.linear(x, query.weight, query.bias)  # [B, T, H]
        record("query", q)
        k = layers.linear(x, key.weight, key.bias)  # [B, T, H]
        record("key", k)
        v = layers.linear(x, value.weight, value.bias)  # [B, T, H]
        record("value", v)
        return q, k, v


NUMPY = NumpyOps()  # holds no state: one for every model


class NumbaOps:
    """The Numba kernels, with the weight layout they run fastest on, prepared once for `weights`."""

    name = "numba"

    def __init__(self, weights):
        from . import kernels  # imported here: numba is loaded only when a model asks for it
        from .kernels import simd

        gemm = importlib.import_module(".kernels.linear", __package__)  # the module: kernels.linear is its function
        self.kernels = kernels
        self._attention_takes_position_bias = "position_bias" in inspect.signature(kernels.attention).parameters
        self.attention_mask_bias = kernels.attention_mask_bias
        self.add_layer_norm = kernels.add_layer_norm
        self.layer_norm = kernels.layer_norm  # a head's LayerNorm with no residual (numbert.heads)
        # id(query) -> (query, key, value, stacked Linear [3H, H]); the nodes are kept so that
        # an id is never reused while the entry lives
        self._stacked = {id(q): (q, k, v, _stack(q, k, v)) for q, k, v in _qkv_triples(weights)}
        # On a CPU with AVX-512 the dense layers run register tiles on the weight packed in
        # panels (kernels.linear.pack, linear_packed), made at the weight's first product and
        # kept: id(weight) -> (weight, panels). A second copy of each dense weight, in exchange
        # for up to 2.27x OpenBLAS's rate at a few rows (bench/results/simd_gemm.md) and MiniLM's
        # forward passes at 512-1024 rows in 0.77x the time (kernels/linear.py).
        # _packed_rows: the most rows a product runs on the panels (the bench sets it to compare).
        self._gemm = gemm
        self._packed = {}
        self._packed_rows = sys.maxsize if simd.AVAILABLE else 0

    def _panels(self, x, weight):  # the packed weight when this product runs on it, else None
        if x.size > self._packed_rows * x.shape[-1] or weight.shape[0] % self._gemm.NR:
            return None
        entry = self._packed.get(id(weight))
        if entry is None or entry[0] is not weight:
            entry = self._packed[id(weight)] = (weight, self._gemm.pack(weight))  # two threads may both pack: either is right
        return entry[1]

    def linear(self, x, weight, bias):  # [..., in] -> [..., out]
        return self.linear_act(x, weight, bias, "identity")

    def embeddings(self, input_ids, token_type_ids, word, position, token_type, ln_weight, ln_bias, eps,
                   record=NO_RECORD, position_ids=None):  # [B, T] x2, tables -> [B, T, H]
        return self.kernels.embeddings(input_ids, token_type_ids, word, position, token_type, ln_weight, ln_bias, eps,
                                       position_ids)

    def linear_act(self, x, weight, bias, act, record=NO_RECORD):  # [..., in] -> [..., out]
        panels = self._panels(x, weight)
        if panels is not None:
            return self._gemm.linear_packed(x, panels, bias, act)
        return self.kernels.linear_act(x, weight, bias, act)

    def attention(self, q, k, v, mask_bias, num_heads, output_attentions=False, record=NO_RECORD,
                  position_bias=None):
        if position_bias is None:
            return self.kernels.attention(q, k, v, mask_bias, num_heads, output_attentions)
        if not self._attention_takes_position_bias:
            # a kernel without MPNet's [1, nh, T, T] bias: the NumPy reference, which adds it where transformers does
            return layers.attention(q, k, v, mask_bias, num_heads, output_attentions, position_bias=position_bias)
        return self.kernels.attention(q, k, v, mask_bias, num_heads, output_attentions, position_bias)

    def qkv(self, x, query: Linear, key: Linear, value: Linear, record=NO_RECORD):  # [B, T, H] -> 3 x [B, T, H]
        entry = self._stacked.get(id(query))
        if entry is None or entry[1] is not key or entry[2] is not value:  # a tree this adapter was not built for
            return tuple(self.linear(x, w.weight, w.bias) for w in (query, key, value))
        stacked = entry[3]
        H = query.weight.shape[0]
        y = self.linear(x, stacked.weight, stacked.bias)  # [B, T, 3H]
        return y[..., :H], y[..., H:2 * H], y[..., 2 * H:]  # views: the attention kernel reads them strided


def _stack(query: Linear, key: Linear, value: Linear) -> Linear:  # 3 x [H, H], [H] -> [3H, H], [3H]
    return Linear(np.ascontiguousarray(np.concatenate([query.weight, key.weight, value.weight])),
                  np.concatenate([query.bias, key.bias, value.bias]))


# How an attention's three projections are spelled in a weight tree: BERT's BertSelfAttention
# (RoBERTa, ELECTRA), DistilBERT's DistilBertSelfAttention, MPNet's MPNetSelfAttention.
QKV_FIELDS = (("query", "key", "value"), ("q_lin", "k_lin", "v_lin"), ("q", "k", "v"))


def _qkv_triples(node):
    """Every (query, key, value) Linear triple in the tree: the projections one GEMM can serve."""
    if isinstance(node, tuple):
        for child in node:
            yield from _qkv_triples(child)
    elif is_dataclass(node):
        names = {f.name for f in fields(node)}
        for spelling in QKV_FIELDS:
            if names.issuperset(spelling) and all(isinstance(getattr(node, n), Linear) for n in spelling):
                yield tuple(getattr(node, n) for n in spelling)
        for f in fields(node):
            yield from _qkv_triples(getattr(node, f.name))


def check_backend(backend) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(BACKENDS)}, found {backend!r}")
    return backend


def get_ops(backend: str, weights=None):
    """The ops a backend runs, prepared for `weights` (the Numba adapter stacks Q, K, V at this point).

    "auto": the kernels when they are compiled (or compile in this process, when numbert.warmup
    does not run in the background), else NumPy; numbert.Model switches such a model to the
    kernels once the background compile has finished."""
    check_backend(backend)
    if backend == "auto":
        from . import warmup

        backend = "numba" if warmup.start() else "numpy"
    if backend == "numpy":
        return NUMPY
    return NumbaOps(weights)
