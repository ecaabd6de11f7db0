"""The BERT family against transformers: DistilBERT, RoBERTa, XLM-RoBERTa, ELECTRA, MPNet.

For each family, on two tiny random configurations (tests/families.py): the tokenizer against
AutoTokenizer, the base model and the sequence-classification head against transformers (fp32,
eager) on both backends, classify against pipeline("text-classification"), embed against
sentence-transformers (MPNet, XLM-R), the CLI without torch, and the refusals.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

import numbert
from numbert.errors import CheckpointError, ConfigError

from conftest import CORPUS, max_diff_at_tokens
from families import (CONFIGS, FAMILIES, MAX_TOKENS, add_sentence_transformers_files, build_family_checkpoint,
                      family_torch_model)
from test_tokenizer import PAIRS as TOK_PAIRS
from test_tokenizer import TEXTS as TOK_TEXTS

TOL = 1e-5
BACKENDS = ("numpy", "numba")

# A padded batch: lengths from 3 tokens to the 64-token limit, accents, CJK, emoji, an empty text.
TEXTS = [
    "I love cats!",
    "Café au lait, naïve résumé, Ångström, jalapeño.",
    "",
    "東京は日本の首都です。 北京欢迎你 🙂",
    " ".join(CORPUS[:12]),  # past 64 tokens: truncated
    "x",
]
PAIRS = ["He hates pineapple pizza.", "a", "Beautiful is better than ugly.", "", "Readability counts.",
         " ".join(CORPUS[12:16])]


@pytest.fixture(scope="module")
def family_factory(tmp_path_factory):
    """build_family_checkpoint(family, config, **kwargs), cached for the module."""
    cache = {}

    def make(family, config=0, **kwargs):
        key = json.dumps([family, config, kwargs], sort_keys=True, default=str)
        if key not in cache:
            folder = tmp_path_factory.mktemp(f"{family}-{config}")
            cache[key] = build_family_checkpoint(folder, family, config, **kwargs)
        return cache[key]

    return make


def auto_tokenizer(folder):
    import transformers

    return transformers.AutoTokenizer.from_pretrained(str(folder))


# ------------------------------------------------------------------- tokenizers

@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("pairs", [False, True], ids=["single", "pairs"])
def test_tokenizer_matches_auto_tokenizer(family_factory, family, pairs):
    """Accents, CJK, emoji, whitespace runs, control characters, long texts truncated, pairs."""
    folder = family_factory(family)
    model = numbert.load(folder, backend="numpy")
    theirs = auto_tokenizer(folder)
    second = TOK_PAIRS if pairs else None
    for max_length in (None, 12):
        ours = model.tokenize(TOK_TEXTS, second, max_length=max_length)
        expected = theirs(TOK_TEXTS, second, padding=True, truncation=True, max_length=max_length)
        assert ours.input_ids.shape[1] <= (max_length or MAX_TOKENS)
        for key in expected:  # RoBERTa-style tokenizers return no token_type_ids
            a, b = ours[key], np.asarray(expected[key])
            assert a.shape == b.shape, f"{family} {key} max_length={max_length}: {a.shape} vs {b.shape}"
            bad = np.argwhere(a != b)
            assert not len(bad), f"{family} {key} max_length={max_length} differs first at {bad[0].tolist()}"
    if "token_type_ids" not in expected:  # the model reads one segment: all zeros
        assert not model.tokenize(TOK_TEXTS, second).token_type_ids.any()


def write_vocab_files(folder, family):
    """Replace tokenizer.json by the files a slow tokenizer ships: vocab.json + merges.txt, or vocab.txt."""
    tok = json.loads((folder / "tokenizer.json").read_text())
    vocab = tok["model"]["vocab"]
    if family == "roberta":
        (folder / "vocab.json").write_text(json.dumps(vocab))
        merges = [" ".join(m) if isinstance(m, list) else m for m in tok["model"]["merges"]]
        (folder / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    else:
        (folder / "vocab.txt").write_text("\n".join(sorted(vocab, key=vocab.get)) + "\n")
    (folder / "tokenizer.json").unlink()


@pytest.mark.parametrize("family", ["roberta", "mpnet", "distilbert"])
def test_tokenizer_from_vocab_files(family_factory, family, tmp_path):
    """A folder without tokenizer.json, read as transformers reads it (vocab.json + merges.txt, vocab.txt)."""
    folder = tmp_path / family
    shutil.copytree(family_factory(family), folder)
    write_vocab_files(folder, family)
    model = numbert.load(folder, backend="numpy")
    theirs = auto_tokenizer(folder)
    texts = TOK_TEXTS + ["a <mask> token"]
    pairs = TOK_PAIRS + ["x"]
    ours = model.tokenize(texts, pairs)
    expected = theirs(texts, pairs, padding=True, truncation=True)
    for key in ("input_ids", "attention_mask"):
        np.testing.assert_array_equal(ours[key], np.asarray(expected[key]), err_msg=f"{family} {key}")


def test_sentencepiece_model_alone_is_refused_by_name(family_factory, tmp_path):
    folder = tmp_path / "xlmr"
    shutil.copytree(family_factory("xlm-roberta"), folder)
    (folder / "tokenizer.json").unlink()
    (folder / "sentencepiece.bpe.model").write_bytes(b"")
    with pytest.raises(CheckpointError, match="no tokenizer.json.*SentencePiece"):
        numbert.load(folder)


def test_roberta_pair_format(family_factory):
    ours = numbert.load(family_factory("roberta"), backend="numpy").tokenize(["I love cats"], ["pizza"])
    tokens = ours.tokens[0]
    assert tokens[0] == "<s>" and tokens[-1] == "</s>"
    assert tokens.count("</s>") == 3 and "</s></s>" in "".join(tokens)  # <s> A </s></s> B </s>


# ------------------------------------------------------------------- the forward pass against transformers

def torch_outputs(folder, texts, pairs):
    import torch

    enc = auto_tokenizer(folder)(texts, pairs, padding=True, truncation=True, return_tensors="pt")
    with torch.no_grad():
        out = family_torch_model(folder)(**enc, output_hidden_states=True)
    return enc, out


def checkpoint_has(folder, prefix):
    from safetensors import safe_open

    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        return any(k.split(".", 1)[-1].startswith(prefix) or k.startswith(prefix) for k in f.keys())


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", [0, 1])
@pytest.mark.parametrize("family", FAMILIES)
def test_base_model_matches_transformers(family_factory, family, config, backend):
    folder = family_factory(family, config)
    model = numbert.load(folder, backend=backend)
    assert model.config.model_type == family
    enc, theirs = torch_outputs(folder, TEXTS, PAIRS)
    batch = model.tokenize(TEXTS, PAIRS)
    np.testing.assert_array_equal(batch.input_ids, enc["input_ids"].numpy())
    ours = model(**batch, output_hidden_states=True)
    mask = batch.attention_mask
    assert ours.last_hidden_state.dtype == np.float32
    diffs = {"last_hidden_state": max_diff_at_tokens(ours.last_hidden_state, theirs.last_hidden_state.numpy(), mask)}
    assert len(ours.hidden_states) == len(theirs.hidden_states) == model.config.num_hidden_layers + 1
    for i, (a, b) in enumerate(zip(ours.hidden_states, theirs.hidden_states)):
        diffs[f"hidden_states[{i}]"] = max_diff_at_tokens(a, b.numpy(), mask)
    has_pooler = checkpoint_has(folder, "pooler.")
    assert (ours.pooler_output is not None) == has_pooler
    if has_pooler:
        diffs["pooler_output"] = float(np.abs(ours.pooler_output - theirs.pooler_output.numpy()).max())
    print(family, config, backend, {k: f"{v:.1e}" for k, v in diffs.items()})
    worst = max(diffs, key=diffs.get)
    assert diffs[worst] <= TOL, f"{worst} differs by {diffs[worst]:.2e} (first: {next(k for k, v in diffs.items() if v > TOL)})"
    assert np.isfinite(ours.last_hidden_state).all()  # padded positions too


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("config", [0, 1])
@pytest.mark.parametrize("family", FAMILIES)
def test_classification_head_matches_transformers(family_factory, family, config, backend):
    folder = family_factory(family, config, num_labels=3, seed=config + 1)
    model = numbert.load(folder, backend=backend)
    enc, theirs = torch_outputs(folder, TEXTS, PAIRS)
    batch = model.tokenize(TEXTS, PAIRS)
    ours = model(**batch)
    assert ours.logits.shape == (len(TEXTS), 3) and ours.logits.dtype == np.float32
    diff = float(np.abs(ours.logits - theirs.logits.numpy()).max())
    hidden = max_diff_at_tokens(ours.last_hidden_state, theirs.hidden_states[-1].numpy(), batch.attention_mask)
    print(family, config, backend, f"logits {diff:.1e}, last_hidden_state {hidden:.1e}")
    assert hidden <= TOL and diff <= TOL, (hidden, diff)
    assert np.abs(theirs.logits.numpy()).max() > 0.1  # the head is not a near-zero function


@pytest.mark.parametrize("family", FAMILIES)
def test_padding_does_not_change_real_tokens(family_factory, family):
    """Each text alone equals the same text in a padded batch (RoBERTa's position ids count real tokens)."""
    model = numbert.load(family_factory(family), backend="numpy")
    together = model(**model.tokenize(TEXTS)).last_hidden_state
    for i, text in enumerate(TEXTS):
        alone = model(**model.tokenize([text])).last_hidden_state[0]
        n = alone.shape[0]
        assert np.abs(alone - together[i, :n]).max() <= TOL, f"texts[{i}]"


@pytest.mark.parametrize("family, dtype", [(f, "float16") for f in FAMILIES] + [("roberta", "bfloat16"),
                                                                                ("mpnet", "bfloat16")])
def test_half_precision_sharded_checkpoint(family, dtype, tmp_path):
    """An fp16 / bf16 checkpoint in shards reads as transformers reads it (upcast to fp32)."""
    import torch

    folder = build_family_checkpoint(tmp_path / family, family, 0, num_labels=2, torch_dtype=getattr(torch, dtype),
                                     max_shard_size="20KB")
    assert (folder / "model.safetensors.index.json").is_file()
    enc, theirs = torch_outputs(folder, TEXTS[:3], None)
    ours = numbert.load(folder, backend="numpy")(**numbert.load(folder, backend="numpy").tokenize(TEXTS[:3]))
    assert np.abs(ours.logits - theirs.logits.numpy()).max() <= TOL


# ------------------------------------------------------------------- classify, embed

@pytest.mark.parametrize("family", FAMILIES)
def test_classify_matches_pipeline(family_factory, family):
    import transformers

    folder = family_factory(family, 0, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, seed=7)
    pipe = transformers.pipeline("text-classification", model=str(folder), device="cpu",
                                 model_kwargs={"attn_implementation": "eager"})
    theirs = pipe(TEXTS, truncation=True, top_k=None)
    for backend in BACKENDS:
        ours = numbert.classify(TEXTS, numbert.load(folder, backend=backend), top_k=None, batch_size=4)
        assert len(ours) == len(theirs)
        for i, (o, t) in enumerate(zip(ours, theirs)):
            assert [d["label"] for d in o] == [d["label"] for d in t], (family, backend, i, o, t)
            diff = max(abs(a["score"] - b["score"]) for a, b in zip(o, t))
            assert diff <= TOL, (family, backend, i, diff)


@pytest.mark.parametrize("family", ["mpnet", "distilbert"])
def test_zero_shot_labels_on_a_base_model(family_factory, family):
    """classify(labels=...) on an encoder without a head: softmax(20 * cosine) of the embeddings, as for BERT."""
    model = numbert.load(family_factory(family), backend="numpy")
    labels = ["sport", "cooking", "music"]
    results = numbert.classify(TEXTS[:3], model, labels=labels, top_k=None)
    texts_vec = numbert.embed(TEXTS[:3], model)
    label_vec = numbert.embed([f"This is {x}." for x in labels], model)  # api.DEFAULT_TEMPLATE
    cos = (texts_vec / np.linalg.norm(texts_vec, axis=1, keepdims=True)) @ \
        (label_vec / np.linalg.norm(label_vec, axis=1, keepdims=True)).T  # [N, K]
    expected = np.exp(20 * cos) / np.exp(20 * cos).sum(1, keepdims=True)
    for i, r in enumerate(results):
        got = {d["label"]: d["score"] for d in r}
        np.testing.assert_allclose([got[x] for x in labels], expected[i], atol=1e-5)


@pytest.mark.parametrize("family", ["mpnet", "xlm-roberta"])
def test_embed_matches_sentence_transformers(family_factory, family, tmp_path):
    st = pytest.importorskip("sentence_transformers")
    folder = tmp_path / f"st-{family}"
    shutil.copytree(family_factory(family, 0), folder)
    add_sentence_transformers_files(folder, CONFIGS[family][0]["hidden_size"], max_seq_length=24)
    texts = TEXTS + [CORPUS[3], CORPUS[4]]
    expected = st.SentenceTransformer(str(folder), device="cpu").encode(texts)  # mean pooled, normalized
    for backend in BACKENDS:
        ours = numbert.embed(texts, numbert.load(folder, backend=backend), batch_size=3)
        assert ours.shape == expected.shape
        diff = np.abs(ours - expected).max()
        print(family, backend, f"embed {diff:.1e}")
        assert diff <= TOL, f"{family} {backend}: {diff:.2e}"


@pytest.mark.parametrize("family", ["roberta", "mpnet"])
def test_window_is_the_mean_of_transformers_windows(family_factory, family):
    """long_text="window" cuts <s> piece </s> windows as the tokenizer's return_overflowing_tokens does."""
    import torch

    folder = family_factory(family)
    text, stride = " ".join(CORPUS[:10]), 5
    enc = auto_tokenizer(folder)(text, truncation=True, max_length=24, stride=stride, return_overflowing_tokens=True,
                                 padding=True, return_tensors="pt")
    assert len(enc["input_ids"]) > 2
    with torch.no_grad():
        h = family_torch_model(folder)(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    expected = ((h * mask).sum(1) / mask.sum(1)).mean(0).numpy()  # mean pooling per window, then the mean
    for backend in BACKENDS:
        ours = numbert.embed(text, numbert.load(folder, backend=backend), long_text="window", max_length=24,
                             stride=stride)
        assert np.abs(ours - expected).max() <= TOL, backend


# ------------------------------------------------------------------- the CLI without torch

@pytest.mark.parametrize("family", FAMILIES)
def test_cli_classify_without_torch(family_factory, family, tmp_path):
    import os
    import subprocess
    import sys

    from test_cli import NO_TORCH

    folder = family_factory(family, 0, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, seed=7)
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", NUMBERT_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-c", NO_TORCH, "classify", "--model", str(folder), "--json", *TEXTS[:2]],
                       capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    expected = numbert.classify(TEXTS[:2], folder)
    assert [row["label"] for row in rows] == [e["label"] for e in expected]
    np.testing.assert_allclose([row["score"] for row in rows], [e["score"] for e in expected], atol=1e-6)


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_info_counts_the_parameters_transformers_has(family_factory, family):
    from numbert.cli import model_info

    folder = family_factory(family, 0, num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}, seed=7)
    info = model_info(str(folder), None)
    assert info["parameters"] == sum(p.numel() for p in family_torch_model(folder).parameters())


# ------------------------------------------------------------------- refusals

def write_config(folder, **changes):
    path = folder / "config.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize("model_type", ["albert", "deberta-v2", "camembert"])
def test_unknown_family_is_refused_by_name(family_factory, tmp_path, model_type):
    folder = tmp_path / "other"
    shutil.copytree(family_factory("roberta"), folder)
    write_config(folder, model_type=model_type)
    with pytest.raises(ConfigError, match=f"model_type is '{model_type}'.*distilbert"):
        numbert.load(folder)


@pytest.mark.parametrize("family, architecture", [
    ("roberta", "RobertaForMultipleChoice"),
    ("distilbert", "DistilBertForMultipleChoice"),
    ("electra", "ElectraForCausalLM"),
    ("mpnet", "MPNetForMultipleChoice"),
])
def test_unsupported_head_is_refused_by_name(family_factory, tmp_path, family, architecture):
    folder = tmp_path / "head"
    shutil.copytree(family_factory(family, 0, num_labels=2), folder)
    write_config(folder, architectures=[architecture])
    with pytest.raises(ConfigError, match=architecture):
        numbert.load(folder)


@pytest.mark.parametrize("family, cls", [
    ("roberta", "RobertaForMaskedLM"),
    ("xlm-roberta", "XLMRobertaForMaskedLM"),
    ("distilbert", "DistilBertForMaskedLM"),
    ("electra", "ElectraForPreTraining"),  # the discriminator
    ("mpnet", "MPNetForMaskedLM"),
])
def test_pretraining_checkpoint_loads_as_the_base_model(tmp_path, family, cls):
    """roberta-base, electra-base-discriminator ... are saved with a pre-training head: run their encoder."""
    import warnings

    import torch
    import transformers

    from families import _config, build_family_tokenizer

    folder = tmp_path / family
    cfg = _config(family, build_family_tokenizer(folder, family), dict(CONFIGS[family][0]), None, None, 0.2)
    torch.manual_seed(0)
    pretrained = getattr(transformers, cls)(cfg).eval()
    pretrained.save_pretrained(str(folder), safe_serialization=True)
    base = getattr(pretrained, pretrained.base_model_prefix)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the pre-training head is ignored quietly, as BERT's cls.* is
        model = numbert.load(folder, backend="numpy")
    assert model.weights.classifier is None
    batch = model.tokenize(TEXTS, PAIRS)
    inputs = {k: torch.from_numpy(batch[k]) for k in ("input_ids", "attention_mask")}
    if family == "electra":  # the one family here whose segment B reads token type 1
        inputs["token_type_ids"] = torch.from_numpy(batch.token_type_ids)
    with torch.no_grad():
        expected = base(**inputs).last_hidden_state.numpy()
    ours = model(**batch).last_hidden_state
    assert max_diff_at_tokens(ours, expected, batch.attention_mask) <= TOL


@pytest.mark.parametrize("family, architecture", [("mpnet", "MPNetForMaskedLM"), ("xlm-roberta", "XLMRobertaForMaskedLM")])
def test_config_naming_a_head_the_file_lacks_loads_the_encoder(family_factory, tmp_path, family, architecture):
    """sentence-transformers/all-mpnet-base-v2: config.json says MPNetForMaskedLM, the file holds the encoder alone."""
    folder = tmp_path / family
    shutil.copytree(family_factory(family), folder)
    write_config(folder, architectures=[architecture])
    model = numbert.load(folder, backend="numpy")
    assert model.head is None and model.weights.classifier is None
    expected = numbert.load(family_factory(family), backend="numpy")
    batch = model.tokenize(TEXTS)
    np.testing.assert_array_equal(model(**batch).last_hidden_state, expected(**batch).last_hidden_state)


@pytest.mark.parametrize("family, changes, match", [
    ("roberta", dict(position_embedding_type="relative_key"), "position_embedding_type"),
    ("electra", dict(position_embedding_type="relative_key_query"), "position_embedding_type"),
    ("roberta", dict(is_decoder=True), "decoder"),
    ("distilbert", dict(activation="swish"), "swish"),
])
def test_unsupported_options_are_refused(family_factory, tmp_path, family, changes, match):
    folder = tmp_path / "opt"
    shutil.copytree(family_factory(family), folder)
    write_config(folder, **changes)
    with pytest.raises(ConfigError, match=match):
        numbert.load(folder)


def test_electra_without_its_projection_is_refused(family_factory, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "electra"
    shutil.copytree(family_factory("electra", 0), folder)  # embedding_size 16, hidden_size 32
    tensors = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
               if not k.startswith("embeddings_project.")}
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match=r"embeddings_project.weight.*\[32, 16\]"):
        numbert.load(folder)


def test_distilbert_half_a_head_is_refused(family_factory, tmp_path):
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "distilbert"
    shutil.copytree(family_factory("distilbert", 0, num_labels=2), folder)
    tensors = {k: v for k, v in load_file(str(folder / "model.safetensors")).items()
               if not k.startswith("pre_classifier.")}
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="pre_classifier.weight"):
        numbert.load(folder)


def test_fresh_head_is_for_bert_only(family_factory):
    with pytest.raises(ConfigError, match="num_labels=3: a fresh classification head is built for BERT checkpoints "
                                          "only.*roberta checkpoint.*RobertaForSequenceClassification"):
        numbert.load(family_factory("roberta"), num_labels=3)


def test_missing_family_tensor_is_named(family_factory, tmp_path):
    """A checkpoint without MPNet's position bias table is refused, naming the key."""
    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "mpnet"
    shutil.copytree(family_factory("mpnet"), folder)
    tensors = load_file(str(folder / "model.safetensors"))
    del tensors["encoder.relative_attention_bias.weight"]
    save_file(tensors, str(folder / "model.safetensors"))
    with pytest.raises(CheckpointError, match="encoder.relative_attention_bias.weight"):
        numbert.load(folder)


# ------------------------------------------------------------------- MPNet's pieces

def test_relative_position_bucket_matches_transformers():
    import torch
    from transformers.models.mpnet.modeling_mpnet import MPNetEncoder

    from numbert.families.mpnet import relative_position_bucket

    relative = np.arange(-1100, 1101)[None, :]  # past max_distance 128 both ways, and past 512 tokens
    ours = relative_position_bucket(relative)
    theirs = MPNetEncoder.relative_position_bucket(torch.from_numpy(relative)).numpy()
    np.testing.assert_array_equal(ours, theirs)
    assert len(np.unique(ours)) > 16  # both halves, exact and logarithmic buckets


@pytest.mark.parametrize("batch_bias", [False, True], ids=["shared", "per-row"])
def test_attention_kernel_with_position_bias_matches_reference(batch_bias):
    """The Numba kernel adds a [1 or B, nh, T, T] bias where the NumPy reference does."""
    from numbert import kernels, layers

    rng = np.random.default_rng(0)
    B, T, nh, hs = 3, 13, 2, 8
    q, k, v = (rng.standard_normal((B, T, nh * hs)).astype(np.float32) for _ in range(3))
    mask = np.ones((B, T), np.int64)
    mask[1, 9:] = 0  # right padding
    mask[2, :] = 0  # no real token at all
    bias = rng.standard_normal((B if batch_bias else 1, nh, T, T)).astype(np.float32) * 3
    mask_bias = layers.attention_mask_bias(mask)
    ref, ref_probs = layers.attention(q, k, v, mask_bias, nh, True, position_bias=bias)
    out, probs = kernels.attention(q, k, v, mask_bias, nh, True, position_bias=bias)
    keep = mask.astype(bool)
    keep[2] = True  # the all-padding row still attends uniformly, as the reference
    assert np.abs(out - ref)[keep].max() <= 1e-5
    assert np.abs(probs - ref_probs).max() <= 1e-5
    without, _ = kernels.attention(q, k, v, mask_bias, nh)
    assert np.abs(without - out)[keep].max() > 1e-2  # the bias is really applied


# ------------------------------------------------------------------- the trace

@pytest.mark.parametrize("family", FAMILIES)
def test_trace_prints_and_checks_against_torch(family_factory, family):
    from numbert.trace.catalogue import ALL_STEPS

    folder = family_factory(family, 0, num_labels=3, seed=7)
    t = numbert.trace(["I love cats!", "Beautiful is better than ugly."], folder, text_pair=["no", "x"], check="torch")
    keys = [s.key for s in t]
    unknown = [k for k in dict.fromkeys(keys) if k not in ALL_STEPS]
    assert not unknown, f"{family}: recorded steps with no catalogue entry: {unknown}"
    assert t.check.ok, f"{family}: first divergence at {t.check.first_divergence}"
    checked = [s for s in t.check.steps.values() if s.max_abs_diff is not None]
    assert len(checked) >= 40, f"{family}: only {len(checked)} steps have a torch twin"
    assert checked[-1].name == "classifier.logits"  # down to the logits
    np.testing.assert_allclose(t["classifier.logits"], t.output.logits)
    text = str(t)
    assert "LAYER 2" in text and "classifier.logits" in text
    if family in ("roberta", "xlm-roberta", "mpnet"):  # fairseq's positions, from pad_token_id + 1 = 2
        assert t["embeddings.position_ids"][0, 0] == 2
    if family == "mpnet":
        bias = t["encoder.position_bias"]
        assert bias.shape == (1, 4, t.batch.input_ids.shape[1], t.batch.input_ids.shape[1])
        assert t.check.steps["encoder.position_bias"].max_abs_diff is not None
    if family == "electra":
        assert t["embeddings_project"].shape[-1] == 32 and t["embeddings.LayerNorm"].shape[-1] == 16


@pytest.mark.parametrize("family", ["distilbert", "mpnet"])
def test_trace_page_draws_the_family_attention(family_factory, family):
    """The page's heatmaps read the family's own probabilities step (transformer.layer.N.attention.probs ...)."""
    t = numbert.trace(["I love cats!"], family_factory(family))
    page = t.to_html()
    layers, heads = t.config.num_hidden_layers, t.config.num_attention_heads
    assert page.count("<figure>") == layers * heads
    assert ("attention.attn.probs" if family == "mpnet" else "attention.probs") in page
