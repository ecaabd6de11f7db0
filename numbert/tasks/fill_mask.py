"""numbert.fill_mask: the words a masked-language model puts in place of [MASK].

Equal to transformers' pipeline("fill-mask") (pipelines/fill_mask.py): for each mask in a text,
the softmax over the vocabulary of the masked-LM logits at that position, its top_k tokens,
each with the text rebuilt around it. Shapes: N texts, M masks, V vocabulary, H hidden.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import positive_int
from ..tokenizer import check_texts
from . import encoding as E
from ..heads import require_head
from ..layers import softmax

MASK_FALLBACKS = ("[MASK]", "<mask>")


def fill_mask(texts, model, *, top_k=5, targets=None, truncation=False, batch_size=32, backend=None,
              revision=None):
    """Predict the token behind each mask token ([MASK] for BERT) in each text.

    texts: a str (its result comes back unwrapped) or a list of str. model: a Model, folder or
    Hub id of a checkpoint with a masked-LM head (BertForMaskedLM, BertForPreTraining).
    Per text with one mask: a list of top_k dicts {"score", "token", "token_str", "sequence"},
    best first, as the pipeline gives; with several masks: one such list per mask, in text
    order (each mask scored on its own, the others left masked, as the pipeline does).
    targets: a word or list of words to score instead of the whole vocabulary (a word not in
        the vocabulary is replaced by its first token, with a warning); scores stay the
        probabilities over the whole vocabulary, and top_k is capped at the number of targets.
    truncation: False (the pipeline's default) refuses a text longer than the model reads;
        True reads its first tokens (the mask must be among them).
    """
    from ..api import get_model

    single = isinstance(texts, str)
    texts = check_texts(texts)
    positive_int(top_k, "top_k")
    positive_int(batch_size, "batch_size")
    m = get_model(model, backend=backend, revision=revision)
    require_head(m, "masked-lm", "fill_mask")
    mask_token = E.special_token(m, "mask_token", MASK_FALLBACKS)
    if mask_token is None:
        raise ValueError(f"{m.path}: the tokenizer has no mask token (mask_token in tokenizer_config.json); "
                         "fill_mask needs one")
    mask_id = m.tokenizer.backend.token_to_id(mask_token)
    target_ids = None if targets is None else _target_ids(m, targets)
    if not texts:
        return []

    encodings = _encode(m, texts, mask_id, mask_token, truncation)
    positions = [np.flatnonzero(np.asarray(e.ids) == mask_id) for e in encodings]  # N x [M_i]
    logits = E.run_batches(m, encodings, lambda batch: mask_logits(m, batch, mask_id), batch_size=batch_size,
                           max_length=m.tokenizer.model_max_length)  # N x [M_i, V]
    probs = softmax(np.concatenate(logits))  # [M, V]: each mask's distribution over the vocabulary

    results, row = [], 0
    for e, where in zip(encodings, positions):
        per_mask = []
        for pos in where:
            per_mask.append(_candidates(m, e.ids, pos, probs[row], top_k, target_ids, single_mask=len(where) == 1))
            row += 1
        results.append(per_mask[0] if len(per_mask) == 1 else per_mask)
    return results[0] if single else results


def mask_logits(m, batch, mask_id) -> list:
    """The masked-LM logits at the mask tokens only: B x [M_b, V].

    model(**batch).logits would score every token against the whole vocabulary ([B, T, V]: half a
    gigabyte for 32 texts of 128 tokens with BERT's 30522 words); the head is run on the masks' rows.
    """
    ids, mask, types = m.check_inputs(batch.input_ids, batch.attention_mask, batch.token_type_ids)
    ops = m.ops  # read once: with backend="auto" the model may switch to the kernels between two reads
    base = m.family.forward(ids, mask, types, m.weights, m.config, ops)  # the encoder, without the head
    b, t = np.nonzero(ids == mask_id)  # [M] each mask's row and position, row by row, in text order
    rows = base.last_hidden_state[b, t][None]  # [1, M, H]
    logits = m.head.apply(m.head_weights, base._replace(last_hidden_state=rows), m, ops).logits[0]  # [M, V]
    return [logits[b == i] for i in range(len(ids))]


def _encode(m, texts, mask_id, mask_token, truncation):
    tok = m.tokenizer
    room = tok.model_max_length - E.num_special_tokens(tok, pair=False)
    encodings = []
    for i, piece in enumerate(E.encode(tok, texts)):
        if len(piece) > room:
            if not truncation:
                raise ValueError(f"texts[{i}] is {len(piece) + E.num_special_tokens(tok, False)} tokens, longer than "
                                 f"the {tok.model_max_length} this model reads; shorten it or pass truncation=True")
            piece = E.split(piece, room, 0)[0]
        if mask_id not in piece.ids:
            where = f" within its first {tok.model_max_length} tokens" if truncation and len(piece) == room else ""
            raise ValueError(f"texts[{i}] has no mask token {mask_token}{where}: write {mask_token} where a word "
                             f"should be predicted ({texts[i]!r:.60})")
        encodings.append(E.with_special_tokens(tok, piece))
    return encodings


def _candidates(m, ids, pos, probs, top_k, target_ids, single_mask):
    """The top_k tokens at one mask (FillMaskPipeline.postprocess), each with its rebuilt text."""
    if target_ids is not None:
        probs = probs[target_ids]  # scores stay probabilities over the whole vocabulary
    k = min(top_k, len(probs))
    best = np.argsort(-probs, kind="stable")[:k]  # [k], highest first
    out = []
    for j in best:
        token = int(target_ids[j]) if target_ids is not None else int(j)
        filled = list(ids)
        filled[pos] = token
        # the pipeline drops special tokens from the text when there is one mask, and keeps them
        # (so that the other masks stay visible) when there are several
        out.append({"score": float(probs[j]), "token": token, "token_str": E.decode(m, [token]),
                    "sequence": E.decode(m, filled, skip_special_tokens=single_mask)})
    return out


def _target_ids(m, targets) -> np.ndarray:
    """Token ids for `targets` (FillMaskPipeline.get_target_ids): a vocabulary entry, else the word's first token."""
    if isinstance(targets, str):
        targets = [targets]
    targets = check_texts(targets, "targets")
    vocab = m.tokenizer.backend.get_vocab(with_added_tokens=True)
    ids = []
    for target in targets:
        id_ = vocab.get(target)
        if id_ is None:
            pieces = E.encode(m.tokenizer, [target])[0].ids
            if not pieces:
                warnings.warn(f"target {target!r} gives no token in this vocabulary; it is ignored", stacklevel=3)
                continue
            id_ = pieces[0]
            warnings.warn(f"target {target!r} is not in the vocabulary; scoring its first token "
                          f"{m.tokenizer.backend.id_to_token(id_)!r} instead", stacklevel=3)
        ids.append(id_)
    ids = list(dict.fromkeys(ids))  # each token once
    if not ids:
        raise ValueError(f"targets {targets!r} give no token to score; pass words of the model's vocabulary")
    return np.asarray(ids, dtype=np.int64)
