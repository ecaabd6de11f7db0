"""model.tokenize against transformers.AutoTokenizer(folder)(..., padding=True, truncation=True).

Same input_ids, attention_mask and token_type_ids, for single texts and pairs, on the real
MiniLM tokenizer and on tiny trained WordPiece tokenizers (cased and uncased), from
tokenizer.json or from vocab.txt alone.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

import numbert

# Accents, CJK, emoji (one with a zero-width joiner), punctuation runs, whitespace and control
# characters, mixed case, an empty string, and a text far beyond 512 tokens.
LONG = " ".join(["Beautiful is better than ugly; café, naïve, 東京, 🙂!! Errors should never pass silently."] * 120)
TEXTS = [
    "I love cats!",
    "Café au lait, naïve résumé, Ångström, jalapeño. ÉCOLE Über",
    "東京は日本の首都です。 北京欢迎你",
    "I 🙂 love 🐈‍⬛ cats 🇫🇷 and emoji 👍🏽",
    "?!?!...---;;;:::(((]]]",
    "",
    LONG,
    "   \t\n ",
    "a\tb\nc\u200bd\u00ade\x00f\ufffdg",
    "HeLLo WORLD, It's 12345 o'clock; don't-stop",
]
PAIRS = [
    "He hates pineapple pizza.",
    LONG,  # short first text, long second
    "",
    "Now is better than never.",
    LONG,
    "an empty first text",
    LONG[: len(LONG) // 3],  # both long: longest-first truncation takes from the longer one
    "x",
    "Ünïcödé",
    "",
]
KEYS = ("input_ids", "attention_mask", "token_type_ids")


def auto_tokenizer(folder):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder))


def assert_same(ours, theirs, what=""):
    assert set(ours) == set(KEYS)
    for key in KEYS:
        a, b = ours[key], np.asarray(theirs[key])
        assert a.dtype == np.int64, f"{what}{key}: dtype {a.dtype}, expected int64"
        assert a.shape == b.shape, f"{what}{key}: shape {a.shape}, transformers {b.shape}"
        bad = np.argwhere(a != b)
        assert not len(bad), f"{what}{key} differs first at [row, position] {bad[0].tolist()}"


def expected(tok, texts, pairs=None, **kw):
    return tok(texts, pairs, padding=True, truncation=True, return_tensors="np", **kw)


@pytest.fixture(scope="module")
def tiny_path(checkpoint_factory):
    return checkpoint_factory(model_max_length=64)  # max_position_embeddings is 64 as well


@pytest.fixture(scope="module")
def tiny_cased_path(checkpoint_factory):
    return checkpoint_factory(lowercase=False, model_max_length=64)


@pytest.fixture(scope="module", params=["minilm", "tiny", "tiny_cased"])
def checkpoint(request):
    """(folder, numbert model, AutoTokenizer) for each tokenizer under test."""
    folder = request.getfixturevalue({"minilm": "minilm_path", "tiny": "tiny_path",
                                      "tiny_cased": "tiny_cased_path"}[request.param])
    return folder, numbert.load(folder), auto_tokenizer(folder)


def test_single_texts(checkpoint):
    _, model, tok = checkpoint
    batch = model.tokenize(TEXTS)
    assert_same(batch, expected(tok, TEXTS))
    assert batch.input_ids.shape[1] == model.tokenizer.model_max_length  # LONG was truncated
    assert batch.attention_mask.min() == 0  # and the others padded


def test_pairs(checkpoint):
    _, model, tok = checkpoint
    assert_same(model.tokenize(TEXTS, PAIRS), expected(tok, TEXTS, PAIRS))


def test_one_text_at_a_time(checkpoint):
    # No padding at all when a batch holds one text; a str is a batch of one.
    _, model, tok = checkpoint
    for i, text in enumerate(TEXTS):
        assert_same(model.tokenize([text]), expected(tok, [text]), f"text {i}: ")
        assert_same(model.tokenize(text, PAIRS[i]), expected(tok, [text], [PAIRS[i]]), f"pair {i}: ")


@pytest.mark.parametrize("max_length", [3, 4, 7, 16, 40])
def test_max_length(checkpoint, max_length):
    _, model, tok = checkpoint
    assert_same(model.tokenize(TEXTS, max_length=max_length), expected(tok, TEXTS, max_length=max_length))
    # Pairs cut to ~300 characters: `tokenizers` truncates a pair in time that grows with
    # length / max_length (numbert and transformers alike: 25 s for LONG at max_length 7).
    texts, pairs = [t[:300] for t in TEXTS], [t[:300] for t in PAIRS]
    assert_same(model.tokenize(texts, pairs, max_length=max_length),
                expected(tok, texts, pairs, max_length=max_length))


def test_max_length_refused(tiny_path):
    model = numbert.load(tiny_path)
    with pytest.raises(ValueError, match=r"max_length 65 exceeds .*\(64 tokens\)"):
        model.tokenize(TEXTS, max_length=65)
    for bad in (0, -1, 2.5, True, "10"):
        with pytest.raises(ValueError, match="max_length must be a positive integer"):
            model.tokenize(TEXTS, max_length=bad)


def test_truncates_at_max_position_embeddings_without_model_max_length(checkpoint_factory):
    # tokenizer_config.json without model_max_length: AutoTokenizer would not truncate at all,
    # but the model cannot read past its position table (64), so numbert truncates there.
    folder = checkpoint_factory()
    model = numbert.load(folder)
    assert model.tokenizer.model_max_length == model.config.max_position_embeddings == 64
    batch = model.tokenize(TEXTS, PAIRS)
    assert batch.input_ids.shape == (len(TEXTS), 64)
    assert_same(batch, expected(auto_tokenizer(folder), TEXTS, PAIRS, max_length=64))
    model(**batch)  # and the model accepts it


@pytest.mark.parametrize("name", ["minilm_path", "tiny_path", "tiny_cased_path"])
def test_vocab_txt_only(request, tmp_path, name):
    # A checkpoint with vocab.txt (+ tokenizer_config.json) and no tokenizer.json gets the BERT
    # WordPiece pipeline, equal to AutoTokenizer on the same checkpoint with its tokenizer.json.
    folder = request.getfixturevalue(name)
    for f in ("config.json", "model.safetensors", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(folder / f, tmp_path / f)
    assert not (tmp_path / "tokenizer.json").exists()
    model = numbert.load(tmp_path)
    tok = auto_tokenizer(folder)
    assert_same(model.tokenize(TEXTS), expected(tok, TEXTS), "single: ")
    assert_same(model.tokenize(TEXTS, PAIRS), expected(tok, TEXTS, PAIRS), "pairs: ")


def test_cased_and_uncased_differ(tiny_path, tiny_cased_path):
    uncased, cased = numbert.load(tiny_path), numbert.load(tiny_cased_path)
    assert uncased.tokenize("Café").tokens[0] != cased.tokenize("Café").tokens[0]
    assert uncased.tokenize("CAFÉ").input_ids.tolist() == uncased.tokenize("cafe").input_ids.tolist()


def test_batch_is_a_mapping_of_int64_arrays(tiny_path):
    model = numbert.load(tiny_path)
    batch = model.tokenize(["I love cats!", "hi"], ["a", "b c"])
    assert list(batch) == list(KEYS) and len(batch) == 3 and dict(batch).keys() == set(KEYS)
    for key in KEYS:
        assert batch[key] is getattr(batch, key) and batch[key].dtype == np.int64 and batch[key].ndim == 2
    assert batch.tokens[0][0] == "[CLS]" and batch.tokens[0][-1] == "[SEP]"
    with pytest.raises(KeyError):
        batch["tokens"]


@pytest.mark.parametrize("texts, pairs, where", [
    (["ok", 3], None, r"texts\[1\] is int"),
    ([None], None, r"texts\[0\] is NoneType"),
    (["ok", b"bytes"], None, r"texts\[1\] is bytes"),
    (["a", "b"], ["ok", 1.5], r"text_pairs\[1\] is float"),
    (None, None, "texts must be a str or a list of str"),
    (3, None, "texts must be a str or a list of str"),
])
def test_texts_that_are_not_str(tiny_path, texts, pairs, where):
    model = numbert.load(tiny_path)
    with pytest.raises(TypeError, match=where):
        model.tokenize(texts, pairs)


def test_pair_count_mismatch(tiny_path):
    model = numbert.load(tiny_path)
    with pytest.raises(ValueError, match="text_pairs has 1 texts but texts has 2"):
        model.tokenize(["a", "b"], ["c"])


def test_empty_list(tiny_path):
    # No texts: an empty [0, 0] batch (which the model then refuses: nothing to run).
    model = numbert.load(tiny_path)
    batch = model.tokenize([])
    assert all(batch[k].shape == (0, 0) and batch[k].dtype == np.int64 for k in KEYS)
    with pytest.raises(ValueError, match="input_ids is empty"):
        model(**batch)
