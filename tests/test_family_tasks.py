"""The tasks on the other families (DistilBERT, RoBERTa, XLM-R, ELECTRA, MPNet) against the same
references as for BERT: their tokenizers (byte-level BPE with RoBERTa's offset trimming, Unigram,
<mask> / <s> special tokens, no "##" word pieces) go through the same post-processing.
Labels, words, offsets and answers exactly, scores to 1e-5."""

from __future__ import annotations

import warnings

import pytest
from qa_reference import qa_pipeline
from task_models import (FAMILIES, LONG_TEXT, NLI_LABELS, TEXTS, assert_same_results, build_family_task_checkpoint,
                         cached_checkpoint, family_task_class)

import numbert

@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return lambda family, task: cached_checkpoint(tmp_path_factory, build_family_task_checkpoint, family, task)


@pytest.mark.parametrize("family", FAMILIES)
def test_fill_mask(checkpoint, family):
    import transformers

    folder = checkpoint(family, "masked-lm")
    pipe = transformers.pipeline("fill-mask", model=str(folder))
    mask = pipe.tokenizer.mask_token
    texts = [f"The {mask} is better than ugly.", f"Café {mask}, naïve résumé!", f"{mask} is {mask}."]
    assert_same_results(numbert.fill_mask(texts, numbert.load(folder, backend="numpy"), top_k=3),
                        pipe(texts, top_k=3))


@pytest.mark.parametrize("family", FAMILIES)
def test_ner(checkpoint, family):
    import transformers

    folder = checkpoint(family, "token-classification")
    model = numbert.load(folder, backend="numpy")
    with warnings.catch_warnings():  # BPE / Unigram: "Tokenizer does not support real words" (both sides)
        warnings.simplefilter("ignore")
        for strategy in ("none", "simple", "average"):
            pipe = transformers.pipeline("token-classification", model=str(folder), aggregation_strategy=strategy)
            assert_same_results(numbert.ner(TEXTS + [LONG_TEXT], model, aggregation_strategy=strategy),
                                pipe(TEXTS + [LONG_TEXT]))
        pipe = transformers.pipeline("token-classification", model=str(folder), aggregation_strategy="first", stride=12)
        assert_same_results(numbert.ner([LONG_TEXT], model, aggregation_strategy="first", stride=12), pipe([LONG_TEXT]))


@pytest.mark.parametrize("family", FAMILIES)
def test_answer(checkpoint, family):
    import torch
    import transformers

    folder = checkpoint(family, "question-answering")
    model = numbert.load(folder, backend="numpy")
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    torch_model = getattr(transformers, family_task_class(family, "question-answering")).from_pretrained(
        str(folder), attn_implementation="eager", dtype=torch.float32).eval()
    token_types = family in ("electra",)  # the others' embeddings have one token type (or none)
    for question, context, kwargs in [("Who met Macron?", TEXTS[0], {}),
                                      ("What?", LONG_TEXT, dict(top_k=3, doc_stride=8)),
                                      ("首都?", TEXTS[2], dict(top_k=2, handle_impossible_answer=True))]:
        ref = qa_pipeline(torch_model, tokenizer, question, context, token_types=token_types, **kwargs)
        ref = [ref] if isinstance(ref, dict) and kwargs.get("top_k", 1) > 1 else ref
        assert_same_results(numbert.answer(question, context, model, **kwargs), ref)


@pytest.mark.parametrize("family", ["roberta", "distilbert"])
def test_nli_zero_shot_and_rerank(tmp_path, family):
    import transformers
    from families import build_family_checkpoint
    from sentence_transformers import CrossEncoder

    nli = build_family_checkpoint(tmp_path / "nli", family, num_labels=3, id2label=NLI_LABELS)
    pipe = transformers.pipeline("zero-shot-classification", model=str(nli))
    labels = ["sport", "politics", "cooking"]
    for multi in (False, True):
        ours = numbert.classify(TEXTS, numbert.load(nli, backend="numpy"), labels=labels, top_k=None, multi_label=multi)
        for r, ref in zip(ours, pipe(TEXTS, candidate_labels=labels, multi_label=multi)):
            assert [d["label"] for d in r] == ref["labels"]
            assert max(abs(d["score"] - s) for d, s in zip(r, ref["scores"])) <= 1e-5
    ce = build_family_checkpoint(tmp_path / "ce", family, num_labels=1)
    query = "Who met Macron in Paris?"
    assert_same_results(numbert.rerank(query, TEXTS + [LONG_TEXT], numbert.load(ce, backend="numpy")),
                        CrossEncoder(str(ce)).rank(query, TEXTS + [LONG_TEXT]))
