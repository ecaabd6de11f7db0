"""numbert.ner against transformers' pipeline("token-classification") on the same checkpoint folder.

Every aggregation strategy, labels / words / start / end exactly and scores to 1e-5, on texts
with accents, CJK, emoji (an [UNK] piece), punctuation and several entities; ignore_labels;
long texts truncated (as the pipeline without stride) or read in windows (stride); both
backends; the refusals.
"""

from __future__ import annotations

import warnings

import pytest
from task_models import LONG_TEXT, NER_LABELS, TEXTS, assert_same_results, build_task_checkpoint

import numbert

STRATEGIES = ["none", "simple", "first", "average", "max"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_task_checkpoint(tmp_path_factory.mktemp("ner"), "token-classification")


@pytest.fixture(scope="module")
def model(folder):
    return numbert.load(folder, backend="numpy")


def _pipeline(folder, **kwargs):
    import transformers

    return transformers.pipeline("token-classification", model=str(folder), **kwargs)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_equals_the_pipeline(folder, model, strategy):
    pipe = _pipeline(folder, aggregation_strategy=strategy)
    texts = TEXTS + [LONG_TEXT]  # the long one is cut at 64 tokens, by both
    ours = numbert.ner(texts, model, aggregation_strategy=strategy)
    assert_same_results(ours, pipe(texts))
    assert sum(len(r) for r in ours) > 10  # the test reads entities, not empty lists
    assert_same_results(numbert.ner(TEXTS, model, aggregation_strategy=strategy, ignore_labels=[]),
                        pipe(TEXTS, ignore_labels=[]))


def test_numba_backend(folder):
    model = numbert.load(folder, backend="numba")
    for strategy in ("none", "average"):
        assert_same_results(numbert.ner(TEXTS, model, aggregation_strategy=strategy),
                            _pipeline(folder, aggregation_strategy=strategy)(TEXTS))


@pytest.mark.parametrize("strategy", ["simple", "first", "max"])
def test_windows_equal_the_pipeline_with_stride(folder, model, strategy):
    """stride: the whole text in overlapping windows; overlapping entities merged as the pipeline does."""
    texts = [LONG_TEXT, TEXTS[0], LONG_TEXT[:200]]
    for stride in (16, 0):
        ours = numbert.ner(texts, model, aggregation_strategy=strategy, stride=stride)
        assert_same_results(ours, _pipeline(folder, aggregation_strategy=strategy, stride=stride)(texts))
        assert max(e["end"] for e in ours[0]) > 250  # entities from the later windows too


def test_offsets_index_the_text(model):
    for text, entities in zip(TEXTS, numbert.ner(TEXTS, model, aggregation_strategy="none", ignore_labels=[])):
        for e in entities:
            assert e["entity"] in NER_LABELS.values()
            piece = text[e["start"]:e["end"]]
            # the token is its piece of text, lowercased and accent-stripped ("##" on a word's later
            # pieces); an [UNK] token is reported as the text it stands for, as the pipeline does
            assert len(e["word"].removeprefix("##")) == len(piece) > 0, (e, piece)
    single = numbert.ner(TEXTS[0], model, aggregation_strategy="simple", ignore_labels=[])
    assert isinstance(single, list) and set(single[0]) == {"entity_group", "score", "word", "start", "end"}
    assert numbert.ner([], model) == []


def test_refusals(folder, model, tmp_path_factory):
    with pytest.raises(ValueError, match="aggregation_strategy must be one of none, simple, first, average, max"):
        numbert.ner(TEXTS[0], model, aggregation_strategy="longest")
    with pytest.raises(ValueError, match='stride .* aggregation_strategy other than "none"'):
        numbert.ner(TEXTS[0], model, stride=8)
    with pytest.raises(ValueError, match=r"stride .* must be an integer in \[0, 62\)"):
        numbert.ner(TEXTS[0], model, aggregation_strategy="simple", stride=62)
    with pytest.raises(TypeError, match=r"texts\[1\] is NoneType"):
        numbert.ner(["a", None], model)
    mlm = build_task_checkpoint(tmp_path_factory.mktemp("mlm"), "masked-lm")
    with pytest.raises(ValueError, match="ner needs a token-classification model .*BertForTokenClassification"):
        numbert.ner(TEXTS[0], mlm)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        assert numbert.ner("x", model, aggregation_strategy="AVERAGE") == numbert.ner("x", model,
                                                                                   aggregation_strategy="average")
