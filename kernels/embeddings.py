"""BertEmbeddings in one pass per token: gather the word, token-type and position rows,
sum them and LayerNorm the sum, without the three [B, T, H] gathers of the NumPy twin
(numbert.layers.embeddings)."""

from __future__ import annotations

import numpy as np

from .jit import pjit, prange
from .layernorm import normalize_row_

f32 = np.float32


@pjit
def _embed_rows(input_ids, token_type_ids, word, position, token_type, weight, bias, eps, out):
    # [B, T], [B, T], [V, H], [P, H], [Y, H], [H], [H], f32 -> out [B*T, H]
    B, T = input_ids.shape
    H = word.shape[1]
    for r in prange(B * T):
        b = r // T
        t = r % T  # position id: 0 .. T-1, as transformers' default position_ids
        w = input_ids[b, t]
        y = token_type_ids[b, t]
        row = out[r]
        for j in range(H):
            row[j] = word[w, j] + token_type[y, j] + position[t, j]  # same order of additions as transformers
        normalize_row_(row, weight, bias, eps)


def embeddings(input_ids, token_type_ids, word, position, token_type, ln_weight, ln_bias,
               eps):  # [B, T], [B, T], [V, H], [P, H], [Y, H] -> [B, T, H]
    B, T = input_ids.shape
    H = word.shape[1]
    out = np.empty((B, T, H), f32)
    _embed_rows(np.ascontiguousarray(input_ids, dtype=np.int64), np.ascontiguousarray(token_type_ids, dtype=np.int64),
                word, position, token_type, ln_weight, ln_bias, f32(eps), out.reshape(B * T, H))
    return out
