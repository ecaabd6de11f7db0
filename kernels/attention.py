"""Scaled dot-product attention for one layer at (close to) GEMM speed: the twin of
numbert.layers.attention (and attention_mask_bias).

Two kernels, one parallel task per (batch, head) in both. attention() runs the first where
it can (a CPU with AVX-512, hs a multiple of 32: every BERT-family checkpoint numbert knows),
the second elsewhere.

On explicit vectors (_attention_vectors; kernels/simd.py). The task puts its head's keys in
panels of 32 keys, [hs, 32] each (transposed 16 x 16 at a time in registers), and its
values in panels of 32 head dims, [L, 32] each (L = keys up to the last real one). Then,
for each block of 8 queries:

- scores S[8, L] = Q[8, hs] K^T: kernels.linear's register tile, with the key panels as
  its weights: an 8 x 32 block of S in 16 vector registers for the whole pass over hs.
- softmax of each row, 16 lanes at a time (scale, mask, max; exp, sum): a vector twin of
  the scalar exp below. The rows stay unnormalised.
- context C[8, hs] = exp(S)[8, L] V: the same tile, with the value panels as its weights,
  written into the output, then each row multiplied by 1 / its sum (hs numbers, not L).

The plain kernel (_attention_heads) copies a head's keys and values once, transposed, into
two contiguous [hs, L] buffers and walks the queries four at a time:

- scores S[4, L] = Q[4, hs] K^T: for each group of four head dims, one pass over the keys
  adds 4 x 4 products into the four score rows. The inner loop runs over contiguous keys,
  so LLVM vectorises it (16 keys per AVX-512 register), and each score loaded and stored
  carries four multiply-adds, which keeps the FMA units busy rather than the store port.
- softmax of each score row in place (scale, mask, max, exp, sum), in L1.
- context C[4, hs] = P[4, L] V: for each group of four head dims, 16 running sums over the
  keys (4 queries x 4 dims), which LLVM keeps in vector registers for the whole pass: no
  store in the inner loop; each sum is folded once at the end.

In both, the [B, nh, T, T] tensor never exists unless output_attentions asks for it: a
task's scratch is one block's score rows. Keys after the last real token (right padding)
are skipped: their bias is finfo(float32).min, so their exp() is exactly 0 in the reference
too. A sequence with no real token at all attends uniformly to every key, as the reference
does, so it keeps all T keys. MPNet's position bias, when given, is added to the scaled
scores before the mask, as in the reference.

`python -m bench.attention` times both against the sgemm of the same run, with the first
kernel of all (one query row at a time, dot products over the head dim: 10-30 GFLOP/s),
kept in bench/attention_rowwise.py.
"""

from __future__ import annotations

import math

import numpy as np

from . import simd
from .jit import jit, pjit, prange
from .linear import NR, _tile1, _tile4, _tile8, _zip_round
from .simd import V, vadd, vbroadcast, vfloor, vfma, vhmax, vhsum, vkeep_above, vload, vmax, vmul, vscale2, vstore, vsub, vzero

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


@jit
def _write_probs(s, inv, n, L, probs, b, h, i):  # n rows of exp(scores) [*, >= L], 1/their sums -> probs[b, h, i:i+n, :]
    T = probs.shape[3]
    for r in range(n):
        for j in range(L):
            probs[b, h, i + r, j] = s[r, j] * inv[r]
        for j in range(L, T):  # keys past the last real one: exactly 0, as in the reference
            probs[b, h, i + r, j] = f32(0.0)


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
                _write_probs(s, inv, n, L, probs, b, h, i)
            i += n


# ---- The same on explicit vectors (kernels/simd.py): CPUs with AVX-512, hs a multiple of NR ----


@jit
def _vexp(x):  # 16 lanes, each <= 0 (a score minus its row's max) -> exp(x), 0 below _EXP_LO: _exp lane by lane
    # No clamp: a lane below _EXP_LO (or -inf, a padding lane) computes garbage that the last
    # step replaces by 0; vscale2 multiplies by 2**n in one instruction.
    n = vfloor(vfma(x, vbroadcast(_LOG2E), vbroadcast(f32(0.5))))
    r = vfma(n, vbroadcast(-_LN2_HI), x)
    r = vfma(n, vbroadcast(-_LN2_LO), r)
    p = vbroadcast(f32(1.9875691500e-4))
    p = vfma(p, r, vbroadcast(f32(1.3981999507e-3)))
    p = vfma(p, r, vbroadcast(f32(8.3334519073e-3)))
    p = vfma(p, r, vbroadcast(f32(4.1665795894e-2)))
    p = vfma(p, r, vbroadcast(f32(1.6666665459e-1)))
    p = vfma(p, r, vbroadcast(f32(5.0000001201e-1)))
    p = vadd(vfma(vmul(p, r), r, r), vbroadcast(f32(1.0)))
    return vkeep_above(vscale2(p, n), x, vbroadcast(_EXP_LO))


@jit
def _masked_exp_rows_(s, n, bias, pb, scale, inv):  # s [QV, Lp] scores of n queries, bias [Lp], pb [QV, Lp] or [0, 0]
    # -> s = exp(scores - row max) in place, inv[r] = 1 / row r's sum: _masked_exp_ on 16 lanes. bias is
    # -inf past the last key (Lp rounds the keys up to whole panels), so those lanes come out 0.
    Lp = s.shape[1]
    sc = vbroadcast(scale)
    for r in range(n):
        at = r * Lp  # row r's flat offset in s and pb
        top = vbroadcast(-np.inf)
        if pb.shape[0] > 0:  # MPNet: the position bias goes on the scaled scores, before the mask
            for j in range(0, Lp, V):
                x = vadd(vadd(vmul(vload(s, at + j), sc), vload(pb, at + j)), vload(bias, j))
                vstore(s, at + j, x)
                top = vmax(top, x)
        else:
            for j in range(0, Lp, V):
                x = vadd(vmul(vload(s, at + j), sc), vload(bias, j))
                vstore(s, at + j, x)
                top = vmax(top, x)
        top = vbroadcast(vhmax(top))
        total = vzero()
        for j in range(0, Lp, V):
            e = _vexp(vsub(vload(s, at + j), top))
            vstore(s, at + j, e)
            total = vadd(total, e)
        inv[r] = f32(1.0) / vhsum(total)


@jit
def _transpose16(src, j, col, dst, at):  # src[j:j+16, col:col+16] -> dst[at + d*NR : at + d*NR + 16] = column d
    r = (vload(src[j], col), vload(src[j + 1], col), vload(src[j + 2], col), vload(src[j + 3], col),
         vload(src[j + 4], col), vload(src[j + 5], col), vload(src[j + 6], col), vload(src[j + 7], col),
         vload(src[j + 8], col), vload(src[j + 9], col), vload(src[j + 10], col), vload(src[j + 11], col),
         vload(src[j + 12], col), vload(src[j + 13], col), vload(src[j + 14], col), vload(src[j + 15], col))
    r = _zip_round(_zip_round(_zip_round(_zip_round(r))))
    for d in range(V):
        vstore(dst, at + d * NR, r[d])


QV = 8  # queries per block of the vector kernel: the 8 rows of kernels.linear's tile


@jit
def _rows_left(x, xi, xo, n, K, panel, y, yi, n0):  # n < QV rows of x[xi:, xo:xo+K] @ one panel -> y[yi:, n0:n0+NR]
    # (a whole block calls _tile8 itself: through a helper like this one it ran 1.2x slower)
    r = 0
    if n >= 4:
        _tile4(x, xi, xo, K, panel, y, yi, n0, 0, 0)
        r = 4
    while r < n:
        _tile1(x, xi + r, xo, K, panel, y, yi + r, n0, 0, 0)
        r += 1


@pjit
def _attention_vectors(q, k, v, bias, pbias, lengths, nh, scale, out, probs, want_probs):
    # the arguments of _attention_heads; q, k, v with unit-stride rows (attention() sees to it)
    B, T, H = q.shape
    hs = H // nh
    PV = hs // NR  # panels of values (32 head dims each)
    has_pbias = pbias.shape[0] > 0
    for task in prange(B * nh):
        b = task // nh
        h = task % nh
        o = h * hs  # this head's columns in H
        L = lengths[b]  # keys 0 .. L-1 can be attended to
        PK = (L + NR - 1) // NR  # panels of keys (32 keys each)
        Lp = PK * NR
        qb, kb, vb, ob = q[b], k[b], v[b], out[b]  # [T, H] each
        # the keys as panels, kp[p, d*NR + c] = key p*NR + c, head dim d: the tile's "weights" for the
        # scores (zeros past the last key); the values as panels of 32 head dims, vp[p, j*NR + c]
        kp = np.zeros((PK, hs * NR), f32)  # [PK, hs * NR]
        vp = np.empty((PV, L * NR), f32)  # [PV, L * NR]
        j = 0
        while j + V <= L:  # 16 keys at a time, transposed in registers
            for d0 in range(0, hs, V):
                _transpose16(kb, j, o + d0, kp[j // NR], d0 * NR + j % NR)
            j += V
        while j < L:
            kr = kb[j]
            for d in range(hs):
                kp[j // NR, d * NR + j % NR] = kr[o + d]
            j += 1
        for j in range(L):
            vr = vb[j]
            for p in range(PV):
                vstore(vp[p], j * NR, vload(vr, o + p * NR))
                vstore(vp[p], j * NR + V, vload(vr, o + p * NR + V))
        bias_b = np.full(Lp, -np.inf, f32)  # [Lp] this sequence's mask bias; -inf hides the padding lanes
        for j in range(L):
            bias_b[j] = bias[b, j]
        s = np.empty((QV, Lp), f32)  # one block's scores, then exp(scores - row max)
        inv = np.empty(QV, f32)  # 1 / the sums of those rows
        pb = np.zeros((QV, Lp) if has_pbias else (0, 0), f32)
        i = 0
        while i < T:
            n = min(QV, T - i)  # queries in this block
            for p in range(PK):  # scores: Q[i:i+n] (this head's columns) @ one panel of keys
                if n == QV:
                    _tile8(qb, i, o, hs, kp[p], s, 0, p * NR, 0, 0)
                else:
                    _rows_left(qb, i, o, n, hs, kp[p], s, 0, p * NR)
            if has_pbias:
                pbb = pbias[b if pbias.shape[0] > 1 else 0, h]
                for r in range(n):
                    for j in range(L):
                        pb[r, j] = pbb[i + r, j]
            _masked_exp_rows_(s, n, bias_b, pb, scale, inv)
            for p in range(PV):  # context: exp(scores)[:n, :L] @ one panel of values -> out, then / sums
                if n == QV:
                    _tile8(s, 0, 0, L, vp[p], ob, i, o + p * NR, 0, 0)
                else:
                    _rows_left(s, 0, 0, n, L, vp[p], ob, i, o + p * NR)
            for r in range(n):
                for c in range(0, hs, V):
                    at = (i + r) * H + o + c
                    vstore(ob, at, vmul(vload(ob, at), vbroadcast(inv[r])))
            if want_probs:
                _write_probs(s, inv, n, L, probs, b, h, i)
            i += n


_NONE4 = np.empty((0, 0, 0, 0), f32)  # no probabilities asked for, no position bias given


@jit
def _key_lengths(bias):  # [B, T] mask bias -> [B] one past the last key that is not hidden
    # (one compiled call rather than five small NumPy ones: attention's NumPy preparation took
    # 0.3 ms on a call made after a pause, 0.03 ms back to back)
    B, T = bias.shape
    lengths = np.empty(B, np.int64)
    for b in range(B):
        L = T
        while L > 0 and bias[b, L - 1] <= _MASKED:
            L -= 1
        lengths[b] = L if L > 0 else T  # no real key at all: the reference attends to all T uniformly
    return lengths


def attention(q, k, v, mask_bias, num_heads, output_attentions=False, position_bias=None):
    # [B, T, H] x3, [B, 1, 1, T], int, [1 or B, nh, T, T] or None -> context [B, T, H], probs [B, nh, T, T] or None
    vectors = simd.AVAILABLE and (q.shape[-1] // num_heads) % NR == 0
    return attention_on(vectors, q, k, v, mask_bias, num_heads, output_attentions, position_bias)


def attention_on(vectors, q, k, v, mask_bias, num_heads, output_attentions=False, position_bias=None):
    """attention() on the kernel on explicit vectors (vectors=True: needs hs a multiple of NR; on a CPU
    without AVX-512 only under NUMBA_DISABLE_JIT, where the vector operations are NumPy) or on the
    plain one (False). attention() picks the vector kernel where it can run."""
    B, T, H = q.shape
    q, k, v = (np.asarray(x, dtype=f32) for x in (q, k, v))
    nh, hs = num_heads, H // num_heads
    bias = np.ascontiguousarray(np.broadcast_to(mask_bias, (B, 1, 1, T)), dtype=f32).reshape(B, T)  # [B, T]
    lengths = _key_lengths(bias)  # [B]
    out = np.empty((B, T, H), f32)
    probs = np.empty((B, nh, T, T), f32) if output_attentions else _NONE4
    # The reference divides the scores by sqrt(hs); multiplying by its float32 inverse
    # differs by at most an ulp (and not at all when hs is a power of 4, as 64 is).
    if position_bias is None:
        pbias = _NONE4
    else:
        pbias = np.ascontiguousarray(position_bias, dtype=f32)  # [1 or B, nh, T, T]
        if pbias.ndim != 4 or pbias.shape[0] not in (1, B) or pbias.shape[1:] != (nh, T, T):
            raise ValueError(f"position_bias has shape {list(pbias.shape)}, expected [1 or {B}, {nh}, {T}, {T}]")
    kernel = _attention_heads
    if vectors:
        if hs % NR:
            raise ValueError(f"the vector kernel needs a head size that is a multiple of {NR}, got {hs}")
        if not simd.RUNNABLE:
            raise RuntimeError("the vector kernel needs a CPU with AVX-512 (or NUMBA_DISABLE_JIT=1)")
        q, k, v = (x if x.strides[-1] == x.itemsize else np.ascontiguousarray(x) for x in (q, k, v))
        kernel = _attention_vectors
    kernel(q, k, v, bias, pbias, lengths, nh, f32(1.0 / math.sqrt(hs)), out, probs, output_attentions,
           work=B * T * T * H)  # multiply-adds of one of the two products
    return out, (probs if output_attentions else None)
