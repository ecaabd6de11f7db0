"""The step catalogue: every tensor the forward pass records, said once.

Each entry is one `record("name", array)` call of the forward pass (numbert/layers.py,
numbert/modeling.py): its name, the walkthrough's title for it, the layout of its axes, and
what the renderers and the torch check need to know about it. Everything else in
numbert.trace (the text, the flow diagram, the torch check) reads the steps from here; a test
holds this table to the record() calls, both ways.

Names inside an encoder layer are written without "encoder.layer.N."; a trace spells them in
full ("encoder.layer.3.attention.self.query"). Layout letters (see numbert/layers.py): B batch,
T tokens, H hidden, nh heads, hs head size, I intermediate, C labels; a "1" is an axis of size
one that broadcasts over B.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ..config import ACTIVATIONS


class Box(NamedTuple):
    """Where a step stands in the HTML flow diagram, which draws layer 1 for all layers."""

    col: int  # 0 left, 1 centre, 2 right
    row: float
    label: str  # "{act}": the config's hidden_act, upper case
    kind: str = "op"  # op | input | norm | head


class Twin(NamedTuple):
    """Where transformers' eager model holds the same tensor (numbert.trace.torch_check reads it).

    kind "output": what the module returns (item `index` of a tuple); "input": its first
    argument; "mask": the attention mask it is called with, made additive as eager attention
    uses it; "op": not a module's tensor, so recomputed from the step's inputs with torch op `op`.
    module: the module's path after the step's scope ("" the scope itself); None: the step's own path.
    """

    kind: str = "output"
    module: str | None = None
    index: int = 0
    op: str = ""


class StepInfo(NamedTuple):
    """One step of the catalogue."""

    key: str  # the recorded name (inside a layer: after "encoder.layer.N.")
    title: str  # the walkthrough's title; "{act}" is the activation's name
    axes: str  # the layout of the array's axes, e.g. "B nh T hs"
    box: Box | None = None  # its box in the flow diagram; None: not drawn
    inputs: tuple[str, ...] = ()  # the steps it is computed from: the arrows into its box, a Twin op's operands
    twin: Twin = Twin()
    hidden: bool = False  # its output is the "Hidden States" the next module reads
    heatmap: bool = False  # the page draws it as heatmaps, per layer and head, tokens on both axes [.., T, T]
    dropout_before: str | None = None  # the walkthrough's dropout just before this step (identity here)
    dropout_after: str | None = None  # ... and just after it


FLOW_LAYER_ROW = 4.8  # the flow diagram's first row inside the encoder layer frame
_R = FLOW_LAYER_ROW
_SELF = ""  # Twin.module of the steps that are outputs of their scope's module (attention.self, classifier)

# The steps before the encoder layers, in forward order (extended_attention_mask is computed once for all layers).
MODEL_STEPS = (
    StepInfo("embeddings.position_ids", "Created Tokens Positions IDs", "1 T", Box(1, 0, "position_ids", "input"),
             twin=Twin("input", "position_embeddings")),
    StepInfo("embeddings.input_ids", "Tokens IDs", "B T", Box(0, 0, "input_ids", "input"),
             twin=Twin("input", "word_embeddings")),
    StepInfo("embeddings.token_type_ids", "Tokens Type IDs", "B T", Box(2, 0, "token_type_ids", "input"),
             twin=Twin("input", "token_type_embeddings")),
    StepInfo("embeddings.word_embeddings", "Word Embeddings", "B T H", Box(0, 1, "Word Embeddings"),
             ("embeddings.input_ids",)),
    StepInfo("embeddings.position_embeddings", "Position Embeddings", "1 T H", Box(1, 1, "Position Embeddings"),
             ("embeddings.position_ids",)),
    StepInfo("embeddings.token_type_embeddings", "Token Types Embeddings", "B T H",
             Box(2, 1, "Token Type Embeddings"), ("embeddings.token_type_ids",)),
    StepInfo("embeddings.sum", "Sum Up All Embeddings", "B T H", Box(1, 2, "Sum Up All Embeddings"),
             ("embeddings.word_embeddings", "embeddings.position_embeddings", "embeddings.token_type_embeddings"),
             twin=Twin("input", "LayerNorm")),
    StepInfo("embeddings.LayerNorm", "Embeddings Layer Normalization", "B T H", Box(1, 3, "LayerNorm", "norm"),
             ("embeddings.sum",), hidden=True, dropout_after="Embeddings Dropout Layer"),
    StepInfo("extended_attention_mask", "Extended Attention Mask", "B 1 1 T",
             Box(0, _R + 5, "Attention Mask (additive)", "input"),
             twin=Twin("mask", "encoder.layer.0.attention.self")),
)

# The steps of one encoder layer (BertLayer), in forward order. Layer 1's query, key and value
# read the embeddings' output: the arrows the flow diagram draws.
LAYER_STEPS = (
    StepInfo("attention.self.query", "Query Linear Layer", "B T H", Box(0, _R, "Query Linear"),
             ("embeddings.LayerNorm",)),
    StepInfo("attention.self.key", "Key Linear Layer", "B T H", Box(1, _R, "Key Linear"), ("embeddings.LayerNorm",)),
    StepInfo("attention.self.value", "Value Linear Layer", "B T H", Box(2, _R, "Value Linear"),
             ("embeddings.LayerNorm",)),
    StepInfo("attention.self.query_heads", "Query", "B nh T hs", Box(0, _R + 1, "split heads: Query"),
             ("attention.self.query",), Twin("op", op="split_heads")),
    StepInfo("attention.self.key_heads", "Key", "B nh T hs", Box(1, _R + 1, "split heads: Key"),
             ("attention.self.key",), Twin("op", op="split_heads")),
    StepInfo("attention.self.value_heads", "Value", "B nh T hs", Box(2, _R + 1, "split heads: Value"),
             ("attention.self.value",), Twin("op", op="split_heads")),
    StepInfo("attention.self.key_transposed", "Key Transposed", "B nh hs T", Box(1, _R + 2, "Key Transposed"),
             ("attention.self.key_heads",), Twin("op", op="transpose_last")),
    StepInfo("attention.self.scores", "Attention Scores", "B nh T T", Box(1, _R + 3, "Scores  Q · Kᵀ"),
             ("attention.self.query_heads", "attention.self.key_transposed"), Twin("op", op="matmul")),
    StepInfo("attention.self.scores_scaled", "Attention Scores Divided by Scalar", "B nh T T",
             Box(1, _R + 4, "÷ √head size"), ("attention.self.scores",), Twin("op", op="scale")),
    StepInfo("attention.self.scores_masked", "Attention Scores Plus Mask", "B nh T T", Box(1, _R + 5, "+ mask"),
             ("attention.self.scores_scaled", "extended_attention_mask"), Twin("op", op="add")),
    StepInfo("attention.self.probs", "Attention Probabilities Softmax Layer", "B nh T T",
             Box(1, _R + 6, "Softmax: probabilities", "head"), ("attention.self.scores_masked",),
             Twin("output", _SELF, index=1), heatmap=True, dropout_after="Attention Probabilities Dropout Layer"),
    StepInfo("attention.self.context", "Context", "B nh T hs", Box(1, _R + 7, "Context  P · V"),
             ("attention.self.probs", "attention.self.value_heads"), Twin("op", op="matmul")),
    StepInfo("attention.self.context_permuted", "Context Permute", "B T nh hs", Box(1, _R + 8, "Context Permute"),
             ("attention.self.context",), Twin("op", op="swap_heads_tokens")),
    StepInfo("attention.self.context_reshaped", "Context Reshaped", "B T H", Box(1, _R + 9, "Context Reshaped"),
             ("attention.self.context_permuted",), Twin("output", _SELF, index=0), hidden=True),
    StepInfo("attention.output.dense", "Hidden States Linear Layer", "B T H", Box(1, _R + 10, "Attention Output Dense"),
             ("attention.self.context_reshaped",), dropout_after="Hidden States Dropout Layer"),
    StepInfo("attention.output.LayerNorm", "Hidden States Normalization Layer", "B T H",
             Box(1, _R + 11, "Add & LayerNorm", "norm"), ("attention.output.dense",), hidden=True),
    StepInfo("intermediate.dense", "Hidden States Linear Layer", "B T I", Box(1, _R + 12, "Intermediate Dense"),
             ("attention.output.LayerNorm",)),
    StepInfo("intermediate.intermediate_act_fn", "Hidden States {act} Activation Function", "B T I",
             Box(1, _R + 13, "{act} activation"), ("intermediate.dense",), hidden=True),
    StepInfo("output.dense", "Hidden States Linear Layer", "B T H", Box(1, _R + 14, "Output Dense"),
             ("intermediate.intermediate_act_fn",), dropout_after="Hidden States Dropout Layer"),
    StepInfo("output.LayerNorm", "Hidden States Layer Normalization", "B T H",
             Box(1, _R + 15, "Add & LayerNorm", "norm"), ("output.dense",), hidden=True),
)

# The steps after the last layer, in forward order: BertPooler, then the classification head.
HEAD_STEPS = (
    StepInfo("pooler.first_token", "First Token [CLS]", "B H", Box(1, _R + 16.4, "First Token [CLS]"),
             ("output.LayerNorm",), twin=Twin("input", "dense")),
    StepInfo("pooler.dense", "First Token [CLS] Linear Layer", "B H", Box(1, _R + 17.4, "Pooler Dense"),
             ("pooler.first_token",)),
    StepInfo("pooler.activation", "First Token [CLS] Tanh Activation Function", "B H", Box(1, _R + 18.4, "Tanh"),
             ("pooler.dense",), hidden=True),
    StepInfo("classifier.logits", "Classifier Linear Layer", "B C", Box(1, _R + 19.4, "Classifier → logits", "head"),
             ("pooler.activation",), Twin("output", _SELF), dropout_before="Pooled Output Dropout Layer"),
)

STEPS = MODEL_STEPS + LAYER_STEPS + HEAD_STEPS
CATALOGUE = {s.key: s for s in STEPS}

# The steps the other families (numbert.families) record where BERT records something else, or
# nothing. Steps whose names equal BERT's (RoBERTa's and ELECTRA's encoder, every family's
# embeddings) are BERT's entries above. None of these is drawn in the flow diagram.
_ATTN = "attention.attn."  # MPNet's MPNetSelfAttention
FAMILY_MODEL_STEPS = (
    StepInfo("embeddings_project", "Embeddings Projection Linear Layer (ELECTRA)", "B T H", hidden=True),
    StepInfo("encoder.relative_position_bucket", "Relative Position Buckets (MPNet)", "T T"),
    StepInfo("encoder.position_bias", "Relative Position Bias (MPNet)", "1 nh T T",
             twin=Twin("arg", "layer.0.attention.attn", index=2)),  # MPNetSelfAttention's third argument
)
MPNET_LAYER_STEPS = (  # MPNetLayer: BERT's attention maths under attention.attn, plus the position bias
    StepInfo(_ATTN + "query", "Query Linear Layer", "B T H", twin=Twin("output", "q")),
    StepInfo(_ATTN + "key", "Key Linear Layer", "B T H", twin=Twin("output", "k")),
    StepInfo(_ATTN + "value", "Value Linear Layer", "B T H", twin=Twin("output", "v")),
    StepInfo(_ATTN + "query_heads", "Query", "B nh T hs", inputs=(_ATTN + "query",), twin=Twin("op", op="split_heads")),
    StepInfo(_ATTN + "key_heads", "Key", "B nh T hs", inputs=(_ATTN + "key",), twin=Twin("op", op="split_heads")),
    StepInfo(_ATTN + "value_heads", "Value", "B nh T hs", inputs=(_ATTN + "value",), twin=Twin("op", op="split_heads")),
    StepInfo(_ATTN + "key_transposed", "Key Transposed", "B nh hs T", inputs=(_ATTN + "key_heads",),
             twin=Twin("op", op="transpose_last")),
    StepInfo(_ATTN + "scores", "Attention Scores", "B nh T T", inputs=(_ATTN + "query_heads", _ATTN + "key_transposed"),
             twin=Twin("op", op="matmul")),
    StepInfo(_ATTN + "scores_scaled", "Attention Scores Divided by Scalar", "B nh T T", inputs=(_ATTN + "scores",),
             twin=Twin("op", op="scale")),
    StepInfo(_ATTN + "scores_biased", "Attention Scores Plus Relative Position Bias", "B nh T T",
             inputs=(_ATTN + "scores_scaled", "encoder.position_bias"), twin=Twin("op", op="add")),
    StepInfo(_ATTN + "scores_masked", "Attention Scores Plus Mask", "B nh T T",
             inputs=(_ATTN + "scores_biased", "extended_attention_mask")),  # (MPNet's mask: no hook here)
    StepInfo(_ATTN + "probs", "Attention Probabilities Softmax Layer", "B nh T T", twin=Twin("output", _SELF, index=1),
             heatmap=True),
    StepInfo(_ATTN + "context", "Context", "B nh T hs", inputs=(_ATTN + "probs", _ATTN + "value_heads"),
             twin=Twin("op", op="matmul")),
    StepInfo(_ATTN + "context_permuted", "Context Permute", "B T nh hs", inputs=(_ATTN + "context",),
             twin=Twin("op", op="swap_heads_tokens")),
    StepInfo(_ATTN + "context_reshaped", "Context Reshaped", "B T H", twin=Twin("input", "o")),
    StepInfo(_ATTN + "o", "Hidden States Linear Layer", "B T H", hidden=True),  # what MPNetAttention's LayerNorm reads
    StepInfo("attention.LayerNorm", "Hidden States Normalization Layer", "B T H", hidden=True),
)
_DA = "attention."  # DistilBERT's DistilBertSelfAttention
DISTILBERT_LAYER_STEPS = (  # TransformerBlock, under transformer.layer.N
    StepInfo(_DA + "query", "Query Linear Layer (q_lin)", "B T H", twin=Twin("output", "q_lin")),
    StepInfo(_DA + "key", "Key Linear Layer (k_lin)", "B T H", twin=Twin("output", "k_lin")),
    StepInfo(_DA + "value", "Value Linear Layer (v_lin)", "B T H", twin=Twin("output", "v_lin")),
    StepInfo(_DA + "query_heads", "Query", "B nh T hs", inputs=(_DA + "query",), twin=Twin("op", op="split_heads")),
    StepInfo(_DA + "key_heads", "Key", "B nh T hs", inputs=(_DA + "key",), twin=Twin("op", op="split_heads")),
    StepInfo(_DA + "value_heads", "Value", "B nh T hs", inputs=(_DA + "value",), twin=Twin("op", op="split_heads")),
    StepInfo(_DA + "key_transposed", "Key Transposed", "B nh hs T", inputs=(_DA + "key_heads",),
             twin=Twin("op", op="transpose_last")),
    StepInfo(_DA + "scores", "Attention Scores", "B nh T T", inputs=(_DA + "query_heads", _DA + "key_transposed"),
             twin=Twin("op", op="matmul")),
    StepInfo(_DA + "scores_scaled", "Attention Scores Divided by Scalar", "B nh T T", inputs=(_DA + "scores",),
             twin=Twin("op", op="scale")),
    StepInfo(_DA + "scores_masked", "Attention Scores Plus Mask", "B nh T T",
             inputs=(_DA + "scores_scaled", "extended_attention_mask")),
    StepInfo(_DA + "probs", "Attention Probabilities Softmax Layer", "B nh T T", twin=Twin("output", _SELF, index=1),
             heatmap=True),
    StepInfo(_DA + "context", "Context", "B nh T hs", inputs=(_DA + "probs", _DA + "value_heads"),
             twin=Twin("op", op="matmul")),
    StepInfo(_DA + "context_permuted", "Context Permute", "B T nh hs", inputs=(_DA + "context",),
             twin=Twin("op", op="swap_heads_tokens")),
    StepInfo(_DA + "context_reshaped", "Context Reshaped", "B T H", twin=Twin("input", "out_lin")),
    StepInfo(_DA + "out_lin", "Hidden States Linear Layer (out_lin)", "B T H", hidden=True),  # sa_layer_norm reads it
    StepInfo("sa_layer_norm", "Hidden States Normalization Layer (sa_layer_norm)", "B T H", hidden=True),
    StepInfo("ffn.dense", "Hidden States Linear Layer (lin1)", "B T I", twin=Twin("output", "lin1")),
    StepInfo("ffn.intermediate_act_fn", "Hidden States {act} Activation Function", "B T I",
             twin=Twin("output", "activation")),
    StepInfo("ffn.lin2", "Hidden States Linear Layer (lin2)", "B T H", hidden=True),  # output_layer_norm reads it
    StepInfo("output_layer_norm", "Hidden States Layer Normalization (output_layer_norm)", "B T H", hidden=True),
)
FAMILY_HEAD_STEPS = (  # RobertaClassificationHead (ELECTRA's, MPNet's), DistilBERT's pre_classifier
    StepInfo("classifier.first_token", "First Token <s> / [CLS]", "B H", twin=Twin("input", "dense")),
    StepInfo("classifier.dense", "Classifier Dense Layer", "B H"),
    StepInfo("classifier.activation", "Classifier Activation (tanh; ELECTRA: gelu)", "B H",
             twin=Twin("input", "out_proj")),
    StepInfo("classifier.pre_classifier.dense", "Pre-classifier Linear Layer", "B H"),
    StepInfo("classifier.pre_classifier.intermediate_act_fn", "Pre-classifier ReLU", "B H"),
)
# The task heads of numbert.heads, on every token of the encoder's output (V: the vocabulary).
TASK_HEAD_STEPS = (
    StepInfo("classifier.token_logits", "Token Classifier Linear Layer", "B T C", twin=Twin("output", _SELF)),
    StepInfo("qa_outputs.logits", "Start / End Logits Linear Layer", "B T 2", twin=Twin("output", _SELF)),
    StepInfo("qa_outputs.start_logits", "Answer Start Logits", "B T", inputs=("qa_outputs.logits",),
             twin=Twin("op", op="first_of_last")),
    StepInfo("qa_outputs.end_logits", "Answer End Logits", "B T", inputs=("qa_outputs.logits",),
             twin=Twin("op", op="second_of_last")),
    # BERT's BertLMPredictionHead (transform_act_fn is a module there)
    StepInfo("cls.predictions.transform.dense_act", "Head Linear Layer + {act} Activation", "B T H",
             twin=Twin("output", "transform_act_fn")),
    StepInfo("cls.predictions.transform.LayerNorm", "Head Layer Normalization", "B T H"),
    StepInfo("cls.predictions.logits", "Vocabulary Logits (tied decoder)", "B T V",
             inputs=("cls.predictions.transform.LayerNorm",), twin=Twin("output", "decoder")),
    # RobertaLMHead (XLM-R, MPNet): gelu is a function, so its output is layer_norm's input
    StepInfo("lm_head.dense_act", "Head Linear Layer + Gelu Activation", "B T H", twin=Twin("input", "layer_norm")),
    StepInfo("lm_head.layer_norm", "Head Layer Normalization", "B T H"),
    StepInfo("lm_head.logits", "Vocabulary Logits (tied decoder)", "B T V", twin=Twin("output", "decoder")),
    # DistilBertForMaskedLM
    StepInfo("vocab_transform", "Head Linear + {act} (vocab_transform)", "B T H",
             twin=Twin("input", "vocab_layer_norm")),
    StepInfo("vocab_layer_norm", "Head LayerNorm (vocab_layer_norm)", "B T H"),
    StepInfo("vocab_projector", "Vocabulary Logits (vocab_projector)", "B T V"),
    # ElectraForMaskedLM (the generator)
    StepInfo("generator_predictions.dense_act", "Head Linear Layer (H to E) + Gelu", "B T E",
             twin=Twin("input", "LayerNorm")),
    StepInfo("generator_predictions.LayerNorm", "Head Layer Normalization", "B T E"),
    StepInfo("generator_lm_head", "Vocabulary Logits (generator_lm_head)", "B T V"),
)
FAMILY_STEPS = FAMILY_MODEL_STEPS + MPNET_LAYER_STEPS + DISTILBERT_LAYER_STEPS + FAMILY_HEAD_STEPS + TASK_HEAD_STEPS
FAMILY_CATALOGUE = {s.key: s for s in FAMILY_STEPS}
ALL_STEPS = {**CATALOGUE, **FAMILY_CATALOGUE}  # what a trace of any family looks its steps up in
LAYER_KEYS = frozenset(s.key for s in LAYER_STEPS + MPNET_LAYER_STEPS + DISTILBERT_LAYER_STEPS)
_DISTILBERT_LAYER_KEYS = frozenset(s.key for s in DISTILBERT_LAYER_STEPS)  # under transformer.layer.N

# The residual connections the flow diagram draws: the input of each sub-layer of layer 1,
# added back before its LayerNorm.
RESIDUALS = (("embeddings.LayerNorm", "attention.output.LayerNorm"), ("attention.output.LayerNorm", "output.LayerNorm"))

# The transformers module each group of steps belongs to, by name prefix (first match wins).
MODULES = (
    ("embeddings.", "BertEmbeddings"),
    ("extended_attention_mask", "BertModel"),
    ("attention.self.", "BertSelfAttention"),
    ("attention.output.", "BertSelfOutput"),
    ("attention.attn.", "MPNetSelfAttention"),
    ("attention.LayerNorm", "MPNetAttention"),
    ("attention.", "DistilBertSelfAttention"),
    ("sa_layer_norm", "TransformerBlock"),
    ("ffn.", "FFN"),
    ("output_layer_norm", "TransformerBlock"),
    ("embeddings_project", "ElectraModel"),
    ("encoder.", "MPNetEncoder"),
    ("intermediate.", "BertIntermediate"),
    ("output.", "BertOutput"),
    ("pooler.", "BertPooler"),
    ("classifier.token_logits", "Token Classifier"),
    ("classifier.", "Classifier"),
    ("qa_outputs.", "Question Answering Outputs"),
    ("cls.predictions.transform.", "BertPredictionHeadTransform"),
    ("cls.predictions.", "BertLMPredictionHead"),
    ("lm_head.", "RobertaLMHead"),
    ("vocab_", "DistilBertForMaskedLM"),
    ("generator_predictions.", "ElectraGeneratorPredictions"),
    ("generator_lm_head", "ElectraForMaskedLM"),
)

# The walkthrough's name of each activation function (numbert.config.ACTIVATIONS: hidden_act -> function).
ACTIVATION_TITLES = {"gelu": "Gelu", "gelu_tanh": "Gelu (tanh)", "relu": "Relu"}

_LAYER = re.compile(r"^(?:encoder|transformer)\.layer\.(\d+)\.(.*)$")  # DistilBERT's encoder is `transformer`


def split_name(name: str) -> tuple[int | None, str]:
    """'encoder.layer.3.attention.self.query' -> (3, 'attention.self.query'); others -> (None, name)."""
    m = _LAYER.match(name)
    return (int(m.group(1)), m.group(2)) if m else (None, name)


def full_name(key: str, layer: int = 0) -> str:
    """The name a trace gives step `key`: in 0-based encoder layer `layer` when it is a layer's step."""
    if key not in LAYER_KEYS:
        return key
    return f"{'transformer' if key in _DISTILBERT_LAYER_KEYS else 'encoder'}.layer.{layer}.{key}"


def axes_of(key: str) -> str | None:
    info = ALL_STEPS.get(key)
    return info.axes if info else None


def module_of(key: str) -> str:
    return next((m for prefix, m in MODULES if key.startswith(prefix)), "BertModel")


def title_for(key: str, config) -> str:
    """The walkthrough's title of step `key`, with the config's activation; an unknown step: its key."""
    info = ALL_STEPS.get(key)
    if info is None:
        return key
    function = ACTIVATIONS.get(config.hidden_act, config.hidden_act)
    return info.title.format(act=ACTIVATION_TITLES.get(function, config.hidden_act))
