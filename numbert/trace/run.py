"""numbert.trace(texts, model): run the forward pass with a recorder and keep every step.

The top of numbert.trace below the CLI: it loads the model, records, and gives a `Trace`,
which is a `Recording` that also prints itself (text.py) and writes its page (page.py).
"""

from __future__ import annotations

from pathlib import Path

from ..hub import DEFAULT_MODEL
from ..model import Model, load
from ..record import Recorder
from . import page, text
from .catalogue import split_name, title_for
from .core import Recording, Step, parse_layers
from .torch_check import check_against_torch  # imports torch only when called


class Trace(Recording):
    """Every intermediate tensor of one forward pass, in order. Iterate, index by name, print."""

    def __str__(self):
        return self.render()

    def render(self, layers=None, values: bool = False, stats: bool = False) -> str:
        """The walkthrough as text. layers: 1-based layers to show (default: trace.layers, else all)."""
        shown = parse_layers(layers if layers is not None else self.layers, self.config.num_hidden_layers)
        return text.render(self, shown, values=values, stats=stats)

    def to_html(self) -> str:
        """One self-contained HTML page: the flow diagram, the tokens, the attention heatmaps."""
        return page.render_html(self)

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


def resolve_model(model) -> Model:
    """A Model as is; a name or folder loaded with the NumPy backend (the trace needs no kernels)."""
    if isinstance(model, Model):
        return model
    return load(DEFAULT_MODEL if model is None else model, backend="numpy")


def as_list(texts) -> list[str] | None:
    """One text or several -> a list; None stays None."""
    return None if texts is None else [texts] if isinstance(texts, str) else list(texts)


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
    texts, pairs = as_list(texts), as_list(text_pair)
    batch = m.tokenize(texts, pairs, max_length=max_length)
    if batch.input_ids.size == 0:
        raise ValueError("trace needs at least one text")
    layers = parse_layers(layers, m.config.num_hidden_layers)
    recorder = Recorder()
    output = m.forward_recorded(batch, recorder, output_attentions=True)
    steps = [Step(name, title_for(split_name(name)[1], m.config), array) for name, array in recorder.steps]
    result = Trace(steps, batch, texts, pairs, m.config, m.path, output, layers, name or model_label(m))
    if check is not None:
        if check != "torch":
            raise ValueError(f"check must be 'torch' (the only reference numbert knows), found {check!r}")
        result.check = check_against_torch(result, m, tolerance=tolerance)
    return result
