"""numbert.fill_mask against transformers' pipeline("fill-mask") on the same checkpoint folder.

Tokens, token strings and rebuilt sequences exactly, scores to 1e-5; one mask, several masks,
top_k, targets (in and out of the vocabulary), accents and CJK; both backends; the refusals.
"""

from __future__ import annotations

import warnings

import pytest
from task_models import assert_same_results, build_task_checkpoint

import numbert

TEXTS = [
    "The [MASK] is better than ugly.",
    "Café [MASK], naïve résumé!",
    "東京は[MASK]本の首都です。",
    "[MASK] is better than implicit?!",
]
SEVERAL = ["[MASK] [MASK] implicit.", "Flat is [MASK] than nested, sparse is better than [MASK]."]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_task_checkpoint(tmp_path_factory.mktemp("mlm"), "masked-lm")


@pytest.fixture(scope="module")
def pipe(folder):
    import transformers

    return transformers.pipeline("fill-mask", model=str(folder))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_one_mask_equals_the_pipeline(folder, pipe, backend):
    model = numbert.load(folder, backend=backend)
    for text in TEXTS:
        assert_same_results(numbert.fill_mask(text, model), pipe(text))
    assert_same_results(numbert.fill_mask(TEXTS, model, top_k=3), pipe(TEXTS, top_k=3))


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_several_masks_equal_the_pipeline(folder, pipe, backend):
    """One list per mask; the sequences keep [CLS], [SEP] and the other masks, as the pipeline's do."""
    model = numbert.load(folder, backend=backend)
    ours, theirs = numbert.fill_mask(SEVERAL, model, top_k=4), pipe(SEVERAL, top_k=4)
    assert_same_results(ours, theirs)
    assert len(ours[0]) == 2 and len(ours[0][0]) == 4 and "[MASK]" in ours[0][0][0]["sequence"]


def test_targets_equal_the_pipeline(folder, pipe):
    model = numbert.load(folder, backend="numpy")
    targets = ["is", "better", "ugly", "ca"]  # all in the vocabulary
    assert_same_results(numbert.fill_mask(TEXTS, model, targets=targets, top_k=10),
                        pipe(TEXTS, targets=targets, top_k=10))  # top_k capped at the 4 targets
    assert_same_results(numbert.fill_mask(TEXTS[0], model, targets="better"), pipe(TEXTS[0], targets="better"))


def test_targets_outside_the_vocabulary(folder, pipe):
    """A word not in the vocabulary scores its first token, with a warning, as the pipeline does."""
    model = numbert.load(folder, backend="numpy")
    with pytest.warns(UserWarning, match="'cat' is not in the vocabulary; scoring its first token 'ca'"):
        ours = numbert.fill_mask(TEXTS[0], model, targets=["cat", "is"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert_same_results(ours, pipe(TEXTS[0], targets=["cat", "is"]))
    with pytest.raises(ValueError, match="targets .* give no token"):
        numbert.fill_mask(TEXTS[0], model, targets=[" "])


def test_results_shape(folder):
    model = numbert.load(folder, backend="numpy")
    one = numbert.fill_mask(TEXTS[0], model, top_k=2)
    assert isinstance(one, list) and len(one) == 2 and set(one[0]) == {"score", "token", "token_str", "sequence"}
    assert one[0]["score"] >= one[1]["score"]
    assert numbert.fill_mask([TEXTS[0]], model, top_k=2) == [one]  # a list in, a list out
    assert numbert.fill_mask([], model) == []
    big = numbert.fill_mask(TEXTS[0], model, top_k=10_000)  # capped at the vocabulary
    assert len(big) == model.config.vocab_size
    assert abs(sum(d["score"] for d in big) - 1) < 1e-4


def test_long_texts(folder):
    model = numbert.load(folder, backend="numpy")
    long = "[MASK] " + "beautiful is better than ugly " * 30
    with pytest.raises(ValueError, match=r"texts\[0\] is \d+ tokens, longer than the 64 .* truncation=True"):
        numbert.fill_mask(long, model)
    assert len(numbert.fill_mask(long, model, truncation=True)) == 5
    with pytest.raises(ValueError, match=r"texts\[0\] has no mask token \[MASK\] within its first 64 tokens"):
        numbert.fill_mask("beautiful is better than ugly " * 30 + "[MASK]", model, truncation=True)


def test_refusals(folder, tmp_path_factory):
    model = numbert.load(folder, backend="numpy")
    with pytest.raises(ValueError, match=r"texts\[1\] has no mask token \[MASK\]"):
        numbert.fill_mask(["a [MASK] b", "no mask here"], model)
    with pytest.raises(ValueError, match="top_k must be a positive integer"):
        numbert.fill_mask(TEXTS[0], model, top_k=0)
    with pytest.raises(TypeError, match=r"texts\[0\] is int"):
        numbert.fill_mask([3], model)
    ner = build_task_checkpoint(tmp_path_factory.mktemp("ner"), "token-classification")
    with pytest.raises(ValueError, match="fill_mask needs a masked-lm model .*BertForMaskedLM.*token-classification head"):
        numbert.fill_mask(TEXTS[0], ner)


def test_clean_up_tokenization_spaces(tmp_path):
    """clean_up_tokenization_spaces in tokenizer_config.json (older BERT uploads set it): " ." -> "." as transformers."""
    import json

    import transformers

    folder = build_task_checkpoint(tmp_path, "masked-lm", seed=5)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    (folder / "tokenizer_config.json").write_text(json.dumps({**config, "clean_up_tokenization_spaces": True}))
    texts = ["Beautiful is [MASK] , ugly ! n't it ?", "[MASK] [MASK] ."]
    ours = numbert.fill_mask(texts, numbert.load(folder, backend="numpy"))
    assert_same_results(ours, transformers.pipeline("fill-mask", model=str(folder))(texts))
