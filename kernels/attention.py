"""Scaled dot-product attention for one layer at (close to) GEMM speed: the twin of
numbert.layers.attention (and attention_mask_bias).

One parallel task per (batch, head). The task copies its head's keys and values once,
transposed, into two contiguous [hs, L] buffers (L = keys up to the last real one), then
walks the queries four at a time:

- scores S[4, L] = Q[4, hs] K^T: for each group of four head dims, one pass over the keys
  adds 4 x 4 products into the four score rows. The inner loop runs over contiguous keys,
  so LLVM vectorises it (16 keys per AVX-512 register), and each score loaded and stored
  carries four multiply-adds, which keeps the FMA units busy rather than the store port.
- softmax of each score row in place (scale, mask, max, exp, sum), in L1.
- context C[4, hs] = P[4, L] V: for each group of four head dims, 16 running sums over the
  keys (4 queries x 4 dims), which LLVM keeps in vector registers for the whole pass: no
  store in the inner loop; each sum is folded once at the end.

The [B, nh, T, T] tensor never exists unless output_attentions asks for it: a task's
scratch is its [4, L] score rows. Keys after the last real token (right padding) are
skipped: their bias is finfo(float32).min, so their exp() is exactly 0 in the reference
too. A sequence with no real token at all attends uniformly to every key, as the
reference does, so it keeps all T keys. MPNet's position bias, when given, is added to the
scaled scores before the mask, as in the reference.

The previous kernel (one query row at a time, dot products over the head dim: 10-30
GFLOP/s) is kept in bench/attention_rowwise.py as the baseline of `python -m bench.attention`.
"""

from __future__ import annotations

import math

import numpy as np

from .jit import jit, pjit, prange

f32 = np.float32

# a bias at or below this hides a key completely (exp underflows to 0 against any real score)
_MASKED = f32(-1e30)


def attention_mask_bias(attention_mask):  # [B, T] -> [B, 1, 1, T]
    # As the reference: (1 - mask) * finfo(float32).min, an additive bias on the keys.
    keep = np.asarray(attention_mask)[:, None, None, :].astype(f32)  # [B, 1, 1, T]
    return (f32(1.0) - keep) * np.finfo(f32).min  # [B, 1, 1, T]

QB = 4  # queries per block (the unrolled code below is written for four)


@jit
def _scores4(qb, kt, s):  # qb [4, hs] four queries, kt [hs, L] -> s [4, L]
    hs, L = kt.shape
    s0, s1, s2, s3 = s[0], s[1], s[2], s[3]
    for j in range(L):
        s0[j] = s1[j] = s2[j] = s3[j] = f32(0.0)
    d = 0
    while d + 4 <= hs:  # four head dims per pass over the keys
        k0, k1, k2, k3 = kt[d], kt[d + 1], kt[d + 2], kt[d + 3]
        a00, a01, a02, a03 = qb[0, d], qb[0, d + 1], qb[0, d + 2], qb[0, d + 3]
        a10, a11, a12, a13 = qb[1, d], qb[1, d + 1], qb[1, d + 2], qb[1, d + 3]
        a20, a21, a22, a23 = qb[2, d], qb[2, d + 1], qb[2, d + 2], qb[2, d + 3]
        a30, a31, a32, a33 = qb[3, d], qb[3, d + 1], qb[3, d + 2], qb[3, d + 3]
        for j in range(L):
            x0, x1, x2, x3 = k0[j], k1[j], k2[j], k3[j]
            s0[j] += a00 * x0 + a01 * x1 + a02 * x2 + a03 * x3
            s1[j] += a10 * x0 + a11 * x1 + a12 * x2 + a13 * x3
            s2[j] += a20 * x0 + a21 * x1 + a22 * x2 + a23 * x3
            s3[j] += a30 * x0 + a31 * x1 + a32 * x2 + a33 * x3
        d += 4
    while d < hs:  # the head dims left over when hs is not a multiple of 4
        kd = kt[d]
        a0, a1, a2, a3 = qb[0, d], qb[1, d], qb[2, d], qb[3, d]
        for j in range(L):
            x = kd[j]
            s0[j] += a0 * x
            s1[j] += a1 * x
            s2[j] += a2 * x
            s3[j] += a3 * x
        d += 1


@jit
def _context4(s, inv, vt, out, b, i, o):  # s [4, L] exp(scores), inv [4] 1/row sums, vt [hs, L] -> out[b, i..i+3, o..]
    hs, L = vt.shape
    p0, p1, p2, p3 = s[0], s[1], s[2], s[3]
    n0, n1, n2, n3 = inv[0], inv[1], inv[2], inv[3]
    d = 0
    while d + 4 <= hs:  # 16 sums over the keys: queries i..i+3 x head dims d..d+3
        v0, v1, v2, v3 = vt[d], vt[d + 1], vt[d + 2], vt[d + 3]
        c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = f32(0.0)
        c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = f32(0.0)
        for j in range(L):
            x0, x1, x2, x3 = v0[j], v1[j], v2[j], v3[j]
            y = p0[j]
            c00 += y * x0
            c01 += y * x1
            c02 += y * x2
            c03 += y * x3
            y = p1[j]
            c10 += y * x0
            c11 += y * x1
            c12 += y * x2
            c13 += y * x3
            y = p2[j]
            c20 += y * x0
            c21 += y * x1
            c22 += y * x2
            c23 += y * x3
            y = p3[j]
            c30 += y * x0
            c31 += y * x1
            c32 += y * x2
            c33 += y * x3
        out[b, i, o + d], out[b, i, o + d + 1], out[b, i, o + d + 2], out[b, i, o + d + 3] = (
            c00 * n0, c01 * n0, c02 * n0, c03 * n0)
        out[b, i + 1, o + d], out[b, i + 1, o + d + 1], out[b, i + 1, o + d + 2], out[b, i + 1, o + d + 3] = (
            c10 * n1, c11 * n1, c12 * n1, c13 * n1)
        out[b, i + 2, o + d], out[b, i + 2, o + d + 1], out[b, i + 2, o + d + 2], out[b, i + 2, o + d + 3] = (
            c20 * n2, c21 * n2, c22 * n2, c23 * n2)
        out[b, i + 3, o + d], out[b, i + 3, o + d + 1], out[b, i + 3, o + d + 2], out[b, i + 3, o + d + 3] = (
            c30 * n3, c31 * n3, c32 * n3, c33 * n3)
        d += 4
    while d < hs:
        vd = vt[d]
        c0 = c1 = c2 = c3 = f32(0.0)
        for j in range(L):
            x = vd[j]
            c0 += p0[j] * x
            c1 += p1[j] * x
            c2 += p2[j] * x
            c3 += p3[j] * x
        out[b, i, o + d], out[b, i + 1, o + d], out[b, i + 2, o + d], out[b, i + 3, o + d] = c0 * n0, c1 * n1, c2 * n2, c3 * n3
        d += 1


@jit
def _scores1(qrow, kt, row):  # qrow [hs] one query (after the last block of four), kt [hs, L] -> row [L]
    hs, L = kt.shape
    for j in range(L):
        row[j] = f32(0.0)
    for d in range(hs):
        a = qrow[d]
        kd = kt[d]
        for j in range(L):
            row[j] += a * kd[j]


@jit
def _context1(row, inv, vt, out, b, i, o):  # one row of exp(scores) [L], 1/its sum -> out[b, i, o..o+hs]
    hs, L = vt.shape
    for d in range(hs):
        vd = vt[d]
        c = f32(0.0)
        for j in range(L):
            c += row[j] * vd[j]
        out[b, i, o + d] = c * inv


_LOG2E = f32(1.4426950408889634)
_LN2_HI = f32(0.693359375)  # ln 2 split in two so that n * ln2 subtracts exactly (Cephes)
_LN2_LO = f32(-2.12194440e-4)
_EXP_LO = f32(-87.3)  # below this exp(x) is (almost) a float32 denormal: we return 0
_EXP_HI = f32(88.0)


@jit
def _exp(x):  # float32 -> float32, x <= 0 here (a score minus its row's max)
    # scalar.exp_f32's Cephes polynomial with n kept in float32 (np.floor, not math.floor,
    # whose int64 turns the rest into float64): the whole loop then runs 16 lanes wide.
    xc = min(max(x, _EXP_LO), _EXP_HI)
    n = np.floor(xc * _LOG2E + f32(0.5))
    r = xc - n * _LN2_HI - n * _LN2_LO
    p = f32(1.9875691500e-4)
    p = p * r + f32(1.3981999507e-3)
    p = p * r + f32(8.3334519073e-3)
    p = p * r + f32(4.1665795894e-2)
    p = p * r + f32(1.6666665459e-1)
    p = p * r + f32(5.0000001201e-1)
    p = p * r * r + r + f32(1.0)
    scale = np.int32((np.int32(n) + np.int32(127)) << np.int32(23)).view(np.float32)  # 2**n
    return f32(p * scale) if x > _EXP_LO else f32(0.0)


@jit
def _flip(bits):  # int32 -> int32
    # LLVM vectorises an integer max but not a float one (that needs the nnan flag, which
    # numbert does not set). A float's bits with the lower 31 flipped when the sign is set
    # compare as int32 in the float order; flipping again gives the bits back.
    return np.int32(bits ^ ((bits >> np.int32(31)) & np.int32(0x7FFFFFFF)))


@jit
def _masked_exp_(row, bias, pbias, scale):  # [L] scores in place -> exp(scores - max), bias [L], pbias [L] or [0]
    # -> 1 / the sum of the exps. A softmax without its last division: the caller scales the
    # context sums (4 x hs numbers) instead of the L probabilities.
    L = row.shape[0]
    top = np.int32(-2147483648)
    if pbias.shape[0] > 0:  # MPNet: the position bias goes on the scaled scores, before the mask
        for j in range(L):
            x = (row[j] * scale + pbias[j]) + bias[j]
            row[j] = x
            top = max(top, _flip(np.float32(x).view(np.int32)))
    else:
        for j in range(L):  # scale, mask, row max
            x = row[j] * scale + bias[j]
            row[j] = x
            top = max(top, _flip(np.float32(x).view(np.int32)))
    m = np.int32(_flip(top)).view(np.float32)
    total = f32(0.0)
    for j in range(L):
        e = _exp(row[j] - m)
        row[j] = e
        total += e
    return f32(1.0) / total


@pjit
def _attention_heads(q, k, v, bias, pbias, lengths, nh, scale, out, probs, want_probs):
    # q, k, v [B, T, H] (any strides), bias [B, T], pbias [1 or B, nh, T, T] or empty, lengths [B]
    # -> out [B, T, H], probs [B, nh, T, T]
    B, T, H = q.shape
    hs = H // nh
    has_pbias = pbias.shape[0] > 0
    no_pbias = np.empty(0, f32)
    for task in prange(B * nh):
        b = task // nh
        h = task % nh
        o = h * hs  # this head's columns in H
        L = lengths[b]  # keys 0 .. L-1 can be attended to
        kt = np.empty((hs, L), f32)  # this head's keys and values, transposed: keys run contiguously
        vt = np.empty((hs, L), f32)
        for j0 in range(0, L, 16):  # 16 keys at a time, so that each write fills a cache line
            for d in range(hs):
                for j in range(j0, min(j0 + 16, L)):
                    kt[d, j] = k[b, j, o + d]
                    vt[d, j] = v[b, j, o + d]
        bias_b = np.empty(L, f32)  # [L] this sequence's mask bias, contiguous (a typed-contiguous row vectorises)
        for j in range(L):
            bias_b[j] = bias[b, j]
        qb = np.empty((QB, hs), f32)  # one block of queries, contiguous
        s = np.empty((QB, L), f32)  # their scores, then exp(scores - row max)
        inv = np.empty(QB, f32)  # 1 / the sums of those rows
        i = np.int64(0)  # not the literal 0: a Literal[int](0) argument would compile _context4 a second time
        while i < T:
            n = min(QB, T - i)  # queries in this block
            for r in range(n):
                for d in range(hs):
                    qb[r, d] = q[b, i + r, o + d]
            if n == QB:
                _scores4(qb, kt, s)
            else:
                for r in range(n):
                    _scores1(qb[r], kt, s[r])
            for r in range(n):
                if has_pbias:
                    pb = b if pbias.shape[0] > 1 else 0
                    inv[r] = _masked_exp_(s[r], bias_b, pbias[pb, h, i + r, :L], scale)
                else:
                    inv[r] = _masked_exp_(s[r], bias_b, no_pbias, scale)
            if n == QB:
                _context4(s, inv, vt, out, b, i, o)
            else:
                for r in range(n):
                    _context1(s[r], inv[r], vt, out, b, i + r, o)
            if want_probs:
                for r in range(n):
                    for j in range(L):
                        probs[b, h, i + r, j] = s[r, j] * inv[r]
                    for j in range(L, T):
                        probs[b, h, i + r, j] = f32(0.0)
            i += n


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
    _attention_heads(q, k, v, bias, pbias, lengths, nh, f32(1.0 / math.sqrt(hs)), out, probs, output_attentions,
                     work=B * T * T * H)  # multiply-adds of one of the two products
    return out, (probs if output_attentions else None)
