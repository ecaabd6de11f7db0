"""The dense layers, y = act(x @ W^T + b): twins of numbert.layers.linear / linear_act.

x is [M, K] (all B*T rows at once), W [N, K] as the checkpoint stores it (nn.Linear's
[out, in]). Four GEMMs, chosen by M and the CPU:

- M <= BLOCKED_M rows (a short input: one sentence of up to 128 tokens) on a CPU with AVX-512,
  N a multiple of NR = 32 (the encoder's dense layers at the BERT family's usual sizes; not
  a classifier of a few labels): linear_packed, a register tile on the weight packed once in
  panels of 32 output columns (pack; numbert.backend packs each weight at its first product
  and keeps it). An 8 x 32 block of y stays in 16 vector registers (kernels/simd.py)
  for the whole pass over K: each step loads 32 weights (two vectors, one contiguous stream
  per panel), broadcasts one number of each of the 8 rows of x, and does 16 vector multiply-
  adds; rows left over go 4, then 1 at a time. Each pass over a panel also asks the memory
  for a share of the next panel (kernels.simd.vprefetch; PREFETCH): at a few rows, reading the
  weights from memory sets the pace, and the CPU's own prefetcher kept that stream at about
  two thirds of the rate a plain sum over the same bytes reaches (BERT-base 16 x 768 GEMMs,
  2 threads: 11.5 GB/s, with the requests 15.7-16.7; a sum: 15.7). Measured (2-core Intel
  Xeon, Emerald Rapids, 2 threads, Numba's tbb layer; `python -m bench.simd_gemm`, weights from
  memory, bench/results/simd_gemm.md): the requests 1.08-2.01x the rate without them on
  BERT-base's shapes (one point 0.82x); the tile 1.23-2.27x OpenBLAS's there from 16 to 128
  rows, 0.80-1.56x on MiniLM's (whose 42 MiB of weights stay in cache, where OpenBLAS's kernel
  is as good); a forward pass 0.53-0.77x the time of the plain path at BERT-base 1x8-1x128,
  0.61-0.71x at MiniLM 1x8-1x64 and 1.04x at MiniLM 1x128 (BLAS there). The price: a second
  copy of each dense weight (+42 MiB for MiniLM, +279 MiB for BERT-base), made at the first
  product.
- more rows, on the same CPUs and panels: linear_packed's blocked GEMM (_linear_blocked). Each
  thread takes its own share of the rows (each reads every panel; a split by columns would
  have both threads read all of x instead) and walks them in chunks of MC = 192 rows: it
  copies the chunk's K numbers (in passes of KC = 768 when K is longer) into a buffer of its
  own, 12 rows interleaved per step of K (_pack_rows: 576 KiB, which stays in L2), then, panel
  by panel, runs a 12 x 32 tile over each 12 rows (_tile12: 24 vector registers of y, two loads
  of weights and 12 broadcasts from the one stream of x per step), asking meanwhile for the
  next panel's numbers (as above); the epilogue runs on the chunk just written. When M is not
  a multiple of 12, the last tile is padded with zero rows (_pack_last) and written through a
  12-row buffer, so the threads share whole tiles evenly. The copy into the buffer takes 20 us
  for 192 x 768 numbers (16 steps of 12 rows transposed in registers; 88 us one number at a
  time). The 12-row tile reading its rows in place was tried first: LLVM ran out of general
  registers for the 12 row pointers and spilled them inside the loop (in cache ~90 GFLOP/s a
  core against ~200 for _tile12). So was the epilogue on each tile just finished, in L1:
  BERT-base 8x128 took 505 ms against 466 with it on the chunk. Measured in forward passes
  against the BLAS path below (2-core Intel Xeon, Emerald Rapids, 2 threads, tbb layer;
  interleaved medians): MiniLM 1x256 0.56x the time, 32x16 0.71x,
  32x32 0.67x, 8x128 0.78x, 32x128 0.95x, 8x512 0.96x; BERT-base 1x160 0.82x, 2x128 0.92x,
  1x512 0.87x, 8x128 0.91-0.93x, 32x128 0.99-1.07x, 8x512 0.99-1.03x (three runs; at 4096 rows
  OpenBLAS on its own threads is as fast). The blocked GEMM at 32-128 rows
  instead of the 8-row tile: 1.11-1.34x slower (each thread reads every panel, where the weights
  come from memory).
- M <= SMALL_M otherwise (no AVX-512): a Numba GEMM that reads W in place. Each thread takes
  its own share of W's rows (output columns), and walks them in blocks of 4 rows of x x 4 rows
  of W: 16 running sums over K, which LLVM vectorises over K (16 lanes per AVX-512 register) and
  keeps in registers for the whole pass (each step loads 4 + 4 vectors and does 16 multiply-
  adds; nothing is stored until the block is done, then each sum is folded once). W is read
  once, front to back; x (a few rows) stays in L2. Then bias + activation
  (kernels.gelu.bias_act_span) over the rows just written.
- more rows otherwise: BLAS sgemm through NumPy, then the same bias + activation as a Numba pass.
  From BLAS_PARTS_M = 256 rows, in one part of W's rows per thread, each part a
  single-threaded BLAS call (_BlasParts); below that, on BLAS's own threads, because waking
  a sleeping thread costs 0.1-0.8 ms on these machines (MiniLM 1x128, whose GEMMs take
  0.2-1.5 ms, ran 1.6x slower in parts; BERT-base 1x128 the same either way).

Why not BLAS for short inputs. OpenBLAS packs W into its own layout at every call, which for
a few rows costs as much as the product. Measured on BERT-base's 48 dense layers run in
sequence, each weight read from memory as in a forward pass (2-core AMD EPYC Zen 4, 2
threads, fp32): with x [16, K] sgemm ran at 44-58 GFLOP/s against 69-84 for the kernel here,
at 32 rows 85 against 100-108, at 64 rows 123-127 against 114-138, at 256 rows 168 against
135. From about 64 rows on, OpenBLAS's register-blocked kernel on packed panels wins, so it
keeps them. (`python -m bench.gemm` has the kernel as its "numbert" column, at every row
count.)

A cost of BLAS beside Numba, measured: OpenBLAS's worker threads spin for a while after each
call (its THREAD_TIMEOUT, read once when the library loads) on the cores the next Numba
kernel runs on. The attention kernel of BERT-base 8x128 ran at 35 GFLOP/s right after an
sgemm against 83 alone; in a forward pass on this kernel's GEMM alone (no BLAS at all)
attention took 62 ms instead of 100. The small-M path avoids that by not calling BLAS; the
large-M path calls BLAS single-threaded on threads of its own, so BLAS's pool is never woken.
Measured in a forward pass, parts against BLAS's own threads: BERT-base 8x128 0.97x,
32x128 0.97x, 8x512 0.88x; MiniLM 8x128 0.95x, 32x128 0.88x, 8x512 0.83x.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .gelu import ACT_CODES, bias_act_, bias_act_span
from .jit import jit, launch_threads, pjit, prange
from .simd import V, vadd, vbroadcast, vbroadcast_at, vfma, vload, vprefetch, vstore, vzero, vzip_hi, vzip_lo

f32 = np.float32

BLOCKED_M = 128  # linear_packed: up to this many rows the 8-row tile, each thread its own columns; above, the blocked GEMM
MR = 12  # rows of x per tile of the blocked GEMM (_tile12: 24 of the 32 vector registers hold its 12 x 32 block of y)
MC = 192  # rows of x per chunk of the blocked GEMM, packed: MC x KC numbers (576 KiB at KC = 768) stay in L2
KC = 768  # steps of K per pass of the blocked GEMM; a longer K is summed in passes of KC
SMALL_M = 64  # up to this many rows, the Numba GEMM on W in place (other CPUs); above, BLAS (see the docstring)
BLAS_PARTS_M = 256  # from this many rows, BLAS single-threaded in parts on numbert's threads
MT = 128  # rows of x per tile of the Numba GEMM: 128 x K floats stay in L2 (384 KiB at K = 768)


@jit
def _dot4x4(x, w, y, i, n):  # rows i..i+3 of x [M, K], rows n..n+3 of w [N, K] -> y[i:i+4, n:n+4]
    K = x.shape[1]
    x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
    w0, w1, w2, w3 = w[n], w[n + 1], w[n + 2], w[n + 3]
    c00 = c01 = c02 = c03 = c10 = c11 = c12 = c13 = f32(0.0)
    c20 = c21 = c22 = c23 = c30 = c31 = c32 = c33 = f32(0.0)
    for k in range(K):
        a0, a1, a2, a3 = x0[k], x1[k], x2[k], x3[k]
        b0, b1, b2, b3 = w0[k], w1[k], w2[k], w3[k]
        c00 += a0 * b0
        c01 += a0 * b1
        c02 += a0 * b2
        c03 += a0 * b3
        c10 += a1 * b0
        c11 += a1 * b1
        c12 += a1 * b2
        c13 += a1 * b3
        c20 += a2 * b0
        c21 += a2 * b1
        c22 += a2 * b2
        c23 += a2 * b3
        c30 += a3 * b0
        c31 += a3 * b1
        c32 += a3 * b2
        c33 += a3 * b3
    y[i, n], y[i, n + 1], y[i, n + 2], y[i, n + 3] = c00, c01, c02, c03
    y[i + 1, n], y[i + 1, n + 1], y[i + 1, n + 2], y[i + 1, n + 3] = c10, c11, c12, c13
    y[i + 2, n], y[i + 2, n + 1], y[i + 2, n + 2], y[i + 2, n + 3] = c20, c21, c22, c23
    y[i + 3, n], y[i + 3, n + 1], y[i + 3, n + 2], y[i + 3, n + 3] = c30, c31, c32, c33


@jit
def _dot(a, b):  # [K] . [K] -> float32
    s = f32(0.0)
    for k in range(a.shape[0]):
        s += a[k] * b[k]
    return s


@pjit
def _linear_tiles(x, w, bias, code, parts, y):  # [M, K], [N, K], [N], int, int -> y [M, N] written
    M = x.shape[0]
    N = w.shape[0]
    groups = N // 4  # output columns in groups of four; the N % 4 left over go to the last part
    for p in prange(parts):  # one part of the columns per thread: each reads its rows of W only
        n0 = groups * p // parts * 4
        n4 = groups * (p + 1) // parts * 4
        n1 = N if p == parts - 1 else n4
        for i0 in range(0, M, MT):  # a tile of MT rows of x, which stays in L2 while W's rows pass
            i1 = min(M, i0 + MT)
            i4 = i0 + (i1 - i0) // 4 * 4  # rows i0..i4 go in blocks of four
            for n in range(n0, n4, 4):
                for i in range(i0, i4, 4):
                    _dot4x4(x, w, y, i, n)
            for i in range(i4, i1):  # rows left over
                for n in range(n0, n4):
                    y[i, n] = _dot(x[i], w[n])
            for n in range(n4, n1):  # columns left over
                for i in range(i0, i1):
                    y[i, n] = _dot(x[i], w[n])
            for i in range(i0, i1):  # the epilogue, on the tile just written (still in cache)
                bias_act_span(y[i], bias, code, n0, n1)


# ---------------------------------------------------------------- short inputs on packed weights

NR = 2 * V  # output columns per panel of a packed weight: two 16-lane vectors

# Asking ahead for the weights (kernels.simd.vprefetch; see the module docstring). With one pass
# over each panel (up to 7 rows), the pass asks PREFETCH numbers (64 steps of K, 8 KiB) ahead of
# itself; with R passes, pass r asks for the r-th of R shares of the next panel, so that the
# stream from memory goes on while the later passes read the panel from cache. 0: no requests.
# (prefetcht0 and prefetcht1 measured the same.)
PREFETCH = 64 * NR


def pack(weight):  # [N, K] -> [N / NR, K * NR]
    """The weight as panels of NR output columns, each panel [K, NR] row-major: the tile below
    reads one panel front to back, 32 weights (two vectors) per step of K. Made once per weight
    (numbert.backend keeps them); N must be a multiple of NR."""
    N, K = weight.shape
    if N % NR:
        raise ValueError(f"pack: {N} output columns, expected a multiple of {NR}")
    panels = np.asarray(weight, dtype=f32).reshape(N // NR, NR, K).transpose(0, 2, 1)  # [P, K, NR]
    return np.ascontiguousarray(panels).reshape(N // NR, K * NR)


@jit
def _store2(row, n0, lo, hi):  # row[n0:n0+NR] = the two vectors
    vstore(row, n0, lo)
    vstore(row, n0 + V, hi)


@jit
def _ahead(panel, k, ahead, pace):  # at step k, ask for the numbers at ahead + k * pace (and pace / 2 on); 0: none
    if ahead:
        vprefetch(panel, ahead + k * pace)
        vprefetch(panel, ahead + k * pace + pace // 2)


@jit
def _tile8(x, xi, xo, K, panel, y, yi, n0, ahead, pace):  # x[xi:xi+8, xo:xo+K] @ one panel [K * NR] -> y[yi:yi+8, n0:n0+NR]
    # 16 vectors of y (8 rows x 2) stay in registers for the whole pass over K; each step loads
    # two vectors of weights and multiply-adds them with one broadcast number of each row.
    # (x's offsets let kernels.attention run the same tile on a head's columns.) `ahead`: see
    # PREFETCH.
    x0, x1, x2, x3, x4, x5, x6, x7 = x[xi], x[xi + 1], x[xi + 2], x[xi + 3], x[xi + 4], x[xi + 5], x[xi + 6], x[xi + 7]
    c00, c01, c10, c11, c20, c21, c30, c31 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
    c40, c41, c50, c51, c60, c61, c70, c71 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
    for k in range(K):
        _ahead(panel, k, ahead, pace)
        b0 = vload(panel, k * NR)
        b1 = vload(panel, k * NR + V)
        a = vbroadcast_at(x0, xo + k)
        c00, c01 = vfma(a, b0, c00), vfma(a, b1, c01)
        a = vbroadcast_at(x1, xo + k)
        c10, c11 = vfma(a, b0, c10), vfma(a, b1, c11)
        a = vbroadcast_at(x2, xo + k)
        c20, c21 = vfma(a, b0, c20), vfma(a, b1, c21)
        a = vbroadcast_at(x3, xo + k)
        c30, c31 = vfma(a, b0, c30), vfma(a, b1, c31)
        a = vbroadcast_at(x4, xo + k)
        c40, c41 = vfma(a, b0, c40), vfma(a, b1, c41)
        a = vbroadcast_at(x5, xo + k)
        c50, c51 = vfma(a, b0, c50), vfma(a, b1, c51)
        a = vbroadcast_at(x6, xo + k)
        c60, c61 = vfma(a, b0, c60), vfma(a, b1, c61)
        a = vbroadcast_at(x7, xo + k)
        c70, c71 = vfma(a, b0, c70), vfma(a, b1, c71)
    _store2(y[yi], n0, c00, c01)
    _store2(y[yi + 1], n0, c10, c11)
    _store2(y[yi + 2], n0, c20, c21)
    _store2(y[yi + 3], n0, c30, c31)
    _store2(y[yi + 4], n0, c40, c41)
    _store2(y[yi + 5], n0, c50, c51)
    _store2(y[yi + 6], n0, c60, c61)
    _store2(y[yi + 7], n0, c70, c71)


@jit
def _tile4(x, xi, xo, K, panel, y, yi, n0, ahead, pace):  # 4 rows x one panel: the same, for 4 of the rows left over
    x0, x1, x2, x3 = x[xi], x[xi + 1], x[xi + 2], x[xi + 3]
    c00, c01, c10, c11, c20, c21, c30, c31 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
    for k in range(K):
        _ahead(panel, k, ahead, pace)
        b0 = vload(panel, k * NR)
        b1 = vload(panel, k * NR + V)
        a = vbroadcast_at(x0, xo + k)
        c00, c01 = vfma(a, b0, c00), vfma(a, b1, c01)
        a = vbroadcast_at(x1, xo + k)
        c10, c11 = vfma(a, b0, c10), vfma(a, b1, c11)
        a = vbroadcast_at(x2, xo + k)
        c20, c21 = vfma(a, b0, c20), vfma(a, b1, c21)
        a = vbroadcast_at(x3, xo + k)
        c30, c31 = vfma(a, b0, c30), vfma(a, b1, c31)
    _store2(y[yi], n0, c00, c01)
    _store2(y[yi + 1], n0, c10, c11)
    _store2(y[yi + 2], n0, c20, c21)
    _store2(y[yi + 3], n0, c30, c31)


@jit
def _tile1(x, xi, xo, K, panel, y, yi, n0, ahead, pace):  # one row x one panel: the last rows left over
    xr = x[xi]
    c0, c1 = vzero(), vzero()
    for k in range(K):
        _ahead(panel, k, ahead, pace)
        a = vbroadcast_at(xr, xo + k)
        c0, c1 = vfma(a, vload(panel, k * NR), c0), vfma(a, vload(panel, k * NR + V), c1)
    _store2(y[yi], n0, c0, c1)


@jit
def _put2(row, n0, lo, hi, more):  # row[n0:n0+NR] = the two vectors, or += them (more)
    if more:
        lo, hi = vadd(vload(row, n0), lo), vadd(vload(row, n0 + V), hi)
    _store2(row, n0, lo, hi)


@jit
def _tile12(xp, xo, kc, panel, po, y, yi, n0, more, ahead, pace):
    # 12 packed rows of x, xp[xo + k*MR + r] for k < kc, @ panel[po + k*NR ...] -> y[yi:yi+12, n0:n0+NR]
    # (more: add to what y holds, the sum of the K steps before). The tile of _tile8 with 12
    # rows: 24 vectors of y in registers, each step two loads of weights and 12 broadcasts from
    # one contiguous stream of x (12 rows read in place need 12 pointers, more than the CPU's
    # general registers, and LLVM then spilled them inside the loop).
    c00, c01, c10, c11, c20, c21, c30, c31 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
    c40, c41, c50, c51, c60, c61, c70, c71 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
    c80, c81, c90, c91, ca0, ca1, cb0, cb1 = vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero(), vzero()
    for k in range(kc):
        _ahead(panel, k, ahead, pace)
        b0 = vload(panel, po + k * NR)
        b1 = vload(panel, po + k * NR + V)
        o = xo + k * MR
        a = vbroadcast_at(xp, o)
        c00, c01 = vfma(a, b0, c00), vfma(a, b1, c01)
        a = vbroadcast_at(xp, o + 1)
        c10, c11 = vfma(a, b0, c10), vfma(a, b1, c11)
        a = vbroadcast_at(xp, o + 2)
        c20, c21 = vfma(a, b0, c20), vfma(a, b1, c21)
        a = vbroadcast_at(xp, o + 3)
        c30, c31 = vfma(a, b0, c30), vfma(a, b1, c31)
        a = vbroadcast_at(xp, o + 4)
        c40, c41 = vfma(a, b0, c40), vfma(a, b1, c41)
        a = vbroadcast_at(xp, o + 5)
        c50, c51 = vfma(a, b0, c50), vfma(a, b1, c51)
        a = vbroadcast_at(xp, o + 6)
        c60, c61 = vfma(a, b0, c60), vfma(a, b1, c61)
        a = vbroadcast_at(xp, o + 7)
        c70, c71 = vfma(a, b0, c70), vfma(a, b1, c71)
        a = vbroadcast_at(xp, o + 8)
        c80, c81 = vfma(a, b0, c80), vfma(a, b1, c81)
        a = vbroadcast_at(xp, o + 9)
        c90, c91 = vfma(a, b0, c90), vfma(a, b1, c91)
        a = vbroadcast_at(xp, o + 10)
        ca0, ca1 = vfma(a, b0, ca0), vfma(a, b1, ca1)
        a = vbroadcast_at(xp, o + 11)
        cb0, cb1 = vfma(a, b0, cb0), vfma(a, b1, cb1)
    _put2(y[yi], n0, c00, c01, more)
    _put2(y[yi + 1], n0, c10, c11, more)
    _put2(y[yi + 2], n0, c20, c21, more)
    _put2(y[yi + 3], n0, c30, c31, more)
    _put2(y[yi + 4], n0, c40, c41, more)
    _put2(y[yi + 5], n0, c50, c51, more)
    _put2(y[yi + 6], n0, c60, c61, more)
    _put2(y[yi + 7], n0, c70, c71, more)
    _put2(y[yi + 8], n0, c80, c81, more)
    _put2(y[yi + 9], n0, c90, c91, more)
    _put2(y[yi + 10], n0, ca0, ca1, more)
    _put2(y[yi + 11], n0, cb0, cb1, more)


@jit
def _zip_round(r):  # 16 vectors -> 16 vectors; four rounds transpose a 16 x 16 block
    return (vzip_lo(r[0], r[8]), vzip_hi(r[0], r[8]), vzip_lo(r[1], r[9]), vzip_hi(r[1], r[9]),
            vzip_lo(r[2], r[10]), vzip_hi(r[2], r[10]), vzip_lo(r[3], r[11]), vzip_hi(r[3], r[11]),
            vzip_lo(r[4], r[12]), vzip_hi(r[4], r[12]), vzip_lo(r[5], r[13]), vzip_hi(r[5], r[13]),
            vzip_lo(r[6], r[14]), vzip_hi(r[6], r[14]), vzip_lo(r[7], r[15]), vzip_hi(r[7], r[15]))


@jit
def _pack_rows(x, r0, blocks, k0, kc, xp):  # x[r0 : r0 + blocks*MR, k0 : k0+kc] -> xp, block b at b*kc*MR as [kc, MR]
    # 16 steps of K at a time: the block's 12 rows (and the last one again, to make 16) as 16
    # vectors, transposed in registers; each column (12 numbers wanted, 16 stored) is written
    # over the first four of the next one, which is stored after it. xp has V - MR numbers to
    # spare past its last block for the last store.
    for b in range(blocks):
        at = b * kc * MR
        i = r0 + b * MR
        k = 0
        while k + V <= kc:
            c = k0 + k
            r = (vload(x[i], c), vload(x[i + 1], c), vload(x[i + 2], c), vload(x[i + 3], c),
                 vload(x[i + 4], c), vload(x[i + 5], c), vload(x[i + 6], c), vload(x[i + 7], c),
                 vload(x[i + 8], c), vload(x[i + 9], c), vload(x[i + 10], c), vload(x[i + 11], c),
                 vload(x[i + 11], c), vload(x[i + 11], c), vload(x[i + 11], c), vload(x[i + 11], c))
            r = _zip_round(_zip_round(_zip_round(_zip_round(r))))
            for d in range(V):
                vstore(xp, at + (k + d) * MR, r[d])
            k += V
        for r in range(MR):  # the steps left over, one number at a time
            row = x[i + r]
            for kk in range(k, kc):
                xp[at + kk * MR + r] = row[k0 + kk]


@jit
def _pack_last(x, i, k0, kc, xp, at):  # rows i..M-1 of x[:, k0:k0+kc] (fewer than MR) -> one block of xp at `at`, zeros after
    M = x.shape[0]
    for k in range(kc):
        for r in range(MR):
            xp[at + k * MR + r] = x[i + r, k0 + k] if i + r < M else f32(0.0)


@pjit
def _linear_blocked(x, panels, bias, code, parts, mc, kc_max, ahead, y):
    # [M, K], [P, K * NR], [P * NR], int, int, int (a multiple of MR), int, int -> y [M, P * NR]
    M, K = x.shape
    P = panels.shape[0]
    full = M // MR  # tiles of MR rows; when M % MR rows are left, one more tile, padded with zero rows
    blocks = (M + MR - 1) // MR
    for t in prange(parts):  # one share of the tiles per thread (each reads every panel)
        b0 = blocks * t // parts
        b1 = blocks * (t + 1) // parts
        xp = np.empty(mc * min(kc_max, K) + V - MR, f32)  # this thread's chunk of x, packed (see _pack_rows)
        last = np.empty((MR if b1 > full else 0, P * NR), f32)  # the padded tile's rows of y
        for c0 in range(b0 * MR, b1 * MR, mc):
            c1 = min(c0 + mc, b1 * MR)
            n = (c1 - c0) // MR  # tiles per panel
            whole = min(n, full - c0 // MR)  # of which whole (the padded one, if here, comes last)
            pace = max(1, NR // n)
            for k0 in range(0, K, kc_max):
                kc = min(kc_max, K - k0)
                _pack_rows(x, c0, whole, k0, kc, xp)
                if whole < n:
                    _pack_last(x, c0 + whole * MR, k0, kc, xp, whole * kc * MR)
                for p in range(P):
                    panel = panels[p]
                    for b in range(n):  # tile b also asks for its share of the next panel's steps k0..k0+kc
                        at = (K * NR + k0 * NR + b * kc * pace) if ahead else 0
                        if b < whole:
                            _tile12(xp, b * kc * MR, kc, panel, k0 * NR, y, c0 + b * MR, p * NR, k0 > 0, at, pace)
                        else:
                            _tile12(xp, b * kc * MR, kc, panel, k0 * NR, last, 0, p * NR, k0 > 0, at, pace)
            if whole < n:  # the padded tile's real rows
                for r in range(M - (c0 + whole * MR)):
                    y[c0 + whole * MR + r, :] = last[r]
            for i in range(c0, min(c1, M)):  # the epilogue on the chunk just written
                bias_act_span(y[i], bias, code, 0, P * NR)


@pjit
def _linear_panels(x, panels, bias, code, parts, ahead, y):  # [M, K], [P, K * NR], [P * NR], int, int, int -> y [M, P * NR]
    M, K = x.shape
    P = panels.shape[0]
    passes = M // 8 + (M % 8) // 4 + M % 4  # tiles per panel
    pace = max(1, NR // passes)
    for t in prange(parts):  # one share of the panels (output columns) per thread
        p0 = P * t // parts
        p1 = P * (t + 1) // parts
        for p in range(p0, p1):
            panel = panels[p]
            i = 0
            r = 0
            while i < M:
                at = ((K * NR if passes > 1 else ahead) + r * K * pace) if ahead else 0
                if i + 8 <= M:
                    _tile8(x, i, 0, K, panel, y, i, p * NR, at, pace)
                    i += 8
                elif i + 4 <= M:
                    _tile4(x, i, 0, K, panel, y, i, p * NR, at, pace)
                    i += 4
                else:
                    _tile1(x, i, 0, K, panel, y, i, p * NR, at, pace)
                    i += 1
                r += 1
        for i in range(M):  # the epilogue, on this thread's columns (M <= BLOCKED_M rows: still in cache)
            bias_act_span(y[i], bias, code, p0 * NR, p1 * NR)


def linear_packed(x, panels, bias, act="identity"):  # [..., K], [N / NR, K * NR] (pack), [N], name -> [..., N]
    """act(x @ W^T + b) with W given as pack(W): the dense layers on CPUs with AVX-512 (numbert.backend),
    the 8-row tile up to BLOCKED_M rows, the blocked GEMM above."""
    *lead, K = x.shape
    x2 = np.ascontiguousarray(x, dtype=f32).reshape(-1, K)  # [M, K]
    M, N = x2.shape[0], panels.shape[0] * NR
    y = np.empty((M, N), dtype=f32)  # [M, N]
    b = np.ascontiguousarray(bias, dtype=f32)  # [N]
    if M <= BLOCKED_M:
        _linear_panels(x2, panels, b, ACT_CODES[act], launch_threads(), PREFETCH, y, work=M * N * K)
    else:
        _linear_blocked(x2, panels, b, ACT_CODES[act], launch_threads(), MC, KC, PREFETCH, y, work=M * N * K)
    return y.reshape(*lead, N)


def _linear(x, weight, bias, act):  # [..., in], [out, in], [out], name -> [..., out]
    *lead, n_in = x.shape
    x2 = np.ascontiguousarray(x, dtype=f32).reshape(-1, n_in)  # [M, K]: all B*T rows at once
    if x2.shape[0] >= BLAS_PARTS_M:
        y = bias_act_(_blas_gemm(x2, weight, launch_threads()), bias, act)  # [M, N]
    elif x2.shape[0] > SMALL_M:
        # BLAS on its own threads: a GEMM this size is over before the parts' threads would wake
        y = bias_act_(x2 @ weight.T, bias, act)  # [M, N]
    else:
        w = np.ascontiguousarray(weight, dtype=f32)  # [N, K] (already so for a loaded checkpoint)
        y = np.empty((x2.shape[0], w.shape[0]), dtype=f32)  # [M, N]
        _linear_tiles(x2, w, np.ascontiguousarray(bias, dtype=f32), ACT_CODES[act], launch_threads(), y)
    return y.reshape(*lead, weight.shape[0])


class _BlasParts:
    """The large GEMMs on BLAS, one part of W's rows (output columns) per thread, each part a
    single-threaded sgemm: this thread runs one, a small pool of Python threads the others
    (NumPy releases the GIL inside BLAS).

    Why not BLAS's own threads: after a call OpenBLAS's workers spin for a while, on the cores
    the next Numba kernel runs on (see the module docstring). Single-threaded, a BLAS call never
    wakes them, and the Python pool's threads sleep on a queue. The BLAS libraries are set to
    one thread for the length of the call and then given back their own count (threadpoolctl;
    a ctypes call each way), under a lock, so concurrent callers cannot leave them at one. A
    forked child starts with a new lock and a new pool (the parent's threads do not exist there).
    Measured on BERT-base's 48 dense layers in sequence (2-core AMD EPYC Zen 4, 2 threads):
    97-99% of OpenBLAS's own 2-thread rate at 128, 1024 and 4096 rows.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._pool = None  # ThreadPoolExecutor of self._workers threads, made at the first call
        self._workers = 0
        self._blas = None  # threadpoolctl's controllers of the BLAS libraries loaded
        os.register_at_fork(after_in_child=self._after_fork_in_child)

    def _after_fork_in_child(self):
        self._lock = threading.Lock()
        self._pool, self._workers = None, 0

    def __call__(self, x, weight, parts):  # [M, K], [N, K], int -> y [M, N] = x @ W^T
        N = weight.shape[0]
        y = np.empty((x.shape[0], N), dtype=f32)  # [M, N]
        parts = max(1, min(parts, N))
        bounds = [N * p // parts for p in range(parts + 1)]
        with self._lock:
            if self._blas is None:
                from threadpoolctl import ThreadpoolController

                self._blas = ThreadpoolController().select(user_api="blas").lib_controllers
            if self._pool is None or self._workers < parts - 1:
                self._workers = max(1, parts - 1)
                self._pool = ThreadPoolExecutor(self._workers, thread_name_prefix="numbert-gemm")
            counts = [(lib, lib.num_threads) for lib in self._blas]
            for lib, _ in counts:
                lib.set_num_threads(1)
            try:
                # BLAS reads each slice of the [out, in] weight transposed in place (no copy) and
                # writes its columns of y in place (a strided view BLAS takes as is)
                rest = [self._pool.submit(np.matmul, x, weight[b0:b1].T, out=y[:, b0:b1])
                        for b0, b1 in zip(bounds[1:-1], bounds[2:])]
                np.matmul(x, weight[:bounds[1]].T, out=y[:, :bounds[1]])
                for part in rest:
                    part.result()
            finally:
                for lib, n in counts:
                    lib.set_num_threads(n)
        return y


_blas_gemm = _BlasParts()


def linear(x, weight, bias):  # [..., in], [out, in], [out] -> [..., out]
    return _linear(x, weight, bias, "identity")


def linear_act(x, weight, bias, act):  # [..., in], [out, in], [out], function name -> [..., out]
    # BertIntermediate: the GEMM, then bias + activation (gelu / gelu_tanh / relu) on its output.
    return _linear(x, weight, bias, act)
