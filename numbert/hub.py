"""Finding a model: a local folder (more sources come with the classify/embed issue)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError


@dataclass(frozen=True)
class Resolved:
    folder: Path  # a local folder holding config.json, weights and tokenizer files
    source: str  # where it was found, for people: "local folder", "Hugging Face cache", ...


def resolve(name_or_path, revision=None) -> Resolved:
    folder = Path(name_or_path)
    if folder.is_dir():
        return Resolved(folder, "local folder")
    raise CheckpointError(f"{name_or_path}: not a folder; numbert.load needs a checkpoint folder with config.json")
