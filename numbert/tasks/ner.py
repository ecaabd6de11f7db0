"""numbert.ner: named entities (any token classification), as transformers' pipeline("ner").

Equal to TokenClassificationPipeline (pipelines/token_classification.py): a softmax over the
labels at every token, then the pipeline's aggregation of word pieces into words and of
B-/I- tagged words into entities, with character offsets into the original text and the
`word` rebuilt from its tokens as the pipeline does. Shapes: T tokens, C labels.
"""

from __future__ import annotations

import warnings

import numpy as np

from ..errors import positive_int
from ..tokenizer import check_texts
from . import encoding as E
from ..heads import require_head
from ..layers import softmax

AGGREGATIONS = ("none", "simple", "first", "average", "max")


def ner(texts, model, *, aggregation_strategy="none", ignore_labels=None, stride=None, batch_size=32,
        backend=None, revision=None):
    """Label the tokens of each text; results shaped like pipeline("ner", aggregation_strategy=...).

    texts: a str (its result comes back unwrapped) or a list of str. model: a Model, folder or
    Hub id of a token-classification checkpoint (BertForTokenClassification).
    aggregation_strategy:
      "none"    one dict per token: {"entity", "score", "index", "word", "start", "end"};
      "simple"  adjacent tokens with the same tag (B-X then I-X ...) grouped into one entity
                {"entity_group", "score" (the mean), "word", "start", "end"};
      "first" / "average" / "max"  as simple, but the pieces of one word first agree on one
                label: the first piece's, the average of the pieces' scores, or the piece with
                the highest score.
    ignore_labels: labels left out of the results (default ["O"]).
    start / end index the original text: text[start:end] is what was labelled.
    stride: None reads each text's first model_max_length tokens (as the pipeline does); an int
        reads long texts whole, in windows that share `stride` tokens, and keeps of overlapping
        entities the longest (then the highest scored), as the pipeline does with stride.
    """
    from ..api import get_model

    single = isinstance(texts, str)
    texts = check_texts(texts)
    strategy = _check_strategy(aggregation_strategy)
    ignore = ["O"] if ignore_labels is None else check_texts(ignore_labels, "ignore_labels")
    positive_int(batch_size, "batch_size")
    m = get_model(model, backend=backend, revision=revision)
    require_head(m, "token-classification", "ner")
    tok = m.tokenizer
    room = tok.model_max_length - E.num_special_tokens(tok, pair=False)
    if stride is not None:
        if not isinstance(stride, int) or isinstance(stride, bool) or not 0 <= stride < room:
            raise ValueError(f"stride (tokens shared by consecutive windows) must be an integer in [0, {room}) "
                             f"for windows of {tok.model_max_length} tokens, found {stride!r}")
        if strategy == "none":
            raise ValueError('stride reads long texts in windows and merges their entities, which needs an '
                             'aggregation_strategy other than "none" (as in the pipeline)')
    if not texts:
        return []

    windows, owner = [], []
    for i, piece in enumerate(E.encode(tok, texts)):
        pieces = E.split(piece, room, stride) if stride is not None else E.split(piece, room, 0)[:1]
        windows += [E.with_special_tokens(tok, p) for p in pieces]
        owner += [i] * len(pieces)
    logits = E.run_batches(m, windows, lambda batch: m(**batch).logits, batch_size=batch_size,
                           per_token=True, max_length=tok.model_max_length)  # windows x [T, C]

    id2label = m.config.id2label
    subword_prefix = getattr(tok.backend.model, "continuing_subword_prefix", None)
    unk_id = _unk_id(m)
    results = [[] for _ in texts]
    counts = np.bincount(owner, minlength=len(texts))
    for enc, text_logits, i in zip(windows, logits, owner):
        scores = softmax(text_logits)  # [T, C]: the pipeline's shifted softmax over the labels
        pre = gather_pre_entities(texts[i], enc, scores, tok.backend.id_to_token, unk_id, subword_prefix,
                                  strategy)
        grouped = aggregate(pre, strategy, id2label, lambda tokens: E.tokens_to_string(m, tokens))
        results[i] += [e for e in grouped
                       if e.get("entity") not in ignore and e.get("entity_group") not in ignore]
    results = [aggregate_overlapping_entities(r) if counts[i] > 1 else r for i, r in enumerate(results)]
    return results[0] if single else results


def _check_strategy(strategy) -> str:
    name = str(strategy).lower() if isinstance(strategy, str) else strategy
    if name not in AGGREGATIONS:
        raise ValueError(f"aggregation_strategy must be one of {', '.join(AGGREGATIONS)}, found {strategy!r}")
    return name


def _unk_id(m):
    token = E.special_token(m, "unk_token", ("[UNK]", "<unk>"))
    return None if token is None else m.tokenizer.backend.token_to_id(token)


# ----------------------------------------------------------------------------- the pipeline's post-processing
# Each function below is the TokenClassificationPipeline method of the same name, on NumPy
# arrays and a tokenizers Encoding instead of torch tensors and a BatchEncoding.

def gather_pre_entities(sentence, enc, scores, id_to_token, unk_id, subword_prefix, strategy) -> list[dict]:
    """Each non-special token with its scores, character span, and whether it continues a word."""
    pre_entities = []
    for idx, token_scores in enumerate(scores):
        if enc.special_tokens_mask[idx]:
            continue
        token_id = enc.ids[idx]
        word = id_to_token(token_id)
        start_ind, end_ind = enc.offsets[idx]
        word_ref = sentence[start_ind:end_ind]
        if subword_prefix:
            # a word-aware tokenizer (WordPiece's "##"): a piece whose text is not its token
            # string, e.g. "##ing" for "ing", continues the word before it
            is_subword = len(word) != len(word_ref)
        else:
            if strategy in ("first", "average", "max"):
                warnings.warn("Tokenizer does not support real words, using fallback heuristic", UserWarning,
                              stacklevel=4)
            is_subword = start_ind > 0 and " " not in sentence[start_ind - 1:start_ind + 1]
        if token_id == unk_id:
            word = word_ref
            is_subword = False
        pre_entities.append({"word": word, "scores": token_scores, "start": start_ind, "end": end_ind,
                             "index": idx, "is_subword": is_subword})
    return pre_entities


def aggregate(pre_entities, strategy, id2label, tokens_to_string) -> list[dict]:
    if strategy in ("none", "simple"):
        entities = []
        for pre in pre_entities:
            entity_idx = int(pre["scores"].argmax())
            entities.append({"entity": id2label[entity_idx], "score": float(pre["scores"][entity_idx]),
                             "index": pre["index"], "word": pre["word"], "start": pre["start"], "end": pre["end"]})
    else:
        entities = aggregate_words(pre_entities, strategy, id2label, tokens_to_string)
    if strategy == "none":
        return entities
    return group_entities(entities, tokens_to_string)


def aggregate_word(entities, strategy, id2label, tokens_to_string) -> dict:
    """One word from its pieces: the label of the first piece, of the best piece, or of the average."""
    word = tokens_to_string([e["word"] for e in entities])
    if strategy == "first":
        scores = entities[0]["scores"]
        idx = int(scores.argmax())
        score = scores[idx]
    elif strategy == "max":
        scores = max(entities, key=lambda e: e["scores"].max())["scores"]
        idx = int(scores.argmax())
        score = scores[idx]
    else:  # average
        average_scores = np.nanmean(np.stack([e["scores"] for e in entities]), axis=0)  # [C]
        idx = int(average_scores.argmax())
        score = average_scores[idx]
    return {"entity": id2label[idx], "score": float(score), "word": word,
            "start": entities[0]["start"], "end": entities[-1]["end"]}


def aggregate_words(entities, strategy, id2label, tokens_to_string) -> list[dict]:
    """Pieces grouped into words (a new word at each piece that is not a subword)."""
    word_entities, word_group = [], None
    for entity in entities:
        if word_group is None:
            word_group = [entity]
        elif entity["is_subword"]:
            word_group.append(entity)
        else:
            word_entities.append(aggregate_word(word_group, strategy, id2label, tokens_to_string))
            word_group = [entity]
    if word_group is not None:
        word_entities.append(aggregate_word(word_group, strategy, id2label, tokens_to_string))
    return word_entities


def group_sub_entities(entities, tokens_to_string) -> dict:
    """One entity from adjacent same-tag tokens (or words): the tag without B-/I-, the mean score."""
    return {"entity_group": entities[0]["entity"].split("-", 1)[-1],
            "score": float(np.mean(np.nanmean([e["score"] for e in entities]))),
            "word": tokens_to_string([e["word"] for e in entities]),
            "start": entities[0]["start"], "end": entities[-1]["end"]}


def get_tag(entity_name: str) -> tuple[str, str]:
    if entity_name.startswith("B-"):
        return "B", entity_name[2:]
    if entity_name.startswith("I-"):
        return "I", entity_name[2:]
    return "I", entity_name  # not in B-/I- format: read as a continuation


def group_entities(entities, tokens_to_string) -> list[dict]:
    """Adjacent entities with the same tag merged; a B- tag always starts a new one."""
    groups, current = [], []
    for entity in entities:
        if not current:
            current.append(entity)
            continue
        bi, tag = get_tag(entity["entity"])
        _, last_tag = get_tag(current[-1]["entity"])
        if tag == last_tag and bi != "B":
            current.append(entity)
        else:
            groups.append(group_sub_entities(current, tokens_to_string))
            current = [entity]
    if current:
        groups.append(group_sub_entities(current, tokens_to_string))
    return groups


def aggregate_overlapping_entities(entities) -> list[dict]:
    """Entities from overlapping windows: of those that overlap, the longest (then best scored) stays."""
    if not entities:
        return entities
    entities = sorted(entities, key=lambda x: x["start"])
    aggregated, previous = [], entities[0]
    for entity in entities:
        if previous["start"] <= entity["start"] < previous["end"]:
            current_length = entity["end"] - entity["start"]
            previous_length = previous["end"] - previous["start"]
            if current_length > previous_length or (current_length == previous_length
                                                    and entity["score"] > previous["score"]):
                previous = entity
        else:
            aggregated.append(previous)
            previous = entity
    aggregated.append(previous)
    return aggregated
