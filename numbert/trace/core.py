"""What a trace holds: the recorded steps, their check against torch, and the access to them.

The bottom of numbert.trace with the catalogue: the renderers (text, page) and the torch
check read a `Recording` and import only this module and the catalogue.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .catalogue import axes_of, module_of, split_name


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
        axes = axes_of(self.key)
        return axes if axes and len(axes.split()) == self.array.ndim else None

    @property
    def module(self) -> str:
        return module_of(self.key)

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


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


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


class Recording:
    """Every intermediate tensor of one forward pass, in order: iterate, index by name.

    numbert.trace.Trace adds the text and the page to it; the renderers read a Recording.
    """

    def __init__(self, steps: list[Step], batch, texts: list[str], text_pairs: list[str] | None,
                 config, model_path, output, layers: list[int] | None, model_name: str):
        self.steps = steps
        self.batch = batch
        self.texts = texts
        self.text_pairs = text_pairs
        self.config = config
        self.model_name = model_name
        self.model_path = model_path
        self.output = output
        self.layers = layers  # 1-based layers that print(trace) shows; None: all
        self.check: Check | None = None
        self._by_name = {s.name: s for s in steps}

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
