"""numbert.answer: extractive question answering, as transformers' pipeline("question-answering").

Equal to QuestionAnsweringPipeline as transformers 4.x wrote it (pipelines/question_answering.py;
transformers 5 dropped the pipeline, not the models): the question and the context read as a
pair, [CLS] question [SEP] context-window [SEP]; a context too long for one pass is read in
windows that share `doc_stride` tokens; in each window, the start and end logits of the context
tokens become probabilities (a softmax each), a span's score is P(start) * P(end), spans longer
than `max_answer_len` tokens are left out, and the best spans map back to characters of the
context (widened to whole words). Shapes: T tokens, W windows.
"""

from __future__ import annotations

import numpy as np

from ..errors import positive_int
from ..tokenizer import check_texts
from . import encoding as E
from ..heads import require_head

MAX_SEQ_LEN = 384  # the pipeline's default window: min(model_max_length, 384) tokens
NULL_SCORE = 1000000.0  # the pipeline's starting "no answer" score: large, so any window's is lower


def answer(question, context, model, *, top_k=1, doc_stride=None, max_answer_len=15, max_seq_len=None,
           handle_impossible_answer=False, align_to_words=True, batch_size=32, backend=None, revision=None):
    """Find the answer to `question` in `context`: {"score", "start", "end", "answer"}.

    question, context: str, or lists of str (a list of questions and one context asks each
        question of that context; two lists pair up). A str question and context give one
        result, lists give a list of results.
    model: a Model, folder or Hub id of a question-answering checkpoint (BertForQuestionAnswering).
    top_k: 1 gives one dict per question; k > 1 a list of up to k dicts, best first (answers
        with the same text, found in several windows, are one answer whose scores add up).
    start / end: character positions in context: context[start:end] == answer.
    doc_stride: tokens shared by consecutive windows of a long context (default min(max_seq_len // 2, 128)).
    max_answer_len: the longest answer, in tokens. max_seq_len: tokens per window, question
        included (default min(the model's limit, 384)).
    handle_impossible_answer: also offer the empty answer {"score", "start": 0, "end": 0, "answer": ""},
        scored P([CLS] start) * P([CLS] end) (the lowest over windows), for models trained on
        unanswerable questions (SQuAD 2.0).
    align_to_words: widen the span to the whole words it touches (default, as the pipeline).
    """
    from ..api import get_model

    single = isinstance(question, str) and isinstance(context, str)
    pairs = _pairs(question, context)
    positive_int(top_k, "top_k")
    positive_int(max_answer_len, "max_answer_len")
    positive_int(batch_size, "batch_size")
    m = get_model(model, backend=backend, revision=revision)
    require_head(m, "question-answering", "answer")
    tok = m.tokenizer
    max_seq_len = min(tok.model_max_length, MAX_SEQ_LEN) if max_seq_len is None else max_seq_len
    positive_int(max_seq_len, "max_seq_len")
    if max_seq_len > tok.model_max_length:
        raise ValueError(f"max_seq_len {max_seq_len} exceeds what this model reads ({tok.model_max_length} tokens)")
    doc_stride = min(max_seq_len // 2, 128) if doc_stride is None else doc_stride
    if not isinstance(doc_stride, int) or isinstance(doc_stride, bool) or doc_stride < 0:
        raise ValueError(f"doc_stride must be a non-negative integer, found {doc_stride!r}")
    if doc_stride > max_seq_len:
        raise ValueError(f"doc_stride ({doc_stride}) is larger than max_seq_len ({max_seq_len})")
    if not pairs:
        return []

    windows, owner = _windows(m, pairs, max_seq_len, doc_stride)
    logits = E.run_batches(m, windows, _span_logits(m),
                           batch_size=batch_size, per_token=True, max_length=tok.model_max_length)  # W x [T, 2]
    cls_id = _cls_id(m)
    results = []
    for i, (_, context_text) in enumerate(pairs):
        mine = [w for w, o in enumerate(owner) if o == i]
        results.append(postprocess([windows[w] for w in mine], [logits[w] for w in mine], context_text, cls_id,
                                   top_k=top_k, handle_impossible_answer=handle_impossible_answer,
                                   max_answer_len=max_answer_len, align_to_words=align_to_words))
    return results[0] if single else results


def _span_logits(m):
    def rows_of(batch):  # [B, T, 2]: each token's start and end logit
        out = m(**batch)
        return np.stack([out.start_logits, out.end_logits], axis=-1)
    return rows_of


def _pairs(question, context) -> list[tuple[str, str]]:
    questions, contexts = check_texts(question, "question"), check_texts(context, "context")
    if isinstance(context, str) and not isinstance(question, str):
        contexts = contexts * len(questions)
    elif isinstance(question, str) and not isinstance(context, str):
        raise TypeError("question is a str but context is a list: pass a list of questions, one per context")
    if len(questions) != len(contexts):
        raise ValueError(f"question has {len(questions)} texts but context has {len(contexts)}; they must pair up")
    for name, texts in (("question", questions), ("context", contexts)):
        for i, t in enumerate(texts):
            if not t.strip():
                raise ValueError(f"{name}[{i}] is empty" if len(texts) > 1 or not isinstance(question, str)
                                 else f"{name} is empty")
    return list(zip(questions, contexts))


def _cls_id(m):
    token = E.special_token(m, "cls_token", ("[CLS]", "<s>"))
    return None if token is None else m.tokenizer.backend.token_to_id(token)


def _windows(m, pairs, max_seq_len, doc_stride):
    """[CLS] question [SEP] window [SEP] for each window of each context (truncation="only_second" with a stride)."""
    tok = m.tokenizer
    questions = E.encode(tok, [q for q, _ in pairs])
    contexts = E.encode(tok, [c for _, c in pairs])
    windows, owner = [], []
    for i, (q, c) in enumerate(zip(questions, contexts)):
        room = max_seq_len - E.num_special_tokens(tok, pair=True) - len(q)
        if len(c) > room:  # the context is cut; it must leave room for windows that move forward
            if room <= 0:
                raise ValueError(f"question[{i}] is {len(q)} tokens: with the special tokens it leaves no room for "
                                 f"the context in max_seq_len={max_seq_len}")
            if doc_stride >= room:
                raise ValueError(f"doc_stride {doc_stride} must be smaller than the {room} context tokens a window "
                                 f"holds beside question[{i}] (max_seq_len={max_seq_len}); lower doc_stride")
        for piece in E.split(c, room, doc_stride):
            windows.append(E.with_special_tokens(tok, q, piece))
            owner.append(i)
    return windows, owner


# ----------------------------------------------------------------------------- the pipeline's post-processing

def postprocess(windows, logits, context_text, cls_id, *, top_k=1, handle_impossible_answer=False,
                max_answer_len=15, align_to_words=True):
    """QuestionAnsweringPipeline.postprocess over one question's windows: its answers, best first."""
    min_null_score = NULL_SCORE
    answers = []
    for enc, window_logits in zip(windows, logits):
        # p_mask: 1 where a token cannot be in the answer: everything but the context, and the
        # [CLS] kept open (models trained on SQuAD 2.0 point there for "no answer")
        p_mask = np.array([s != 1 for s in enc.sequence_ids], dtype=np.int64)  # [T]
        if cls_id is not None:
            p_mask[np.asarray(enc.ids) == cls_id] = 0
        pre_topk = top_k * 2 + 10 if align_to_words else top_k  # aligning to words may merge candidates
        starts, ends, scores, min_null_score = select_starts_ends(
            window_logits[None, :, 0], window_logits[None, :, 1], p_mask, np.ones((1, len(enc.ids)), np.int64),
            min_null_score, pre_topk, handle_impossible_answer, max_answer_len)
        for s, e, score in zip(starts, ends, scores):
            start_index, end_index = get_indices(enc, int(s), int(e), 1, align_to_words)
            target = context_text[start_index:end_index]
            same = next((a for a in answers if a["answer"].lower() == target.lower()), None)
            if same is not None:
                same["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index, "answer": target})
    if handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
    if top_k == 1:
        return answers[0] if answers else None  # None: a context with no token to answer from
    return answers


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score=NULL_SCORE, top_k=1,
                       handle_impossible_answer=False, max_answer_len=15):
    """The pipeline's select_starts_ends: logits [1, T] -> candidate spans and their scores."""
    undesired_tokens = np.abs(np.array(p_mask) - 1)  # 1 where a token may be in the answer
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    # non-context tokens get a logit so low they take no share of the softmax
    start = np.where(undesired_tokens_mask, -10000.0, start)  # [1, T]
    end = np.where(undesired_tokens_mask, -10000.0, end)  # [1, T]
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0  # [CLS] is never the start or end of a real answer
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def decode_spans(start, end, topk, max_answer_len, undesired_tokens):
    """The pipeline's decode_spans: score every (start, end) with start <= end < start + max_answer_len."""
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))  # [1, T, T]: P(start) * P(end)
    candidates = np.tril(np.triu(outer), max_answer_len - 1)  # end >= start, end - start < max_answer_len
    scores_flat = candidates.flatten()
    if topk == 1:
        idx_sort = [np.argmax(scores_flat)]
    elif len(scores_flat) < topk:
        idx_sort = np.argsort(-scores_flat)
    else:
        idx = np.argpartition(-scores_flat, topk)[0:topk]
        idx_sort = idx[np.argsort(-scores_flat[idx])]
    starts, ends = np.unravel_index(idx_sort, candidates.shape)[1:]
    desired_spans = np.isin(starts, undesired_tokens.nonzero()) & np.isin(ends, undesired_tokens.nonzero())
    starts = starts[desired_spans]
    ends = ends[desired_spans]
    scores = candidates[0, starts, ends]
    return starts, ends, scores


def get_indices(enc, s: int, e: int, sequence_index: int, align_to_words: bool) -> tuple[int, int]:
    """Token span -> character span of the context; widened to whole words when align_to_words."""
    if align_to_words:
        try:
            start_word = enc.token_to_word(s)
            end_word = enc.token_to_word(e)
            return (enc.word_to_chars(start_word, sequence_index=sequence_index)[0],
                    enc.word_to_chars(end_word, sequence_index=sequence_index)[1])
        except Exception:  # a token with no word (e.g. [CLS]): keep to its offsets, as the pipeline does
            pass
    return enc.offsets[s][0], enc.offsets[e][1]
