"""numbert.classify and numbert.embed: BERT for people who want an answer in three lines.

    numbert.classify(["I love cats!"])          # [{'label': 'positive', 'score': 0.9...}]
    numbert.embed(["I love cats!"]).shape       # (1, 384)

Both take a model as a loaded Model, a checkpoint folder, or a Hub id (see numbert.hub),
and run the texts in batches sorted by length (little padding), returning results in input
order. Shapes: N texts, B batch, T tokens, H hidden, D embedding, C labels, K zero-shot labels.
"""

from __future__ import annotations

import sys
import threading
from collections import OrderedDict

import numpy as np

from .hub import DEFAULT_MODEL
from .model import Model, load
from .pooling import EmbedSpec, check_pooling, l2_normalize, pool
from .tasks.nli import DEFAULT_HYPOTHESIS, is_nli, nli_scores
from .errors import CheckpointError, positive_int
from .tokenizer import check_texts
from .windows import pad, split_windows

DEFAULT_LABELS = ("positive", "negative")
# Each zero-shot label is embedded as this sentence; "{}" is the label. Measured on the
# sentiment set in tests/test_classify.py, MiniLM scores 35/40 with it, 34/40 with the bare label.
DEFAULT_TEMPLATE = "This is {}."
# all-MiniLM-L6-v2 was trained with a contrastive loss of softmax(20 * cosine): 20 turns its
# cosine similarities back into the probabilities it learnt.
ZERO_SHOT_SCALE = 20.0
FUNCTIONS = ("softmax", "sigmoid", "none")
LONG_TEXT = ("truncate", "window")
# classify's and embed's defaults for how texts are run
RUN_DEFAULTS = dict(batch_size=32, max_length=None, truncation=True, long_text="truncate", stride=None, progress=None)

_MODELS: OrderedDict = OrderedDict()  # (name, revision, backend) -> Model, most recent last
MODEL_CACHE_SIZE = 4
_MODELS_LOCK = threading.Lock()


def get_model(model=None, *, backend=None, revision=None) -> Model:
    """A Model as is; a folder or Hub id loaded once and kept in a small cache (the last 4 used)."""
    if isinstance(model, Model):
        return model
    name = DEFAULT_MODEL if model is None else model
    key = (str(name), revision, backend)
    with _MODELS_LOCK:  # threads share the cache: look up, reorder and evict as one step
        if key in _MODELS:
            _MODELS.move_to_end(key)
            return _MODELS[key]
    kwargs = {"revision": revision}
    if backend is not None:
        kwargs["backend"] = backend
    loaded = load(name, **kwargs)  # outside the lock: a slow load does not hold up other models
    with _MODELS_LOCK:
        loaded = _MODELS.setdefault(key, loaded)  # two threads loading one model: both get the first
        _MODELS.move_to_end(key)
        while len(_MODELS) > MODEL_CACHE_SIZE:
            _MODELS.popitem(last=False)
    return loaded


def clear_model_cache():
    with _MODELS_LOCK:
        _MODELS.clear()


def has_head(model: Model) -> bool:
    return model.weights.classifier is not None


# ----------------------------------------------------------------------------- classify

def classify(texts, model=None, *, labels=None, text_pair=None, top_k=1, function_to_apply=None,
             template=None, multi_label=False, batch_size=32, max_length=None, truncation=True,
             long_text="truncate", stride=None, progress=None, backend=None, revision=None):
    """Classify texts; results shaped like transformers' pipeline("text-classification").

    texts: a str (its result comes back unwrapped) or a list of str (a list comes back).
    model: a Model, a checkpoint folder, or a Hub id; None = sentence-transformers/all-MiniLM-L6-v2.
    labels: zero-shot labels. One rule for every model without a classification head, the
        default one included, named or loaded: labels=None means ("positive", "negative"),
        zero-shot sentiment. A model with a head gives its own labels.
    Per text: top_k=1 -> {"label", "score"}; top_k=k -> the k best as a list sorted by score;
    top_k=None -> every label, sorted.

    A model with a classification head: scores are its logits through `function_to_apply`,
    chosen as the pipeline does when None: "none" for problem_type regression, "sigmoid" for
    multi-label or a single output, else "softmax". Labels come from config.id2label.
    text_pair: second texts, read as BERT sentence pairs ([CLS] a [SEP] b [SEP]); an empty
        pair reads as no pair, as the pipeline does.

    A model without a head (zero-shot by embedding similarity): the text's
    sentence embedding (numbert.embed) is compared by cosine similarity with the embedding of
    each label written into `template` ("{}" is replaced by the label); the scores are
    softmax(20 * cosine) over the labels, so they sum to 1. 20 is the scale all-MiniLM-L6-v2
    was trained with (its contrastive loss is a softmax over 20 * cosine). template defaults
    to "This is {}.".

    An NLI model (a classification head with an "entailment" label, e.g. an MNLI fine-tune),
    given `labels`: zero-shot as pipeline("zero-shot-classification") does it (numbert.tasks.nli).
    Each label is written into `template` (its hypothesis_template, default "This example is {}.")
    and read after the text as a pair; the scores are a softmax over the labels of the entailment
    logits, or with multi_label=True, each label's entailment against contradiction on its own.
    The pipeline's {"labels": [...], "scores": [...]} is this function's top_k=None list, in order.

    Long texts: long_text="truncate" (default) reads the first max_length tokens, as the pipeline
    does with truncation=True; truncation=False raises instead. long_text="window" reads the text
    whole, in windows of max_length tokens that overlap by `stride` tokens (default a quarter
    window), and averages the windows' logits (or embeddings) before scoring.
    progress: a tqdm bar on stderr (None: when stderr is a terminal and there are several batches).
    """
    single = isinstance(texts, str)
    texts = check_texts(texts)
    pairs = _check_pairs(text_pair, texts, single)
    _check_top_k(top_k)
    function_to_apply = _check_function(function_to_apply)
    if labels is not None:
        labels = _check_labels(labels)
    if not texts:
        return []
    m = get_model(model, backend=backend, revision=revision)
    if labels is None and not has_head(m):  # one rule, whether the model was named or not
        labels = list(DEFAULT_LABELS)
    run = dict(batch_size=batch_size, max_length=max_length, truncation=truncation, long_text=long_text,
               stride=stride, progress=progress)

    if multi_label and (labels is None or not (has_head(m) and is_nli(m.config))):
        raise ValueError("multi_label is for zero-shot labels= with an NLI model (one with an 'entailment' label)")
    if has_head(m) and labels is not None and is_nli(m.config):
        scores = _nli_zero_shot(m, texts, pairs, labels, function_to_apply, template, multi_label, run)  # [N, K]
        names = list(labels)
    elif has_head(m):
        scores, names = _head_scores(m, texts, pairs, labels, function_to_apply, run)  # [N, C]
    else:
        scores = _similarity_zero_shot(m, texts, pairs, labels, function_to_apply, template, run)  # [N, K]
        names = list(labels)
    check_finite(scores, m, "score")
    results = [_top(row, names, top_k) for row in scores]
    return results[0] if single else results


def _nli_zero_shot(m: Model, texts, pairs, labels, function_to_apply, template, multi_label, run) -> np.ndarray:
    """[N, K] zero-shot scores through entailment: each text paired with each label's hypothesis."""
    if pairs is not None:
        raise ValueError("text_pair cannot go with labels=: NLI zero-shot pairs each text with the labels")
    if function_to_apply is not None:
        raise ValueError("function_to_apply applies to a classification head's logits, not to zero-shot scores")
    if run["long_text"] != "truncate":
        raise ValueError('long_text="window" is not for NLI zero-shot: the text is truncated to fit beside '
                         "each hypothesis, as the pipeline does")
    return nli_scores(m, texts, labels, template=DEFAULT_HYPOTHESIS if template is None else template,
                      multi_label=multi_label, batch_size=run["batch_size"])  # [N, K]


def _head_scores(m: Model, texts, pairs, labels, function_to_apply, run):
    """[N, C] scores from the classification head's logits, and the C label names from config.id2label."""
    if labels is not None:
        raise ValueError(f"labels= is for zero-shot with a model that has no classification head, or an NLI "
                         f"head (an 'entailment' label); {m.path} has one, with labels "
                         f"{list(m.config.id2label.values())}: drop labels=")
    logits = _encode(m, texts, pairs, _logits_head, desc="classify", **run)  # [N, C]
    scores = apply_function(logits, function_to_apply or default_function(m.config))  # [N, C]
    names = [m.config.id2label.get(i, f"LABEL_{i}") for i in range(scores.shape[1])]
    return scores, names


def _similarity_zero_shot(m: Model, texts, pairs, labels, function_to_apply, template, run) -> np.ndarray:
    """[N, K] zero-shot scores of a model without a head: embedding similarity with each label."""
    if pairs is not None:
        raise ValueError("text_pair needs a model with a classification head; zero-shot reads single texts")
    if function_to_apply is not None:
        raise ValueError("function_to_apply applies to a classification head's logits, not to zero-shot scores")
    if len(labels) < 2:
        raise ValueError(f"zero-shot needs at least 2 labels to choose between, found {labels!r}")
    return zero_shot_scores(m, texts, labels, template=DEFAULT_TEMPLATE if template is None else template,
                            **run)  # [N, K]


def check_finite(rows, m: Model, what: str):
    """Refuse NaN / inf results ([N, ...]) by text index: they would be printed as valid-looking output."""
    bad = np.flatnonzero(~np.isfinite(rows).reshape(len(rows), -1).all(axis=1))
    if len(bad):
        raise CheckpointError(f"{m.path}: the model's {what} for texts[{bad[0]}] is not finite (NaN or inf), "
                              f"{len(bad)} text(s) affected: the checkpoint's weights hold non-finite values or "
                              "overflow float32")


def default_function(config) -> str:
    """The pipeline's choice (TextClassificationPipeline.postprocess) of function_to_apply."""
    if config.problem_type == "regression":
        return "none"
    if config.problem_type == "multi_label_classification" or config.num_labels == 1:
        return "sigmoid"
    return "softmax"


def apply_function(logits, function: str) -> np.ndarray:
    """[N, C] logits -> [N, C] scores, in float32 as the pipeline computes them."""
    x = np.asarray(logits, dtype=np.float32)
    if function == "sigmoid":
        return 1.0 / (1.0 + np.exp(-x))
    if function == "softmax":
        e = np.exp(x - x.max(axis=-1, keepdims=True))  # shift by the max: no overflow
        return e / e.sum(axis=-1, keepdims=True)
    return x


def zero_shot_scores(model: Model, texts, labels, *, template=DEFAULT_TEMPLATE, **run) -> np.ndarray:
    """[N, K]: softmax over labels of ZERO_SHOT_SCALE * cosine(text embedding, label embedding)."""
    if not isinstance(template, str) or "{}" not in template:
        raise ValueError(f"template must be a str holding '{{}}' where the label goes, found {template!r}")
    spec = EmbedSpec.from_folder(model.path)
    text_vecs = l2_normalize(sentence_vectors(model, texts, pooling=spec.pooling, normalize=False,
                                              desc="classify", **{**RUN_DEFAULTS, **run}))  # [N, D]
    label_vecs = l2_normalize(sentence_vectors(model, [template.replace("{}", label) for label in labels],
                                               pooling=spec.pooling, normalize=False, desc="classify",
                                               **{**RUN_DEFAULTS, "progress": False}))  # [K, D]
    return apply_function(ZERO_SHOT_SCALE * (text_vecs @ label_vecs.T), "softmax")  # [N, K]


def _top(scores, names, top_k):
    if top_k == 1:  # the pipeline's default shape: one dict
        i = int(np.argmax(scores))
        return {"label": names[i], "score": float(scores[i])}
    ranked = sorted(({"label": n, "score": float(s)} for n, s in zip(names, scores)),
                    key=lambda d: d["score"], reverse=True)
    return ranked if top_k is None else ranked[:top_k]


# ----------------------------------------------------------------------------- embed

def embed(texts, model=None, *, pooling=None, normalize=None, batch_size=32, max_length=None, truncation=True,
          long_text="truncate", stride=None, progress=None, backend=None, revision=None) -> np.ndarray:
    """Sentence embeddings: float32 [N, D] for a list of N texts ([D] for a single str).

    pooling: "mean" (average of the real tokens), "cls" (the [CLS] vector), "max" (per channel,
    over real tokens), or a list of them (concatenated). normalize: scale to unit length.
    Both default to what a sentence-transformers folder says (modules.json, 1_Pooling/config.json,
    a Normalize module), else mean and no normalization; max_length defaults to its
    sentence_bert_config.json max_seq_length (sentence-transformers truncates there). So the
    default model's output equals SentenceTransformer(name).encode(texts).
    long_text="window": windows of max_length tokens overlapping by `stride`, their pooled
    vectors averaged (then normalized). See classify for batching and progress.
    """
    single = isinstance(texts, str)
    texts = check_texts(texts)
    m = get_model(model, backend=backend, revision=revision)
    vecs = sentence_vectors(m, texts, pooling=pooling, normalize=normalize, batch_size=batch_size,
                            max_length=max_length, truncation=truncation, long_text=long_text, stride=stride,
                            progress=progress, desc="embed")  # [N, D]
    return vecs[0] if single else vecs


def sentence_vectors(m: Model, texts: list[str], *, pooling, normalize, max_length, desc, **run) -> np.ndarray:
    """[N, D] sentence embeddings of checked texts with a loaded model; `desc` labels the progress bar."""
    spec = EmbedSpec.from_folder(m.path)
    modes = spec.pooling if pooling is None else check_pooling(pooling)
    if normalize is None:
        normalize = spec.normalize
    if max_length is None and spec.max_seq_length:
        max_length = min(int(spec.max_seq_length), m.tokenizer.model_max_length)
    if not texts:
        return np.zeros((0, m.config.hidden_size * len(modes)), dtype=np.float32)

    def head(out, batch):  # [B, T, H] -> [B, D]
        return pool(out.last_hidden_state, batch.attention_mask, modes)

    vecs = _encode(m, texts, None, head, max_length=max_length, desc=desc, **run)  # [N, D]
    check_finite(vecs, m, "embedding")
    if normalize:
        vecs = l2_normalize(vecs)
    return vecs


# ----------------------------------------------------------------------------- batching

def _logits_head(out, batch):
    return out.logits  # [B, C]


def _encode(model: Model, texts, pairs, head, *, batch_size, max_length, truncation, long_text, stride,
            progress, desc) -> np.ndarray:
    """head(output, batch) -> [B, D] for every text, run in length-sorted batches: [N, D] in input order.

    Sorting by length puts texts of similar length together, so a batch pads little; each
    result is written back to its text's index. With long_text="window" a text becomes several
    windows, and its result is the mean of its windows' results.
    """
    positive_int(batch_size, "batch_size")
    if long_text not in LONG_TEXT:
        raise ValueError(f"long_text must be one of {', '.join(LONG_TEXT)}, found {long_text!r}")
    tok = model.tokenizer
    limit = tok.model_max_length if max_length is None else max_length
    model.tokenize([""], max_length=max_length)  # validates max_length against the model
    tok.check_room(limit, pair=pairs is not None and any(pairs))
    lengths = _token_counts(tok, texts, pairs)  # [N]

    if long_text == "window":
        if pairs is not None:
            raise ValueError('long_text="window" reads single texts; it cannot window text pairs')
        units, owner = split_windows(tok, texts, limit, stride)  # windows as (ids), owner text index
        unit_lengths = np.asarray([len(u) for u in units])
    else:
        if not truncation:
            _refuse_too_long(lengths, limit)
        units, owner, unit_lengths = None, np.arange(len(texts)), lengths

    # An empty text_pair reads as no pair, as in transformers' pipeline (its tokenizer, called on
    # one text, drops a falsy pair); such texts get batches of their own.
    no_pair = np.ones(len(unit_lengths), bool) if pairs is None else np.array([p == "" for p in pairs])
    rows = [None] * len(unit_lengths)
    batches = _length_sorted_batches(unit_lengths, no_pair, batch_size)
    with _progress_bar(len(batches), progress, desc) as bar:
        for idx in batches:
            if units is None:
                batch = model.tokenize([texts[i] for i in idx],
                                       None if no_pair[idx[0]] else [pairs[i] for i in idx], max_length)
            else:
                batch = pad([units[i] for i in idx], tok.pad_token_id)
            out = model(**batch)
            for i, row in zip(idx, head(out, batch)):
                rows[i] = row
            bar.update(1)
    rows = np.stack(rows).astype(np.float32)  # [units, D]
    if units is None:
        return rows
    return _mean_per_text(rows, owner, len(texts))  # [N, D]


def _token_counts(tok, texts, pairs) -> np.ndarray:
    """[N] untruncated token counts, special tokens included (a pair shares one [CLS])."""
    lengths = np.asarray(tok.count_tokens(texts))  # [N]
    if pairs is not None:
        # both texts' special tokens, less what a pair uses: one [CLS] for BERT, none for <s> A </s></s> B </s>
        shared = 2 * tok.backend.num_special_tokens_to_add(False) - tok.backend.num_special_tokens_to_add(True)
        lengths = lengths + np.asarray(tok.count_tokens(pairs)) - shared
    return lengths


def _refuse_too_long(lengths, limit):
    too_long = np.flatnonzero(lengths > limit)
    if len(too_long):
        i = int(too_long[0])
        raise ValueError(f"texts[{i}] is {lengths[i]} tokens, longer than the {limit} this model reads, "
                         f"and truncation=False ({len(too_long)} text(s) too long); use truncation=True "
                         'or long_text="window"')


def _length_sorted_batches(lengths, no_pair, batch_size) -> list[np.ndarray]:
    """Row indices in batches of <= batch_size, short to long, texts without a pair kept apart."""
    batches = []
    for group in (np.flatnonzero(no_pair), np.flatnonzero(~no_pair)):
        order = group[np.argsort(lengths[group], kind="stable")]  # short to long
        batches += [order[start:start + batch_size] for start in range(0, len(order), batch_size)]
    return batches


def _mean_per_text(rows, owner, n) -> np.ndarray:
    """[W, D] window rows, [W] owner text index -> [n, D]: each text the mean of its windows."""
    sums = np.zeros((n, rows.shape[1]), dtype=np.float64)  # [N, D]
    np.add.at(sums, owner, rows)
    counts = np.bincount(owner, minlength=n)[:, None]  # [N, 1]
    return (sums / counts).astype(np.float32)


class _NoBar:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def update(self, n=1):
        pass


def _progress_bar(total, progress, desc):
    """A tqdm bar on stderr: forced on/off by `progress`, else on for a terminal and several batches."""
    if progress is None:
        progress = total > 1 and hasattr(sys.stderr, "isatty") and sys.stderr.isatty()
    if not progress:
        return _NoBar()
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, unit="batch", file=sys.stderr, leave=False)


# ----------------------------------------------------------------------------- checks

def _check_pairs(text_pair, texts, single):
    if text_pair is None:
        return None
    if single != isinstance(text_pair, str):
        raise TypeError("text_pair must be a str when texts is a str, and a list of str when texts is a list")
    pairs = check_texts(text_pair, "text_pair")
    if len(pairs) != len(texts):
        raise ValueError(f"text_pair has {len(pairs)} texts but texts has {len(texts)}; they must pair up "
                         f"(text_pair[{min(len(pairs), len(texts))}] has no partner)")
    return pairs


def _check_top_k(top_k):
    positive_int(top_k, "top_k", none_ok=True)  # None: every label


def _check_function(function_to_apply):
    if function_to_apply is None:
        return None
    function_to_apply = str(function_to_apply).lower()
    if function_to_apply not in FUNCTIONS:
        raise ValueError(f"function_to_apply must be one of {', '.join(FUNCTIONS)}, found {function_to_apply!r}")
    return function_to_apply


def _check_labels(labels) -> list[str]:
    if isinstance(labels, str):
        labels = [s.strip() for s in labels.split(",")]
    labels = check_texts(labels, "labels")
    for i, label in enumerate(labels):
        if not label.strip():
            raise ValueError(f"labels[{i}] is empty")
    if len(set(labels)) != len(labels):
        raise ValueError(f"labels must be distinct, found {labels!r}")
    return labels
