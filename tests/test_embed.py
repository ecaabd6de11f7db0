"""numbert.embed against sentence-transformers (real MiniLM and tiny folders), pooling, batching, windows."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import numbert
from numbert.errors import CheckpointError

from conftest import CORPUS, torch_model

TOL = 1e-5
LONG = " ".join(CORPUS) * 3  # far past MiniLM's max_seq_length of 256 tokens

TEXTS = [
    "I love cats!",
    "He hates pineapple pizza.",
    "",
    "   leading and trailing spaces   ",
    "Café au lait, naïve résumé, Ångström, jalapeño.",
    "東京は日本の首都です。 北京欢迎你 🙂",
    CORPUS[3] + " " + CORPUS[4],
    LONG,
]


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return numbert.load(minilm_path)


@pytest.fixture(scope="module")
def sentence_transformer(minilm_path):
    st = pytest.importorskip("sentence_transformers")
    return st.SentenceTransformer(str(minilm_path), device="cpu")


def test_minilm_equals_sentence_transformers(minilm, sentence_transformer):
    expected = sentence_transformer.encode(TEXTS)  # [N, 384], truncated at 256 tokens, normalized
    ours = numbert.embed(TEXTS, minilm, batch_size=3)
    assert ours.dtype == np.float32 and ours.shape == expected.shape == (len(TEXTS), 384)
    diff = np.abs(ours - expected).max(axis=1)
    print("max |numbert - sentence-transformers| per text:", diff)
    assert diff.max() <= TOL, f"texts[{diff.argmax()}] differs by {diff.max():.2e}"
    assert minilm.tokenizer.count_tokens([LONG])[0] > 512  # the long text really is long


def test_minilm_defaults_come_from_its_folder(minilm_path):
    spec = numbert.pooling.EmbedSpec.from_folder(minilm_path)
    assert spec.pooling == ("mean",) and spec.normalize and spec.max_seq_length == 256
    assert not (minilm_path / "2_Normalize").exists()  # listed in modules.json, folder absent: fine


def test_single_string_and_empty_list(minilm):
    one = numbert.embed("I love cats!", minilm)
    assert one.shape == (384,)
    np.testing.assert_allclose(one, numbert.embed(["I love cats!"], minilm)[0], atol=TOL)
    empty = numbert.embed([], minilm)
    assert empty.shape == (0, 384) and empty.dtype == np.float32


def test_batch_invariance(minilm):
    together = numbert.embed(TEXTS[:7], minilm, batch_size=4)
    for i, text in enumerate(TEXTS[:7]):
        alone = numbert.embed([text], minilm)[0]
        assert np.abs(alone - together[i]).max() <= TOL, f"texts[{i}]"


def test_window_reads_past_the_truncation(minilm):
    truncated = numbert.embed(LONG, minilm)
    windowed = numbert.embed(LONG, minilm, long_text="window", stride=32)
    assert abs(np.linalg.norm(windowed) - 1) < 1e-5  # averaged, then normalized as the model says
    assert np.abs(windowed - truncated).max() > 1e-3  # it read more than the first 256 tokens
    short = numbert.embed(TEXTS[:3], minilm, long_text="window")
    np.testing.assert_allclose(short, numbert.embed(TEXTS[:3], minilm), atol=TOL)


def test_backends_agree(minilm_path):
    pytest.importorskip("numbert.kernels.attention", reason="the Numba kernels are not there yet")
    a = numbert.embed(TEXTS, numbert.load(minilm_path, backend="numpy"))
    b = numbert.embed(TEXTS, numbert.load(minilm_path, backend="numba"))
    assert np.abs(a - b).max() <= TOL


# ------------------------------------------------------------------- tiny checkpoints

def torch_pooled(folder, texts, mode, max_length=None):
    """The oracle for pooling: transformers' last_hidden_state pooled by hand in torch."""
    import torch
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    enc = tok(texts, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
    with torch.no_grad():
        h = torch_model(folder)(**enc).last_hidden_state  # [B, T, H]
    mask = enc["attention_mask"].unsqueeze(-1).float()  # [B, T, 1]
    if mode == "cls":
        return h[:, 0].numpy()
    if mode == "mean":
        return ((h * mask).sum(1) / mask.sum(1)).numpy()
    return h.masked_fill(mask == 0, -1e9).max(1).values.numpy()


@pytest.mark.parametrize("mode", ["mean", "cls", "max"])
def test_pooling_modes_match_torch(checkpoint_factory, mode):
    folder = checkpoint_factory()
    texts = CORPUS[:6] + [""]
    ours = numbert.embed(texts, folder, pooling=mode, batch_size=3)
    np.testing.assert_allclose(ours, torch_pooled(folder, texts, mode), atol=TOL, rtol=0)
    unit = numbert.embed(texts, folder, pooling=mode, normalize=True)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1, atol=1e-6)


def test_plain_checkpoint_defaults_to_mean_unnormalized(checkpoint_factory):
    folder = checkpoint_factory()
    ours = numbert.embed(CORPUS[:3], folder)
    np.testing.assert_allclose(ours, torch_pooled(folder, CORPUS[:3], "mean"), atol=TOL, rtol=0)


@pytest.fixture(scope="module")
def tiny_st_folder(checkpoint_factory, tmp_path_factory):
    """A tiny sentence-transformers folder: cls + max + mean pooling, Normalize, max_seq_length 12."""
    folder = tmp_path_factory.mktemp("tiny_st")
    shutil.copytree(checkpoint_factory(), folder, dirs_exist_ok=True)
    (folder / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 12, "do_lower_case": False}))
    (folder / "1_Pooling").mkdir()
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": 32, "pooling_mode_cls_token": True, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": True, "pooling_mode_mean_sqrt_len_tokens": False}))
    return folder


def test_sentence_transformers_folder_sets_pooling_and_truncation(tiny_st_folder):
    st = pytest.importorskip("sentence_transformers")
    texts = CORPUS[:5] + [""]
    expected = st.SentenceTransformer(str(tiny_st_folder), device="cpu").encode(texts)  # [N, 96]
    ours = numbert.embed(texts, tiny_st_folder)
    assert ours.shape == expected.shape == (len(texts), 96)
    np.testing.assert_allclose(ours, expected, atol=TOL, rtol=0)


def test_window_is_the_mean_of_torch_windows(checkpoint_factory):
    """Oracle: transformers cuts the windows (stride = overlap), torch runs them, we average then pool."""
    import torch
    import transformers

    folder = checkpoint_factory()
    text, stride = " ".join(CORPUS[:10]), 5
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    enc = tok(text, truncation=True, max_length=24, stride=stride, return_overflowing_tokens=True,
              padding=True, return_tensors="pt")
    with torch.no_grad():
        h = torch_model(folder)(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = ((h * mask).sum(1) / mask.sum(1)).mean(0).numpy()  # mean pooling per window, then the mean
    ours = numbert.embed(text, folder, long_text="window", max_length=24, stride=stride)
    np.testing.assert_allclose(ours, expected, atol=TOL, rtol=0)


def test_progress_on_stderr_only_when_asked(checkpoint_factory, capsys):
    folder = checkpoint_factory()
    numbert.embed(CORPUS[:6], folder, batch_size=2)
    assert capsys.readouterr().err == ""
    numbert.embed(CORPUS[:6], folder, batch_size=2, progress=True)
    captured = capsys.readouterr()
    assert "embed" in captured.err and captured.out == ""


# ------------------------------------------------------------------- refusals

@pytest.mark.parametrize("kwargs, error, match", [
    (dict(pooling="sum"), ValueError, "pooling must be one of mean, cls, max"),
    (dict(pooling=[]), ValueError, "pooling is empty"),
    (dict(batch_size=-1), ValueError, "batch_size"),
    (dict(long_text="window", stride=-1), ValueError, "stride"),
    (dict(max_length=0), ValueError, "max_length must be a positive integer"),
])
def test_bad_options(checkpoint_factory, kwargs, error, match):
    with pytest.raises(error, match=match):
        numbert.embed(["a"], checkpoint_factory(), **kwargs)


@pytest.mark.parametrize("texts, match", [
    (None, "texts must be a str or a list of str"),
    (["a", b"bytes"], r"texts\[1\] is bytes"),
    (["a", "b", None], r"texts\[2\] is NoneType"),
])
def test_bad_texts_name_the_index(checkpoint_factory, texts, match):
    with pytest.raises(TypeError, match=match):
        numbert.embed(texts, checkpoint_factory())


def test_unsupported_sentence_transformers_module(tiny_st_folder, tmp_path):
    folder = tmp_path / "dense"
    shutil.copytree(tiny_st_folder, folder)
    modules = json.loads((folder / "modules.json").read_text())
    modules.insert(2, {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"})
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(CheckpointError, match="module 'Dense'.*not supported"):
        numbert.embed("a", folder)
