"""numbert.rerank: score documents against a query with a cross-encoder, as sentence-transformers does.

A cross-encoder is a sequence-classification model that reads the query and a document as one
pair, [CLS] query [SEP] document [SEP], and gives one logit: how relevant the document is.
Equal to sentence_transformers.CrossEncoder.rank (and .predict): the pair truncated longest-first
to the model's length, the logit through the model's activation (sigmoid for a one-label model,
unless its config.json names another). Shapes: D documents.
"""

from __future__ import annotations

import json

import numpy as np

from ..errors import positive_int
from ..tokenizer import check_texts

# sentence-transformers' activation_fn as saved in config.json -> what it computes
ACTIVATIONS = {
    "torch.nn.modules.activation.Sigmoid": "sigmoid",
    "torch.nn.modules.linear.Identity": "none",
    "torch.nn.modules.activation.Tanh": "tanh",
}


def rerank(query, documents, model, *, top_k=None, return_documents=False, activation=None, batch_size=32,
           backend=None, revision=None):
    """Documents sorted by relevance to the query: [{"corpus_id", "score"(, "text")}], best first.

    corpus_id is the document's index in `documents`. model: a Model, folder or Hub id of a
    cross-encoder (a sequence-classification checkpoint with one label, e.g.
    cross-encoder/ms-marco-MiniLM-L6-v2). activation: "sigmoid", "none" (raw logits) or "tanh";
    default: what the model's config.json says for sentence-transformers, else sigmoid.
    top_k: keep the k best (None: all). return_documents: add each document's text.
    """
    from ..api import get_model

    if not isinstance(query, str):
        raise TypeError(f"query must be a str, found {type(query).__name__}")
    if not query.strip():
        raise ValueError("query is empty")
    documents = check_texts(documents, "documents")
    positive_int(top_k, "top_k", none_ok=True)
    positive_int(batch_size, "batch_size")
    m = get_model(model, backend=backend, revision=revision)
    if m.weights.classifier is None or m.head is not None:  # no sequence classifier, or a token-level head
        raise ValueError(f"{m.path} is not a cross-encoder: rerank needs a sequence-classification checkpoint "
                         "(e.g. BertForSequenceClassification) with one label")
    if m.config.num_labels != 1:
        raise ValueError(f"rerank needs a cross-encoder with one output (a relevance score); {m.path} has "
                         f"{m.config.num_labels} labels: score pairs with numbert.classify(texts, text_pair=...)")
    activation = default_activation(m) if activation is None else activation
    if activation not in ("sigmoid", "none", "tanh"):
        raise ValueError(f"activation must be sigmoid, none or tanh, found {activation!r}")
    if not documents:
        return []
    scores = apply(logits(m, [query] * len(documents), documents, batch_size)[:, 0], activation)  # [D]
    results = [{"corpus_id": i, "score": float(s)} for i, s in enumerate(scores)]
    if return_documents:
        for r in results:
            r["text"] = documents[r["corpus_id"]]
    results = sorted(results, key=lambda r: r["score"], reverse=True)
    return results[:top_k]


def logits(m, firsts, seconds, batch_size) -> np.ndarray:
    """[P, C] classifier logits of P pairs, longest-first truncated, in length-sorted batches."""
    lengths = np.asarray(m.tokenizer.count_tokens(firsts)) + np.asarray(m.tokenizer.count_tokens(seconds))
    order = np.argsort(lengths, kind="stable")
    rows = [None] * len(firsts)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = m.tokenize([firsts[i] for i in idx], [seconds[i] for i in idx])
        out = m(**batch).logits  # [B, C]
        for b, i in enumerate(idx):
            rows[i] = out[b]
    return np.stack(rows).astype(np.float32)


def default_activation(m) -> str:
    """CrossEncoder.get_default_activation_fn: config.json's sentence_transformers.activation_fn, else sigmoid."""
    path = None  # the activation's dotted name, as sentence-transformers saves it
    try:
        config = json.loads((m.path / "config.json").read_text(encoding="utf-8")) if m.path is not None else {}
    except (OSError, ValueError):
        config = {}
    st = config.get("sentence_transformers")
    if isinstance(st, dict) and st.get("activation_fn"):
        path = st["activation_fn"]
    elif config.get("sbert_ce_default_activation_function"):  # sentence-transformers < 4
        path = config["sbert_ce_default_activation_function"]
    if path in ACTIVATIONS:
        return ACTIVATIONS[path]
    return "sigmoid" if m.config.num_labels == 1 else "none"


def apply(x, activation: str) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    if activation == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if activation == "tanh":
        return np.tanh(x)
    return x
