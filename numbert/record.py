"""Where the forward pass reports its intermediate tensors.

The forward pass calls `record(name, array)` after every step it wants to show. Normally
`record` is NO_RECORD, which does nothing, so a plain forward pays one empty call per step.
`numbert.trace` passes a recorder that keeps the arrays. `scope("encoder.layer.0")` gives a
recorder that prefixes names, so the code path spells the same dotted path as the weights.
"""

from __future__ import annotations

import numpy as np


class NoRecord:
    """The recorder of a normal forward pass: drops everything."""

    enabled = False

    def __call__(self, name: str, value: np.ndarray) -> None:
        pass

    def scope(self, prefix: str) -> "NoRecord":
        return self


NO_RECORD = NoRecord()


class Recorder:
    """Keeps every recorded array, in call order, under its full dotted name."""

    enabled = True

    def __init__(self, prefix: str = "", steps: list | None = None):
        self.prefix = prefix
        self.steps: list[tuple[str, np.ndarray]] = [] if steps is None else steps

    def __call__(self, name: str, value: np.ndarray) -> None:
        full = f"{self.prefix}.{name}" if self.prefix else name
        self.steps.append((full, np.array(value, copy=True)))

    def scope(self, prefix: str) -> "Recorder":
        full = f"{self.prefix}.{prefix}" if self.prefix else prefix
        return Recorder(full, self.steps)
