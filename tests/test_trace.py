"""numbert.trace: the step list, its shapes, its agreement with transformers, its text, its CLI."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import pytest

import numbert
from numbert import layers as numpy_layers
from numbert.trace import Step, parse_layers
from numbert.trace.catalogue import CATALOGUE, LAYER_KEYS, RESIDUALS, STEPS, split_name

TEXTS = ["I love cats!", "He hates pineapple pizza."]
TINY = dict(num_labels=3, hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2)


def expected_steps(config, B, T, pooler=True, classifier=False):
    """(name, shape) of every step, in forward order, built from the config alone."""
    H, nh, hs, I = config.hidden_size, config.num_attention_heads, config.head_size, config.intermediate_size
    steps = [("embeddings.position_ids", (1, T)), ("embeddings.input_ids", (B, T)),
             ("embeddings.token_type_ids", (B, T)), ("embeddings.word_embeddings", (B, T, H)),
             ("embeddings.position_embeddings", (1, T, H)), ("embeddings.token_type_embeddings", (B, T, H)),
             ("embeddings.sum", (B, T, H)), ("embeddings.LayerNorm", (B, T, H)),
             ("extended_attention_mask", (B, 1, 1, T))]
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        steps += [(p + "attention.self.query", (B, T, H)), (p + "attention.self.key", (B, T, H)),
                  (p + "attention.self.value", (B, T, H)), (p + "attention.self.query_heads", (B, nh, T, hs)),
                  (p + "attention.self.key_heads", (B, nh, T, hs)), (p + "attention.self.value_heads", (B, nh, T, hs)),
                  (p + "attention.self.key_transposed", (B, nh, hs, T)), (p + "attention.self.scores", (B, nh, T, T)),
                  (p + "attention.self.scores_scaled", (B, nh, T, T)),
                  (p + "attention.self.scores_masked", (B, nh, T, T)), (p + "attention.self.probs", (B, nh, T, T)),
                  (p + "attention.self.context", (B, nh, T, hs)),
                  (p + "attention.self.context_permuted", (B, T, nh, hs)),
                  (p + "attention.self.context_reshaped", (B, T, H)), (p + "attention.output.dense", (B, T, H)),
                  (p + "attention.output.LayerNorm", (B, T, H)), (p + "intermediate.dense", (B, T, I)),
                  (p + "intermediate.intermediate_act_fn", (B, T, I)), (p + "output.dense", (B, T, H)),
                  (p + "output.LayerNorm", (B, T, H))]
    if pooler:
        steps += [("pooler.first_token", (B, H)), ("pooler.dense", (B, H)), ("pooler.activation", (B, H))]
    if classifier:
        steps.append(("classifier.logits", (B, config.num_labels)))
    return steps


# The walkthrough's titles, in its order ("Nromalization" there is spelled right here). Dropout
# lines are shown as notes: dropout is the identity at inference.
LAYER_TITLES = ["Query Linear Layer", "Key Linear Layer", "Value Linear Layer", "Query", "Key", "Value",
                "Key Transposed", "Attention Scores", "Attention Scores Divided by Scalar",
                "Attention Probabilities Softmax Layer", "Attention Probabilities Dropout Layer", "Context",
                "Context Permute", "Context Reshaped", "Hidden States", "Hidden States Linear Layer",
                "Hidden States Dropout Layer", "Hidden States Normalization Layer", "Hidden States",
                "Hidden States Linear Layer", "Hidden States Gelu Activation Function", "Hidden States",
                "Hidden States Linear Layer", "Hidden States Dropout Layer", "Hidden States Layer Normalization"]
TUTORIAL_TITLES = (["Created Tokens Positions IDs", "Tokens IDs", "Tokens Type IDs", "Word Embeddings",
                    "Position Embeddings", "Token Types Embeddings", "Sum Up All Embeddings",
                    "Embeddings Layer Normalization", "Embeddings Dropout Layer"]
                   + ["BERT LAYER 1"] + LAYER_TITLES + ["BERT LAYER 2"] + LAYER_TITLES
                   + ["Hidden States", "First Token [CLS]", "First Token [CLS] Linear Layer",
                      "First Token [CLS] Tanh Activation Function"])


def assert_titles_in_order(text, titles):
    lines = text.splitlines()
    i = 0
    for title in titles:
        if title.startswith("BERT LAYER"):  # "----------------- BERT LAYER 1 -----------------"
            pattern = re.compile(rf"-\s{re.escape(title)}\s-")
        else:  # the title, then the column gap: "Query" must not match "Query Linear Layer"
            pattern = re.compile(rf"^\s+{re.escape(title)}(\s\s|$)")
        while i < len(lines) and not pattern.search(lines[i]):
            i += 1
        assert i < len(lines), f"title {title!r} missing or out of order"
        i += 1


@pytest.fixture(scope="module")
def tiny(checkpoint_factory):
    return numbert.load(checkpoint_factory(**TINY), backend="numpy")


@pytest.fixture(scope="module")
def tiny_trace(tiny):
    pytest.importorskip("torch")
    return numbert.trace(TEXTS, tiny, check="torch")


@pytest.fixture(scope="module")
def minilm_trace(minilm_path):
    pytest.importorskip("transformers")
    return numbert.trace(TEXTS, str(minilm_path), check="torch")


# ---------------------------------------------------------------- the steps


def test_tiny_steps_names_order_and_shapes(tiny):
    t = numbert.trace(TEXTS, tiny)
    B, T = t.batch.input_ids.shape
    expected = expected_steps(tiny.config, B, T, classifier=True)
    assert [(s.name, s.shape) for s in t.steps] == expected
    assert all(isinstance(s, Step) and s.title for s in t.steps)
    assert len(t) == len(expected) and t.names() == [n for n, _ in expected]
    assert [s.name for s in t] == t.names()  # iteration, in order
    name, title, array = t.steps[3]  # a step unpacks as (name, title, array)
    assert (name, title) == ("embeddings.word_embeddings", "Word Embeddings") and array is t[name]


def test_minilm_steps_names_order_and_shapes(minilm_trace):
    t = minilm_trace
    config = t.config
    assert (config.num_hidden_layers, config.hidden_size, config.num_attention_heads) == (6, 384, 12)
    B, T = t.batch.input_ids.shape
    assert [(s.name, s.shape) for s in t.steps] == expected_steps(config, B, T)
    assert t["encoder.layer.5.attention.self.probs"].shape == (B, 12, T, T)
    assert t.tokens[0][:6] == ["[CLS]", "i", "love", "cats", "!", "[SEP]"]
    assert t.tokens[0][6:] == ["[PAD]"] * (T - 6)


def test_steps_are_the_computation(tiny):
    """Each recorded array is what its name says, recomputed from its neighbours."""
    t = numbert.trace(TEXTS, tiny)
    p = "encoder.layer.0.attention.self."
    hs = tiny.config.head_size
    np.testing.assert_array_equal(t[p + "key_transposed"], t[p + "key_heads"].transpose(0, 1, 3, 2))
    np.testing.assert_allclose(t[p + "scores"], t[p + "query_heads"] @ t[p + "key_transposed"], rtol=1e-6)
    np.testing.assert_allclose(t[p + "scores_scaled"], t[p + "scores"] / np.sqrt(hs), rtol=1e-6)
    np.testing.assert_allclose(t[p + "probs"].sum(-1), 1.0, rtol=1e-6)
    np.testing.assert_array_equal(t["pooler.first_token"], t["encoder.layer.1.output.LayerNorm"][:, 0])
    pad = t.batch.attention_mask == 0  # padded keys get exactly zero attention
    assert pad.any() and (t[p + "probs"].transpose(0, 3, 1, 2)[pad] == 0).all()


def test_last_hidden_state_equals_model_call(tiny, minilm_trace):
    t = numbert.trace(TEXTS, tiny)
    out = tiny(**t.batch)
    np.testing.assert_array_equal(t.last_hidden_state, out.last_hidden_state)
    np.testing.assert_array_equal(t["encoder.layer.1.output.LayerNorm"], out.last_hidden_state)
    np.testing.assert_array_equal(t["classifier.logits"], out.logits)
    np.testing.assert_array_equal(t["pooler.activation"], out.pooler_output)
    m = numbert.load(minilm_trace.model_path, backend="numpy")
    out = m(**minilm_trace.batch)
    np.testing.assert_array_equal(minilm_trace["encoder.layer.5.output.LayerNorm"], out.last_hidden_state)


def test_text_pair_and_token_types(tiny):
    t = numbert.trace(["I love cats!"], tiny, text_pair=["He hates pineapple pizza."])
    types = t["embeddings.token_type_ids"][0]
    assert types[0] == 0 and types[-1] == 1 and set(types.tolist()) == {0, 1}
    assert t.tokens[0].count("[SEP]") == 2


def test_lookup_errors_name_the_step(tiny):
    t = numbert.trace("I love cats!", tiny)
    with pytest.raises(KeyError, match="encoder.layer.0.attention.self.probs"):
        t["encoder.layer.0.attention.self.prob"]
    assert "embeddings.sum" in t and "embeddings.summ" not in t


def test_parse_layers():
    assert parse_layers("1,12", 12) == [1, 12]
    assert parse_layers("2-4, 1", 6) == [1, 2, 3, 4]
    assert parse_layers([-1], 6) == [6]
    assert parse_layers(None, 6) is None
    with pytest.raises(ValueError, match="1..6"):
        parse_layers("7", 6)
    with pytest.raises(ValueError, match="cannot read"):
        parse_layers("one", 6)


# ---------------------------------------------------------------- against transformers


def test_tiny_every_step_equals_transformers(tiny_trace):
    check = tiny_trace.check
    assert list(check.steps) == tiny_trace.names()
    missing = [n for n, s in check.steps.items() if s.max_abs_diff is None]
    assert not missing, f"no transformers twin captured for {missing}"
    worst = {n: s.max_abs_diff for n, s in check.steps.items() if s.max_abs_diff > 1e-5}
    assert not worst, f"steps beyond 1e-5: {worst}"
    assert check.ok and check.first_divergence is None


@pytest.mark.parametrize("kw", [dict(hidden_act="gelu_new", seed=1, num_hidden_layers=1),
                                dict(hidden_act="relu", seed=2, num_labels=None, num_hidden_layers=1)])
def test_tiny_variants_equal_transformers(checkpoint_factory, kw):
    pytest.importorskip("torch")
    model = numbert.load(checkpoint_factory(**{**TINY, **kw}), backend="numpy")
    t = numbert.trace(TEXTS + ["Beautiful is better than ugly."], model, check="torch")
    assert all(s.max_abs_diff is not None and s.max_abs_diff <= 1e-5 for s in t.check.steps.values()), \
        {n: s.max_abs_diff for n, s in t.check.steps.items()}


def test_minilm_every_step_equals_transformers(minilm_trace):
    check = minilm_trace.check
    assert len(check.steps) == len(minilm_trace.steps) == 132
    missing = [n for n, s in check.steps.items() if s.max_abs_diff is None]
    assert not missing, f"no transformers twin captured for {missing}"
    # The hidden states (every LayerNorm's output) and the pooler: the oracle's bound on a real
    # checkpoint, 1e-4 absolute.
    hidden = {n: s.max_abs_diff for n, s in check.steps.items() if n.endswith("LayerNorm") or n.startswith("pooler.")}
    assert len(hidden) == 1 + 2 * 6 + 3
    worst = {n: d for n, d in hidden.items() if d > 1e-4}
    assert not worst, f"hidden states beyond 1e-4: {worst}"
    # Every step within 1e-4 of its own scale (the check's rule). The sums before a LayerNorm
    # reach |x| = 192 in layer 0's output.dense, where one fp32 ulp is 1.5e-5: a 1536-term dot
    # product summed in another order (OpenBLAS's kernel against torch's) lands a few ulps away
    # (1.2e-4 measured on a Xeon; the LayerNorm after it agrees to 1.4e-6).
    worst = {n: (s.max_abs_diff, s.tolerance) for n, s in check.steps.items() if not s.ok}
    assert not worst, f"steps beyond 1e-4 of their scale: {worst}"
    assert check.ok


def test_check_flags_the_first_divergent_step(tiny, monkeypatch):
    """A wrong activation (tanh GELU where the config says erf GELU) is caught where it happens."""
    pytest.importorskip("torch")
    monkeypatch.setitem(numpy_layers.ACTIVATIONS, "gelu", numpy_layers.gelu_tanh)
    t = numbert.trace(TEXTS, tiny, check="torch")
    assert not t.check.ok
    assert t.check.first_divergence == "encoder.layer.0.intermediate.intermediate_act_fn"
    assert t.check.steps["encoder.layer.0.intermediate.dense"].ok  # the step before is still equal
    text = str(t)
    assert "<-- FIRST DIVERGENCE" in text and "FIRST DIVERGENCE: encoder.layer.0.intermediate" in text


# ---------------------------------------------------------------- the text


def test_text_has_the_walkthrough_titles_in_order(tiny_trace):
    text = tiny_trace.render()
    assert_titles_in_order(text, TUTORIAL_TITLES)
    assert "TOKENIZER" in text and "[CLS]" in text and "[PAD]" in text
    assert re.search(r"Attention Probabilities Softmax Layer\s+\[2, 4, \d+, \d+\]\s+B nh T T", text)
    assert "Classifier Linear Layer" in text and "all steps within tolerance" in text


def test_text_layers_subset_values_and_stats(tiny):
    t = numbert.trace(TEXTS, tiny, layers="2")
    text = str(t)
    assert "BERT LAYER 1" in text and "BERT LAYER 2" in text
    layer1 = text.split("BERT LAYER 1")[1].split("BERT LAYER 2")[0]
    assert "Query Linear Layer" not in layer1 and "..." in layer1
    assert "Query Linear Layer" in text.split("BERT LAYER 2")[1]
    detailed = t.render(layers=[1, 2], values=True, stats=True)
    assert detailed.count("Query Linear Layer") == 2
    assert re.search(r"\[0, :\] = 0 1 2 3", detailed)  # position ids
    assert re.search(r"min -?[\d.]+\s+max -?[\d.]+\s+mean -?[\d.e+-]+\s+std [\d.e+-]+", detailed)


def test_minilm_text(minilm_trace):
    text = str(minilm_trace)
    assert "NUMBER OF LAYERS: 6   EMBEDDING SIZE: 384" in text
    assert "Attention Head Size: 32   Combined Attentions Head Size: 384" in text
    assert re.search(r"Query\s+\[2, 12, 8, 32\]\s+B nh T hs", text)
    assert re.search(r"Hidden States Gelu Activation Function\s+\[2, 8, 1536\]", text)
    assert text.count("BERT LAYER") == 6


# ---------------------------------------------------------------- the command line


def test_cli_end_to_end(checkpoint_factory, tmp_path):
    pytest.importorskip("torch")
    folder = checkpoint_factory(**TINY)
    page = tmp_path / "trace.html"
    # the installed numbert (no PYTHONPATH to the repo root: its kernels/ folder would shadow
    # PyPI's `kernels` package, which transformers imports when it is installed)
    proc = subprocess.run([sys.executable, "-m", "numbert", "trace", *TEXTS, "--model", str(folder),
                           "--layers", "2", "--values", "--check-torch", "--html", str(page)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "TOKENIZER" in out and "BERT LAYER 2" in out and "diff " in out
    assert "all steps within tolerance" in out and f"wrote {page}" in out
    assert page.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_cli_reports_bad_layers(checkpoint_factory, capsys):
    from numbert.cli import main

    assert main(["trace", "I love cats!", "--model", str(checkpoint_factory(**TINY)), "--layers", "9"]) == 2
    assert "not a layer of this model" in capsys.readouterr().err


def test_cli_missing_model_exits_1_as_every_verb(tmp_path, capsys):
    from numbert.cli import main

    assert main(["trace", "I love cats!", "--model", str(tmp_path / "no-such-model")]) == 1
    assert "no-such-model" in capsys.readouterr().err


def test_cli_help_has_examples(capsys):
    from numbert.cli import main

    with pytest.raises(SystemExit) as e:
        main(["trace", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert 'numbert trace "I love cats!"' in out and "--check-torch" in out and "exit codes: 0 success" in out


# ---------------------------------------------------------------- the package and its catalogue


def test_trace_is_the_module_and_callable(tiny):
    import numbert.trace as t

    assert t is numbert.trace and t.__name__ == "numbert.trace" and t.parse_layers is parse_layers
    called = numbert.trace("I love cats!", tiny)  # the public API: numbert.trace(texts, model)
    assert isinstance(called, t.Trace) and called.names() == t.trace("I love cats!", tiny).names()


def catalogue_keys_in_order(trace) -> list[str]:
    keys = []
    for name in trace.names():
        layer, key = split_name(name)
        assert (layer is not None) == (key in LAYER_KEYS), f"{name}: inside a layer or not, as the catalogue says"
        if key not in keys:
            keys.append(key)
    return keys


def test_catalogue_is_the_recorded_steps(tiny, minilm_trace):
    """Every name the forward records has a catalogue entry, and every entry is recorded, in the same order."""
    recorded = {}
    for t in (numbert.trace(TEXTS, tiny), minilm_trace):
        keys = catalogue_keys_in_order(t)
        unknown = [k for k in keys if k not in CATALOGUE]
        assert not unknown, f"recorded steps with no catalogue entry: {unknown}"
        assert keys == [s.key for s in STEPS if s.key in keys]  # the catalogue lists them in forward order
        recorded.update(dict.fromkeys(keys))
    assert set(recorded) == set(CATALOGUE), f"catalogue entries never recorded: {set(CATALOGUE) - set(recorded)}"
    assert len(CATALOGUE) == len(STEPS)  # each name said once


def test_catalogue_entries_refer_to_entries():
    for s in STEPS:
        assert len(s.axes.split()) >= 2 and s.title, s.key
        assert all(a in CATALOGUE for a in s.inputs), f"{s.key}: an input is no step"
        if s.twin.kind == "op":  # recomputed in torch from its inputs
            assert s.inputs and s.twin.op, s.key
    assert all(a in CATALOGUE and b in CATALOGUE for a, b in RESIDUALS)
    assert [s.axes.split()[-2:] for s in STEPS if s.heatmap] == [["T", "T"]]  # one step drawn as heatmaps
