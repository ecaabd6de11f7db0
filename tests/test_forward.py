"""The forward pass against the oracle: transformers' BertModel / BertForSequenceClassification,
fp32, eager attention.

Two scales (STYLE.md, habit 7): tiny random checkpoints with weights large enough
(initializer_range=0.2) that a wrong activation, epsilon or mask value shows up above 1e-5,
and the real all-MiniLM-L6-v2 at 1e-4. Every tensor is compared in forward order, so a
failure names the first one that diverged. Padded positions carry no meaning: they are
only required to be finite.
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
import textwrap
from types import SimpleNamespace

import numpy as np
import pytest

import numbert
from numbert import layers
from numbert.backend import get_ops
from numbert.config import ACTIVATIONS

from conftest import torch_model

TINY_TOL = 1e-5
MINILM_TOL = 1e-4

# Tiny random configs: hidden size, heads (head sizes 4..16, not all powers of two),
# layers, intermediate size, every activation, 1..3 token types, no head / 1 / 2 / 5 labels.
CONFIGS = {
    "gelu-h32-nh4-L2": dict(hidden_size=32, num_attention_heads=4, num_hidden_layers=2, intermediate_size=37,
                            hidden_act="gelu", seed=0),
    "gelu_new-h36-nh3-L3-types3-labels1": dict(hidden_size=36, num_attention_heads=3, num_hidden_layers=3,
                                               intermediate_size=50, hidden_act="gelu_new", type_vocab_size=3,
                                               num_labels=1, seed=1),
    "gelu_pytorch_tanh-h48-nh12-L1-labels2": dict(hidden_size=48, num_attention_heads=12, num_hidden_layers=1,
                                                  intermediate_size=64, hidden_act="gelu_pytorch_tanh",
                                                  num_labels=2, seed=2),
    "relu-h20-nh2-L2-types1-labels5": dict(hidden_size=20, num_attention_heads=2, num_hidden_layers=2,
                                           intermediate_size=24, hidden_act="relu", type_vocab_size=1,
                                           num_labels=5, seed=3),
    "gelu-h64-nh4-L2-eps1e-5-labels2": dict(hidden_size=64, num_attention_heads=4, num_hidden_layers=2,
                                            intermediate_size=96, hidden_act="gelu", layer_norm_eps=1e-5,
                                            num_labels=2, seed=4),
    "gelu-h24-nh1-L4-labels5": dict(hidden_size=24, num_attention_heads=1, num_hidden_layers=4,
                                    intermediate_size=30, hidden_act="gelu", num_labels=5, seed=5),
}

# Texts of very different lengths (padding up to the longest; the longest is truncated at
# max_position_embeddings=64), accents, CJK, an empty string.
TEXTS = [
    "I love cats!",
    "Beautiful is better than ugly. Explicit is better than implicit. Simple is better than complex. "
    "Complex is better than complicated. Flat is better than nested. Sparse is better than dense.",
    "",
    "Café au lait, naïve résumé. 東京は日本の首都です。",
    "Errors should never pass silently.",
]
PAIRS = [
    "He hates pineapple pizza.",
    "",
    "Now is better than never.",
    "The quick brown fox jumps over the lazy dog. Although never is often better than right now.",
    "Unless explicitly silenced.",
]


def available_backends():
    backends = [pytest.param("numpy")]
    marks = []
    if not hasattr(get_ops("numba"), "embeddings"):
        marks = [pytest.mark.skip(reason="numbert.kernels has no Numba kernels yet")]
    backends.append(pytest.param("numba", marks=marks))
    return backends


# ---------------------------------------------------------------- comparing in forward order


def named_tensors(out, num_layers):
    """(name, array) in the order the forward pass computes them, for ours or torch's output."""
    def arr(x):
        return None if x is None else np.asarray(x.detach().numpy() if hasattr(x, "detach") else x)

    yield "embeddings (hidden_states[0])", arr(out.hidden_states[0]), "tokens"
    for i in range(num_layers):
        yield f"encoder.layer.{i} attentions[{i}]", arr(out.attentions[i]), "attention"
        yield f"encoder.layer.{i} (hidden_states[{i + 1}])", arr(out.hidden_states[i + 1]), "tokens"
    yield "last_hidden_state", arr(out.last_hidden_state), "tokens"
    yield "pooler_output", arr(getattr(out, "pooler_output", None)), "rows"
    yield "logits", arr(getattr(out, "logits", None)), "rows"


def compare(ours, theirs, attention_mask, num_layers):
    """[(name, max abs diff at real positions)] in forward order; asserts padded positions are finite."""
    keep = attention_mask.astype(bool)  # [B, T]
    diffs = []
    for (name, a, kind), (_, b, _) in zip(named_tensors(ours, num_layers), named_tensors(theirs, num_layers)):
        if b is None:  # torch has no such output (BertModel: no logits)
            assert a is None, f"{name}: numbert returned a tensor where transformers has none"
            continue
        assert a is not None, f"{name}: numbert returned None where transformers has a tensor"
        assert a.dtype == np.float32, f"{name}: dtype {a.dtype}, expected float32"
        assert a.shape == b.shape, f"{name}: shape {a.shape}, transformers {b.shape}"
        assert np.isfinite(a).all(), f"{name}: numbert output has non-finite values (padded positions included)"
        if kind == "attention":  # [B, nh, T, T]: every real query's row (all keys, padded keys are 0 in both)
            diff = np.abs(a - b).transpose(0, 2, 1, 3)[keep]  # [real tokens, nh, T]
        elif kind == "tokens":  # [B, T, H]
            diff = np.abs(a - b)[keep]  # [real tokens, H]
        else:  # [B, ...]: pooler / logits read [CLS], always a real token
            diff = np.abs(a - b)
        diffs.append((name, float(diff.max())))
    return diffs


def assert_no_tensor_diverges(diffs, tol, what=""):
    """Every tensor of compare()'s list within tol of the oracle; else name the first that is not."""
    bad = [(n, d) for n, d in diffs if not d <= tol]
    if bad:
        table = "\n".join(f"  {n}: {d:.3g}" for n, d in diffs)
        raise AssertionError(f"{what}first tensor to diverge: {bad[0][0]} (max abs diff {bad[0][1]:.3g} > {tol:g})"
                             f"\nall tensors in forward order:\n{table}")


def torch_forward(model, batch):
    """The oracle's outputs under numbert's field names (a classifier's encoder outputs included)."""
    import torch

    inputs = {k: torch.from_numpy(np.asarray(v)) for k, v in batch.items()}
    with torch.no_grad():
        encoder = getattr(model, "bert", model)  # BertForSequenceClassification.bert is its BertModel
        out = encoder(**inputs, output_hidden_states=True, output_attentions=True)
        logits = model(**inputs).logits if encoder is not model else None
    return SimpleNamespace(last_hidden_state=out.last_hidden_state, pooler_output=out.pooler_output, logits=logits,
                           hidden_states=out.hidden_states, attentions=out.attentions)


# ---------------------------------------------------------------- tiny random configs

_cases = {}


def case(checkpoint_factory, name):
    """(numbert numpy model, torch oracle, {batch name: (batch, torch output)}), built once per session."""
    if name not in _cases:
        kw = CONFIGS[name]
        folder = checkpoint_factory(**kw)
        model = numbert.load(folder, backend="numpy")
        oracle = torch_model(folder)
        batches = {"single": model.tokenize(TEXTS)}
        if kw.get("type_vocab_size", 2) >= 2:
            batches["pairs"] = model.tokenize(TEXTS, PAIRS)
        if kw.get("type_vocab_size", 2) >= 3:  # use every row of the token-type table
            b = batches["pairs"]
            rng = np.random.default_rng(kw["seed"])
            types = rng.integers(0, kw["type_vocab_size"], size=b.input_ids.shape) * b.attention_mask
            batches["types"] = {**b, "token_type_ids": types.astype(np.int64)}
        batches = {k: (dict(b), torch_forward(oracle, b)) for k, b in batches.items()}
        _cases[name] = (folder, model, oracle, batches)
    return _cases[name]


@pytest.mark.parametrize("backend", available_backends())
@pytest.mark.parametrize("name", list(CONFIGS))
def test_tiny_config_matches_transformers(checkpoint_factory, name, backend):
    folder, model, oracle, batches = case(checkpoint_factory, name)
    if backend != "numpy":
        model = numbert.load(folder, backend=backend)
    L = model.config.num_hidden_layers
    assert (model.weights.classifier is None) == (CONFIGS[name].get("num_labels") is None)
    for batch_name, (batch, expected) in batches.items():
        assert batch["attention_mask"].min() == 0, "the batch must contain padding"
        out = model(**batch, output_hidden_states=True, output_attentions=True)
        assert len(out.hidden_states) == L + 1 and len(out.attentions) == L
        assert_no_tensor_diverges(compare(out, expected, batch["attention_mask"], L), TINY_TOL,
                                  f"{name} / {batch_name}: ")


@pytest.mark.parametrize("name", ["gelu-h32-nh4-L2", "relu-h20-nh2-L2-types1-labels5"])
def test_padding_does_not_change_real_tokens(checkpoint_factory, name):
    # A text run alone (no padding) and inside a padded batch gives the same vectors.
    _, model, _, _ = case(checkpoint_factory, name)
    batch = model.tokenize(TEXTS)
    padded = model(**batch).last_hidden_state  # [B, T, H]
    for i, text in enumerate(TEXTS):
        alone = model(**model.tokenize([text])).last_hidden_state[0]  # [t, H]
        n = alone.shape[0]
        assert batch.attention_mask[i, :n].all() and not batch.attention_mask[i, n:].any()
        np.testing.assert_allclose(padded[i, :n], alone, atol=TINY_TOL, rtol=0)


# ---------------------------------------------------------------- the layer maths, one function at a time


@pytest.mark.parametrize("act", ["gelu", "gelu_new", "gelu_pytorch_tanh", "relu"])
def test_activation_matches_transformers(act):
    # transformers.activations.ACT2FN[config.hidden_act] is what BertIntermediate applies.
    # (The Numba twins are held to these NumPy functions in test_kernels.py.)
    import torch
    from transformers.activations import ACT2FN

    x = np.concatenate([np.linspace(-12, 12, 4801, dtype=np.float32),
                        np.random.default_rng(0).normal(0, 3, 4000).astype(np.float32)])
    ours = layers.ACTIVATIONS[ACTIVATIONS[act]](x.copy())
    theirs = ACT2FN[act](torch.from_numpy(x)).numpy()
    assert ours.dtype == np.float32
    assert np.abs(ours - theirs).max() <= 1e-6, f"{act}: max abs diff {np.abs(ours - theirs).max():.3g}"


@pytest.mark.parametrize("eps", [1e-12, 1e-5])
def test_layer_norm_matches_torch(eps):
    import torch

    rng = np.random.default_rng(1)
    x = (rng.normal(0, 1, (3, 7, 48)) * rng.uniform(1e-3, 10, (3, 7, 1))).astype(np.float32)
    w, b = rng.normal(1, 0.2, 48).astype(np.float32), rng.normal(0, 0.2, 48).astype(np.float32)
    ours = layers.layer_norm(x, w, b, eps)
    theirs = torch.nn.functional.layer_norm(torch.from_numpy(x), (48,), torch.from_numpy(w), torch.from_numpy(b),
                                            eps).numpy()
    assert np.abs(ours - theirs).max() <= 1e-5


# ---------------------------------------------------------------- the tests can tell wrong from right
# At initializer_range=0.2 the activations leave the near-linear range, so each of these
# plausible mistakes moves the outputs well past the 1e-5 tolerance: a test suite that
# passes with them would prove nothing.


def worst_diff(model, batches, L):
    return max(d for batch, expected in batches.values()
               for _, d in compare(model(**batch, output_hidden_states=True, output_attentions=True),
                                   expected, batch["attention_mask"], L))


def fresh_model(checkpoint_factory, name):
    folder, _, _, batches = case(checkpoint_factory, name)
    model = numbert.load(folder, backend="numpy")
    return model, batches


def test_sensitivity_baseline(checkpoint_factory):
    model, batches = fresh_model(checkpoint_factory, "gelu-h32-nh4-L2")
    assert worst_diff(model, batches, model.config.num_hidden_layers) <= TINY_TOL


def test_sensitivity_tanh_gelu_instead_of_erf(checkpoint_factory, monkeypatch):
    model, batches = fresh_model(checkpoint_factory, "gelu-h32-nh4-L2")
    monkeypatch.setitem(layers.ACTIVATIONS, "gelu", layers.gelu_tanh)
    assert worst_diff(model, batches, model.config.num_hidden_layers) > 10 * TINY_TOL


def test_sensitivity_erf_gelu_instead_of_tanh(checkpoint_factory, monkeypatch):
    model, batches = fresh_model(checkpoint_factory, "gelu_new-h36-nh3-L3-types3-labels1")
    monkeypatch.setitem(layers.ACTIVATIONS, "gelu_tanh", layers.gelu)
    assert worst_diff(model, batches, model.config.num_hidden_layers) > 10 * TINY_TOL


@pytest.mark.parametrize("name, wrong_eps", [
    ("gelu-h32-nh4-L2", 1e-5),  # torch.nn.LayerNorm's default instead of BERT's 1e-12
    ("gelu-h64-nh4-L2-eps1e-5-labels2", 1e-12),  # BERT's usual value where config.json says 1e-5
])
def test_sensitivity_wrong_layer_norm_eps(checkpoint_factory, name, wrong_eps):
    model, batches = fresh_model(checkpoint_factory, name)
    assert model.config.layer_norm_eps != wrong_eps
    model.config = dataclasses.replace(model.config, layer_norm_eps=wrong_eps)
    assert worst_diff(model, batches, model.config.num_hidden_layers) > 10 * TINY_TOL


@pytest.mark.parametrize("mask_value", [0.0, -1.0])
def test_sensitivity_wrong_mask_value(checkpoint_factory, monkeypatch, mask_value):
    # 0: padding not masked at all; -1: a bias too weak to hide the padded keys.
    # (-1e4, the value of the original BERT code, is not caught here, and need not be: exp(-1e4)
    # is exactly 0 in float32 too, so it gives the same numbers as finfo.min at real tokens.)
    model, batches = fresh_model(checkpoint_factory, "gelu-h32-nh4-L2")

    def wrong_bias(attention_mask):  # [B, T] -> [B, 1, 1, T]
        return (1.0 - attention_mask[:, None, None, :].astype(np.float32)) * np.float32(mask_value)

    monkeypatch.setattr(layers, "attention_mask_bias", wrong_bias)
    assert worst_diff(model, batches, model.config.num_hidden_layers) > 10 * TINY_TOL


def test_sensitivity_a_wrong_tensor_is_named(checkpoint_factory, monkeypatch):
    # The failure message names the first tensor that diverged: here the second layer's output.
    model, batches = fresh_model(checkpoint_factory, "gelu-h32-nh4-L2")
    w = model.weights
    layer1 = w.encoder.layer[1]
    ln = layer1.output.LayerNorm
    layer1 = dataclasses.replace(layer1, output=dataclasses.replace(
        layer1.output, LayerNorm=dataclasses.replace(ln, bias=ln.bias + np.float32(1e-3))))
    encoder = dataclasses.replace(w.encoder, layer=(w.encoder.layer[0], layer1))
    monkeypatch.setattr(model, "weights", dataclasses.replace(w, encoder=encoder))
    batch, expected = batches["single"]
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    with pytest.raises(AssertionError, match=r"first tensor to diverge: encoder\.layer\.1 \(hidden_states\[2\]\)"):
        assert_no_tensor_diverges(compare(out, expected, batch["attention_mask"], 2), TINY_TOL)


# ---------------------------------------------------------------- the real all-MiniLM-L6-v2

MINILM_TEXTS = ["I love cats!", "Café au lait, naïve résumé. 東京は日本の首都です。 🙂",
                "A man is playing a guitar on a stage in front of a large crowd of people.", ""]
MINILM_PAIRS = ["Dogs are great too.", "", "Someone plays music.", "an empty first text"]


@pytest.fixture(scope="module")
def minilm(minilm_path):
    model = numbert.load(minilm_path, backend="numpy")
    oracle = torch_model(minilm_path)
    batches = {"single": model.tokenize(MINILM_TEXTS), "pairs": model.tokenize(MINILM_TEXTS, MINILM_PAIRS),
               "512 tokens": model.tokenize([MINILM_TEXTS[1] * 60, MINILM_TEXTS[0]])}  # truncated to 512
    assert batches["512 tokens"].input_ids.shape == (2, 512)
    return model, {k: (dict(b), torch_forward(oracle, b)) for k, b in batches.items()}


@pytest.mark.parametrize("backend", available_backends())
def test_minilm_matches_transformers(minilm_path, minilm, backend):
    model, batches = minilm
    if backend != "numpy":
        model = numbert.load(minilm_path, backend=backend)
    assert model.weights.pooler is not None and model.weights.classifier is None
    for batch_name, (batch, expected) in batches.items():
        out = model(**batch, output_hidden_states=True, output_attentions=True)
        assert out.logits is None
        assert_no_tensor_diverges(compare(out, expected, batch["attention_mask"], 6), MINILM_TOL,
                                  f"MiniLM / {batch_name}: ")


@pytest.mark.parametrize("backend", available_backends())
def test_minilm_with_seeded_head_matches_transformers(minilm_path, minilm, backend):
    import torch
    import transformers

    with pytest.warns(UserWarning, match="newly initialized"):
        model = numbert.load(minilm_path, num_labels=2, seed=7, backend=backend)
    assert model.weights.classifier.weight.shape == (2, 384) and model.config.num_labels == 2
    oracle = transformers.BertForSequenceClassification.from_pretrained(
        str(minilm_path), num_labels=2, attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():  # the same head in torch
        oracle.classifier.weight.copy_(torch.from_numpy(model.weights.classifier.weight))
        oracle.classifier.bias.copy_(torch.from_numpy(model.weights.classifier.bias))
    for batch_name in ("single", "pairs"):
        batch = minilm[1][batch_name][0]
        out = model(**batch, output_hidden_states=True, output_attentions=True)
        expected = torch_forward(oracle, batch)
        assert out.logits.shape == (len(MINILM_TEXTS), 2) and out.logits.dtype == np.float32
        assert_no_tensor_diverges(compare(out, expected, batch["attention_mask"], 6), MINILM_TOL,
                                  f"MiniLM + head / {batch_name}: ")


def test_seeded_head_is_reproducible(minilm_path):
    def head(seed):
        with pytest.warns(UserWarning, match="newly initialized"):
            w = numbert.load(minilm_path, num_labels=2, seed=seed).weights.classifier
        return w.weight, w.bias

    w1, b1 = head(1)
    w1_again, _ = head(1)
    w2, _ = head(2)
    np.testing.assert_array_equal(w1, w1_again)
    assert not np.array_equal(w1, w2)
    np.testing.assert_array_equal(b1, np.zeros(2, np.float32))  # zero bias, as transformers
    assert w1.dtype == np.float32 and 0.005 < w1.std() < 0.05  # normal(0, initializer_range=0.02)


def test_runs_without_torch(minilm_path):
    # The application path needs no torch: with torch made unimportable, load + tokenize + forward
    # still work, and nothing numbert imports pulls torch in.
    code = textwrap.dedent(f"""
        import sys
        sys.modules["torch"] = None  # `import torch` now raises ImportError
        import numbert
        m = numbert.load({str(minilm_path)!r})
        print(m(**m.tokenize(["I love cats!"])).last_hidden_state.shape)
        assert sys.modules["torch"] is None
        assert not any(k.startswith("torch.") or k == "transformers" for k in sys.modules), "torch was imported"
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "(1, 6, 384)"
