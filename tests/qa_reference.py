"""transformers 4.x's question-answering pipeline, kept here as the oracle for numbert.answer.

transformers 5 removed pipeline("question-answering") (the models stay). This is its code as
transformers 4.57.1 shipped it (pipelines/question_answering.py: decode_spans,
select_starts_ends, and the fast-tokenizer paths of QuestionAnsweringPipeline.preprocess /
_forward / postprocess), verbatim except that it runs one example at a time without the
Pipeline machinery, on transformers' own tokenizer and torch model. Checked against the
4.57.1 pipeline itself on the tests' cases (see the note in tests/test_qa.py).
"""

from __future__ import annotations

import numpy as np


def decode_spans(start, end, topk, max_answer_len, undesired_tokens):
    if start.ndim == 1:
        start = start[None]
    if end.ndim == 1:
        end = end[None]
    outer = np.matmul(np.expand_dims(start, -1), np.expand_dims(end, 1))
    candidates = np.tril(np.triu(outer), max_answer_len - 1)
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


def select_starts_ends(start, end, p_mask, attention_mask, min_null_score=1000000, top_k=1,
                       handle_impossible_answer=False, max_answer_len=15):
    undesired_tokens = np.abs(np.array(p_mask) - 1)
    if attention_mask is not None:
        undesired_tokens = undesired_tokens & attention_mask
    undesired_tokens_mask = undesired_tokens == 0.0
    start = np.where(undesired_tokens_mask, -10000.0, start)
    end = np.where(undesired_tokens_mask, -10000.0, end)
    start = np.exp(start - start.max(axis=-1, keepdims=True))
    start = start / start.sum()
    end = np.exp(end - end.max(axis=-1, keepdims=True))
    end = end / end.sum()
    if handle_impossible_answer:
        min_null_score = min(min_null_score, (start[0, 0] * end[0, 0]).item())
    start[0, 0] = end[0, 0] = 0.0
    starts, ends, scores = decode_spans(start, end, top_k, max_answer_len, undesired_tokens)
    return starts, ends, scores, min_null_score


def get_indices(enc, s, e, sequence_index, align_to_words):
    if align_to_words:
        try:
            start_word = enc.token_to_word(s)
            end_word = enc.token_to_word(e)
            start_index = enc.word_to_chars(start_word, sequence_index=sequence_index)[0]
            end_index = enc.word_to_chars(end_word, sequence_index=sequence_index)[1]
        except Exception:
            start_index = enc.offsets[s][0]
            end_index = enc.offsets[e][1]
    else:
        start_index = enc.offsets[s][0]
        end_index = enc.offsets[e][1]
    return start_index, end_index


def qa_pipeline(model, tokenizer, question, context, top_k=1, doc_stride=None, max_answer_len=15, max_seq_len=None,
                handle_impossible_answer=False, align_to_words=True, token_types=True):
    """QuestionAnsweringPipeline(model, tokenizer)(question=question, context=context, ...), transformers 4.57.1.

    token_types=False (the one change, for RoBERTa-like models): the model reads no token_type_ids.
    tokenizers gives the context of every window after the first type id 1 even where the template
    says 0, which indexes past XLM-RoBERTa's one-row token-type table (the 4.57 pipeline then fails
    on long contexts); those models read zeros, as they do for the first window.
    """
    import torch

    if max_seq_len is None:
        max_seq_len = min(tokenizer.model_max_length, 384)
    if doc_stride is None:
        doc_stride = min(max_seq_len // 2, 128)
    if doc_stride > max_seq_len:
        raise ValueError(f"`doc_stride` ({doc_stride}) is larger than `max_seq_len` ({max_seq_len})")
    question_first = tokenizer.padding_side == "right"
    encoded_inputs = tokenizer(
        text=question if question_first else context,
        text_pair=context if question_first else question,
        padding="do_not_pad",
        truncation="only_second" if question_first else "only_first",
        max_length=max_seq_len,
        stride=doc_stride,
        return_token_type_ids=True,
        return_overflowing_tokens=True,
        return_offsets_mapping=True,
        return_special_tokens_mask=True,
    )
    num_spans = len(encoded_inputs["input_ids"])
    p_mask = [[tok != 1 if question_first else 0 for tok in encoded_inputs.sequence_ids(span_id)]
              for span_id in range(num_spans)]
    min_null_score = 1000000
    answers = []
    for span_idx in range(num_spans):
        input_ids = encoded_inputs["input_ids"][span_idx]
        if tokenizer.cls_token_id is not None:
            cls_indices = np.nonzero(np.array(input_ids) == tokenizer.cls_token_id)[0]
            for cls_index in cls_indices:
                p_mask[span_idx][cls_index] = 0
        fw = {k: torch.tensor(encoded_inputs[k][span_idx]).unsqueeze(0)
              for k in ("input_ids", "attention_mask", "token_type_ids") if token_types or k != "token_type_ids"}
        with torch.no_grad():
            output = model(**fw)
        start_, end_ = output["start_logits"], output["end_logits"]
        attention_mask = fw["attention_mask"].numpy()
        p_mask_t = torch.tensor(p_mask[span_idx]).unsqueeze(0)
        pre_topk = top_k * 2 + 10 if align_to_words else top_k
        starts, ends, scores, min_null_score = select_starts_ends(
            start_, end_, p_mask_t, attention_mask, min_null_score, pre_topk, handle_impossible_answer, max_answer_len)
        enc = encoded_inputs[span_idx]
        sequence_index = 1 if question_first else 0
        for s, e, score in zip(starts, ends, scores):
            start_index, end_index = get_indices(enc, s, e, sequence_index, align_to_words)
            target_answer = context[start_index:end_index]
            answer = next((a for a in answers if a["answer"].lower() == target_answer.lower()), None)
            if answer:
                answer["score"] += score.item()
            else:
                answers.append({"score": score.item(), "start": start_index, "end": end_index,
                                "answer": context[start_index:end_index]})
    if handle_impossible_answer:
        answers.append({"score": min_null_score, "start": 0, "end": 0, "answer": ""})
    answers = sorted(answers, key=lambda x: x["score"], reverse=True)[:top_k]
    if len(answers) == 1:
        return answers[0]
    return answers
