"""Tokens with their places in the text: what the token-level tasks read, and how they batch.

NER and question answering need more than ids: each token's character span in its text
(`offsets`), the word it belongs to (`word_ids`), which text of a pair it comes from
(`sequence_ids`), whether the tokenizer added it (`special_tokens_mask`). A `tokenizers`
Encoding carries all of these, so the tasks keep Encodings and build them the way
transformers' tokenizer does for `truncation=..., stride=..., return_overflowing_tokens=True`:

    pieces = encode(tokenizer, texts)           # the texts' tokens, no special tokens, untruncated
    windows = split(piece, length, stride)       # tokenizers' own Encoding.truncate(length, stride)
    full = with_special_tokens(tokenizer, q, w)  # [CLS] q [SEP] w [SEP] (the tokenizer's template)

The work happens on two private copies of the model's tokenizer that nothing changes after
they are made (see _private), so these calls are safe from many threads. Shapes: B batch, T tokens.
"""

from __future__ import annotations

import json
import threading
from functools import lru_cache
from pathlib import Path

import numpy as np
from tokenizers import Encoding
from tokenizers import Tokenizer as HFTokenizer

from ..tokenizer import Batch


def encode(tokenizer, texts) -> list[Encoding]:
    """Each text's tokens with offsets and word ids; no special tokens, no truncation, not post-processed."""
    try:
        return _private(tokenizer.backend)[0].encode_batch(list(texts), add_special_tokens=False)
    except Exception as e:  # tokenizers raises bare Exceptions on what it cannot read
        raise ValueError(f"cannot tokenize: {e}") from None


def num_special_tokens(tokenizer, pair: bool) -> int:
    """How many tokens the template adds: 2 for [CLS] a [SEP], 3 for [CLS] a [SEP] b [SEP]."""
    return _private(tokenizer.backend)[1].num_special_tokens_to_add(pair)


_PRIVATE: dict[int, tuple] = {}  # id(backend) -> (backend, pieces copy, full copy)
_PRIVATE_LOCK = threading.Lock()


def _private(backend: HFTokenizer) -> tuple[HFTokenizer, HFTokenizer]:
    """Two private copies of the tokenizer, made once and never changed: (pieces, full).

    pieces stops before post-processing: tokenizers' encode() post-processes even with
    add_special_tokens=False, and some post-processors change offsets (RoBERTa's trims the space
    off "Ġword"), which post_process() would then do twice. full post-processes with no
    truncation or padding: the shared tokenizer's settings may change under another thread's call.
    So truncation, windows and post-processing happen once, in tokenizers' own order.
    """
    with _PRIVATE_LOCK:
        entry = _PRIVATE.get(id(backend))
        if entry is None or entry[0] is not backend:
            pieces, full = HFTokenizer.from_str(backend.to_str()), HFTokenizer.from_str(backend.to_str())
            pieces.post_processor = None
            for copy in (pieces, full):
                copy.no_truncation()
                copy.no_padding()
            entry = _PRIVATE[id(backend)] = (backend, pieces, full)  # the backend is kept: its id is never reused
        return entry[1], entry[2]


def split(piece: Encoding, length: int, stride: int) -> list[Encoding]:
    """A piece cut into windows of `length` tokens, consecutive windows sharing `stride` tokens.

    Exactly the windows tokenizers makes for truncation with a stride (its Encoding.truncate):
    starts at 0, length - stride, 2 (length - stride), ..., the last window ends with the piece.
    `piece` is cut in place (it becomes the first window).
    """
    if len(piece) <= length:
        return [piece]
    piece.truncate(length, stride=stride, direction="right")
    return [piece] + list(piece.overflowing)


def with_special_tokens(tokenizer, first: Encoding, second: Encoding | None = None) -> Encoding:
    """The model's input for one text (or a pair): the tokenizer's template around the pieces."""
    return _private(tokenizer.backend)[1].post_process(first, second, add_special_tokens=True)


def pad(encodings: list[Encoding], pad_id: int) -> Batch:
    """Encodings of different lengths -> a Batch padded on the right, token types as the template set them."""
    B, T = len(encodings), max(len(e.ids) for e in encodings)
    input_ids = np.full((B, T), pad_id, dtype=np.int64)  # [B, T]
    attention_mask = np.zeros((B, T), dtype=np.int64)  # [B, T]
    token_type_ids = np.zeros((B, T), dtype=np.int64)  # [B, T]
    for b, e in enumerate(encodings):
        n = len(e.ids)
        input_ids[b, :n] = e.ids
        attention_mask[b, :n] = 1
        token_type_ids[b, :n] = e.type_ids
    return Batch(input_ids, attention_mask, token_type_ids)


def run_batches(model, encodings: list[Encoding], rows_of, *, batch_size: int, max_length: int,
                per_token: bool = False) -> list:
    """rows_of(batch) -> one row per encoding, run in length-sorted batches; rows in input order.

    Sorting by length keeps padding small. `rows_of` gets a padded Batch and returns B rows
    (usually a field of model(**batch)); per_token: its rows are [T, ...] and come back cut to
    their encoding's length.
    """
    rows = [None] * len(encodings)
    lengths = np.array([len(e.ids) for e in encodings])
    too_long = np.flatnonzero(lengths > max_length)
    if len(too_long):  # a task built a window the model cannot read: a bug, not bad input
        raise AssertionError(f"encoding {int(too_long[0])} has {lengths[too_long[0]]} tokens > {max_length}")
    order = np.argsort(lengths, kind="stable")  # short to long
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        out = rows_of(pad([encodings[i] for i in idx], model.tokenizer.pad_token_id))
        for b, i in enumerate(idx):
            rows[i] = out[b][:len(encodings[i].ids)] if per_token else out[b]
    return rows


# ----------------------------------------------------------------------------- the tokenizer's config

@lru_cache(maxsize=64)
def _tokenizer_config(folder: str) -> dict:
    config = {}
    for name in ("special_tokens_map.json", "tokenizer_config.json"):  # the second wins, as in transformers
        path = Path(folder) / name
        if path.is_file():
            try:
                loaded = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(loaded, dict):
                config.update(loaded)
    return config


def special_token(model, name: str, fallbacks=()) -> str | None:
    """A special token (mask_token, unk_token, ...) as the tokenizer's config names it, if in the vocabulary."""
    value = _tokenizer_config(str(model.path)).get(name) if model.path is not None else None
    if isinstance(value, dict):  # an AddedToken saved as a dict
        value = value.get("content")
    candidates = ([value] if isinstance(value, str) else []) + list(fallbacks)
    for token in candidates:
        if model.tokenizer.backend.token_to_id(token) is not None:
            return token
    return None


def decode(model, ids, skip_special_tokens: bool = False) -> str:
    """Ids -> text as transformers' tokenizer.decode does: the tokenizer's decoder, then the
    optional clean-up of spaces before punctuation (clean_up_tokenization_spaces in its config)."""
    backend = model.tokenizer.backend
    text = backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)
    config = _tokenizer_config(str(model.path)) if model.path is not None else {}
    if not config.get("clean_up_tokenization_spaces", False):
        return text
    # transformers 5 skips the clean-up for BPE tokenizers (it would eat real spaces before punctuation)
    if type(backend.model).__name__ == "BPE" and not config.get(
            "clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output", False):
        return text
    return clean_up_tokenization(text)


def tokens_to_string(model, tokens: list[str]) -> str:
    """transformers' convert_tokens_to_string: the tokenizer's decoder on token strings."""
    decoder = model.tokenizer.backend.decoder
    return decoder.decode(tokens) if decoder is not None else " ".join(tokens)


def clean_up_tokenization(text: str) -> str:
    # transformers' PreTrainedTokenizerBase.clean_up_tokenization, verbatim
    return (text.replace(" .", ".").replace(" ?", "?").replace(" !", "!").replace(" ,", ",")
            .replace(" ' ", "'").replace(" n't", "n't").replace(" 'm", "'m").replace(" 's", "'s")
            .replace(" 've", "'ve").replace(" 're", "'re"))
