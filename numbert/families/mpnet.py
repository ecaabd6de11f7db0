"""MPNet: BERT's layer with its own names, RoBERTa's positions, and a relative position bias.

What MPNet changes (transformers models/mpnet/modeling_mpnet.py):

1. A relative position bias. The encoder holds one table, relative_attention_bias
   [buckets, nh], shared by all layers: for every (query i, key j) pair the distance j - i is
   put in a bucket (exact for small distances, logarithmic up to 128, then clamped) and that
   bucket's nh values are added to the heads' attention scores, after the 1/sqrt(hs) scaling
   and before the padding mask (`relative_position_bucket`, `mpnet_position_bias`). It is
   computed once per forward from the positions 0 .. T-1.
2. Position ids as RoBERTa's, counting real tokens from 2 (padding_idx is 1, fixed in MPNet).
3. No token types: the embeddings are word + position, then LayerNorm.
4. Names: the attention is attention.attn.{q,k,v,o} and attention.LayerNorm (BERT's
   attention.self.{query,key,value} and attention.output.{dense,LayerNorm}); the feed-forward
   keeps BERT's intermediate / output keys. Prefix `mpnet.`.
5. The classification head is RoBERTa's: <s> -> dense -> tanh -> out_proj.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial

import numpy as np

from .. import modeling as M
from .. import weights as W
from ..config import BertConfig
from ..modeling import ModelOutput
from ..record import NO_RECORD
from ..weights import HH, NORM_H, Embedding, LayerNorm, Linear, module, stack
from . import Family
from .roberta import ClassificationHead, roberta_classification_head, roberta_position_ids

PADDING_IDX = 1  # MPNetEmbeddings.padding_idx: fixed, whatever pad_token_id says
NUM_BUCKETS = 32  # MPNetEncoder.compute_position_bias always buckets into 32, whatever the table's size
MAX_DISTANCE = 128


@dataclass(frozen=True)
class Embeddings:  # MPNetEmbeddings: no token_type_embeddings
    word_embeddings: Embedding = module(num_embeddings="vocab_size", embedding_dim="hidden_size")  # [V, H]
    position_embeddings: Embedding = module(num_embeddings="max_position_embeddings",
                                            embedding_dim="hidden_size")  # [P, H]
    LayerNorm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class SelfAttention:  # MPNetSelfAttention: BertSelfAttention + BertSelfOutput's dense (o)
    q: Linear = module(**HH)  # [H, H]
    k: Linear = module(**HH)  # [H, H]
    v: Linear = module(**HH)  # [H, H]
    o: Linear = module(**HH)  # [H, H]


@dataclass(frozen=True)
class Attention:  # MPNetAttention: self-attention + Add & Norm
    attn: SelfAttention = module()
    LayerNorm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class Layer:  # MPNetLayer
    attention: Attention = module()
    intermediate: W.Intermediate = module()  # BERT's
    output: W.Output = module()  # BERT's


@dataclass(frozen=True)
class Encoder:  # MPNetEncoder: the layers and the one position-bias table they share
    layer: tuple[Layer, ...] = stack("num_hidden_layers")
    relative_attention_bias: Embedding = module(num_embeddings="relative_attention_num_buckets",
                                                embedding_dim="num_attention_heads")  # [buckets, nh]


@dataclass(frozen=True)
class MPNetWeights:  # MPNetModel (+ the head of MPNetForSequenceClassification)
    embeddings: Embeddings = module()
    encoder: Encoder = module()
    pooler: W.Pooler | None = module(optional=True)
    classifier: ClassificationHead | None = module(optional=True)

    num_parameters = W.BertWeights.num_parameters  # every tensor of the tree, summed


def config(d: dict) -> dict:
    return {**d, "position_offset": PADDING_IDX + 1,
            "relative_attention_num_buckets": d.get("relative_attention_num_buckets", 32)}


def relative_position_bucket(relative_position, num_buckets=NUM_BUCKETS, max_distance=MAX_DISTANCE):
    # [...] int -> [...] int in [0, num_buckets). Half the buckets for keys before the query,
    # half for keys after; within each half, distances below max_exact get a bucket each and
    # longer ones share buckets whose width grows logarithmically up to max_distance.
    n = -relative_position
    half = num_buckets // 2
    bucket = np.where(n < 0, half, 0)  # which half
    n = np.abs(n)
    max_exact = half // 2
    with np.errstate(divide="ignore"):  # log(0) at n = 0, discarded by the where below
        # float32 as in torch, so a distance right at a bucket edge lands where torch puts it
        scaled = (np.log(n.astype(np.float32) / np.float32(max_exact)) / np.float32(math.log(max_distance / max_exact))
                  * np.float32(half - max_exact))
    large = max_exact + np.where(n < max_exact, 0, scaled).astype(np.int64)
    large = np.minimum(large, half - 1)
    return bucket + np.where(n < max_exact, n, large)


def mpnet_position_bias(T, table, record=NO_RECORD):  # int, [buckets, nh] -> [1, nh, T, T]
    # MPNetEncoder.compute_position_bias, from the positions 0 .. T-1 (not the padded position ids).
    position = np.arange(T)  # [T]
    relative = position[None, :] - position[:, None]  # [T, T]  key - query
    buckets = relative_position_bucket(relative)  # [T, T]
    record("relative_position_bucket", buckets)
    bias = table[buckets].transpose(2, 0, 1)[None]  # [1, nh, T, T]
    record("position_bias", bias)
    return np.ascontiguousarray(bias)


def mpnet_embeddings(input_ids, w: Embeddings, config: BertConfig, ops, record=NO_RECORD):
    # MPNetEmbeddings: word + position (RoBERTa's ids), LayerNorm. [B, T] -> [B, T, H]
    position_ids = roberta_position_ids(input_ids, PADDING_IDX)  # [B, T]
    return ops.embeddings(input_ids, None, w.word_embeddings.weight, w.position_embeddings.weight, None,
                          w.LayerNorm.weight, w.LayerNorm.bias, config.layer_norm_eps, record,
                          position_ids=position_ids)


def mpnet_self_attention(hidden, mask_bias, position_bias, w: SelfAttention, config: BertConfig, ops,
                         output_attentions, record=NO_RECORD):
    # MPNetSelfAttention: q, k, v; scores + position bias + mask; softmax; o. [B, T, H] -> [B, T, H]
    q, k, v = ops.qkv(hidden, w.q, w.k, w.v, record)  # 3 x [B, T, H]
    context, probs = ops.attention(q, k, v, mask_bias, config.num_attention_heads, output_attentions, record,
                                   position_bias=position_bias)  # [B, T, H]
    out = ops.linear(context, w.o.weight, w.o.bias)  # [B, T, H]
    record("o", out)
    return out, probs


def mpnet_attention(hidden, mask_bias, position_bias, w: Attention, config: BertConfig, ops, output_attentions,
                    record=NO_RECORD):
    # MPNetAttention: self-attention, then LayerNorm(attention + residual).
    out, probs = mpnet_self_attention(hidden, mask_bias, position_bias, w.attn, config, ops, output_attentions,
                                      record.scope("attn"))  # [B, T, H]
    out = ops.add_layer_norm(out, hidden, w.LayerNorm.weight, w.LayerNorm.bias, config.layer_norm_eps)  # [B, T, H]
    record("LayerNorm", out)
    return out, probs


def mpnet_layer(hidden, mask_bias, w: Layer, config: BertConfig, ops, output_attentions, record=NO_RECORD, *,
                position_bias):
    # MPNetLayer: attention, then BERT's feed-forward (BertIntermediate, BertOutput).
    attended, probs = mpnet_attention(hidden, mask_bias, position_bias, w.attention, config, ops, output_attentions,
                                      record.scope("attention"))  # [B, T, H]
    widened = M.bert_intermediate(attended, w.intermediate, config, ops, record.scope("intermediate"))  # [B, T, I]
    return M.bert_output(widened, attended, w.output, config, ops, record.scope("output")), probs


def mpnet_encoder(hidden, mask_bias, w: Encoder, config: BertConfig, ops, output_hidden_states, output_attentions,
                  record=NO_RECORD):
    # MPNetEncoder: one position bias for all layers, then the stack. [B, T, H] -> [B, T, H]
    position_bias = mpnet_position_bias(hidden.shape[1], w.relative_attention_bias.weight, record)  # [1, nh, T, T]
    return M.bert_encoder(hidden, mask_bias, w, config, ops, output_hidden_states, output_attentions, record,
                          layer_fn=partial(mpnet_layer, position_bias=position_bias))  # [B, T, H]


def mpnet_forward(input_ids, attention_mask, token_type_ids, w: MPNetWeights, config: BertConfig, ops,
                  output_hidden_states=False, output_attentions=False, record=NO_RECORD) -> ModelOutput:
    # MPNetModel (+ MPNetForSequenceClassification's head); token_type_ids are not read.
    hidden = mpnet_embeddings(input_ids, w.embeddings, config, ops, record.scope("embeddings"))  # [B, T, H]
    mask_bias = ops.attention_mask_bias(attention_mask)  # [B, 1, 1, T]
    record("extended_attention_mask", mask_bias)
    hidden, all_hidden, all_probs = mpnet_encoder(hidden, mask_bias, w.encoder, config, ops, output_hidden_states,
                                                  output_attentions, record.scope("encoder"))  # [B, T, H]
    pooled = M.bert_pooler(hidden, w.pooler, ops, record.scope("pooler")) if w.pooler is not None else None
    logits = (roberta_classification_head(hidden, w.classifier, ops, record.scope("classifier"))
              if w.classifier is not None else None)  # [B, C]  (MPNetClassificationHead: RoBERTa's)
    return ModelOutput(hidden, pooled, logits, all_hidden, all_probs)


FAMILY = Family(name="mpnet", model_types=("mpnet",), prefix="mpnet.", base="MPNetModel",
                head="MPNetForSequenceClassification", weights=MPNetWeights, config=config,
                forward=mpnet_forward, token_types=False, pretraining=("MPNetForMaskedLM",))
