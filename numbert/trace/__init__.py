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

The package, from the bottom up (each module imports only those above it in this list):
    catalogue.py    every step's name, title, axes, flow-diagram box and torch twin, said once
    core.py         Step, Check, token_mask, Recording: what a trace holds
    text.py         print(trace): the walkthrough as text
    page.py         trace.to_html(): one self-contained page with the flow diagram and heatmaps
    torch_check.py  check="torch": the same steps from transformers, and how far each one is
    run.py          trace(): load, record, check; Trace = a Recording that renders itself
    cli.py          `numbert trace TEXT...`

`numbert.trace` is this package, and calling it calls `trace()`: `numbert.trace(texts)`.
"""

import sys
import types

from .catalogue import CATALOGUE, STEPS, StepInfo
from .core import Check, Recording, Step, StepCheck, parse_layers, token_mask
from .run import Trace, trace

__all__ = ["CATALOGUE", "STEPS", "Check", "Recording", "Step", "StepCheck", "StepInfo", "Trace", "parse_layers",
           "token_mask", "trace"]


class _CallableModule(types.ModuleType):
    """The module numbert.trace, which is also the function numbert.trace.trace when called."""

    def __call__(self, *args, **kwargs) -> Trace:
        return trace(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
