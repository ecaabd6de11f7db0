"""RoBERTa and XLM-RoBERTa: BERT's network, fairseq's position ids, its own classification head.

What RoBERTa changes (transformers models/roberta/modeling_roberta.py); every other layer is
BERT's (numbert.modeling), with BERT's key names under the prefix `roberta.`:

1. Position ids count only the real tokens and start after the pad id (padding_idx =
   pad_token_id, 1): `<s>` reads row 2 of the position table, padding reads row 1. So a
   padded row reads the positions it reads alone, and the table holds max_position_embeddings
   = 514 rows for 512 tokens (`roberta_position_ids`).
2. One token type (type_vocab_size 1): every token reads row 0 (its tokenizer returns no
   token_type_ids; numbert's gives zeros).
3. The classification head (RobertaClassificationHead) reads `<s>` through dense + tanh +
   out_proj; it does not use the pooler, which a classifier checkpoint does not have
   (`roberta_classification_head`).
4. The tokenizer, read from tokenizer.json: byte-level BPE, pairs as `<s> A </s></s> B </s>`.

XLM-RoBERTa (models/xlm_roberta) is this module with a SentencePiece (Unigram) tokenizer: the
same classes, keys and forward.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .. import modeling as M
from .. import weights as W
from ..config import BertConfig
from ..modeling import ModelOutput
from ..record import NO_RECORD
from ..weights import HH, Linear, module
from . import Family


@dataclass(frozen=True)
class ClassificationHead:  # RobertaClassificationHead (also ELECTRA's and MPNet's, with another activation)
    dense: Linear = module(**HH)  # [H, H]
    out_proj: Linear = module(out_features="num_labels", in_features="hidden_size")  # [C, H]


@dataclass(frozen=True)
class RobertaWeights:  # RobertaModel (+ the head of RobertaForSequenceClassification)
    embeddings: W.Embeddings = module()  # BertEmbeddings' keys
    encoder: W.Encoder = module()  # BertEncoder's keys
    pooler: W.Pooler | None = module(optional=True)  # absent from classifier checkpoints
    classifier: ClassificationHead | None = module(optional=True)

    num_parameters = W.BertWeights.num_parameters  # every tensor of the tree, summed


def config(d: dict) -> dict:
    # BERT's names already; positions start after the pad id (create_position_ids_from_input_ids)
    pad = d.get("pad_token_id")
    pad = 1 if pad is None else pad  # RobertaConfig's default
    return {**d, "pad_token_id": pad, "position_offset": pad + 1}


def roberta_position_ids(input_ids, padding_idx):  # [B, T], int -> [B, T]
    # create_position_ids_from_input_ids: real tokens count 1, 2, 3 ... from padding_idx + 1;
    # a pad token keeps padding_idx. Computed from the ids, not the attention mask, as transformers does.
    real = (input_ids != padding_idx).astype(np.int64)  # [B, T]
    return np.cumsum(real, axis=1) * real + padding_idx  # [B, T]


def roberta_embeddings(input_ids, token_type_ids, w: W.Embeddings, config: BertConfig, ops, record=NO_RECORD):
    # RobertaEmbeddings: BertEmbeddings with position ids that skip the padding. [B, T] -> [B, T, H]
    position_ids = roberta_position_ids(input_ids, config.pad_token_id)  # [B, T]
    return ops.embeddings(input_ids, token_type_ids, w.word_embeddings.weight, w.position_embeddings.weight,
                          w.token_type_embeddings.weight, w.LayerNorm.weight, w.LayerNorm.bias,
                          config.layer_norm_eps, record, position_ids=position_ids)


def roberta_classification_head(hidden, w: ClassificationHead, ops, record=NO_RECORD, activation=np.tanh):
    # RobertaClassificationHead: <s>'s vector -> dense -> tanh -> out_proj. [B, T, H] -> [B, C]
    first = hidden[:, 0]  # [B, H]  (<s>, BERT's [CLS])
    record("first_token", first)
    x = ops.linear(first, w.dense.weight, w.dense.bias)  # [B, H]
    record("dense", x)
    x = activation(x)  # [B, H]
    record("activation", x)
    logits = ops.linear(x, w.out_proj.weight, w.out_proj.bias)  # [B, C]
    record("logits", logits)
    return logits


def roberta_forward(input_ids, attention_mask, token_type_ids, w: RobertaWeights, config: BertConfig, ops,
                    output_hidden_states=False, output_attentions=False, record=NO_RECORD) -> ModelOutput:
    # RobertaModel (+ RobertaForSequenceClassification's head): BERT with the two changes above.
    hidden = roberta_embeddings(input_ids, token_type_ids, w.embeddings, config, ops,
                                record.scope("embeddings"))  # [B, T, H]
    mask_bias = ops.attention_mask_bias(attention_mask)  # [B, 1, 1, T]
    record("extended_attention_mask", mask_bias)
    hidden, all_hidden, all_probs = M.bert_encoder(hidden, mask_bias, w.encoder, config, ops, output_hidden_states,
                                                   output_attentions, record.scope("encoder"))  # [B, T, H]
    pooled = M.bert_pooler(hidden, w.pooler, ops, record.scope("pooler")) if w.pooler is not None else None
    logits = (roberta_classification_head(hidden, w.classifier, ops, record.scope("classifier"))
              if w.classifier is not None else None)  # [B, C]
    return ModelOutput(hidden, pooled, logits, all_hidden, all_probs)


FAMILY = Family(name="roberta", model_types=("roberta",), prefix="roberta.", base="RobertaModel",
                head="RobertaForSequenceClassification", weights=RobertaWeights, config=config,
                forward=roberta_forward, pretraining=("RobertaForMaskedLM",))
XLM_FAMILY = Family(name="xlm-roberta", model_types=("xlm-roberta",), prefix="roberta.", base="XLMRobertaModel",
                    head="XLMRobertaForSequenceClassification", weights=RobertaWeights, config=config,
                    forward=roberta_forward, pretraining=("XLMRobertaForMaskedLM",))
