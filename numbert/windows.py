"""Long texts read whole: each text cut into overlapping windows of token ids, and id lists padded into a Batch.

numbert.classify / embed with long_text="window" run every window as its own row and average
the windows' results per text. The windows are the ones transformers' tokenizer gives with
`truncation=True, max_length=L, stride=S, return_overflowing_tokens=True`: [CLS] piece [SEP],
each piece L - 2 tokens, consecutive pieces sharing S tokens.

Shapes: B batch (windows), T tokens.
"""

from __future__ import annotations

import numpy as np

from .tokenizer import Batch, Tokenizer


def split_windows(tokenizer: Tokenizer, texts, max_length: int, stride):
    """Each text as [CLS] piece [SEP] windows of <= max_length tokens, consecutive pieces sharing `stride` tokens.

    Returns (windows, owner): a list of id lists, and [W] the index of the text each window comes from.
    """
    before, after = tokenizer.special_ids()  # [CLS] and [SEP]; RoBERTa's <s> and </s>
    span = max_length - len(before) - len(after)  # room for the text between them
    if span < 1:
        raise ValueError(f"max_length {max_length} leaves no room for text between [CLS] and [SEP]")
    if stride is None:
        stride = span // 4
    if not isinstance(stride, int) or isinstance(stride, bool) or not 0 <= stride < span:
        raise ValueError(f"stride (tokens shared by consecutive windows) must be an integer in [0, {span}) "
                         f"for windows of {max_length} tokens, found {stride!r}")
    windows, owner = [], []
    for i, ids in enumerate(tokenizer.piece_ids(texts)):
        start = 0
        while True:
            windows.append(before + ids[start:start + span] + after)
            owner.append(i)
            if start + span >= len(ids):
                break
            start += span - stride
    return windows, np.asarray(owner)


def pad(id_lists, pad_id: int) -> Batch:
    """Id lists of different lengths -> a Batch padded on the right with pad_id (one segment)."""
    B, T = len(id_lists), max(len(ids) for ids in id_lists)
    input_ids = np.full((B, T), pad_id, dtype=np.int64)  # [B, T]
    attention_mask = np.zeros((B, T), dtype=np.int64)  # [B, T]
    for b, ids in enumerate(id_lists):
        input_ids[b, :len(ids)] = ids
        attention_mask[b, :len(ids)] = 1
    return Batch(input_ids, attention_mask, np.zeros((B, T), dtype=np.int64))
