"""numbert.rerank against sentence-transformers' CrossEncoder.rank / .predict on the same folder.

A one-label BertForSequenceClassification is a cross-encoder: the (query, document) pair,
truncated longest-first, through the classifier, then sigmoid (or the activation its
config.json names). Order and corpus ids exactly, scores to 1e-5; both backends; refusals.
"""

from __future__ import annotations

import numpy as np
import pytest
from task_models import LONG_TEXT, TEXTS, assert_same_results, build_task_checkpoint

import numbert

QUERY = "Who met Macron in Paris?"
DOCS = TEXTS + [LONG_TEXT, "Paris, 東京, Ångström."]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_task_checkpoint(tmp_path_factory.mktemp("ce"), "cross-encoder")


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_equals_cross_encoder_rank(folder, backend):
    from sentence_transformers import CrossEncoder

    model, ce = numbert.load(folder, backend=backend), CrossEncoder(str(folder))
    assert_same_results(numbert.rerank(QUERY, DOCS, model), ce.rank(QUERY, DOCS))
    assert_same_results(numbert.rerank(QUERY, DOCS, model, top_k=3, return_documents=True),
                        ce.rank(QUERY, DOCS, top_k=3, return_documents=True))
    # predict gives the same scores, in document order
    scores = ce.predict([(QUERY, d) for d in DOCS])
    ranked = numbert.rerank(QUERY, DOCS, model)
    assert max(abs(r["score"] - scores[r["corpus_id"]]) for r in ranked) <= 1e-5


def test_activation_from_the_config(tmp_path):
    """A CrossEncoder saved with Identity gives raw logits; activation= overrides the config."""
    from sentence_transformers import CrossEncoder

    folder = build_task_checkpoint(tmp_path, "cross-encoder", seed=4,
                                   activation_fn="torch.nn.modules.linear.Identity")
    model, ce = numbert.load(folder, backend="numpy"), CrossEncoder(str(folder))
    ours = numbert.rerank(QUERY, DOCS, model)
    assert_same_results(ours, ce.rank(QUERY, DOCS))
    import torch

    squashed = numbert.rerank(QUERY, DOCS, model, activation="sigmoid")
    assert_same_results(squashed, ce.rank(QUERY, DOCS, activation_fn=torch.nn.Sigmoid()))
    raw = {r["corpus_id"]: r["score"] for r in ours}  # raw logits, not probabilities
    assert all(abs(1 / (1 + np.exp(-raw[r["corpus_id"]])) - r["score"]) < 1e-6 for r in squashed)
    assert max(abs(raw[r["corpus_id"]] - r["score"]) for r in squashed) > 0.01


def test_refusals(folder, tmp_path_factory):
    model = numbert.load(folder, backend="numpy")
    with pytest.raises(ValueError, match="query is empty"):
        numbert.rerank(" ", DOCS, model)
    with pytest.raises(TypeError, match="query must be a str"):
        numbert.rerank(["a"], DOCS, model)
    with pytest.raises(TypeError, match=r"documents\[1\] is int"):
        numbert.rerank(QUERY, ["a", 2], model)
    with pytest.raises(ValueError, match="top_k must be a positive integer or None"):
        numbert.rerank(QUERY, DOCS, model, top_k=0)
    with pytest.raises(ValueError, match="activation must be sigmoid, none or tanh"):
        numbert.rerank(QUERY, DOCS, model, activation="relu")
    assert numbert.rerank(QUERY, [], model) == []
    nli = build_task_checkpoint(tmp_path_factory.mktemp("nli"), "nli")
    with pytest.raises(ValueError, match="rerank needs a cross-encoder with one output .* 3 labels"):
        numbert.rerank(QUERY, DOCS, nli)
    qa = build_task_checkpoint(tmp_path_factory.mktemp("qa"), "question-answering")
    with pytest.raises(ValueError, match="is not a cross-encoder"):
        numbert.rerank(QUERY, DOCS, qa)
