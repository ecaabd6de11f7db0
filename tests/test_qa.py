"""numbert.answer against transformers' question-answering pipeline on the same checkpoint folder.

transformers 5 no longer ships pipeline("question-answering"); tests/qa_reference.py is the
4.57.1 pipeline's code run on transformers' own tokenizer and torch model. (Checked once by
hand: on these cases the 4.57.1 pipeline itself, installed beside torch, gives the same
answers, starts and ends, scores within 1.1e-8.) Answers, starts and ends exactly, scores to
1e-5: short and long contexts (several windows), doc_stride, max_answer_len, top_k,
handle_impossible_answer, align_to_words, accents and CJK; both backends; the refusals.
"""

from __future__ import annotations

import pytest
from qa_reference import qa_pipeline
from task_models import LONG_TEXT, TEXTS, assert_same_results, build_task_checkpoint, oracle_model

import numbert

CASES = [
    ("Who met Macron?", TEXTS[0], {}),
    ("What is café?", TEXTS[1], dict(top_k=3)),
    ("首都はどこ?", TEXTS[2], dict(top_k=2, align_to_words=False)),
    ("首都はどこ?", TEXTS[2], dict(top_k=2)),
    ("What is better?", LONG_TEXT, {}),
    ("What is better than ugly?", LONG_TEXT, dict(top_k=5, doc_stride=10, max_answer_len=5)),
    ("Which numbers?", TEXTS[3], dict(handle_impossible_answer=True, top_k=3)),
    ("Where?", LONG_TEXT, dict(handle_impossible_answer=True, max_seq_len=40, doc_stride=8)),
    ("fox?", TEXTS[4], dict(max_answer_len=1, top_k=4)),
    ("Is it?", TEXTS[5], dict(max_seq_len=20, doc_stride=4, top_k=3)),
]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return build_task_checkpoint(tmp_path_factory.mktemp("qa"), "question-answering")


@pytest.fixture(scope="module")
def reference(folder):
    import transformers

    tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder))
    torch_model = oracle_model(folder, "question-answering")
    out = []
    for question, context, kwargs in CASES:
        ref = qa_pipeline(torch_model, tokenizer, question, context, **kwargs)
        # the pipeline unwraps a list of one answer even when top_k > 1; numbert keeps the list
        out.append([ref] if isinstance(ref, dict) and kwargs.get("top_k", 1) > 1 else ref)
    return out


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_equals_the_pipeline(folder, reference, backend):
    model = numbert.load(folder, backend=backend)
    for (question, context, kwargs), ref in zip(CASES, reference):
        ours = numbert.answer(question, context, model, **kwargs)
        assert_same_results(ours, ref)
        for a in ours if isinstance(ours, list) else [ours]:
            assert context[a["start"]:a["end"]] == a["answer"]


def test_windows(folder):
    """A long context is read in windows; the best answer can come from any of them."""
    model = numbert.load(folder, backend="numpy")
    best = numbert.answer("Where?", LONG_TEXT, model, top_k=20, max_seq_len=40, doc_stride=8)
    assert max(a["end"] for a in best) > 300  # answers from the later windows, not just the first
    assert [a["score"] for a in best] == sorted((a["score"] for a in best), reverse=True)


def test_lists(folder, reference):
    model = numbert.load(folder, backend="numpy")
    ours = numbert.answer([CASES[0][0], CASES[4][0]], [CASES[0][1], CASES[4][1]], model)
    assert_same_results(ours, [reference[0], reference[4]])
    one_context = numbert.answer(["Who?", "Where?"], TEXTS[0], model)
    assert len(one_context) == 2 and all(set(a) == {"score", "start", "end", "answer"} for a in one_context)
    assert numbert.answer([], [], model) == []


def test_refusals(folder, tmp_path_factory):
    model = numbert.load(folder, backend="numpy")
    with pytest.raises(ValueError, match="question is empty"):
        numbert.answer("  ", TEXTS[0], model)
    with pytest.raises(ValueError, match="context is empty"):
        numbert.answer("Who?", "", model)
    with pytest.raises(ValueError, match=r"question\[1\] is empty"):
        numbert.answer(["Who?", ""], TEXTS[0], model)
    with pytest.raises(ValueError, match="question has 2 texts but context has 3"):
        numbert.answer(["a", "b"], ["c", "d", "e"], model)
    with pytest.raises(TypeError, match="question is a str but context is a list"):
        numbert.answer("a", ["c", "d"], model)
    with pytest.raises(ValueError, match=r"doc_stride \(50\) is larger than max_seq_len \(40\)"):
        numbert.answer("Who?", LONG_TEXT, model, max_seq_len=40, doc_stride=50)
    # (transformers' tokenizer panics here: "`stride` must be strictly less than `max_len`")
    with pytest.raises(ValueError, match=r"doc_stride 36 must be smaller than the \d+ context tokens"):
        numbert.answer("Who?", LONG_TEXT, model, max_seq_len=40, doc_stride=36)
    with pytest.raises(ValueError, match=r"question\[0\] is \d+ tokens: .* no room for the context"):
        numbert.answer("why " * 40, LONG_TEXT, model, max_seq_len=40, doc_stride=4)
    with pytest.raises(ValueError, match="max_seq_len 100 exceeds what this model reads"):
        numbert.answer("Who?", TEXTS[0], model, max_seq_len=100)
    for name in ("top_k", "max_answer_len"):
        with pytest.raises(ValueError, match=f"{name} must be a positive integer"):
            numbert.answer("Who?", TEXTS[0], model, **{name: 0})
    nli = build_task_checkpoint(tmp_path_factory.mktemp("nli"), "nli")
    with pytest.raises(ValueError, match="answer needs a question-answering model .*sequence-classification head"):
        numbert.answer("Who?", TEXTS[0], nli)


def test_threads_share_a_model(folder, tmp_path_factory):
    """8 threads asking questions, finding entities and filling masks on shared models: the serial results."""
    from concurrent.futures import ThreadPoolExecutor

    qa = numbert.load(folder, backend="numba")
    ner = numbert.load(build_task_checkpoint(tmp_path_factory.mktemp("ner"), "token-classification"), backend="numba")
    jobs = [lambda: numbert.answer("Where?", LONG_TEXT, qa, top_k=3, max_seq_len=40, doc_stride=8),
            lambda: numbert.answer(["Who?", "首都?"], [TEXTS[0], TEXTS[2]], qa),
            lambda: numbert.ner(TEXTS + [LONG_TEXT], ner, aggregation_strategy="simple", stride=16),
            lambda: numbert.ner(TEXTS, ner)]
    serial = [job() for job in jobs]
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda i: (i % len(jobs), jobs[i % len(jobs)]()), range(48)))
    assert all(result == serial[i] for i, result in results)
