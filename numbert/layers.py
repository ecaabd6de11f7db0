"""The layers of BERT in plain NumPy: the reference that defines what numbert computes.

Legend (used in every shape comment):
    B  batch size                 T  tokens per sequence (after padding)
    H  hidden size                nh number of attention heads
    hs head size (H // nh)        I  intermediate (feed-forward) size
    C  number of labels           V  vocabulary size, P positions, Y token types

Every function here has a Numba twin of the same name, maths and signature in
`numbert.kernels`; the forward pass (`numbert.modeling`) is written once against either of
them, through the backend adapters of `numbert.backend` (`ops`). Functions that have steps
worth showing also take `record`, which the trace uses to keep each intermediate tensor (see
`numbert.record`); the kernels do not take it (the trace always runs this NumPy path).

Everything is float32, as in transformers' fp32 forward. Dropout is the identity at
inference, so it is not written at all.
"""

from __future__ import annotations

import math

import numpy as np

from .record import NO_RECORD

f32 = np.float32


# ---------------------------------------------------------------- basic maths


def linear(x, weight, bias):  # [..., in], [out, in], [out] -> [..., out]
    # nn.Linear stores weight as [out, in] and computes x @ W^T + b. Flattening the leading
    # dims first makes this a single BLAS sgemm instead of one per batch row.
    *lead, n_in = x.shape
    y = x.reshape(-1, n_in) @ weight.T + bias  # [B*T, out]
    return y.reshape(*lead, weight.shape[0])  # [..., out]


def layer_norm(x, weight, bias, eps):  # [..., H], [H], [H] -> [..., H]
    # Normalise each token vector to zero mean and unit variance (biased variance, as
    # torch.nn.LayerNorm), then scale and shift per channel.
    mean = x.mean(axis=-1, keepdims=True)  # [..., 1]
    centered = x - mean  # [..., H]
    var = (centered * centered).mean(axis=-1, keepdims=True)  # [..., 1]
    return centered / np.sqrt(var + f32(eps)) * weight + bias  # [..., H]


def add_layer_norm(x, residual, weight, bias, eps):  # [..., H], [..., H] -> [..., H]
    # The "Add & Norm" of the paper: LayerNorm(x + residual), BertSelfOutput / BertOutput.
    return layer_norm(x + residual, weight, bias, eps)


def softmax(x):  # [..., n] -> [..., n]
    # Subtracting the row maximum changes nothing mathematically and keeps exp() finite.
    e = np.exp(x - x.max(axis=-1, keepdims=True))  # [..., n]
    return e / e.sum(axis=-1, keepdims=True)  # [..., n]


# ---------------------------------------------------------------- activations

# erf has no NumPy ufunc. This rational approximation (the one Eigen and XLA use for
# float32 erf) is accurate to a few float32 ulps on [-4, 4]; beyond that erf is +-1 in
# float32. It is evaluated in float64 so the polynomial adds no rounding of its own.
_ERF_ALPHA = (-2.72614225801306e-10, 2.77068142495902e-08, -2.10102402082508e-06,
              -5.69250639462346e-05, -7.34990630326855e-04, -2.95459980854025e-03,
              -1.60960333262415e-02)
_ERF_BETA = (-1.45660718464996e-05, -2.13374055278905e-04, -1.68282697438203e-03,
             -7.37332916720468e-03, -1.42647390514189e-02)


def erf(x):  # [...] -> [...]
    x = np.clip(x.astype(np.float64), -4.0, 4.0)
    x2 = x * x
    p = np.zeros_like(x)
    for a in _ERF_ALPHA:
        p = p * x2 + a
    q = np.zeros_like(x)
    for b in _ERF_BETA:
        q = q * x2 + b
    return (x * p / q).astype(f32)


def gelu(x):  # [...] -> [...]
    # hidden_act "gelu": the exact GELU, x * Phi(x) with the Gaussian CDF written with erf,
    # as in the BERT paper and torch.nn.functional.gelu.
    return (f32(0.5) * x * (f32(1.0) + erf(x / f32(math.sqrt(2.0))))).astype(f32)


def gelu_tanh(x):  # [...] -> [...]
    # hidden_act "gelu_new" / "gelu_pytorch_tanh": the tanh approximation of GELU (GPT-2's).
    c = f32(math.sqrt(2.0 / math.pi))
    return f32(0.5) * x * (f32(1.0) + np.tanh(c * (x + f32(0.044715) * x * x * x)))


def relu(x):  # [...] -> [...]
    return np.maximum(x, f32(0.0))


# An activation's function name -> the function (numbert.config.ACTIVATIONS maps config.json's
# hidden_act to the name; looked up at call time, so a test can swap one in).
ACTIVATIONS = {"gelu": gelu, "gelu_tanh": gelu_tanh, "relu": relu}


def linear_act(x, weight, bias, act, record=NO_RECORD):  # [..., in], [out, in], [out], function name -> [..., out]
    # BertIntermediate: the feed-forward's widening layer and its activation.
    h = linear(x, weight, bias)  # [B, T, I]
    record("dense", h)
    h = ACTIVATIONS[act](h)  # [B, T, I]
    record("intermediate_act_fn", h)
    return h


# ---------------------------------------------------------------- embeddings


def embeddings(input_ids, token_type_ids, word, position, token_type, ln_weight, ln_bias, eps,
               record=NO_RECORD, position_ids=None):  # [B, T], [B, T], [V, H], [P, H], [Y, H] -> [B, T, H]
    # BertEmbeddings: a token's vector is the sum of what it is (word), where it is
    # (position) and which segment it belongs to (token type), then LayerNorm.
    # position_ids: None numbers the tokens 0 .. T-1 (BERT); RoBERTa and MPNet pass their own.
    # token_type None: a model without token types (DistilBERT, MPNet) sums word + position.
    B, T = input_ids.shape
    if position_ids is None:
        position_ids = np.arange(T)[None, :]  # [1, T]
    record("position_ids", position_ids)
    record("input_ids", input_ids)
    if token_type is not None:
        record("token_type_ids", token_type_ids)
    words = word[input_ids]  # [B, T, H]
    record("word_embeddings", words)
    positions = position[position_ids]  # [1 or B, T, H]
    record("position_embeddings", positions)
    if token_type is None:
        summed = words + positions  # [B, T, H]
    else:
        types = token_type[token_type_ids]  # [B, T, H]
        record("token_type_embeddings", types)
        summed = words + types + positions  # [B, T, H]  (same order of additions as transformers)
    record("sum", summed)
    out = layer_norm(summed, ln_weight, ln_bias, eps)  # [B, T, H]
    record("LayerNorm", out)
    return out


# ---------------------------------------------------------------- attention


def attention_mask_bias(attention_mask):  # [B, T] -> [B, 1, 1, T]
    # A padded key must get zero attention. Adding the most negative float32 to its score
    # makes exp() underflow to exactly 0 in the softmax, while a row whose keys are all
    # padding still stays finite (every score shifts by the same amount). transformers
    # builds the same additive mask: (1 - mask) * finfo(float32).min.
    keep = attention_mask[:, None, None, :].astype(f32)  # [B, 1, 1, T]
    return (f32(1.0) - keep) * np.finfo(f32).min  # [B, 1, 1, T]


def attention(q, k, v, mask_bias, num_heads, output_attentions=False, record=NO_RECORD, position_bias=None):
    # [B, T, H] x3, [B, 1, 1, T], int -> context [B, T, H], probs [B, nh, T, T] or None
    # Scaled dot-product attention, every head at once (eager_attention_forward).
    # position_bias: an additive [1 or B, nh, T, T] bias on the scaled scores, before the mask
    # (MPNet's relative position bias); None for BERT.
    B, T, H = q.shape
    nh, hs = num_heads, H // num_heads

    def split_heads(x):  # [B, T, H] -> [B, nh, T, hs]
        return x.reshape(B, T, nh, hs).transpose(0, 2, 1, 3)

    qh, kh, vh = split_heads(q), split_heads(k), split_heads(v)  # [B, nh, T, hs]
    record("query_heads", qh)
    record("key_heads", kh)
    record("value_heads", vh)
    k_t = kh.transpose(0, 1, 3, 2)  # [B, nh, hs, T]
    record("key_transposed", k_t)
    scores = qh @ k_t  # [B, nh, T, T]
    record("scores", scores)
    # Dividing by sqrt(hs) keeps the dot products' spread independent of the head size,
    # so the softmax does not saturate for wide heads.
    scores = scores / f32(math.sqrt(hs))  # [B, nh, T, T]
    record("scores_scaled", scores)
    if position_bias is not None:
        scores = scores + position_bias  # [B, nh, T, T]
        record("scores_biased", scores)
    scores = scores + mask_bias  # [B, nh, T, T]
    record("scores_masked", scores)
    probs = softmax(scores)  # [B, nh, T, T]
    record("probs", probs)
    context = probs @ vh  # [B, nh, T, hs]
    record("context", context)
    context = context.transpose(0, 2, 1, 3)  # [B, T, nh, hs]
    record("context_permuted", context)
    context = context.reshape(B, T, H)  # [B, T, H]
    record("context_reshaped", context)
    return context, (probs if output_attentions else None)
