"""ELECTRA: BERT's layers behind narrower embeddings, and a GELU classification head.

What ELECTRA changes (transformers models/electra/modeling_electra.py); every layer is BERT's
(numbert.modeling), with BERT's key names under the prefix `electra.`:

1. The embeddings (BertEmbeddings, keys unchanged) are `embedding_size` wide (E, 128 in
   electra-base), and `embeddings_project`, a [H, E] linear layer, widens them to the encoder's
   H. When E == H the checkpoint has no embeddings_project and nothing is projected.
2. No pooler.
3. The classification head (ElectraClassificationHead) is RoBERTa's with GELU instead of tanh:
   [CLS] -> dense -> gelu (erf) -> out_proj.

A discriminator checkpoint (ElectraForPreTraining) loads as the base model; its
discriminator_predictions head is not run.
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import layers
from .. import modeling as M
from .. import weights as W
from ..config import BertConfig
from ..errors import CheckpointError
from ..modeling import ModelOutput
from ..record import NO_RECORD
from ..weights import Linear, module
from . import Family
from .roberta import ClassificationHead, roberta_classification_head


@dataclass(frozen=True)
class ElectraWeights:  # ElectraModel (+ the head of ElectraForSequenceClassification)
    embeddings: W.Embeddings = module(hidden_size="embedding_size")  # BertEmbeddings at width E
    embeddings_project: Linear | None = module(optional=True, out_features="hidden_size",
                                               in_features="embedding_size")  # [H, E]; only when E != H
    encoder: W.Encoder = module()
    classifier: ClassificationHead | None = module(optional=True)
    pooler = None  # ELECTRA has no pooler

    num_parameters = W.BertWeights.num_parameters  # every tensor of the tree, summed


def config(d: dict) -> dict:
    return {**d, "embedding_size": d.get("embedding_size", d.get("hidden_size", 768))}


def check(w: ElectraWeights, config: BertConfig, where: str) -> None:
    # ElectraModel has embeddings_project exactly when embedding_size != hidden_size
    if config.embedding_size != config.hidden_size and w.embeddings_project is None:
        raise CheckpointError(f"missing tensor 'embeddings_project.weight' (expected shape "
                              f"[{config.hidden_size}, {config.embedding_size}]) in {where}: embedding_size "
                              f"{config.embedding_size} != hidden_size {config.hidden_size} needs the projection")


def electra_forward(input_ids, attention_mask, token_type_ids, w: ElectraWeights, config: BertConfig, ops,
                    output_hidden_states=False, output_attentions=False, record=NO_RECORD) -> ModelOutput:
    # ElectraModel (+ ElectraForSequenceClassification's head).
    hidden = M.bert_embeddings(input_ids, token_type_ids, w.embeddings, config, ops,
                               record.scope("embeddings"))  # [B, T, E]
    if config.embedding_size != config.hidden_size:  # ElectraModel.embeddings_project: E -> H, built only then
        hidden = ops.linear(hidden, w.embeddings_project.weight, w.embeddings_project.bias)  # [B, T, H]
        record("embeddings_project", hidden)
    mask_bias = ops.attention_mask_bias(attention_mask)  # [B, 1, 1, T]
    record("extended_attention_mask", mask_bias)
    hidden, all_hidden, all_probs = M.bert_encoder(hidden, mask_bias, w.encoder, config, ops, output_hidden_states,
                                                   output_attentions, record.scope("encoder"))  # [B, T, H]
    # ElectraClassificationHead: "although BERT uses tanh here, it seems Electra authors used gelu here"
    logits = (roberta_classification_head(hidden, w.classifier, ops, record.scope("classifier"),
                                          activation=layers.gelu)
              if w.classifier is not None else None)  # [B, C]
    return ModelOutput(hidden, None, logits, all_hidden, all_probs)


FAMILY = Family(name="electra", model_types=("electra",), prefix="electra.", base="ElectraModel",
                head="ElectraForSequenceClassification", weights=ElectraWeights, config=config,
                forward=electra_forward, check=check, pretraining=("ElectraForPreTraining", "ElectraForMaskedLM"))
