"""Zero-shot classification through an NLI model, as transformers' pipeline("zero-shot-classification").

A model fine-tuned on natural language inference reads a (premise, hypothesis) pair and says
whether the premise entails, contradicts or is neutral to the hypothesis. Each candidate label
becomes a hypothesis ("This example is {label}."), and the text is the premise; the
entailment logits then score the labels (ZeroShotClassificationPipeline, pipelines/
zero_shot_classification.py). numbert.classify uses this when the model given with `labels=`
is an NLI classifier. Shapes: N texts, K labels, C the NLI model's labels.
"""

from __future__ import annotations

import numpy as np

from ..layers import softmax
from . import encoding as E

DEFAULT_HYPOTHESIS = "This example is {}."  # the pipeline's default hypothesis_template


def entailment_id(config) -> int | None:
    """The id of the first label whose name starts with "entail" (any case), as the pipeline looks it up; else None."""
    for label, i in config.label2id.items():
        if label.lower().startswith("entail"):
            return int(i)
    return None


def is_nli(config) -> bool:
    return entailment_id(config) is not None


def hypotheses(labels, template: str) -> list[str]:
    """Each label written into the template with str.format, as the pipeline does."""
    if not isinstance(template, str) or template.format(labels[0]) == template:
        raise ValueError(f'hypothesis template {template!r} cannot take the labels: it needs a "{{}}" where the label '
                         'goes, e.g. "This example is {}."')
    return [template.format(label) for label in labels]


def nli_scores(model, texts, labels, *, template=DEFAULT_HYPOTHESIS, multi_label=False, batch_size=32) -> np.ndarray:
    """[N, K] label scores: the entailment method of the zero-shot pipeline.

    multi_label=False: a softmax over the K labels of the entailment logits (scores sum to 1).
    multi_label=True (or a single label): each label on its own, a softmax of its entailment
    logit against its contradiction logit (the pipeline takes contradiction at id 0, or at the
    last id when entailment is id 0).
    """
    entail = entailment_id(model.config)
    pairs = _encode_pairs(model, texts, hypotheses(labels, template))  # N*K encodings, text-major
    logits = np.stack(E.run_batches(model, pairs, lambda batch: model(**batch).logits, batch_size=batch_size,
                                    max_length=model.tokenizer.model_max_length))  # [N*K, C]
    logits = logits.reshape(len(texts), len(labels), -1)  # [N, K, C]
    if multi_label or len(labels) == 1:
        contradiction = -1 if entail == 0 else 0
        pair = logits[..., [contradiction, entail]]  # [N, K, 2]
        return softmax(pair)[..., 1]  # [N, K]
    return softmax(logits[..., entail])  # [N, K]


def _encode_pairs(model, texts, hyps):
    """[CLS] text [SEP] hypothesis [SEP] for every text and hypothesis, the text truncated first
    (truncation="only_first") so that the hypothesis is read whole."""
    tok = model.tokenizer
    hyp_pieces = E.encode(tok, hyps)
    out = []
    for i, text_piece in enumerate(E.encode(tok, texts)):
        for j, hyp in enumerate(hyp_pieces):
            extra = len(text_piece) + len(hyp) + E.num_special_tokens(tok, pair=True) - tok.model_max_length
            piece = text_piece
            if extra > 0:
                if extra >= len(text_piece):
                    raise ValueError(f"the hypothesis for labels[{j}] ({hyps[j]!r:.60}) is too long: it leaves no room "
                                     f"for the text in the {tok.model_max_length} tokens this model reads")
                piece = E.encode(tok, [texts[i]])[0]  # a fresh copy: split() cuts in place
                piece = E.split(piece, len(text_piece) - extra, 0)[0]
            out.append(E.with_special_tokens(tok, piece, hyp))
    return out
