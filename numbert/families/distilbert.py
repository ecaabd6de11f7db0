"""DistilBERT: BERT's layer with its own names, no token types, no pooler, a ReLU head.

What DistilBERT changes (transformers models/distilbert/modeling_distilbert.py):

1. Names. config.json says dim, n_layers, n_heads, hidden_dim, activation (BERT's hidden_size,
   num_hidden_layers, num_attention_heads, intermediate_size, hidden_act), and every
   LayerNorm's eps is 1e-12, fixed. The keys: transformer.layer.N.attention.{q,k,v,out}_lin,
   sa_layer_norm, ffn.lin1 / lin2, output_layer_norm, under the prefix `distilbert.`.
   Each TransformerBlock computes exactly what a BertLayer does, spelled with these names.
2. No token types: the embeddings are word + position, then LayerNorm. With
   sinusoidal_pos_embds the position table holds fixed sines and cosines; the checkpoint
   stores that table like a learned one, so it is read the same way.
3. No pooler. The classification head reads the first token through pre_classifier + ReLU,
   then classifier (DistilBertForSequenceClassification).
"""

from __future__ import annotations

from dataclasses import dataclass

from .. import modeling as M
from .. import weights as W
from ..config import ACTIVATIONS, BertConfig
from ..errors import CheckpointError
from ..modeling import ModelOutput
from ..record import NO_RECORD
from ..weights import HH, NORM_H, Embedding, LayerNorm, Linear, module, stack
from . import Family


@dataclass(frozen=True)
class Embeddings:  # distilbert Embeddings: no token_type_embeddings
    word_embeddings: Embedding = module(num_embeddings="vocab_size", embedding_dim="hidden_size")  # [V, H]
    position_embeddings: Embedding = module(num_embeddings="max_position_embeddings",
                                            embedding_dim="hidden_size")  # [P, H]
    LayerNorm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class SelfAttention:  # DistilBertSelfAttention: BertSelfAttention + BertSelfOutput's dense
    q_lin: Linear = module(**HH)  # [H, H]
    k_lin: Linear = module(**HH)  # [H, H]
    v_lin: Linear = module(**HH)  # [H, H]
    out_lin: Linear = module(**HH)  # [H, H]


@dataclass(frozen=True)
class FFN:  # FFN: BertIntermediate's dense (lin1) + BertOutput's dense (lin2)
    lin1: Linear = module(out_features="intermediate_size", in_features="hidden_size")  # [I, H]
    lin2: Linear = module(out_features="hidden_size", in_features="intermediate_size")  # [H, I]


@dataclass(frozen=True)
class TransformerBlock:  # TransformerBlock: BertLayer
    attention: SelfAttention = module()
    sa_layer_norm: LayerNorm = module(**NORM_H)
    ffn: FFN = module()
    output_layer_norm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class Transformer:  # Transformer: BertEncoder
    layer: tuple[TransformerBlock, ...] = stack("num_hidden_layers")


@dataclass(frozen=True)
class DistilBertWeights:  # DistilBertModel (+ the head of DistilBertForSequenceClassification)
    embeddings: Embeddings = module()
    transformer: Transformer = module()
    pre_classifier: Linear | None = module(optional=True, **HH)  # [H, H]
    classifier: Linear | None = module(optional=True, out_features="num_labels", in_features="hidden_size")  # [C, H]
    pooler = None  # DistilBERT has no pooler

    num_parameters = W.BertWeights.num_parameters  # every tensor of the tree, summed


def config(d: dict) -> dict:
    # DistilBertConfig's names -> BertConfig's (DistilBertConfig.attribute_map, plus hidden_dim and activation)
    renamed = {"dim": "hidden_size", "n_layers": "num_hidden_layers", "n_heads": "num_attention_heads",
               "hidden_dim": "intermediate_size", "activation": "hidden_act"}
    out = {k: v for k, v in d.items() if k not in renamed}
    out.update({new: d[old] for old, new in renamed.items() if old in d})
    out["layer_norm_eps"] = 1e-12  # nn.LayerNorm(config.dim, eps=1e-12) everywhere, not configurable
    return out


def check(w: DistilBertWeights, config: BertConfig, where: str) -> None:
    # the head is pre_classifier and classifier together
    if (w.pre_classifier is None) != (w.classifier is None):
        missing = "pre_classifier" if w.pre_classifier is None else "classifier"
        raise CheckpointError(f"missing tensor '{missing}.weight' in {where}: DistilBERT's classification head is "
                              "pre_classifier + ReLU + classifier, and the checkpoint holds only one of them")


def distilbert_embeddings(input_ids, w: Embeddings, config: BertConfig, ops, record=NO_RECORD):
    # Embeddings: word + position, LayerNorm; no token types. [B, T] -> [B, T, H]
    return ops.embeddings(input_ids, None, w.word_embeddings.weight, w.position_embeddings.weight, None,
                          w.LayerNorm.weight, w.LayerNorm.bias, config.layer_norm_eps, record)


def distilbert_self_attention(hidden, mask_bias, w: SelfAttention, config: BertConfig, ops, output_attentions,
                              record=NO_RECORD):
    # DistilBertSelfAttention: q_lin, k_lin, v_lin, attention, out_lin. [B, T, H] -> [B, T, H]
    q, k, v = ops.qkv(hidden, w.q_lin, w.k_lin, w.v_lin, record)  # 3 x [B, T, H]
    context, probs = ops.attention(q, k, v, mask_bias, config.num_attention_heads, output_attentions,
                                   record)  # [B, T, H]
    out = ops.linear(context, w.out_lin.weight, w.out_lin.bias)  # [B, T, H]
    record("out_lin", out)
    return out, probs


def ffn(hidden, w: FFN, config: BertConfig, ops, record=NO_RECORD):
    # FFN: lin1, activation, lin2. [B, T, H] -> [B, T, I] -> [B, T, H]
    widened = ops.linear_act(hidden, w.lin1.weight, w.lin1.bias, ACTIVATIONS[config.hidden_act], record)  # [B, T, I]
    out = ops.linear(widened, w.lin2.weight, w.lin2.bias)  # [B, T, H]
    record("lin2", out)
    return out


def transformer_block(hidden, mask_bias, w: TransformerBlock, config: BertConfig, ops, output_attentions,
                      record=NO_RECORD):
    # TransformerBlock: attention + Add & Norm (sa_layer_norm), FFN + Add & Norm (output_layer_norm).
    eps = config.layer_norm_eps
    attended, probs = distilbert_self_attention(hidden, mask_bias, w.attention, config, ops, output_attentions,
                                                record.scope("attention"))  # [B, T, H]
    attended = ops.add_layer_norm(attended, hidden, w.sa_layer_norm.weight, w.sa_layer_norm.bias, eps)  # [B, T, H]
    record("sa_layer_norm", attended)
    out = ffn(attended, w.ffn, config, ops, record.scope("ffn"))  # [B, T, H]
    out = ops.add_layer_norm(out, attended, w.output_layer_norm.weight, w.output_layer_norm.bias, eps)  # [B, T, H]
    record("output_layer_norm", out)
    return out, probs


def distilbert_classification_head(hidden, w: DistilBertWeights, ops, record=NO_RECORD):
    # DistilBertForSequenceClassification: first token -> pre_classifier -> ReLU -> classifier. [B, T, H] -> [B, C]
    first = hidden[:, 0]  # [B, H]
    record("first_token", first)
    x = ops.linear_act(first, w.pre_classifier.weight, w.pre_classifier.bias, "relu",
                       record.scope("pre_classifier"))  # [B, H]
    logits = ops.linear(x, w.classifier.weight, w.classifier.bias)  # [B, C]
    record("logits", logits)
    return logits


def distilbert_forward(input_ids, attention_mask, token_type_ids, w: DistilBertWeights, config: BertConfig, ops,
                       output_hidden_states=False, output_attentions=False, record=NO_RECORD) -> ModelOutput:
    # DistilBertModel (+ DistilBertForSequenceClassification's head); token_type_ids are not read.
    hidden = distilbert_embeddings(input_ids, w.embeddings, config, ops, record.scope("embeddings"))  # [B, T, H]
    mask_bias = ops.attention_mask_bias(attention_mask)  # [B, 1, 1, T]
    record("extended_attention_mask", mask_bias)
    # Transformer: BertEncoder's loop over the TransformerBlocks
    hidden, all_hidden, all_probs = M.bert_encoder(hidden, mask_bias, w.transformer, config, ops, output_hidden_states,
                                                   output_attentions, record.scope("transformer"),
                                                   layer_fn=transformer_block)  # [B, T, H]
    logits = (distilbert_classification_head(hidden, w, ops, record.scope("classifier"))
              if w.classifier is not None else None)  # [B, C]
    return ModelOutput(hidden, None, logits, all_hidden, all_probs)


FAMILY = Family(name="distilbert", model_types=("distilbert",), prefix="distilbert.", base="DistilBertModel",
                head="DistilBertForSequenceClassification", weights=DistilBertWeights, config=config,
                forward=distilbert_forward, check=check, token_types=False, pretraining=("DistilBertForMaskedLM",))
