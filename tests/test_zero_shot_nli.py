"""numbert.classify(texts, nli_model, labels=...) against pipeline("zero-shot-classification").

The pipeline's {"sequence", "labels", "scores"} is classify's top_k=None list in the same order:
labels exactly, scores to 1e-5. Single- and multi-label, a custom hypothesis template, one
label, texts with accents / CJK, a long text truncated before its hypothesis; both backends;
an entailment label found by name wherever it sits; the refusals.
"""

from __future__ import annotations

import pytest
from task_models import LONG_TEXT, TEXTS, build_task_checkpoint

import numbert

LABELS = ["sport", "politics", "cooking", "café"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_task_checkpoint(tmp_path_factory.mktemp("nli"), "nli")


def _pipeline(folder):
    import transformers

    return transformers.pipeline("zero-shot-classification", model=str(folder))


def _as_pipeline(texts, results):
    return [{"sequence": t, "labels": [d["label"] for d in r], "scores": [d["score"] for d in r]}
            for t, r in zip(texts, results)]


def _assert_equal(ours, theirs):
    assert len(ours) == len(theirs)
    for a, b in zip(ours, theirs):
        assert a["labels"] == b["labels"], (a, b)
        assert max(abs(x - y) for x, y in zip(a["scores"], b["scores"])) <= 1e-5, (a, b)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("kwargs", [{}, {"multi_label": True}, {"hypothesis_template": "Das ist {}."}],
                         ids=["single", "multi", "template"])
def test_equals_the_pipeline(folder, backend, kwargs):
    model = numbert.load(folder, backend=backend)
    texts = TEXTS + [LONG_TEXT]
    ours = numbert.classify(texts, model, labels=LABELS, top_k=None, multi_label=kwargs.get("multi_label", False),
                            template=kwargs.get("hypothesis_template"))
    _assert_equal(_as_pipeline(texts, ours), _pipeline(folder)(texts, candidate_labels=LABELS, **kwargs))
    if not kwargs.get("multi_label"):
        assert all(abs(sum(d["score"] for d in r) - 1) < 1e-5 for r in ours)


def test_one_label_and_top_k(folder):
    """One label scores entailment against contradiction, as the pipeline does; top_k=1 is the best label."""
    model = numbert.load(folder, backend="numpy")
    pipe = _pipeline(folder)
    ours = numbert.classify(TEXTS, model, labels=["sport"], top_k=None)
    _assert_equal(_as_pipeline(TEXTS, ours), pipe(TEXTS, candidate_labels=["sport"]))
    best = numbert.classify(TEXTS[0], model, labels=LABELS)
    ref = pipe(TEXTS[0], candidate_labels=LABELS)
    assert best["label"] == ref["labels"][0] and abs(best["score"] - ref["scores"][0]) <= 1e-5


def test_entailment_found_by_name(tmp_path):
    """entailment at id 0: contradiction is then read at the last id (the pipeline's rule)."""
    folder = build_task_checkpoint(tmp_path, "nli", id2label={0: "ENTAILMENT", 1: "neutral", 2: "contradiction"},
                                   seed=2)
    model = numbert.load(folder, backend="numpy")
    for multi in (False, True):
        ours = numbert.classify(TEXTS, model, labels=LABELS, top_k=None, multi_label=multi)
        _assert_equal(_as_pipeline(TEXTS, ours), _pipeline(folder)(TEXTS, candidate_labels=LABELS, multi_label=multi))


def test_refusals(folder, tmp_path_factory):
    model = numbert.load(folder, backend="numpy")
    with pytest.raises(ValueError, match="hypothesis template 'no slot' cannot take the labels"):
        numbert.classify("x", model, labels=LABELS, template="no slot")
    with pytest.raises(ValueError, match="text_pair cannot go with labels="):
        numbert.classify("x", model, labels=LABELS, text_pair="y")
    with pytest.raises(ValueError, match="hypothesis for labels\\[0\\] .* too long"):
        numbert.classify("x", model, labels=["very long " * 40, "b"])
    with pytest.raises(ValueError, match='long_text="window" is not for NLI zero-shot'):
        numbert.classify("x", model, labels=LABELS, long_text="window")
    plain = build_task_checkpoint(tmp_path_factory.mktemp("cls"), "nli", id2label={0: "neg", 1: "pos"})
    with pytest.raises(ValueError, match="labels= is for zero-shot .* an NLI head"):
        numbert.classify("x", plain, labels=LABELS)
    with pytest.raises(ValueError, match="multi_label is for zero-shot labels= with an NLI model"):
        numbert.classify("x", plain, multi_label=True)
