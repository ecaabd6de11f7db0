"""The task heads: small modules on the encoder's output, one function and one weight tree each.

A head reads `last_hidden_state` [B, T, H] and adds what the task needs to the ModelOutput,
as transformers' *For<Task> classes do on top of the base model:

    head                  transformers class (BERT)        keys              output
    token-classification  BertForTokenClassification       classifier.*      logits [B, T, C]
    question-answering    BertForQuestionAnswering         qa_outputs.*      start_logits, end_logits [B, T]
    masked-lm             BertForMaskedLM (BertOnlyMLMHead) cls.predictions.* logits [B, T, V]

The token-classification and question-answering heads are one nn.Linear on every token in
every family (DistilBERT, RoBERTa, ELECTRA, MPNet spell them the same); the masked-LM head is
each family's own (BERT's is below). Sequence classification stays in the family's forward
(it reads the pooled or first token). Shapes: B batch, T tokens, H hidden, C labels, V vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

import numpy as np

from .config import ACTIVATIONS
from .record import NO_RECORD
from .weights import NORM_H, LayerNorm, Linear, module, tensor

# ----------------------------------------------------------------------------- weight trees
# Key paths as in the checkpoint (after the base model's `bert.` prefix, which heads do not have).


@dataclass(frozen=True)
class TokenClassificationHead:  # BertForTokenClassification minus the base model
    classifier: Linear = module(out_features="num_labels", in_features="hidden_size")  # [C, H]


@dataclass(frozen=True)
class QuestionAnsweringHead:  # BertForQuestionAnswering minus the base model
    qa_outputs: Linear = module(out_features=2, in_features="hidden_size")  # [2, H]: start, end


@dataclass(frozen=True)
class PredictionHeadTransform:  # BertPredictionHeadTransform
    dense: Linear = module(out_features="hidden_size", in_features="hidden_size")  # [H, H]
    LayerNorm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class Decoder:  # BertLMPredictionHead.decoder: nn.Linear(H, V); its bias is `predictions.bias`
    weight: np.ndarray = tensor("vocab_size", "hidden_size")  # [V, H]


@dataclass(frozen=True)
class LMPredictionHead:  # BertLMPredictionHead
    transform: PredictionHeadTransform = module()
    bias: np.ndarray = tensor("vocab_size")  # [V]
    # Tied to the word embeddings (tie_word_embeddings, the default), so usually not saved; a
    # checkpoint with untied weights keeps its own.
    decoder: Decoder | None = module(optional=True)


@dataclass(frozen=True)
class OnlyMLMHead:  # BertOnlyMLMHead (BertForMaskedLM.cls): `cls.predictions.*`
    predictions: LMPredictionHead = module()


@dataclass(frozen=True)
class MaskedLMHead:  # BertForMaskedLM minus the base model
    cls: OnlyMLMHead = module()


# ----------------------------------------------------------------------------- the functions


def token_classification(hidden, w: TokenClassificationHead, ops, record=NO_RECORD):
    # BertForTokenClassification.classifier: one linear layer on every token. [B, T, H] -> [B, T, C]
    logits = ops.linear(hidden, w.classifier.weight, w.classifier.bias)  # [B, T, C]
    record("token_logits", logits)
    return logits


def question_answering(hidden, w: QuestionAnsweringHead, ops, record=NO_RECORD):
    # BertForQuestionAnswering.qa_outputs: two scores per token, where the answer starts and where it ends.
    logits = ops.linear(hidden, w.qa_outputs.weight, w.qa_outputs.bias)  # [B, T, 2]
    start_logits = np.ascontiguousarray(logits[..., 0])  # [B, T]
    end_logits = np.ascontiguousarray(logits[..., 1])  # [B, T]
    record("start_logits", start_logits)
    record("end_logits", end_logits)
    return start_logits, end_logits


def bert_prediction_head_transform(hidden, w: PredictionHeadTransform, hidden_act, eps, ops, record=NO_RECORD):
    # BertPredictionHeadTransform: dense, the config's activation, LayerNorm. [..., H] -> [..., H]
    h = ops.linear_act(hidden, w.dense.weight, w.dense.bias, ACTIVATIONS[hidden_act])  # [..., H]
    record("dense_act", h)
    h = ops.layer_norm(h, w.LayerNorm.weight, w.LayerNorm.bias, eps)  # [..., H]
    record("LayerNorm", h)
    return h


def bert_lm_prediction_head(hidden, w: LMPredictionHead, word_embeddings, config, ops, record=NO_RECORD):
    # BertLMPredictionHead: transform, then a score for every vocabulary entry from the decoder,
    # whose weight is the word embedding table (tied) unless the checkpoint has its own. [..., H] -> [..., V]
    h = bert_prediction_head_transform(hidden, w.transform, config.hidden_act, config.layer_norm_eps, ops,
                                       record.scope("transform"))  # [..., H]
    decoder = w.decoder.weight if w.decoder is not None else word_embeddings
    logits = ops.linear(h, decoder, w.bias)  # [..., V]
    record("logits", logits)
    return logits


def masked_lm(hidden, w: MaskedLMHead, word_embeddings, config, ops, record=NO_RECORD):
    # BertOnlyMLMHead (BertForMaskedLM.cls). [..., H] -> [..., V]
    return bert_lm_prediction_head(hidden, w.cls.predictions, word_embeddings, config, ops,
                                   record.scope("cls.predictions"))


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Head:
    task: str  # "token-classification", "question-answering", "masked-lm"
    suffixes: tuple[str, ...]  # a checkpoint whose architectures name ends with one of these has this head
    tree: type  # its weight tree
    # (head weights, ModelOutput of the base model, model, ops, record) -> ModelOutput with the head's outputs
    apply: Callable
    families: tuple[str, ...] | None = None  # the families (numbert.families) it is written for; None: all


def _apply_token_classification(w, out, model, ops, record=NO_RECORD):
    return out._replace(logits=token_classification(out.last_hidden_state, w, ops, record.scope("classifier")))


def _apply_question_answering(w, out, model, ops, record=NO_RECORD):
    start, end = question_answering(out.last_hidden_state, w, ops, record.scope("qa_outputs"))
    return out._replace(start_logits=start, end_logits=end)


def _apply_masked_lm(w, out, model, ops, record=NO_RECORD):
    return out._replace(logits=masked_lm(out.last_hidden_state, w, model.weights.embeddings.word_embeddings.weight,
                                         model.config, ops, record))


HEADS = {
    "token-classification": Head("token-classification", ("ForTokenClassification",), TokenClassificationHead,
                                 _apply_token_classification),
    "question-answering": Head("question-answering", ("ForQuestionAnswering",), QuestionAnsweringHead,
                               _apply_question_answering),
    # BertForPreTraining (e.g. bert-base-uncased) holds the same cls.predictions, beside cls.seq_relationship
    "masked-lm": Head("masked-lm", ("BertForMaskedLM", "BertForPreTraining"), MaskedLMHead, _apply_masked_lm,
                      families=("bert",)),
}


def head_for(architectures, family: str = "bert") -> Head | None:
    """The head a checkpoint's config.json `architectures` names for a family, or None (base model,
    sequence classification, or a head numbert does not run)."""
    for arch in architectures or ():
        for head in HEADS.values():
            if arch.endswith(head.suffixes) and (head.families is None or family in head.families):
                return head
    return None


# ----------------------------------------------------------------------------- loading


def load_with_head(folder, config, head: Head, *, tree, prefix: str = "bert."):
    """Read a checkpoint with a task head: (base weights, head weights).

    The head's keys (classifier.*, qa_outputs.*, cls.*) build the head's tree, the remaining
    keys the base model's `tree`, each tensor read once and checked against its declared shape.
    """
    from pathlib import Path

    from . import weights as W

    folder = Path(folder)
    tensors, origin = W.read_checkpoint(folder, prefix)
    where = ", ".join(sorted({str(p) for p in origin.values()})) or str(folder)
    taken: set[str] = set()
    head_weights = W.build(head.tree, config, W.checked_take(tensors, origin, where, taken),
                           present=lambda key: W._present(tensors, key))
    if head is HEADS["masked-lm"]:
        head_weights = _tie_decoder(head_weights, config, tensors, W.checked_take(tensors, origin, where, taken))
    rest = {k: v for k, v in tensors.items() if k not in taken}
    weights = W.build(tree, config, W.checked_take(rest, origin, where, taken),
                      present=lambda key: W._present(rest, key))
    W.warn_unexpected(folder, [k for k in tensors if k not in taken])
    return weights, head_weights


def require_head(model, task: str, function: str) -> None:
    """ValueError unless `model` has `task`'s head, naming the checkpoint class it needs."""
    head = getattr(model, "head", None)
    if head is None or head.task != task:
        has = f"a {head.task} head" if head is not None else (
            "a sequence-classification head" if model.weights.classifier is not None else "no task head")
        arch = ", ".join(model.config.architectures) or "no architectures in config.json"
        raise ValueError(f"{function} needs a {task} model (e.g. {EXAMPLES[task]}); {model.path} has {has} ({arch})")


EXAMPLES = {"token-classification": "BertForTokenClassification", "question-answering": "BertForQuestionAnswering",
            "masked-lm": "BertForMaskedLM"}


def _tie_decoder(w: MaskedLMHead, config, tensors, take) -> MaskedLMHead:
    """The masked-LM decoder as transformers builds it from the checkpoint.

    Tied (tie_word_embeddings, the default): the decoder is the word embedding table and its
    bias is `cls.predictions.bias`; a saved copy of either is not read. Untied: the decoder's
    own weight, and its own bias when the checkpoint has one (transformers 5 saves
    `cls.predictions.decoder.bias` separately then).
    """
    p = w.cls.predictions
    if config.tie_word_embeddings:
        p = replace(p, decoder=None)
    elif "cls.predictions.decoder.bias" in tensors:
        p = replace(p, bias=take("cls.predictions.decoder.bias", (config.vocab_size,)))
    return replace(w, cls=replace(w.cls, predictions=p))
