"""numbert.trace: the forward pass shown tensor by tensor, as a walkthrough a person can read.

    t = numbert.trace(["I love cats!", "He hates pineapple pizza."], "path/to/checkpoint")
    print(t)                                  # every step, in order, with its shape
    t["encoder.layer.0.attention.self.probs"]  # any intermediate, by its dotted name
    numbert.trace(texts, model, check="torch")  # ... and how far each step is from transformers

The trace runs the NumPy reference path (`numbert.layers`) with a `Recorder`, so each array
is the one that line of the code computed. The step names follow the module path, the same
path as the checkpoint's weight keys (`encoder.layer.0.attention.self.query` is computed with
`encoder.layer.0.attention.self.query.weight`). The titles are the ones of the walkthrough
"Bert Inner Workings" (G. Mihaila), which traced transformers' BertForSequenceClassification.

Layout letters (see numbert/layers.py): B batch, T tokens, H hidden, nh heads, hs head size,
I intermediate, C labels; a "1" is an axis of size one that broadcasts over B.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from .api import DEFAULT_MODEL  # the same default as numbert.classify / embed
from .model import Model, load
from .modeling import ModelOutput
from .record import Recorder
from .tokenizer import Batch

# Step name (inside a layer: after "encoder.layer.N.") -> (title, layout of the array's axes).
STEP_INFO = {
    "embeddings.position_ids": ("Created Tokens Positions IDs", "1 T"),
    "embeddings.input_ids": ("Tokens IDs", "B T"),
    "embeddings.token_type_ids": ("Tokens Type IDs", "B T"),
    "embeddings.word_embeddings": ("Word Embeddings", "B T H"),
    "embeddings.position_embeddings": ("Position Embeddings", "1 T H"),
    "embeddings.token_type_embeddings": ("Token Types Embeddings", "B T H"),
    "embeddings.sum": ("Sum Up All Embeddings", "B T H"),
    "embeddings.LayerNorm": ("Embeddings Layer Normalization", "B T H"),
    "extended_attention_mask": ("Extended Attention Mask", "B 1 1 T"),
    "attention.self.query": ("Query Linear Layer", "B T H"),
    "attention.self.key": ("Key Linear Layer", "B T H"),
    "attention.self.value": ("Value Linear Layer", "B T H"),
    "attention.self.query_heads": ("Query", "B nh T hs"),
    "attention.self.key_heads": ("Key", "B nh T hs"),
    "attention.self.value_heads": ("Value", "B nh T hs"),
    "attention.self.key_transposed": ("Key Transposed", "B nh hs T"),
    "attention.self.scores": ("Attention Scores", "B nh T T"),
    "attention.self.scores_scaled": ("Attention Scores Divided by Scalar", "B nh T T"),
    "attention.self.scores_masked": ("Attention Scores Plus Mask", "B nh T T"),
    "attention.self.probs": ("Attention Probabilities Softmax Layer", "B nh T T"),
    "attention.self.context": ("Context", "B nh T hs"),
    "attention.self.context_permuted": ("Context Permute", "B T nh hs"),
    "attention.self.context_reshaped": ("Context Reshaped", "B T H"),
    "attention.output.dense": ("Hidden States Linear Layer", "B T H"),
    "attention.output.LayerNorm": ("Hidden States Normalization Layer", "B T H"),
    "intermediate.dense": ("Hidden States Linear Layer", "B T I"),
    "intermediate.intermediate_act_fn": ("Hidden States {act} Activation Function", "B T I"),
    "output.dense": ("Hidden States Linear Layer", "B T H"),
    "output.LayerNorm": ("Hidden States Layer Normalization", "B T H"),
    "pooler.first_token": ("First Token [CLS]", "B H"),
    "pooler.dense": ("First Token [CLS] Linear Layer", "B H"),
    "pooler.activation": ("First Token [CLS] Tanh Activation Function", "B H"),
    "classifier.logits": ("Classifier Linear Layer", "B C"),
}

# The transformers module each group of steps belongs to, by name prefix (first match wins).
MODULES = (
    ("embeddings.", "BertEmbeddings"),
    ("extended_attention_mask", "BertModel"),
    ("attention.self.", "BertSelfAttention"),
    ("attention.output.", "BertSelfOutput"),
    ("intermediate.", "BertIntermediate"),
    ("output.", "BertOutput"),
    ("pooler.", "BertPooler"),
    ("classifier.", "Classifier"),
)

# Dropout is the identity at inference, so numbert does not compute it; the walkthrough shows
# it, so the text does too, as a note: the dropout that comes after (or before) a step.
DROPOUT_AFTER = {
    "embeddings.LayerNorm": "Embeddings Dropout Layer",
    "attention.self.probs": "Attention Probabilities Dropout Layer",
    "attention.output.dense": "Hidden States Dropout Layer",
    "output.dense": "Hidden States Dropout Layer",
}
DROPOUT_BEFORE = {"classifier.logits": "Pooled Output Dropout Layer"}

_LAYER = re.compile(r"^encoder\.layer\.(\d+)\.(.*)$")
_ACT_TITLES = {"gelu": "Gelu", "gelu_new": "Gelu (tanh)", "gelu_pytorch_tanh": "Gelu (tanh)", "relu": "Relu"}
RULE = "-----------------"


def split_name(name: str) -> tuple[int | None, str]:
    """'encoder.layer.3.attention.self.query' -> (3, 'attention.self.query'); others -> (None, name)."""
    m = _LAYER.match(name)
    return (int(m.group(1)), m.group(2)) if m else (None, name)


class Step(NamedTuple):
    """One recorded tensor: its dotted name, the walkthrough's title for it, and the array."""

    name: str
    title: str
    array: np.ndarray

    @property
    def layer(self) -> int | None:  # 0-based encoder layer, None outside the encoder
        return split_name(self.name)[0]

    @property
    def key(self) -> str:  # the name without "encoder.layer.N."
        return split_name(self.name)[1]

    @property
    def layout(self) -> str | None:  # e.g. "B nh T hs"; None for a step numbert does not know
        info = STEP_INFO.get(self.key)
        return info[1] if info and len(info[1].split()) == self.array.ndim else None

    @property
    def module(self) -> str:
        return next((m for prefix, m in MODULES if self.key.startswith(prefix)), "BertModel")

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.array.shape)


@dataclass(frozen=True)
class StepCheck:
    """How far one step is from the same tensor in transformers."""

    name: str
    max_abs_diff: float | None  # over real token positions; None: transformers has no such tensor
    tolerance: float
    ok: bool


@dataclass(frozen=True)
class Check:
    """The result of check='torch': a StepCheck per step, in forward order."""

    steps: dict[str, StepCheck]
    reference: str  # e.g. "transformers 5.24.0 BertModel (eager, fp32)"
    tolerance: float

    @property
    def max_abs_diff(self) -> float:
        return max((s.max_abs_diff for s in self.steps.values() if s.max_abs_diff is not None), default=0.0)

    @property
    def first_divergence(self) -> str | None:
        """The first step (in forward order) beyond tolerance: where a reimplementation went wrong."""
        return next((s.name for s in self.steps.values() if not s.ok), None)

    @property
    def ok(self) -> bool:
        return self.first_divergence is None


def token_mask(layout: str | None, shape, attention_mask) -> np.ndarray:
    """Boolean array of `shape`: True at entries that belong to real tokens, False at padding.

    Every axis named T in the layout is a token axis; on an array with a B axis, token t of
    text b is real where attention_mask[b, t] is 1 (on both token axes of a score matrix).
    Outputs at padded positions mean nothing, so checks and statistics look only here.
    """
    keep = np.ones(shape, dtype=bool)
    axes = layout.split() if layout else []
    if len(axes) != len(shape):
        return keep
    real = np.asarray(attention_mask).astype(bool)  # [B, T]
    b_axis = axes.index("B") if "B" in axes else None
    for i, axis in enumerate(axes):
        if axis != "T":
            continue
        view = [1] * len(shape)
        view[i] = shape[i]
        if b_axis is None:
            keep &= real.any(axis=0).reshape(view)  # a position shared by the batch: real in any text
        else:
            view[b_axis] = shape[b_axis]
            keep &= real.reshape(view)
    return keep


class Trace:
    """Every intermediate tensor of one forward pass, in order. Iterate, index by name, print."""

    def __init__(self, steps: list[Step], batch: Batch, texts: list[str], text_pairs: list[str] | None,
                 model: Model, output: ModelOutput, layers: list[int] | None = None, model_name: str | None = None):
        self.steps = steps
        self.batch = batch
        self.texts = texts
        self.text_pairs = text_pairs
        self.config = model.config
        self.model_name = model_name or model_label(model)
        self.model_path = model.path
        self.output = output
        self.layers = layers  # 1-based layers that print(trace) shows; None: all
        self.check: Check | None = None
        self._by_name = {s.name: s for s in steps}

    # ---- access

    @property
    def tokens(self) -> list[list[str]]:
        return self.batch.tokens

    @property
    def last_hidden_state(self) -> np.ndarray:  # [B, T, H]
        return self.output.last_hidden_state

    def names(self) -> list[str]:
        return [s.name for s in self.steps]

    def step(self, name: str) -> Step:
        try:
            return self._by_name[name]
        except KeyError:
            near = difflib.get_close_matches(name, self._by_name, n=3)
            hint = f"; did you mean {', '.join(near)}?" if near else "; trace.names() lists them"
            raise KeyError(f"no step named {name!r} in this trace{hint}") from None

    def __getitem__(self, name: str) -> np.ndarray:
        return self.step(name).array

    def __contains__(self, name) -> bool:
        return name in self._by_name

    def __iter__(self):
        return iter(self.steps)

    def __len__(self) -> int:
        return len(self.steps)

    def __repr__(self):
        B, T = self.batch.input_ids.shape
        return f"<Trace {self.model_name}: {len(self.steps)} steps, {B} text(s) x {T} tokens>"

    def __str__(self):
        return self.render()

    # ---- output

    def render(self, layers=None, values: bool = False, stats: bool = False) -> str:
        """The walkthrough as text. layers: 1-based layers to show (default: trace.layers, else all)."""
        from .trace_text import render

        shown = parse_layers(layers if layers is not None else self.layers, self.config.num_hidden_layers)
        return render(self, shown, values=values, stats=stats)

    def to_html(self) -> str:
        """One self-contained HTML page: the flow diagram, the tokens, the attention heatmaps."""
        from .trace_html import render_html

        return render_html(self)

    def save_html(self, path) -> None:
        Path(path).write_text(self.to_html(), encoding="utf-8")


def model_label(model: Model) -> str:
    """A short name for people: the checkpoint folder's name (or its hub name when cached)."""
    if model.path is None:
        return "model"
    parts = model.path.parts
    for part in parts:  # hub cache: .../models--org--name/snapshots/<rev>
        if part.startswith("models--"):
            return part[len("models--"):].replace("--", "/")
    # a folder named e.g. "model" says little: show its parent too
    return model.path.name if model.path.name not in ("model", "checkpoint", "") else "/".join(parts[-2:])


def parse_layers(layers, num_layers: int) -> list[int] | None:
    """'1,3-4' or [1, 3, 4] -> [1, 3, 4] (1-based, as the walkthrough's BERT LAYER n); None -> None.

    -1 means the last layer. Each must lie in 1..num_layers.
    """
    if layers is None:
        return None
    if isinstance(layers, int) and not isinstance(layers, bool):
        layers = [layers]
    items: list[int] = []
    if isinstance(layers, str):
        for part in filter(None, (p.strip() for p in layers.split(","))):
            m = re.fullmatch(r"(-?\d+)(?:\s*-\s*(\d+))?", part)
            if not m:
                raise ValueError(f"layers: cannot read {part!r}; write e.g. 1,12 or 2-4")
            lo = int(m.group(1))
            items.extend(range(lo, int(m.group(2)) + 1) if m.group(2) else [lo])
    else:
        items = [int(i) for i in layers]
    out = []
    for i in items:
        n = num_layers + 1 + i if i < 0 else i
        if not 1 <= n <= num_layers:
            raise ValueError(f"layers: {i} is not a layer of this model (it has layers 1..{num_layers})")
        if n not in out:
            out.append(n)
    return sorted(out)


def title_for(key: str, config) -> str:
    title = STEP_INFO.get(key, (key, None))[0]
    return title.format(act=_ACT_TITLES.get(config.hidden_act, config.hidden_act))


def resolve_model(model) -> Model:
    """A Model as is; a name or folder loaded with the NumPy backend (the trace needs no kernels)."""
    if isinstance(model, Model):
        return model
    return load(DEFAULT_MODEL if model is None else model, backend="numpy")


def trace(texts, model=None, *, text_pair=None, layers=None, check=None, max_length=None,
          tolerance: float = 1e-4) -> Trace:
    """Run the forward pass on `texts` and keep every intermediate tensor, in order.

    model: a loaded numbert.Model, a checkpoint folder or a model name (default: all-MiniLM-L6-v2).
    text_pair: second texts, one per text ([CLS] text [SEP] pair [SEP], token type 1).
    layers: which encoder layers print(trace) shows, 1-based ("1,12", [1, 12]); all are recorded.
    check: "torch" to run transformers' eager model on the same ids and add, per step, the max
        abs difference at real tokens (needs torch + transformers); trace.check holds the result.
    tolerance: a step diverges when its difference exceeds tolerance * max(1, max |value|).
    """
    m = resolve_model(model)
    # name the model as the user did ("sentence-transformers/all-MiniLM-L6-v2"), else by its folder
    name = DEFAULT_MODEL if model is None else model if isinstance(model, str) and not Path(model).is_dir() else None
    texts = [texts] if isinstance(texts, str) else list(texts)
    pairs = None if text_pair is None else ([text_pair] if isinstance(text_pair, str) else list(text_pair))
    batch = m.tokenize(texts, pairs, max_length=max_length)
    if batch.input_ids.size == 0:
        raise ValueError("trace needs at least one text")
    layers = parse_layers(layers, m.config.num_hidden_layers)
    recorder = Recorder()
    output = m.forward_recorded(batch, recorder, output_attentions=True)
    steps = [Step(name, title_for(split_name(name)[1], m.config), array) for name, array in recorder.steps]
    result = Trace(steps, batch, texts, pairs, m, output, layers, model_name=name)
    if check is not None:
        if check != "torch":
            raise ValueError(f"check must be 'torch' (the only reference numbert knows), found {check!r}")
        from .trace_torch import check_against_torch

        result.check = check_against_torch(result, m, tolerance=tolerance)
    return result
