"""Sentence embeddings: pool the token vectors [B, T, H] into one vector per text [B, H].

A sentence-transformers folder describes its pipeline in `modules.json`: Transformer (the
BERT we run) -> Pooling (`1_Pooling/config.json`: which pooling) -> Normalize (unit length;
it has no files, so its folder may be missing). `sentence_bert_config.json` sets
`max_seq_length`, where sentence-transformers truncates (256 for all-MiniLM-L6-v2, not the
512 positions the model has). `EmbedSpec.from_folder` reads all of this so that
numbert.embed gives what `SentenceTransformer(folder).encode(texts)` gives.

Shapes: B batch, T tokens, H hidden.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import CheckpointError

POOLINGS = ("mean", "cls", "max")


@dataclass(frozen=True)
class EmbedSpec:
    pooling: tuple[str, ...] = ("mean",)  # concatenated in this order, as sentence-transformers does
    normalize: bool = False  # scale each embedding to unit L2 norm
    max_seq_length: int | None = None  # truncate here (None: the tokenizer's limit)
    source: str = "default (mean pooling, no normalization)"

    @classmethod
    def from_folder(cls, folder: Path) -> "EmbedSpec":
        folder = Path(folder)
        modules_file = folder / "modules.json"
        if not modules_file.is_file():
            return cls()
        modules = _read_json(modules_file)
        if not isinstance(modules, list):
            raise CheckpointError(f"{modules_file}: expected a JSON list of modules")
        pooling, normalize = None, False
        for m in modules:
            kind = str(m.get("type", "")).rsplit(".", 1)[-1]
            if kind == "Transformer":
                continue
            if kind == "Pooling":
                pooling = _pooling_modes(folder / m.get("path", "") / "config.json")
            elif kind == "Normalize":
                normalize = True  # a parameter-free module: its folder is often absent
            else:
                raise CheckpointError(
                    f"{modules_file}: module {kind!r} ({m.get('path')}) is not supported; numbert runs "
                    "Transformer -> Pooling -> Normalize pipelines only (pass pooling= to embed the "
                    "BERT output without it)")
        max_seq_length = None
        st_config = folder / "sentence_bert_config.json"
        if st_config.is_file():
            max_seq_length = _read_json(st_config).get("max_seq_length")
        return cls(pooling or ("mean",), normalize, max_seq_length,
                   source=f"sentence-transformers config in {folder}")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: unreadable ({e})") from None


def _pooling_modes(path: Path) -> tuple[str, ...]:
    if not path.is_file():
        raise CheckpointError(f"{path}: the Pooling module's config.json is missing")
    c = _read_json(path)
    unsupported = [k for k in ("pooling_mode_mean_sqrt_len_tokens", "pooling_mode_weightedmean_tokens",
                               "pooling_mode_lasttoken") if c.get(k)]
    if unsupported:
        raise CheckpointError(f"{path}: {', '.join(unsupported)} is not supported (numbert pools mean, cls, max)")
    # sentence-transformers concatenates the enabled modes in the order cls, max, mean
    modes = tuple(m for m in ("cls", "max", "mean") if c.get(f"pooling_mode_{m}_token" if m == "cls" else f"pooling_mode_{m}_tokens"))
    if not modes:
        raise CheckpointError(f"{path}: no pooling mode is enabled")
    return modes


def check_pooling(pooling) -> tuple[str, ...]:
    modes = (pooling,) if isinstance(pooling, str) else tuple(pooling)
    for m in modes:
        if m not in POOLINGS:
            raise ValueError(f"pooling must be one of {', '.join(POOLINGS)} (or a list of them), found {m!r}")
    if not modes:
        raise ValueError("pooling is empty: give one of " + ", ".join(POOLINGS))
    return modes


def pool(hidden, attention_mask, modes) -> np.ndarray:
    """[B, T, H] token vectors, [B, T] mask -> [B, H * len(modes)], padding ignored."""
    mask = attention_mask.astype(np.float32)[:, :, None]  # [B, T, 1]
    parts = []
    for mode in modes:
        if mode == "cls":  # the [CLS] token's vector
            parts.append(hidden[:, 0])  # [B, H]
        elif mode == "mean":  # the average of the real tokens (clamped as sentence-transformers does)
            total = (hidden * mask).sum(axis=1)  # [B, H]
            count = np.maximum(mask.sum(axis=1), 1e-9)  # [B, 1]
            parts.append(total / count)  # [B, H]
        elif mode == "max":  # per channel, the largest value over real tokens
            parts.append(np.where(mask > 0, hidden, np.float32(-1e9)).max(axis=1))  # [B, H]
    return np.concatenate(parts, axis=-1).astype(np.float32)  # [B, H * modes]


def l2_normalize(x) -> np.ndarray:
    """[N, D] -> [N, D] rows of unit length (zero rows stay zero, as torch's F.normalize does)."""
    norm = np.linalg.norm(x, axis=-1, keepdims=True)  # [N, 1]
    return (x / np.maximum(norm, 1e-12)).astype(np.float32)
