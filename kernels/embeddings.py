"""BertEmbeddings in one pass per token: gather the word, token-type and position rows,
sum them and LayerNorm the sum, without the three [B, T, H] gathers of the NumPy twin
(numbert.layers.embeddings)."""

from __future__ import annotations

import numpy as np

from .jit import pjit, prange
from .layernorm import normalize_row_

f32 = np.float32


@pjit
def _embed_rows(input_ids, token_type_ids, position_ids, word, position, token_type, weight, bias, eps, out):
    # [B, T], [B, T], [B, T], [V, H], [P, H], [Y, H], [H], [H], f32 -> out [B*T, H]
    B, T = input_ids.shape
    H = word.shape[1]
    for r in prange(B * T):
        b = r // T
        t = r % T
        w = input_ids[b, t]
        y = token_type_ids[b, t]
        p = position_ids[b, t]
        row = out[r]
        for j in range(H):
            row[j] = word[w, j] + token_type[y, j] + position[p, j]  # same order of additions as transformers
        normalize_row_(row, weight, bias, eps)


def embeddings(input_ids, token_type_ids, word, position, token_type, ln_weight, ln_bias,
               eps, position_ids=None):  # [B, T], [B, T], [V, H], [P, H], [Y, H] -> [B, T, H]
    # position_ids None: 0 .. T-1, as transformers' default position_ids. token_type None (a
    # model without token types): a zero row is added instead, which changes no float (x + 0 == x).
    B, T = input_ids.shape
    H = word.shape[1]
    if position_ids is None:
        position_ids = np.arange(T)[None, :]  # [1, T]
    if token_type is None:
        token_type, token_type_ids = np.zeros((1, H), f32), np.zeros((B, T), np.int64)
    out = np.empty((B, T, H), f32)
    # the ids as fresh writable C arrays ([B, T] int64, a few KB): Numba compiles per argument
    # type, read-only (a broadcast view) included, so every caller then shares one compiled kernel
    ids = [np.array(np.broadcast_to(a, (B, T)), dtype=np.int64, order="C")
           for a in (input_ids, token_type_ids, position_ids)]
    _embed_rows(*ids, word, position, token_type, ln_weight, ln_bias, f32(eps), out.reshape(B * T, H), work=out.size)
    return out
