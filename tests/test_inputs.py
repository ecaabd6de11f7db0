"""model(...): how inputs are accepted and refused, and what comes out.

A bad input raises ValueError / TypeError naming the input, the position and the limit,
before any arithmetic: never a crash deep inside NumPy, never a silently wrong number.
"""

from __future__ import annotations

import re

import numpy as np
import pytest

import numbert
from numbert import ModelOutput

CONFIG = dict(num_labels=3, num_hidden_layers=2, hidden_size=32, num_attention_heads=4, seed=21,
              model_max_length=64)  # vocab ~403, 64 positions, 2 token types


@pytest.fixture(scope="module")
def model(checkpoint_factory):
    return numbert.load(checkpoint_factory(**CONFIG), backend="numpy")


@pytest.fixture(scope="module")
def batch(model):
    return model.tokenize(["I love cats!", "Beautiful is better than ugly.", ""], ["a pair", "", "Café"])


# ---------------------------------------------------------------- what comes out


def test_output_shapes_and_dtypes(model, batch):
    c = model.config
    B, T = batch.input_ids.shape
    H, L, nh, C = c.hidden_size, c.num_hidden_layers, c.num_attention_heads, c.num_labels
    out = model(**batch, output_hidden_states=True, output_attentions=True)
    assert isinstance(out, ModelOutput)
    assert out.last_hidden_state.shape == (B, T, H)
    assert out.pooler_output.shape == (B, H)
    assert out.logits.shape == (B, C)
    assert isinstance(out.hidden_states, tuple) and len(out.hidden_states) == L + 1
    assert all(h.shape == (B, T, H) for h in out.hidden_states)
    assert isinstance(out.attentions, tuple) and len(out.attentions) == L
    assert all(a.shape == (B, nh, T, T) for a in out.attentions)
    for a in (out.last_hidden_state, out.pooler_output, out.logits, *out.hidden_states, *out.attentions):
        assert a.dtype == np.float32 and np.isfinite(a).all()
    np.testing.assert_array_equal(out.hidden_states[-1], out.last_hidden_state)
    for probs in out.attentions:  # each query's row is a distribution over the real keys only
        np.testing.assert_allclose(probs.sum(-1), 1.0, atol=1e-6)
        assert (probs * (1 - batch.attention_mask[:, None, None, :]) == 0).all()


def test_output_fields_are_named(model, batch):
    assert ModelOutput._fields == ("last_hidden_state", "pooler_output", "logits", "hidden_states", "attentions",
                                   "start_logits", "end_logits")  # the last two: question answering (numbert.heads)
    out = model(**batch)
    assert out.hidden_states is None and out.attentions is None  # only when asked for
    assert out[0] is out.last_hidden_state and out._asdict()["logits"] is out.logits


def test_keywords_and_positions_agree(model, batch):
    by_mapping = model(**batch)
    by_keywords = model(batch.input_ids, attention_mask=batch.attention_mask, token_type_ids=batch.token_type_ids)
    by_position = model(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    as_lists = model(batch.input_ids.tolist(), attention_mask=batch.attention_mask.tolist(),
                     token_type_ids=batch.token_type_ids.tolist())
    as_int32 = model(batch.input_ids.astype(np.int32), attention_mask=batch.attention_mask.astype(bool),
                     token_type_ids=batch.token_type_ids.astype(np.int8))
    for other in (by_keywords, by_position, as_lists, as_int32):
        for a, b in zip(by_mapping, other):
            if a is not None:
                np.testing.assert_array_equal(a, b)


def test_defaults_are_all_tokens_and_segment_zero(model):
    ids = model.tokenize(["I love cats!", "Errors should never pass."]).input_ids[:, :5]  # no padding in 5
    default = model(ids)
    explicit = model(ids, attention_mask=np.ones_like(ids), token_type_ids=np.zeros_like(ids))
    for a, b in zip(default, explicit):
        if a is not None:
            np.testing.assert_array_equal(a, b)


def test_inputs_are_not_modified(model, batch):
    copies = {k: v.copy() for k, v in batch.items()}
    model(**batch, output_hidden_states=True, output_attentions=True)
    for k, v in batch.items():
        np.testing.assert_array_equal(v, copies[k])


def test_edge_shapes(model):
    c = model.config
    one = model([[2]])  # B = T = 1
    assert one.last_hidden_state.shape == (1, 1, c.hidden_size)
    full = model(np.full((2, c.max_position_embeddings), 7))  # exactly max_position_embeddings tokens
    assert full.last_hidden_state.shape == (2, c.max_position_embeddings, c.hidden_size)
    masked = model([[2, 7, 3], [2, 7, 3]], attention_mask=[[1, 1, 1], [0, 0, 0]])  # a row with no real token
    assert np.isfinite(masked.last_hidden_state).all() and np.isfinite(masked.logits).all()


# ---------------------------------------------------------------- what is refused


def test_ids_outside_the_vocabulary(model):
    V = model.config.vocab_size
    with pytest.raises(ValueError, match=rf"input_ids\[0, 2\] = {V} is outside \[0, {V}\) \(vocab_size"):
        model([[2, 5, V, 3]])
    with pytest.raises(ValueError, match=r"input_ids\[1, 0\] = -1 is outside .*2 value\(s\) out of range"):
        model([[2, 5], [-1, -7]])


def test_sequence_longer_than_positions(model):
    P = model.config.max_position_embeddings
    with pytest.raises(ValueError, match=f"sequence length {P + 1} exceeds max_position_embeddings {P}"):
        model(np.full((1, P + 1), 7))


@pytest.mark.parametrize("name", ["attention_mask", "token_type_ids"])
@pytest.mark.parametrize("shape", [(2, 5), (1, 4), (5,), (1, 1, 5)])
def test_mismatched_shapes(model, name, shape):
    ids = np.full((1, 5), 7)
    with pytest.raises(ValueError, match=rf"{name} has shape \[{', '.join(map(str, shape))}\], expected \[1, 5\]"):
        model(ids, **{name: np.zeros(shape, dtype=np.int64)})


@pytest.mark.parametrize("name, value, dtype", [
    ("input_ids", [[2.0, 7.0]], "float64"),
    ("input_ids", np.array([[2, 7]], dtype=np.float32), "float32"),
    ("input_ids", [[True, False]], "bool"),
    ("input_ids", [["2", "7"]], "<U1"),
    ("input_ids", None, "object"),
    ("attention_mask", [[1.0, 1.0]], "float64"),
    ("token_type_ids", [[0, 0.5]], "float64"),
])
def test_wrong_dtypes(model, name, value, dtype):
    inputs = {"input_ids": [[2, 7]], name: value}
    with pytest.raises(TypeError, match=f"{name} must hold integers, found dtype {dtype}"):
        model(**inputs)


@pytest.mark.parametrize("mask", [[[1, 2]], [[1, -1]]])
def test_bad_mask_values(model, mask):
    with pytest.raises(ValueError, match=r"attention_mask must hold only 0 \(padding\) and 1 \(token\)"):
        model([[2, 7]], attention_mask=mask)


def test_token_types_outside_the_table(model):
    Y = model.config.type_vocab_size
    with pytest.raises(ValueError, match=rf"token_type_ids\[0, 1\] = {Y} is outside \[0, {Y}\) \(type_vocab_size"):
        model([[2, 7, 3]], token_type_ids=[[0, Y, 0]])
    with pytest.raises(ValueError, match=r"token_type_ids\[0, 0\] = -1 is outside"):
        model([[2, 7, 3]], token_type_ids=[[-1, 0, 0]])


@pytest.mark.parametrize("ids, shape", [([2, 7, 3], "[3]"), (5, "[]"), (np.zeros((1, 2, 3), int), "[1, 2, 3]")])
def test_not_two_dimensional(model, ids, shape):
    with pytest.raises(ValueError, match=rf"input_ids must be 2-D \[batch, tokens\], found shape {re.escape(shape)}"):
        model(ids)


@pytest.mark.parametrize("ids", [np.zeros((0, 4), np.int64), np.zeros((2, 0), np.int64)])
def test_empty(model, ids):
    with pytest.raises(ValueError, match="input_ids is empty"):
        model(ids)


def test_ragged_rows(model):
    with pytest.raises(ValueError, match="input_ids has rows of different lengths"):
        model([[2, 7, 3], [2, 3]])
    with pytest.raises(ValueError, match="attention_mask has rows of different lengths"):
        model([[2, 7], [2, 3]], attention_mask=[[1, 1], [1]])


def test_unknown_backend(checkpoint_factory):
    with pytest.raises(ValueError, match="backend must be one of auto, numba, numpy, found 'torch'"):
        numbert.load(checkpoint_factory(**CONFIG), backend="torch")
