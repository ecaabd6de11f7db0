"""Every Numba kernel against its NumPy twin (numbert.layers), the backend adapters
(numbert.backend), and the numba backend against the numpy backend on whole checkpoints.

Shapes are small so the file also runs quickly with NUMBA_DISABLE_JIT=1, where the same
kernel code runs as plain Python (CI does both).
"""

from __future__ import annotations

import ast
import importlib
import inspect
import math
import sys
from pathlib import Path

import numba
import numpy as np
import pytest

import numbert
import numbert.kernels as K
import numbert.layers as R
from numbert.backend import NUMPY, NumbaOps, get_ops
from numbert.config import ACTIVATIONS
from numbert.weights import Linear, SelfAttention, iter_tensors
from conftest import max_diff_at_tokens

f32 = np.float32
JIT_DISABLED = bool(numba.config.DISABLE_JIT)
TOL = 1e-5

# (B, T, H, nh): T=1, odd sizes, a head size that is not a power of two
ATTENTION_SHAPES = [(1, 1, 8, 2), (2, 5, 12, 3), (3, 17, 32, 4), (2, 33, 40, 5)]


JIT = importlib.import_module("numbert.kernels.jit")


@pytest.fixture(autouse=True, params=["serial twin", "parallel launch"])
def launch(request, monkeypatch):
    """Every test twice: the shapes here are small, so a parallel kernel runs its serial twin on
    the calling thread (jit.SERIAL_BELOW); with the threshold at 0, the same calls launch on
    Numba's pool."""
    if request.param == "parallel launch":
        monkeypatch.setattr(JIT, "SERIAL_BELOW", 0)
    return request.param


def test_serial_twins_cache_apart():
    # Numba names cache files after the function's qualified name and does not key them on
    # parallel=True/False: a twin under the same name would load the other's machine code.
    kernels = [v for m in list(sys.modules.values()) if (getattr(m, "__name__", "") or "").startswith("numbert.kernels.")
               for v in vars(m).values() if isinstance(v, JIT.ParallelKernel)]
    assert len(kernels) >= 6
    for kernel in kernels:
        assert kernel.serial is not kernel.dispatcher
        serial, parallel = (getattr(f, "py_func", f) for f in (kernel.serial, kernel.dispatcher))  # plain under DISABLE_JIT
        assert serial.__qualname__ == parallel.__qualname__ + "_serial"


def rand(rng, *shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(f32)


def assert_twins(ours, ref, tol=TOL, what=""):
    """Numba's output against its NumPy twin's (a kernel's, or a backend's): same shape, float32,
    max abs diff <= tol."""
    ours, ref = np.asarray(ours), np.asarray(ref)
    assert ours.shape == ref.shape, f"{what}: shape {ours.shape} != reference {ref.shape}"
    assert ours.dtype == np.float32, f"{what}: dtype {ours.dtype}, expected float32"
    diff = float(np.abs(ours.astype(np.float64) - ref.astype(np.float64)).max()) if ref.size else 0.0
    assert diff <= tol, f"{what}: max |kernel - numpy| = {diff:.3g} > {tol:g}"


def masks(rng, B, T):
    """Attention masks to try: no padding, right padding, a hole, and a fully padded row."""
    full = np.ones((B, T), np.int64)
    right = full.copy()
    right[0, max(1, T // 2):] = 0
    holes = (rng.random((B, T)) > 0.3).astype(np.int64)
    holes[:, 0] = 1
    dead = right.copy()
    dead[-1, :] = 0  # a sequence with no real token at all
    return {"full": full, "right": right, "holes": holes, "dead": dead}


# ---------------------------------------------------------------- the contract


def test_kernels_have_every_layer_function_with_the_same_signature():
    # The same parameters in the same order; only the reference takes the trace's `record`.
    public = [n for n, f in vars(R).items()
              if inspect.isfunction(f) and not n.startswith("_") and f.__module__ == R.__name__]
    assert set(public) == set(K.__all__), "numbert.layers and numbert.kernels must have the same functions"
    for name in public:
        ours = list(inspect.signature(getattr(K, name)).parameters)
        theirs = [p for p in inspect.signature(getattr(R, name)).parameters if p != "record"]
        assert ours == theirs, f"kernels.{name}{ours} != layers.{name}{theirs}"


def test_kernels_are_a_leaf():
    # kernels/ takes arrays and numbers: no module in it imports numbert (or reaches above itself).
    folder = Path(K.__file__).parent
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                assert node.level <= 1, f"{path.name}: `from {'.' * node.level}{node.module or ''} import ...`"
                assert node.level == 1 or not (node.module or "").startswith("numbert"), f"{path.name} imports numbert"
            elif isinstance(node, ast.Import):
                assert not any(a.name.startswith("numbert") for a in node.names), f"{path.name} imports numbert"


def test_backend_adapters_have_the_same_interface():
    numba_ops = get_ops("numba")
    assert get_ops("numpy") is NUMPY and isinstance(numba_ops, NumbaOps)
    for name in ("embeddings", "attention_mask_bias", "qkv", "attention", "linear", "linear_act", "add_layer_norm"):
        ours = list(inspect.signature(getattr(numba_ops, name)).parameters)
        theirs = list(inspect.signature(getattr(NUMPY, name)).parameters)
        assert ours == theirs or ours + ["record"] == theirs, f"{name}: numba {ours} != numpy {theirs}"
    with pytest.raises(ValueError, match="backend must be one of auto, numba, numpy, found 'torch'"):
        get_ops("torch")


def test_jit_options_are_decided_in_one_place():
    from numbert.kernels import jit

    assert "nnan" not in jit.FASTMATH and "ninf" not in jit.FASTMATH  # masked rows use finfo.min
    if not JIT_DISABLED:
        from numbert.kernels.softmax import _softmax_rows

        assert type(_softmax_rows._cache).__name__ != "NullCache"  # cache=True
        assert _softmax_rows.targetoptions["parallel"] is True


# ---------------------------------------------------------------- elementwise


@pytest.mark.parametrize("name", ["erf", "gelu", "gelu_tanh", "relu"])
@pytest.mark.parametrize("shape", [(1,), (3, 7), (2, 1, 37)])
def test_activation(name, shape):
    rng = np.random.default_rng(len(shape))
    x = rand(rng, *shape, scale=3.0)
    x.flat[0] = 0.0
    assert_twins(getattr(K, name)(x), getattr(R, name)(x), what=name)


@pytest.mark.parametrize("name", ["erf", "gelu", "gelu_tanh"])
def test_activation_tails(name):
    # large |x|: erf saturates at +-1, GELU goes to x or 0; exp/tanh must not overflow
    x = np.array([-1e4, -90.0, -30.0, -9.5, -4.0, -1e-6, 0.0, 1e-6, 4.0, 9.5, 30.0, 90.0, 1e4], f32)
    x = np.tile(x, 3)  # 39: two whole vectors (the epilogue's vector loop on AVX-512) and a tail of 7
    ours, ref = getattr(K, name)(x), getattr(R, name)(x)
    assert np.isfinite(ours).all()
    np.testing.assert_allclose(ours, ref, rtol=1e-6, atol=TOL)


def test_erf_is_the_true_erf():
    x = np.linspace(-6, 6, 1201, dtype=f32)
    exact = np.array([math.erf(v) for v in x.astype(np.float64)])
    assert np.abs(K.erf(x) - exact).max() < 1e-6


@pytest.mark.parametrize("T", [1, 5, 16])
def test_softmax(T):
    rng = np.random.default_rng(T)
    x = rand(rng, 2, 3, T, scale=10.0)
    assert_twins(K.softmax(x), R.softmax(x), what="softmax")
    big = np.full((2, T), 1e30, f32)  # equal huge logits: uniform, no overflow
    assert_twins(K.softmax(big), R.softmax(big), what="softmax of equal huge logits")


# ---------------------------------------------------------------- LayerNorm


@pytest.mark.parametrize("shape", [(1, 1, 8), (2, 5, 12), (3, 37)])
@pytest.mark.parametrize("eps", [1e-12, 1e-5])
def test_layer_norms(shape, eps):
    rng = np.random.default_rng(shape[-1])
    H = shape[-1]
    x, res = rand(rng, *shape, scale=4.0), rand(rng, *shape)
    w, b = rand(rng, H), rand(rng, H)
    assert_twins(K.layer_norm(x, w, b, eps), R.layer_norm(x, w, b, eps), what="layer_norm")
    assert_twins(K.add_layer_norm(x, res, w, b, eps), R.add_layer_norm(x, res, w, b, eps), what="add_layer_norm")
    x0 = x.copy()
    K.add_layer_norm(x, res, w, b, eps)
    assert np.array_equal(x, x0), "add_layer_norm must not modify its input"


def test_layer_norm_of_a_constant_row():
    x = np.full((2, 16), 3.0, f32)  # zero variance: the output is the bias
    w, b = np.ones(16, f32), np.arange(16, dtype=f32)
    assert_twins(K.layer_norm(x, w, b, 1e-12), R.layer_norm(x, w, b, 1e-12), what="layer_norm, constant row")


# ---------------------------------------------------------------- dense layers


@pytest.mark.parametrize("lead", [(1,), (1, 1), (2, 5)])
def test_linear(lead):
    rng = np.random.default_rng(len(lead))
    x, w, b = rand(rng, *lead, 13), rand(rng, 7, 13), rand(rng, 7)
    assert_twins(K.linear(x, w, b), R.linear(x, w, b), what="linear")


@pytest.mark.parametrize("act", sorted(set(ACTIVATIONS.values())))
@pytest.mark.parametrize("lead", [(1, 1), (2, 5)])
def test_linear_act(act, lead):
    rng = np.random.default_rng(len(lead))
    x, w, b = rand(rng, *lead, 12), rand(rng, 37, 12), rand(rng, 37)
    assert_twins(K.linear_act(x, w, b, act), R.linear_act(x, w, b, act), what=f"linear_act {act}")


# the module: numbert.kernels.linear is also the name of its function `linear`
LINEAR = importlib.import_module("numbert.kernels.linear")


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("M, N", [(1, 1), (3, 2), (4, 7), (17, 50), (131, 9)])
def test_small_m_gemm_tiles(M, N, parts):
    # The Numba GEMM on its own, at any M (numbert calls it up to SMALL_M rows): blocks of 4x4,
    # the rows and columns left over, more than one MT tile (131 rows), parts with no column
    # group (N < 4 * parts), the GELU epilogue on each tile.
    rng = np.random.default_rng(M * 100 + N)
    x, w, b = rand(rng, M, 24), rand(rng, N, 24), rand(rng, N)
    y = np.full((M, N), np.nan, f32)  # every element must be written
    LINEAR._linear_tiles(x, w, b, 1, parts, y)  # code 1: exact GELU
    assert_twins(y, R.linear_act(x, w, b, "gelu"), what=f"small-M GEMM {M}x{N}, {parts} parts")


@pytest.mark.parametrize("M", [LINEAR.SMALL_M, LINEAR.SMALL_M + 1, LINEAR.BLAS_PARTS_M])
def test_linear_either_gemm(M):
    # up to SMALL_M rows the Numba GEMM, above it BLAS (from BLAS_PARTS_M rows in parts): each
    # equal to the reference, and a strided x (a view, as a column slice of the fused QKV
    # output is) is read correctly
    rng = np.random.default_rng(M)
    wide, w, b = rand(rng, M, 2 * 20), rand(rng, 11, 20), rand(rng, 11)
    x = wide[:, ::2]  # [M, 20], not contiguous
    assert_twins(K.linear(x, w, b), R.linear(x, w, b), what=f"linear, {M} rows")
    assert_twins(K.linear_act(x, w, b, "gelu_tanh"), R.linear_act(x, w, b, "gelu_tanh"), what=f"linear_act, {M} rows")


SIMD = importlib.import_module("numbert.kernels.simd")


@JIT.jit
def _vector_ops(a, b, out, lanes):  # every vector operation of kernels/simd.py on a[0:16], b[3:19]
    x, y = SIMD.vload(a, 0), SIMD.vload(b, 3)
    SIMD.vstore(out, 0, SIMD.vadd(x, y))
    SIMD.vstore(out, 16, SIMD.vsub(x, y))
    SIMD.vstore(out, 32, SIMD.vmul(x, y))
    SIMD.vstore(out, 48, SIMD.vmax(x, y))
    SIMD.vstore(out, 64, SIMD.vfloor(x))
    SIMD.vstore(out, 80, SIMD.vscale2(y, SIMD.vfloor(x)))
    SIMD.vstore(out, 96, SIMD.vkeep_above(x, y, SIMD.vzero()))
    SIMD.vstore(out, 112, SIMD.vzip_lo(x, y))
    SIMD.vstore(out, 128, SIMD.vzip_hi(x, y))
    SIMD.vstore(out, 144, SIMD.vfma(x, y, SIMD.vbroadcast(lanes[0])))
    SIMD.vstore(out, 160, SIMD.vmin(x, y))
    SIMD.vstore(out, 176, SIMD.vdiv(x, y))
    SIMD.vstore(out, 192, SIMD.vbroadcast_at(b, 7))
    lanes[1] = SIMD.vhmax(x)
    lanes[2] = SIMD.vhsum(x)


NEEDS_VECTORS = pytest.mark.skipif(not SIMD.RUNNABLE, reason="the vector kernels need AVX-512 or NUMBA_DISABLE_JIT")


@NEEDS_VECTORS
def test_vector_operations():
    rng = np.random.default_rng(2)
    a, b = rand(rng, 20, scale=40.0), rand(rng, 20, scale=5.0)
    a[5] = -200.0  # vscale2 far below float32's range: 0
    out, lanes = np.zeros(208, f32), np.array([0.5, 0, 0], f32)
    _vector_ops(a, b, out, lanes)
    x, y = a[:16].astype(np.float64), b[3:19].astype(np.float64)
    want = np.concatenate([x + y, x - y, x * y, np.maximum(x, y), np.floor(x), y * 2.0 ** np.floor(x),
                           np.where(y > 0, x, 0), np.stack([x[:8], y[:8]], 1).ravel(), np.stack([x[8:], y[8:]], 1).ravel(),
                           x * y + 0.5, np.minimum(x, y)]).astype(f32)
    assert np.array_equal(out[:176], want)
    np.testing.assert_allclose(out[176:192], (x / y).astype(f32), rtol=2e-7)  # fastmath may take a reciprocal
    assert np.array_equal(out[192:], np.full(16, b[7], f32))
    assert lanes[1] == x.max() and abs(lanes[2] - x.sum()) <= 1e-4 * np.abs(x).sum()


@pytest.mark.parametrize("act", sorted(set(ACTIVATIONS.values())))
@pytest.mark.parametrize("M", [1, 3, 4, 7, 8, 13, 64, LINEAR.BLOCKED_M, LINEAR.BLOCKED_M + 1, 12 * 13, 12 * 13 + 5])
def test_linear_packed(M, act):
    # The register-tile GEMMs on a packed weight (numbert runs them on CPUs with AVX-512): up to
    # BLOCKED_M rows tiles of 8 and 4 rows, single rows left over, two panels split between the
    # threads; above, the blocked GEMM (tiles of 12 rows, the last one padded with zero rows);
    # the epilogue; under NUMBA_DISABLE_JIT the vector operations are plain NumPy.
    rng = np.random.default_rng(M)
    x, w, b = rand(rng, M, 24), rand(rng, 64, 24), rand(rng, 64)
    panels = LINEAR.pack(w)
    assert panels.shape == (2, 24 * LINEAR.NR)
    assert_twins(LINEAR.linear_packed(x, panels, b, act), R.linear_act(x, w, b, act), what=f"linear_packed {M} rows {act}")
    assert_twins(LINEAR.linear_packed(x[None], panels, b), R.linear(x[None], w, b), what="linear_packed [1, M, K]")


@pytest.mark.parametrize("M", [1, 5, 16, 40])
def test_linear_packed_asks_ahead_without_changing_a_bit(M):
    # The requests for the next weights (PREFETCH: past the panel, past the whole array at the
    # last one) are hints to the cache: the same numbers with and without them, in one or
    # several passes over each panel, on one thread or two.
    rng = np.random.default_rng(M)
    x, w, b = rand(rng, M, 40), rand(rng, 96, 40), rand(rng, 96)
    panels = LINEAR.pack(w)
    for parts in (1, 2):
        plain, asking = np.empty((M, 96), f32), np.empty((M, 96), f32)
        LINEAR._linear_panels(x, panels, b, 0, parts, 0, plain)
        LINEAR._linear_panels(x, panels, b, 0, parts, LINEAR.PREFETCH, asking)
        assert np.array_equal(plain, asking), (M, parts)
        assert_twins(asking, R.linear(x, w, b), what=f"{M} rows on {parts} threads, asking ahead")


@pytest.mark.parametrize("parts", [1, 2, 3])
@pytest.mark.parametrize("M, K, mc, kc", [(12, 40, 12, 40), (60, 40, 24, 16), (77, 40, 36, 17), (13, 5, 12, 768), (5, 40, 24, 16)])
def test_linear_blocked_in_chunks_and_passes_over_K(M, K, mc, kc, parts):
    # The blocked GEMM's loops at sizes a test can afford: rows in chunks of mc (the last one
    # short), K in passes of kc (each after the first adds to y), the rows shared between
    # threads in tiles of MR, the last tile padded with zero rows when M is not a multiple of MR; with and
    # without asking for the next panel ahead (the same bits).
    rng = np.random.default_rng(M * K + parts)
    x, w, b = rand(rng, M, K), rand(rng, 64, K), rand(rng, 64)
    panels = LINEAR.pack(w)
    plain, asking = np.empty((M, 64), f32), np.empty((M, 64), f32)
    LINEAR._linear_blocked(x, panels, b, LINEAR.ACT_CODES["gelu"], parts, mc, kc, 0, plain)
    LINEAR._linear_blocked(x, panels, b, LINEAR.ACT_CODES["gelu"], parts, mc, kc, LINEAR.PREFETCH, asking)
    assert np.array_equal(plain, asking)
    assert_twins(asking, R.linear_act(x, w, b, "gelu"), what=f"blocked {M}x{K}, chunks of {mc}, passes of {kc}, {parts} parts")


def test_pack_refuses_a_width_off_the_panel():
    with pytest.raises(ValueError, match="multiple of 32"):
        LINEAR.pack(np.zeros((40, 8), f32))


def test_numba_ops_packs_a_weight_at_its_first_product():
    rng = np.random.default_rng(5)
    lin = Linear(rand(rng, 64, 24), rand(rng, 64))
    ops = NumbaOps(SelfAttention(query=lin, key=lin, value=lin))
    short, long = rand(rng, 1, 5, 24), rand(rng, 1, LINEAR.BLOCKED_M + 1, 24)
    for _ in range(2):
        assert_twins(ops.linear_act(short, lin.weight, lin.bias, "gelu"), R.linear_act(short, lin.weight, lin.bias, "gelu"),
                     what="short input")
    odd = Linear(rand(rng, 7, 24), rand(rng, 7))  # 7 columns: no panels, the Numba GEMM on W
    assert_twins(ops.linear(short, odd.weight, odd.bias), R.linear(short, odd.weight, odd.bias), what="7 columns")
    assert_twins(ops.linear(long, lin.weight, lin.bias), R.linear(long, lin.weight, lin.bias), what="long input")
    if SIMD.AVAILABLE:
        assert list(ops._packed) == [id(lin.weight)]  # packed once, kept, for short and long inputs
        assert ops._packed[id(lin.weight)][1].shape == (2, 24 * LINEAR.NR)
    else:  # no AVX-512 (or no compiler): every product on the weight as it is
        assert not ops._packed


def _self_attention(rng, H):
    def lin():
        return Linear(rand(rng, H, H, scale=0.3), rand(rng, H))

    return SelfAttention(query=lin(), key=lin(), value=lin())


@pytest.mark.parametrize("B, T, H, nh", ATTENTION_SHAPES)
def test_qkv_fused_and_unfused(B, T, H, nh):
    rng = np.random.default_rng(H)
    x = rand(rng, B, T, H)
    sa = _self_attention(rng, H)
    ref = NUMPY.qkv(x, sa.query, sa.key, sa.value)
    # an adapter built for this tree stacks Q, K, V (one GEMM); one built for another tree runs three
    for ops, how in ((NumbaOps(sa), "one fused GEMM"), (NumbaOps(None), "three GEMMs")):
        for name, ours, theirs in zip("qkv", ops.qkv(x, sa.query, sa.key, sa.value), ref):
            assert_twins(ours, theirs, what=f"qkv {name} ({how})")


def test_numba_adapter_stacks_qkv_beside_the_checkpoint_tree(checkpoint_factory):
    model = numbert.load(checkpoint_factory(), backend="numba")
    layers = model.weights.encoder.layer
    assert len(model.ops._stacked) == len(layers)
    for layer in layers:
        sa = layer.attention.self
        H = sa.query.weight.shape[0]
        q, k, v, stacked = model.ops._stacked[id(sa.query)]
        assert q is sa.query and k is sa.key and v is sa.value
        assert stacked.weight.shape == (3 * H, H) and stacked.bias.shape == (3 * H,)
        assert np.array_equal(stacked.weight[H:2 * H], sa.key.weight)
        assert np.array_equal(stacked.bias[2 * H:], sa.value.bias)
    # the checkpoint tree holds the checkpoint's tensors only
    assert all(".qkv." not in key for key, _ in iter_tensors(model.weights))


# ---------------------------------------------------------------- attention


def test_attention_mask_bias():
    mask = np.array([[1, 1, 0], [0, 0, 0]])
    ours, ref = K.attention_mask_bias(mask), R.attention_mask_bias(mask)
    assert ours.shape == (2, 1, 1, 3) and np.array_equal(ours, ref)


@pytest.mark.parametrize("B, T, H, nh", ATTENTION_SHAPES)
def test_attention(B, T, H, nh):
    rng = np.random.default_rng(B * T)
    q, k, v = (rand(rng, B, T, H, scale=2.0) for _ in range(3))
    for kind, mask in masks(rng, B, T).items():
        bias = R.attention_mask_bias(mask)
        ref_ctx, ref_probs = R.attention(q, k, v, bias, nh, output_attentions=True)
        ctx, probs = K.attention(q, k, v, bias, nh, output_attentions=True)
        assert_twins(ctx, ref_ctx, what=f"attention context ({kind} mask)")
        assert_twins(probs, ref_probs, what=f"attention probs ({kind} mask)")
        ctx_only, none = K.attention(q, k, v, bias, nh)
        assert none is None
        assert_twins(ctx_only, ref_ctx, what=f"attention context without probs ({kind} mask)")


def test_attention_on_strided_views():
    # the fused QKV GEMM hands the kernel three column slices of one [B, T, 3H] array
    rng = np.random.default_rng(7)
    B, T, H, nh = 2, 6, 12, 3
    y = rand(rng, B, T, 3 * H)
    q, k, v = y[..., :H], y[..., H:2 * H], y[..., 2 * H:]
    bias = R.attention_mask_bias(masks(rng, B, T)["right"])
    assert_twins(K.attention(q, k, v, bias, nh)[0], R.attention(q, k, v, bias, nh)[0], what="attention on views")


ATT = importlib.import_module("numbert.kernels.attention")

# (B, T, H, nh) with head sizes 32 and 64 (multiples of the vector kernel's panel of 32): T=1,
# fewer keys than one panel, blocks of 8 queries with 1..7 left over, keys past a panel
VECTOR_SHAPES = [(1, 1, 32, 1), (2, 13, 64, 2), (3, 37, 128, 2), (2, 40, 96, 3)]


@NEEDS_VECTORS
@pytest.mark.parametrize("B, T, H, nh", VECTOR_SHAPES)
def test_attention_on_vectors(B, T, H, nh):
    # The kernel on explicit vectors (attention() runs it on CPUs with AVX-512 when hs is a
    # multiple of 32; under NUMBA_DISABLE_JIT its vector operations are NumPy): every mask, with
    # and without the probabilities, on the strided Q, K, V views the fused QKV GEMM hands over.
    rng = np.random.default_rng(B * T + H)
    y = rand(rng, B, T, 3 * H, scale=2.0)
    q, k, v = y[..., :H], y[..., H:2 * H], y[..., 2 * H:]
    for kind, mask in masks(rng, B, T).items():
        bias = R.attention_mask_bias(mask)
        ref_ctx, ref_probs = R.attention(q, k, v, bias, nh, output_attentions=True)
        ctx, probs = ATT.attention_on(True, q, k, v, bias, nh, output_attentions=True)
        assert_twins(ctx, ref_ctx, what=f"vector attention context ({kind} mask)")
        assert_twins(probs, ref_probs, what=f"vector attention probs ({kind} mask)")
        ctx_only, none = ATT.attention_on(True, q, k, v, bias, nh)
        assert none is None
        assert_twins(ctx_only, ref_ctx, what=f"vector attention context without probs ({kind} mask)")


@NEEDS_VECTORS
@pytest.mark.parametrize("batch_bias", [False, True])
def test_attention_on_vectors_with_position_bias(batch_bias):
    # MPNet's relative position bias, added to the scaled scores before the mask
    rng = np.random.default_rng(11)
    B, T, H, nh = 2, 21, 64, 2
    q, k, v = (rand(rng, B, T, H) for _ in range(3))
    pbias = rand(rng, B if batch_bias else 1, nh, T, T)
    bias = R.attention_mask_bias(masks(rng, B, T)["holes"])
    ref_ctx, ref_probs = R.attention(q, k, v, bias, nh, True, position_bias=pbias)
    ctx, probs = ATT.attention_on(True, q, k, v, bias, nh, True, position_bias=pbias)
    assert_twins(ctx, ref_ctx, what="vector attention with a position bias")
    assert_twins(probs, ref_probs, what="vector attention probs with a position bias")


def test_attention_picks_the_vector_kernel_where_it_can_run(monkeypatch):
    calls = []
    real = ATT.attention_on
    monkeypatch.setattr(ATT, "attention_on", lambda vectors, *a, **kw: calls.append(vectors) or real(vectors, *a, **kw))
    rng = np.random.default_rng(3)
    bias = np.zeros((1, 1, 1, 4), f32)
    for H, nh in ((64, 2), (24, 2)):  # hs 32: vectors where the CPU has them; hs 12: never
        x = rand(rng, 1, 4, H)
        K.attention(x, x, x, bias, nh)
    assert calls == [SIMD.AVAILABLE, False]
    with pytest.raises(ValueError, match="multiple of 32"):
        ATT.attention_on(True, x, x, x, bias, nh)
    if not SIMD.RUNNABLE:
        with pytest.raises(RuntimeError, match="AVX-512"):
            ATT.attention_on(True, rand(rng, 1, 4, 64), rand(rng, 1, 4, 64), rand(rng, 1, 4, 64), bias, 2)


# ---------------------------------------------------------------- embeddings


@pytest.mark.parametrize("B, T", [(1, 1), (2, 7), (3, 16)])
def test_embeddings(B, T):
    rng = np.random.default_rng(T)
    V, P, Y, H = 50, 16, 2, 12
    word, pos, typ = rand(rng, V, H), rand(rng, P, H), rand(rng, Y, H)
    w, b = rand(rng, H), rand(rng, H)
    ids, types = rng.integers(0, V, (B, T)), rng.integers(0, Y, (B, T))
    ours = K.embeddings(ids, types, word, pos, typ, w, b, 1e-12)
    assert_twins(ours, R.embeddings(ids, types, word, pos, typ, w, b, 1e-12), what="embeddings")


# ---------------------------------------------------------------- whole models: numba == numpy

CHECKPOINTS = {
    "gelu": {},
    "gelu_tanh": {"hidden_act": "gelu_new", "num_labels": 3},
    "relu-odd": {"hidden_act": "relu", "hidden_size": 24, "num_attention_heads": 3, "intermediate_size": 29,
                 "num_hidden_layers": 3},
    "no-pooler": {"add_pooling_layer": False, "layer_norm_eps": 1e-5},
    "classifier": {"num_labels": 2, "hidden_act": "gelu_pytorch_tanh", "seed": 3},
}
TEXTS = ["Beautiful is better than ugly.", "Errors should never pass silently, unless explicitly silenced.",
         "Now", "Café au lait, naïve résumé!"]


def compare_backends(folder, texts, what, hidden_and_attentions=True):
    numpy_model = numbert.load(folder, backend="numpy")
    numba_model = numbert.load(folder, backend="numba")
    assert numba_model.backend == "numba"
    batch = numpy_model.tokenize(texts)
    kw = dict(output_hidden_states=hidden_and_attentions, output_attentions=hidden_and_attentions)
    ref, ours = numpy_model(**batch, **kw), numba_model(**batch, **kw)
    mask = batch.attention_mask
    d = max_diff_at_tokens(ours.last_hidden_state, ref.last_hidden_state, mask)
    assert d <= TOL, f"{what}: last_hidden_state differs by {d:.3g}"
    assert np.isfinite(ours.last_hidden_state).all()
    for name in ("pooler_output", "logits"):
        a, b = getattr(ours, name), getattr(ref, name)
        assert (a is None) == (b is None), f"{what}: {name} present in one backend only"
        if a is not None:
            assert_twins(a, b, what=f"{what}: {name}")
    if hidden_and_attentions:
        for i, (a, b) in enumerate(zip(ours.hidden_states, ref.hidden_states)):
            d = max_diff_at_tokens(a, b, mask)
            assert d <= TOL, f"{what}: hidden_states[{i}] differs by {d:.3g} (first diverging tensor)"
        for i, (a, b) in enumerate(zip(ours.attentions, ref.attentions)):
            keep = mask.astype(bool)
            d = float(np.abs(a - b).transpose(0, 2, 1, 3)[keep].max())  # at real query positions
            assert d <= TOL, f"{what}: attentions[{i}] differs by {d:.3g}"


@pytest.mark.parametrize("name", list(CHECKPOINTS))
def test_numba_backend_equals_numpy_backend(checkpoint_factory, name):
    compare_backends(checkpoint_factory(**CHECKPOINTS[name]), TEXTS, name)


@pytest.mark.skipif(JIT_DISABLED, reason="a 6-layer, 384-wide model is too slow as pure Python")
def test_numba_backend_equals_numpy_backend_on_minilm(minilm_path):
    texts = TEXTS + ["The quick brown fox jumps over the lazy dog. " * 12]  # one long row: lots of padding
    compare_backends(minilm_path, texts, "all-MiniLM-L6-v2")


def test_auto_is_the_default_backend(checkpoint_factory):
    # auto = the kernels; compiled in this process here, as conftest turns the background compile
    # off (NUMBERT_BACKGROUND_COMPILE=0); the background path: tests/test_coldstart.py
    model = numbert.load(checkpoint_factory())
    assert model.requested_backend == "auto" and model.backend == "numba" and isinstance(model.ops, NumbaOps)
    assert inspect.signature(numbert.Model).parameters["backend"].default == "auto"
    assert inspect.signature(numbert.load).parameters["backend"].default == "auto"


def test_threads_set_numba_and_blas_together(checkpoint_factory, monkeypatch):
    from threadpoolctl import threadpool_info

    from numbert.threads import set_threads

    def blas_threads():
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = numba.get_num_threads(), max(blas_threads())
    try:
        numbert.load(checkpoint_factory(), threads=1)
        assert numba.get_num_threads() == 1 and blas_threads() == {1}
        monkeypatch.setenv("NUMBERT_NUM_THREADS", "1")
        assert set_threads() == 1
        monkeypatch.setenv("NUMBERT_NUM_THREADS", "many")
        with pytest.raises(ValueError, match="NUMBERT_NUM_THREADS"):
            set_threads()
        with pytest.raises(ValueError, match="positive integer"):
            set_threads(0)
    finally:
        monkeypatch.delenv("NUMBERT_NUM_THREADS", raising=False)
        numba.set_num_threads(before[0])  # the other tests run with the cores they had
        set_threads(before[1])
