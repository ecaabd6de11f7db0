"""The BERT forward pass: one function per Hugging Face module, composed as transformers does.

Each function names the transformers class it mirrors (models/bert/modeling_bert.py) and
takes the matching subtree of the weights, so `w.attention.self` here is the checkpoint's
`encoder.layer.N.attention.self.*`. The maths lives in `ops`, a backend adapter of
`numbert.backend`: `numbert.layers` (NumPy, the reference) or `numbert.kernels` (Numba, the
same functions, fused). `record` receives the intermediate tensors when a trace asks for them
(see `numbert.record`).

Shapes: B batch, T tokens, H hidden, nh heads, I intermediate, C labels.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import weights as W
from .config import ACTIVATIONS, BertConfig
from .record import NO_RECORD


class ModelOutput(NamedTuple):
    """What a forward pass returns; fields named as in transformers' model outputs."""

    last_hidden_state: np.ndarray  # [B, T, H] float32
    pooler_output: np.ndarray | None  # [B, H]  (None: the checkpoint has no pooler)
    # [B, C] with a sequence classifier; [B, T, C] with a token classifier, [B, T, V] with a
    # masked-LM head (numbert.heads); None: the checkpoint has no head that gives logits
    logits: np.ndarray | None
    hidden_states: tuple[np.ndarray, ...] | None  # L + 1 x [B, T, H]: embeddings, then each layer
    attentions: tuple[np.ndarray, ...] | None  # L x [B, nh, T, T]: each layer's softmax
    start_logits: np.ndarray | None = None  # [B, T] question answering: where the answer starts
    end_logits: np.ndarray | None = None  # [B, T] ... and where it ends


def bert_embeddings(input_ids, token_type_ids, w: W.Embeddings, config: BertConfig, ops, record=NO_RECORD):
    # BertEmbeddings: [B, T] ids -> [B, T, H]
    return ops.embeddings(input_ids, token_type_ids,
                          w.word_embeddings.weight, w.position_embeddings.weight,
                          w.token_type_embeddings.weight, w.LayerNorm.weight, w.LayerNorm.bias,
                          config.layer_norm_eps, record)


def bert_self_attention(hidden, mask_bias, w: W.SelfAttention, config: BertConfig, ops, output_attentions,
                        record=NO_RECORD):
    # BertSelfAttention: [B, T, H] -> context [B, T, H], probs [B, nh, T, T] or None
    q, k, v = ops.qkv(hidden, w.query, w.key, w.value, record)  # 3 x [B, T, H]
    return ops.attention(q, k, v, mask_bias, config.num_attention_heads, output_attentions, record)


def bert_self_output(context, residual, w: W.SelfOutput, config: BertConfig, ops, record=NO_RECORD):
    # BertSelfOutput: project the heads' concatenation back to H, add the residual, LayerNorm.
    h = ops.linear(context, w.dense.weight, w.dense.bias)  # [B, T, H]
    record("dense", h)
    h = ops.add_layer_norm(h, residual, w.LayerNorm.weight, w.LayerNorm.bias, config.layer_norm_eps)  # [B, T, H]
    record("LayerNorm", h)
    return h


def bert_attention(hidden, mask_bias, w: W.Attention, config: BertConfig, ops, output_attentions, record=NO_RECORD):
    # BertAttention: self-attention, then its output projection with the residual.
    context, probs = bert_self_attention(hidden, mask_bias, w.self, config, ops, output_attentions,
                                         record.scope("self"))  # [B, T, H], [B, nh, T, T]
    return bert_self_output(context, hidden, w.output, config, ops, record.scope("output")), probs


def bert_intermediate(hidden, w: W.Intermediate, config: BertConfig, ops, record=NO_RECORD):
    # BertIntermediate: widen each token to I and apply the activation. [B, T, H] -> [B, T, I]
    return ops.linear_act(hidden, w.dense.weight, w.dense.bias, ACTIVATIONS[config.hidden_act], record)


def bert_output(intermediate, residual, w: W.Output, config: BertConfig, ops, record=NO_RECORD):
    # BertOutput: narrow back to H, add the residual, LayerNorm. [B, T, I] -> [B, T, H]
    h = ops.linear(intermediate, w.dense.weight, w.dense.bias)  # [B, T, H]
    record("dense", h)
    h = ops.add_layer_norm(h, residual, w.LayerNorm.weight, w.LayerNorm.bias, config.layer_norm_eps)  # [B, T, H]
    record("LayerNorm", h)
    return h


def bert_layer(hidden, mask_bias, w: W.Layer, config: BertConfig, ops, output_attentions, record=NO_RECORD):
    # BertLayer: attention, then the position-wise feed-forward. [B, T, H] -> [B, T, H]
    attended, probs = bert_attention(hidden, mask_bias, w.attention, config, ops, output_attentions,
                                     record.scope("attention"))  # [B, T, H]
    widened = bert_intermediate(attended, w.intermediate, config, ops, record.scope("intermediate"))  # [B, T, I]
    return bert_output(widened, attended, w.output, config, ops, record.scope("output")), probs


def bert_encoder(hidden, mask_bias, w: W.Encoder, config: BertConfig, ops, output_hidden_states,
                 output_attentions, record=NO_RECORD, layer_fn=None):
    # BertEncoder: the stack of L layers. [B, T, H] -> [B, T, H]
    # layer_fn: the layer a family stacks instead of bert_layer (DistilBERT's TransformerBlock,
    # MPNetLayer), same arguments and results.
    layer_fn = layer_fn or bert_layer
    all_hidden = [hidden] if output_hidden_states else None
    all_probs = [] if output_attentions else None
    for i, layer in enumerate(w.layer):
        hidden, probs = layer_fn(hidden, mask_bias, layer, config, ops, output_attentions,
                                 record.scope(f"layer.{i}"))  # [B, T, H]
        if output_hidden_states:
            all_hidden.append(hidden)
        if output_attentions:
            all_probs.append(probs)
    return hidden, (tuple(all_hidden) if output_hidden_states else None), (tuple(all_probs) if output_attentions else None)


def bert_pooler(hidden, w: W.Pooler, ops, record=NO_RECORD):
    # BertPooler: the [CLS] token's vector through a dense layer and tanh. [B, T, H] -> [B, H]
    first = hidden[:, 0]  # [B, H]
    record("first_token", first)
    pooled = ops.linear(first, w.dense.weight, w.dense.bias)  # [B, H]
    record("dense", pooled)
    pooled = np.tanh(pooled)  # [B, H]
    record("activation", pooled)
    return pooled


def classifier(pooled, w: W.Linear, ops, record=NO_RECORD):
    # BertForSequenceClassification.classifier: one linear layer on the pooled vector. [B, H] -> [B, C]
    logits = ops.linear(pooled, w.weight, w.bias)  # [B, C]
    record("logits", logits)
    return logits


def bert_forward(input_ids, attention_mask, token_type_ids, w: W.BertWeights, config: BertConfig, ops,
                 output_hidden_states=False, output_attentions=False, record=NO_RECORD) -> ModelOutput:
    # BertModel (+ BertForSequenceClassification's head when the checkpoint has one).
    hidden = bert_embeddings(input_ids, token_type_ids, w.embeddings, config, ops,
                             record.scope("embeddings"))  # [B, T, H]
    mask_bias = ops.attention_mask_bias(attention_mask)  # [B, 1, 1, T]
    record("extended_attention_mask", mask_bias)
    hidden, all_hidden, all_probs = bert_encoder(hidden, mask_bias, w.encoder, config, ops, output_hidden_states,
                                                 output_attentions, record.scope("encoder"))  # [B, T, H]
    pooled = bert_pooler(hidden, w.pooler, ops, record.scope("pooler")) if w.pooler is not None else None  # [B, H]
    if w.classifier is not None and pooled is None:
        raise ValueError("this checkpoint has a classifier but no pooler; the classifier reads the pooled [CLS] vector")
    logits = classifier(pooled, w.classifier, ops, record.scope("classifier")) if w.classifier is not None else None
    return ModelOutput(hidden, pooled, logits, all_hidden, all_probs)
