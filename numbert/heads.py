"""The task heads: small modules on the encoder's output, one function and one weight tree each.

A head reads `last_hidden_state` [B, T, H] and adds what the task needs to the ModelOutput,
as transformers' *For<Task> classes do on top of the base model:

    head                  transformers class (BERT)        keys               output
    token-classification  BertForTokenClassification       classifier.*       logits [B, T, C]
    question-answering    BertForQuestionAnswering         qa_outputs.*       start_logits, end_logits [B, T]
    masked-lm             BertForMaskedLM (BertOnlyMLMHead) cls.predictions.*  logits [B, T, V]

The token-classification and question-answering heads are one nn.Linear on every token in
every family (DistilBERT, RoBERTa, ELECTRA, MPNet spell them the same). The masked-LM head is
each family's own: dense, activation, LayerNorm, then a decoder whose weight is the word
embedding table (tied), spelled

    BERT                  cls.predictions.transform.{dense,LayerNorm}, .decoder    activation: hidden_act
    RoBERTa, XLM-R, MPNet lm_head.{dense,layer_norm,decoder}                        GELU
    DistilBERT            vocab_transform, vocab_layer_norm, vocab_projector        activation
    ELECTRA (generator)   generator_predictions.{dense,LayerNorm} (H -> E), generator_lm_head   GELU

Sequence classification stays in the family's forward (it reads the pooled or first token).
Shapes: B batch, T tokens, H hidden, C labels, V vocabulary, E ELECTRA's embedding width.
"""

from __future__ import annotations

from dataclasses import dataclass
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
class LMPredictionHead:  # BertLMPredictionHead
    transform: PredictionHeadTransform = module()
    bias: np.ndarray = tensor("vocab_size")  # [V]: the decoder's bias (tied to decoder.bias)
    # [V, H]: tied to the word embeddings (tie_word_embeddings, the default), so usually not saved;
    # the loader ties it as transformers does (see Head.ties)
    decoder: Linear = module(out_features="vocab_size", in_features="hidden_size")


@dataclass(frozen=True)
class OnlyMLMHead:  # BertOnlyMLMHead (BertForMaskedLM.cls): `cls.predictions.*`
    predictions: LMPredictionHead = module()


@dataclass(frozen=True)
class MaskedLMHead:  # BertForMaskedLM minus the base model
    cls: OnlyMLMHead = module()


@dataclass(frozen=True)
class RobertaLMHead:  # RobertaLMHead (XLM-RoBERTa's and MPNet's MPNetLMHead are the same): `lm_head.*`
    dense: Linear = module(out_features="hidden_size", in_features="hidden_size")  # [H, H]
    layer_norm: LayerNorm = module(**NORM_H)
    bias: np.ndarray = tensor("vocab_size")  # [V] (tied to decoder.bias)
    decoder: Linear = module(out_features="vocab_size", in_features="hidden_size")  # [V, H], tied


@dataclass(frozen=True)
class RobertaMaskedLMHead:  # RobertaForMaskedLM minus the base model
    lm_head: RobertaLMHead = module()


@dataclass(frozen=True)
class DistilBertMaskedLMHead:  # DistilBertForMaskedLM minus the base model
    vocab_transform: Linear = module(out_features="hidden_size", in_features="hidden_size")  # [H, H]
    vocab_layer_norm: LayerNorm = module(**NORM_H)
    vocab_projector: Linear = module(out_features="vocab_size", in_features="hidden_size")  # [V, H], weight tied


@dataclass(frozen=True)
class ElectraGeneratorPredictions:  # ElectraGeneratorPredictions: back from H to the embeddings' width E
    dense: Linear = module(out_features="embedding_size", in_features="hidden_size")  # [E, H]
    LayerNorm: LayerNorm = module(normalized_shape="embedding_size")  # [E]


@dataclass(frozen=True)
class ElectraMaskedLMHead:  # ElectraForMaskedLM (the generator) minus the base model
    generator_predictions: ElectraGeneratorPredictions = module()
    generator_lm_head: Linear = module(out_features="vocab_size", in_features="embedding_size")  # [V, E], tied


# ----------------------------------------------------------------------------- the functions


def token_classification(hidden, w: TokenClassificationHead, ops, record=NO_RECORD):
    # BertForTokenClassification.classifier: one linear layer on every token. [B, T, H] -> [B, T, C]
    logits = ops.linear(hidden, w.classifier.weight, w.classifier.bias)  # [B, T, C]
    record("token_logits", logits)
    return logits


def question_answering(hidden, w: QuestionAnsweringHead, ops, record=NO_RECORD):
    # BertForQuestionAnswering.qa_outputs: two scores per token, where the answer starts and where it ends.
    logits = ops.linear(hidden, w.qa_outputs.weight, w.qa_outputs.bias)  # [B, T, 2]
    record("logits", logits)
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


def bert_lm_prediction_head(hidden, w: LMPredictionHead, config, ops, record=NO_RECORD):
    # BertLMPredictionHead: transform, then a score for every vocabulary entry from the decoder,
    # whose weight is the word embedding table (tied). [..., H] -> [..., V]
    h = bert_prediction_head_transform(hidden, w.transform, config.hidden_act, config.layer_norm_eps, ops,
                                       record.scope("transform"))  # [..., H]
    logits = ops.linear(h, w.decoder.weight, w.decoder.bias)  # [..., V]
    record("logits", logits)
    return logits


def masked_lm(hidden, w: MaskedLMHead, config, ops, record=NO_RECORD):
    # BertOnlyMLMHead (BertForMaskedLM.cls). [..., H] -> [..., V]
    return bert_lm_prediction_head(hidden, w.cls.predictions, config, ops, record.scope("cls.predictions"))


def roberta_lm_head(hidden, w: RobertaLMHead, config, ops, record=NO_RECORD):
    # RobertaLMHead (MPNetLMHead): dense, GELU (erf, whatever hidden_act says), layer_norm, decoder (tied).
    h = ops.linear_act(hidden, w.dense.weight, w.dense.bias, "gelu")  # [..., H]
    record("dense_act", h)
    h = ops.layer_norm(h, w.layer_norm.weight, w.layer_norm.bias, config.layer_norm_eps)  # [..., H]
    record("layer_norm", h)
    logits = ops.linear(h, w.decoder.weight, w.decoder.bias)  # [..., V]
    record("logits", logits)
    return logits


def distilbert_mlm_head(hidden, w: DistilBertMaskedLMHead, config, ops, record=NO_RECORD):
    # DistilBertForMaskedLM: vocab_transform, the config's activation, vocab_layer_norm (eps 1e-12),
    # vocab_projector (weight tied to the word embeddings). [..., H] -> [..., V]
    h = ops.linear_act(hidden, w.vocab_transform.weight, w.vocab_transform.bias,
                       ACTIVATIONS[config.hidden_act])  # [..., H]
    record("vocab_transform", h)
    h = ops.layer_norm(h, w.vocab_layer_norm.weight, w.vocab_layer_norm.bias, 1e-12)  # [..., H]
    record("vocab_layer_norm", h)
    logits = ops.linear(h, w.vocab_projector.weight, w.vocab_projector.bias)  # [..., V]
    record("vocab_projector", logits)
    return logits


def electra_generator_head(hidden, w: ElectraMaskedLMHead, config, ops, record=NO_RECORD):
    # ElectraForMaskedLM: generator_predictions (dense H -> E, GELU, LayerNorm), then generator_lm_head
    # (weight tied to the E-wide word embeddings). [..., H] -> [..., V]
    p = w.generator_predictions
    h = ops.linear_act(hidden, p.dense.weight, p.dense.bias, "gelu")  # [..., E]
    record("generator_predictions.dense_act", h)
    h = ops.layer_norm(h, p.LayerNorm.weight, p.LayerNorm.bias, config.layer_norm_eps)  # [..., E]
    record("generator_predictions.LayerNorm", h)
    logits = ops.linear(h, w.generator_lm_head.weight, w.generator_lm_head.bias)  # [..., V]
    record("generator_lm_head", logits)
    return logits


# ----------------------------------------------------------------------------- the registry


@dataclass(frozen=True)
class Head:
    task: str  # "token-classification", "question-answering", "masked-lm"
    # the config.json architectures it runs: a name ("RobertaForMaskedLM"), or a suffix any family's
    # class may end with ("ForTokenClassification")
    architectures: tuple[str, ...]
    tree: type  # its weight tree
    # (head weights, ModelOutput of the base model, model, ops, record) -> ModelOutput with the head's outputs
    apply: Callable
    families: tuple[str, ...] | None = None  # the families (numbert.families) it is written for; None: all
    # transformers' _tied_weights_keys: each (key, source) pair reads `source` for `key` when the
    # config ties word embeddings (the default), or when the checkpoint does not hold `key`
    ties: tuple[tuple[str, str], ...] = ()

    def runs(self, architecture: str, family: str) -> bool:
        known = any(architecture == a or (a.startswith("For") and architecture.endswith(a)) for a in self.architectures)
        return known and (self.families is None or family in self.families)


def _token_classification(w, out, model, ops, record=NO_RECORD):
    return out._replace(logits=token_classification(out.last_hidden_state, w, ops, record.scope("classifier")))


def _question_answering(w, out, model, ops, record=NO_RECORD):
    start, end = question_answering(out.last_hidden_state, w, ops, record.scope("qa_outputs"))
    return out._replace(start_logits=start, end_logits=end)


def _masked_lm(function, scope=None):
    def apply(w, out, model, ops, record=NO_RECORD):
        where = record.scope(scope) if scope else record
        return out._replace(logits=function(out.last_hidden_state, w if scope is None else getattr(w, scope),
                                            model.config, ops, where))
    return apply


WORD_EMBEDDINGS = "embeddings.word_embeddings.weight"  # the base model's key, after its prefix

HEADS = {
    "token-classification": Head("token-classification", ("ForTokenClassification",), TokenClassificationHead,
                                 _token_classification),
    "question-answering": Head("question-answering", ("ForQuestionAnswering",), QuestionAnsweringHead,
                               _question_answering),
    # BertForPreTraining (e.g. bert-base-uncased) holds the same cls.predictions, beside cls.seq_relationship
    "masked-lm": Head("masked-lm", ("BertForMaskedLM", "BertForPreTraining"), MaskedLMHead, _masked_lm(masked_lm),
                      families=("bert",), ties=(("cls.predictions.decoder.weight", WORD_EMBEDDINGS),
                                                ("cls.predictions.decoder.bias", "cls.predictions.bias"))),
}
# The other families' masked-LM heads (same task, their own keys and functions).
FAMILY_MLM_HEADS = (
    Head("masked-lm", ("RobertaForMaskedLM", "XLMRobertaForMaskedLM", "MPNetForMaskedLM"), RobertaMaskedLMHead,
         _masked_lm(roberta_lm_head, "lm_head"), families=("roberta", "xlm-roberta", "mpnet"),
         ties=(("lm_head.decoder.weight", WORD_EMBEDDINGS), ("lm_head.decoder.bias", "lm_head.bias"))),
    Head("masked-lm", ("DistilBertForMaskedLM",), DistilBertMaskedLMHead, _masked_lm(distilbert_mlm_head),
         families=("distilbert",), ties=(("vocab_projector.weight", WORD_EMBEDDINGS),)),
    Head("masked-lm", ("ElectraForMaskedLM",), ElectraMaskedLMHead, _masked_lm(electra_generator_head),
         families=("electra",), ties=(("generator_lm_head.weight", WORD_EMBEDDINGS),)),
)


def head_for(architectures, family: str = "bert") -> Head | None:
    """The head a checkpoint's config.json `architectures` names for a family, or None (base model,
    sequence classification, or a head numbert does not run)."""
    for arch in architectures or ():
        for head in (*HEADS.values(), *FAMILY_MLM_HEADS):
            if head.runs(arch, family):
                return head
    return None


# ----------------------------------------------------------------------------- loading


def load_with_head(folder, config, head: Head, *, tree, prefix: str = "bert."):
    """Read a checkpoint with a task head: (base weights, head weights).

    The head's keys (classifier.*, qa_outputs.*, cls.*, lm_head.* ...) build the head's tree, the
    remaining keys the base model's `tree`, each tensor read once and checked against its declared
    shape. Tied weights (head.ties) are read from their source, as transformers ties them.
    """
    from pathlib import Path

    from . import weights as W

    folder = Path(folder)
    tensors, origin = W.read_checkpoint(folder, prefix)
    for key, source in head.ties:
        if (config.tie_word_embeddings or key not in tensors) and source in tensors:
            tensors[key], origin[key] = tensors[source], origin[source]  # the same array: no copy
    where = ", ".join(sorted({str(p) for p in origin.values()})) or str(folder)
    taken: set[str] = set()
    head_weights = W.build(head.tree, config, W.checked_take(tensors, origin, where, taken),
                           present=lambda key: W._present(tensors, key))
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
