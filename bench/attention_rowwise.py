"""The previous attention kernel (one query row at a time), kept as the baseline that
`python -m bench.attention` measures numbert.kernels.attention against. Not used by numbert.

For each (b, h), one parallel task copies that head's queries, keys and values into small
contiguous [T, hs] buffers, then for each query row computes its T scores, scales, masks,
softmaxes them and multiplies by the values, all in one row buffer of T floats: the
[B, nh, T, T] score tensor never exists unless output_attentions asks for it.

Keys after the last real token of a sequence (right padding) are skipped: their bias is
finfo(float32).min, so their exp() is exactly 0 in the reference too and skipping them
changes no number. A sequence with no real token at all attends uniformly to every key,
as the reference does, so it keeps all T keys.
"""

from __future__ import annotations

import math

import numpy as np

from numbert.kernels.jit import pjit, prange
from numbert.kernels.scalar import exp_f32

f32 = np.float32

# a bias at or below this hides a key completely (exp underflows to 0 against any real score)
_MASKED = f32(-1e30)


@pjit
def _attention_heads(q, k, v, bias, pbias, lengths, nh, scale, out, probs, want_probs):
    # q, k, v [B, T, H] (any strides), bias [B, T], pbias [1 or B, nh, T, T] or empty, lengths [B]
    # -> out [B, T, H], probs [B, nh, T, T]
    B, T, H = q.shape
    hs = H // nh
    has_pbias = pbias.shape[0] > 0
    for task in prange(B * nh):
        b = task // nh
        h = task % nh
        o = h * hs  # this head's columns in H
        L = lengths[b]  # keys 0 .. L-1 can be attended to
        qh = np.empty((T, hs), f32)  # this head's queries, keys and values, contiguous
        kh = np.empty((L, hs), f32)
        vh = np.empty((L, hs), f32)
        for i in range(T):
            for d in range(hs):
                qh[i, d] = q[b, i, o + d]
        for j in range(L):
            for d in range(hs):
                kh[j, d] = k[b, j, o + d]
                vh[j, d] = v[b, j, o + d]
        s = np.empty(L, f32)  # one query's scores, then its softmax weights
        acc = np.empty(hs, f32)
        for i in range(T):
            # s = q_i . K^T, four keys at a time so that each load of q_i feeds four products
            j = 0
            while j + 4 <= L:
                a0 = a1 = a2 = a3 = f32(0.0)
                for d in range(hs):
                    x = qh[i, d]
                    a0 += x * kh[j, d]
                    a1 += x * kh[j + 1, d]
                    a2 += x * kh[j + 2, d]
                    a3 += x * kh[j + 3, d]
                s[j], s[j + 1], s[j + 2], s[j + 3] = a0, a1, a2, a3
                j += 4
            for jr in range(j, L):
                a = f32(0.0)
                for d in range(hs):
                    a += qh[i, d] * kh[jr, d]
                s[jr] = a
            if has_pbias:  # MPNet: the position bias goes on the scaled scores, before the mask
                pb = b if pbias.shape[0] > 1 else 0
                m = (s[0] * scale + pbias[pb, h, i, 0]) + bias[b, 0]
                for j in range(L):  # scale, position bias, mask, row max
                    x = (s[j] * scale + pbias[pb, h, i, j]) + bias[b, j]
                    s[j] = x
                    m = max(m, x)
            else:
                m = s[0] * scale + bias[b, 0]
                for j in range(L):  # scale, mask, row max
                    x = s[j] * scale + bias[b, j]
                    s[j] = x
                    m = max(m, x)
            total = f32(0.0)
            for j in range(L):
                e = exp_f32(s[j] - m)
                s[j] = e
                total += e
            inv = f32(1.0) / total
            for j in range(L):
                s[j] *= inv
            # context_i = softmax(s) . V, four value rows per pass over the accumulator
            for d in range(hs):
                acc[d] = f32(0.0)
            j = 0
            while j + 4 <= L:
                p0, p1, p2, p3 = s[j], s[j + 1], s[j + 2], s[j + 3]
                for d in range(hs):
                    acc[d] += p0 * vh[j, d] + p1 * vh[j + 1, d] + p2 * vh[j + 2, d] + p3 * vh[j + 3, d]
                j += 4
            for jr in range(j, L):
                p = s[jr]
                for d in range(hs):
                    acc[d] += p * vh[jr, d]
            for d in range(hs):
                out[b, i, o + d] = acc[d]
            if want_probs:
                for j in range(L):
                    probs[b, h, i, j] = s[j]
                for j in range(L, T):
                    probs[b, h, i, j] = f32(0.0)


def attention(q, k, v, mask_bias, num_heads, output_attentions=False, position_bias=None):
    # [B, T, H] x3, [B, 1, 1, T], int, [1 or B, nh, T, T] or None -> context [B, T, H], probs [B, nh, T, T] or None
    B, T, H = q.shape
    nh, hs = num_heads, H // num_heads
    bias = np.ascontiguousarray(np.broadcast_to(mask_bias, (B, 1, 1, T)), dtype=f32).reshape(B, T)  # [B, T]
    real = bias > _MASKED  # [B, T]
    last = T - np.argmax(real[:, ::-1], axis=1)  # [B] one past the last real key
    lengths = np.where(real.any(axis=1), last, T).astype(np.int64)  # [B]
    out = np.empty((B, T, H), f32)
    probs = np.empty((B, nh, T, T) if output_attentions else (0, 0, 0, 0), f32)
    # The reference divides the scores by sqrt(hs); multiplying by its float32 inverse
    # differs by at most an ulp (and not at all when hs is a power of 4, as 64 is).
    if position_bias is None:
        pbias = np.empty((0, 0, 0, 0), f32)
    else:
        pbias = np.ascontiguousarray(position_bias, dtype=f32)  # [1 or B, nh, T, T]
        if pbias.ndim != 4 or pbias.shape[0] not in (1, B) or pbias.shape[1:] != (nh, T, T):
            raise ValueError(f"position_bias has shape {list(pbias.shape)}, expected [1 or {B}, {nh}, {T}, {T}]")
    _attention_heads(q, k, v, bias, pbias, lengths, nh, f32(1.0 / math.sqrt(hs)), out, probs, output_attentions)
    return out, (probs if output_attentions else None)
