"""Loading checkpoints: dtypes, shards, key spellings, optional heads, and every refusal.

A refusal is a numbert.CheckpointError (weights / tokenizer files) or numbert.ConfigError
(config.json), both ValueError subclasses, with a message that names what is wrong.
"""

from __future__ import annotations

import json
import shutil
import struct
import warnings
from dataclasses import dataclass
from types import SimpleNamespace

import numpy as np
import pytest
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

import numbert
from numbert import weights as W
from numbert.weights import iter_tensors

from conftest import torch_model

TEXTS = ["I love cats!", "Beautiful is better than ugly. Explicit is better than implicit.", ""]
PAIRS = ["He hates pineapple pizza.", "", "Café au lait"]
TOL = 1e-5

BASE = dict(num_labels=2, seed=11)  # a BertForSequenceClassification checkpoint: keys saved as bert.*
ENCODER = dict(seed=12)  # a BertModel checkpoint: keys saved without a prefix


def clone(src, dst, tensors=None, config=None, files=("config.json", "tokenizer.json", "vocab.txt",
                                                       "tokenizer_config.json")):
    """A copy of checkpoint `src` in `dst`, with other tensors (one model.safetensors) or config.json."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in files:
        shutil.copy(src / name, dst / name)
    if tensors is None:
        shutil.copy(src / "model.safetensors", dst / "model.safetensors")
    else:
        save_file(tensors, str(dst / "model.safetensors"), metadata={"format": "pt"})
    if config is not None:
        (dst / "config.json").write_text(json.dumps(config))
    return dst


def stored(folder):
    return load_file(str(folder / "model.safetensors"))


def tree(model):
    return dict(iter_tensors(model.weights))


def assert_same_weights(a, b):
    ta, tb = tree(a), tree(b)
    assert ta.keys() == tb.keys()
    for key in ta:
        assert ta[key].dtype == np.float32, key
        np.testing.assert_array_equal(ta[key], tb[key], err_msg=key)


def outputs(model):
    return model(**model.tokenize(TEXTS, PAIRS), output_hidden_states=True)


def torch_outputs(folder, batch):
    import torch

    with torch.no_grad():
        oracle = torch_model(folder)
        return oracle(**{k: torch.from_numpy(v) for k, v in batch.items()}, output_hidden_states=True)


def config_of(folder):
    return json.loads((folder / "config.json").read_text())


@pytest.fixture(scope="module")
def base(checkpoint_factory):
    return checkpoint_factory(**BASE)


@pytest.fixture(scope="module")
def encoder_only(checkpoint_factory):
    return checkpoint_factory(**ENCODER)


# ---------------------------------------------------------------- dtypes


@pytest.mark.parametrize("dtype, tag", [("float16", "F16"), ("bfloat16", "BF16")])
def test_low_precision_checkpoint(checkpoint_factory, dtype, tag):
    # Saved after .to(dtype): numbert upcasts to float32 and matches torch run in fp32 on the
    # same (upcast) low-precision weights.
    import torch

    folder = checkpoint_factory(**BASE, torch_dtype=getattr(torch, dtype))
    with safe_open(str(folder / "model.safetensors"), framework="numpy") as f:
        assert {f.get_slice(k).get_dtype() for k in f.keys()} == {tag}
    model = numbert.load(folder)
    oracle = torch_model(folder)
    theirs = {k.removeprefix("bert."): v.numpy() for k, v in oracle.state_dict().items()}
    for key, array in tree(model).items():
        assert array.dtype == np.float32, key
        np.testing.assert_array_equal(array, theirs[key], err_msg=key)  # the upcast is exact
    batch = model.tokenize(TEXTS, PAIRS)
    ours, expected = outputs(model), torch_outputs(folder, batch)
    keep = batch.attention_mask.astype(bool)
    for i, (a, b) in enumerate(zip(ours.hidden_states, expected.hidden_states)):
        assert np.abs(a - b.numpy())[keep].max() <= TOL, f"hidden_states[{i}]"
    assert np.abs(ours.logits - expected.logits.numpy()).max() <= TOL
    # and the weights really lost precision: they differ from the fp32 checkpoint of the same seed
    full = tree(numbert.load(checkpoint_factory(**BASE)))
    assert not np.array_equal(full["encoder.layer.0.output.dense.weight"],
                              tree(model)["encoder.layer.0.output.dense.weight"])


def test_float64_tensors_are_downcast(base, tmp_path):
    folder = clone(base, tmp_path / "f64", {k: v.astype(np.float64) for k, v in stored(base).items()})
    assert_same_weights(numbert.load(folder), numbert.load(base))


# ---------------------------------------------------------------- shards and key spellings


def test_sharded_equals_single_file(base, tmp_path):
    folder = tmp_path / "sharded"
    torch_model(base).save_pretrained(str(folder), max_shard_size="50KB")
    for name in ("tokenizer.json", "vocab.txt", "tokenizer_config.json"):
        shutil.copy(base / name, folder / name)
    assert (folder / "model.safetensors.index.json").is_file() and len(list(folder.glob("*.safetensors"))) > 2
    sharded, single = numbert.load(folder), numbert.load(base)
    assert_same_weights(sharded, single)
    for a, b in zip(outputs(sharded), outputs(single)):
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def legacy_names(key):
    return key.replace("LayerNorm.weight", "LayerNorm.gamma").replace("LayerNorm.bias", "LayerNorm.beta")


@pytest.mark.parametrize("which, rename", [
    ("base", lambda k: k.removeprefix("bert.")),  # classifier checkpoint without the bert. prefix
    ("encoder_only", lambda k: "bert." + k),  # encoder checkpoint with it
    ("base", legacy_names),  # gamma / beta
    ("encoder_only", lambda k: "bert." + legacy_names(k)),
])
def test_key_spellings_load_identically(request, tmp_path, which, rename):
    src = request.getfixturevalue(which)
    tensors = {rename(k): v for k, v in stored(src).items()}
    assert tensors.keys() != stored(src).keys()
    folder = clone(src, tmp_path / "renamed", tensors)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "unexpected keys" warning either
        renamed = numbert.load(folder)
    original = numbert.load(src)
    assert_same_weights(renamed, original)
    for a, b in zip(outputs(renamed), outputs(original)):
        if a is not None:
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


# ---------------------------------------------------------------- the declaration


def test_declared_keys_and_shapes_are_transformers(base, encoder_only, checkpoint_factory):
    # The one declaration (numbert.weights: each field's shape beside it) against what transformers saves.
    for folder in (base, encoder_only, checkpoint_factory(add_pooling_layer=False, seed=13)):
        config = numbert.load(folder, backend="numpy").config
        theirs = {k.removeprefix("bert."): tuple(v.shape) for k, v in torch_model(folder).state_dict().items()
                  if not k.endswith(("position_ids", "token_type_ids"))}  # buffers, not weights
        ours = W.expected_shapes(W.BertWeights, config, present=lambda key: any(k.startswith(key + ".") for k in theirs))
        assert ours == theirs


@dataclass(frozen=True)
class ProjectedEncoder:  # a tree declared elsewhere: ELECTRA-like embeddings, a QA head
    embeddings: W.Embeddings = W.module(hidden_size="embedding_size")  # BERT's embeddings, E wide
    embeddings_project: W.Linear = W.module(out_features="hidden_size", in_features="embedding_size")  # [H, E]
    layer: tuple[W.Output, ...] = W.stack("num_hidden_layers", intermediate_size=5)
    qa_outputs: W.Linear | None = W.module(optional=True, out_features=2, in_features="hidden_size")  # [2, H]


def test_a_new_tree_needs_only_its_declaration():
    config = SimpleNamespace(vocab_size=10, max_position_embeddings=7, type_vocab_size=2, hidden_size=8,
                             embedding_size=4, num_hidden_layers=2)
    shapes = W.expected_shapes(ProjectedEncoder, config)
    assert shapes["embeddings.word_embeddings.weight"] == (10, 4)  # hidden_size rebound to embedding_size below
    assert shapes["embeddings.LayerNorm.bias"] == (4,)
    assert shapes["embeddings_project.weight"] == (8, 4)  # and not above
    assert shapes["layer.1.dense.weight"] == (8, 5) and shapes["layer.1.LayerNorm.weight"] == (8,)
    assert shapes["qa_outputs.weight"] == (2, 8) and len(shapes) == 5 + 2 + 2 * 4 + 2
    tensors = {key: np.full(shape, i, np.float32) for i, (key, shape) in enumerate(shapes.items())}
    tree = W.build(ProjectedEncoder, config, lambda key, shape: tensors[key],
                   present=lambda key: not key.startswith("qa_outputs"))
    assert tree.qa_outputs is None and len(tree.layer) == 2
    assert dict(iter_tensors(tree)).keys() == {k for k in tensors if not k.startswith("qa_outputs")}
    assert tree.layer[1].dense.weight is tensors["layer.1.dense.weight"]


# ---------------------------------------------------------------- optional parts


def test_without_classifier_logits_none(base, encoder_only, tmp_path):
    assert numbert.load(encoder_only).weights.classifier is None
    assert outputs(numbert.load(encoder_only)).logits is None
    # a classifier checkpoint with its head removed is a BertModel
    folder = clone(base, tmp_path / "headless", {k: v for k, v in stored(base).items() if "classifier" not in k})
    model = numbert.load(folder)
    out = outputs(model)
    assert out.logits is None and out.pooler_output is not None
    np.testing.assert_array_equal(out.pooler_output, outputs(numbert.load(base)).pooler_output)


def test_without_pooler_pooler_output_none(checkpoint_factory):
    folder = checkpoint_factory(add_pooling_layer=False, seed=13)
    model = numbert.load(folder)
    assert model.weights.pooler is None
    batch = model.tokenize(TEXTS)
    out = model(**batch)
    assert out.pooler_output is None and out.logits is None
    expected = torch_outputs(folder, batch)  # (transformers would give a fresh random pooler here)
    keep = batch.attention_mask.astype(bool)
    assert np.abs(out.last_hidden_state - expected.last_hidden_state.numpy())[keep].max() <= TOL


def test_new_head_needs_a_pooler(checkpoint_factory):
    folder = checkpoint_factory(add_pooling_layer=False, seed=13)
    with pytest.raises(numbert.CheckpointError, match=r"pooler\.dense\.weight.*add_pooling_layer=False"):
        numbert.load(folder, num_labels=2)


def test_classifier_without_pooler_refused(base, tmp_path):
    folder = clone(base, tmp_path / "nopool", {k: v for k, v in stored(base).items() if "pooler" not in k})
    with pytest.raises(numbert.CheckpointError, match=r"pooler\.dense\.weight.*model\.safetensors"):
        numbert.load(folder)


def test_new_head_on_encoder_checkpoint(encoder_only):
    with pytest.warns(UserWarning, match=r"newly initialized: \['classifier.bias', 'classifier.weight'\]"):
        model = numbert.load(encoder_only, num_labels=5, seed=3)
    assert model.config.num_labels == 5 and len(model.config.id2label) == 5
    assert outputs(model).logits.shape == (len(TEXTS), 5)


def test_num_labels_must_match_a_trained_head(base):
    with pytest.raises(numbert.CheckpointError, match="num_labels=3 .* trained classifier with 2 labels"):
        numbert.load(base, num_labels=3)
    assert numbert.load(base, num_labels=2).weights.classifier.weight.shape == (2, 32)  # same count is fine


# ---------------------------------------------------------------- refusals: corrupt files


def rewrite_header(src, dst, edit):
    """Copy src's model.safetensors to dst with its JSON header changed by edit(header)."""
    raw = (src / "model.safetensors").read_bytes()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    edit(header)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    folder = clone(src, dst, files=("config.json", "tokenizer.json"))
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", len(text)) + text + raw[8 + n:])
    return folder


KEY = "bert.encoder.layer.0.intermediate.dense.weight"  # [37, 32] float32 in `base`


def grow_shape(h):
    h[KEY]["shape"] = [38, 32]


def grow_end(h):
    start, end = h[KEY]["data_offsets"]
    h[KEY]["data_offsets"] = [start, end + 4]


def overlap(h):
    start, end = h[KEY]["data_offsets"]
    h[KEY]["data_offsets"] = [0, end - start]


def narrow_dtype(h):
    h[KEY]["dtype"] = "F16"


@pytest.mark.parametrize("edit, detail", [
    (grow_shape, "shape [38, 32] of F32 needs 4864 bytes, its data_offsets"),
    (grow_end, "shape [37, 32] of F32 needs 4736 bytes, its data_offsets"),
    (overlap, "starts at data byte 0, expected"),
    (narrow_dtype, "shape [37, 32] of F16 needs 2368 bytes, its data_offsets"),
])
def test_header_lying_about_sizes_or_offsets(base, tmp_path, edit, detail):
    # The message names the file and the tensor whose header entry does not add up.
    folder = rewrite_header(base, tmp_path / "lying", edit)
    with pytest.raises(numbert.CheckpointError) as e:
        numbert.load(folder)
    message = str(e.value)
    assert f"{folder / 'model.safetensors'}: not a readable safetensors file" in message
    assert f"tensor '{KEY}'" in message and detail in message


@pytest.mark.parametrize("cut, reason", [
    (lambda raw: raw[: len(raw) // 2], "but the file holds only"),  # tensor data cut short
    (lambda raw: raw[:100], "invalid header length"),  # cut inside the header
    (lambda raw: raw[:5], "header too small"),
    (lambda raw: b"", "header too small"),
    (lambda raw: struct.pack("<Q", 10**12) + raw[8:], "header too large"),  # length field lies
    (lambda raw: raw + b"\0" * 8, "the header accounts for"),  # trailing bytes no header accounts for
])
def test_truncated_or_corrupt_file(base, tmp_path, cut, reason):
    folder = clone(base, tmp_path / "cut", files=("config.json", "tokenizer.json"))
    (folder / "model.safetensors").write_bytes(cut((base / "model.safetensors").read_bytes()))
    with pytest.raises(numbert.CheckpointError) as e:
        numbert.load(folder)
    assert str(folder / "model.safetensors") in str(e.value) and reason in str(e.value)


def test_header_not_json(base, tmp_path):
    folder = clone(base, tmp_path / "garbage", files=("config.json", "tokenizer.json"))
    (folder / "model.safetensors").write_bytes(struct.pack("<Q", 8) + b"{notjson")
    with pytest.raises(numbert.CheckpointError, match="not a readable safetensors file .*JSON"):
        numbert.load(folder)


def test_missing_tensor(base, tmp_path):
    folder = clone(base, tmp_path / "missing", {k: v for k, v in stored(base).items() if k != KEY})
    with pytest.raises(numbert.CheckpointError) as e:
        numbert.load(folder)
    message = str(e.value)
    assert "missing tensor 'encoder.layer.0.intermediate.dense.weight'" in message
    assert "[37, 32]" in message and str(folder / "model.safetensors") in message


def test_wrong_shape(base, tmp_path):
    tensors = stored(base)
    tensors[KEY] = tensors[KEY][:36]
    folder = clone(base, tmp_path / "shape", tensors)
    with pytest.raises(numbert.CheckpointError) as e:
        numbert.load(folder)
    message = str(e.value)
    assert "'encoder.layer.0.intermediate.dense.weight'" in message and str(folder / "model.safetensors") in message
    assert "has shape [36, 32], expected [37, 32]" in message


def test_wrong_classifier_shape(base, tmp_path):
    tensors = stored(base)
    tensors["classifier.bias"] = np.zeros(3, np.float32)
    folder = clone(base, tmp_path / "clf", tensors)
    with pytest.raises(numbert.CheckpointError, match=r"'classifier.bias' .* has shape \[3\], expected \[2\]"):
        numbert.load(folder)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weight_is_refused_by_tensor_and_file(base, tmp_path, bad):
    # Before: one NaN gave NaN scores, an arbitrary label and exit 0 (issue 10, item 4).
    tensors = stored(base)
    tensors[KEY] = tensors[KEY].copy()
    tensors[KEY][3, 5] = bad
    folder = clone(base, tmp_path / "nan", tensors)
    with pytest.raises(numbert.CheckpointError) as e:
        numbert.load(folder)
    message = str(e.value)
    assert "'encoder.layer.0.intermediate.dense.weight'" in message and str(folder / "model.safetensors") in message
    assert "1 non-finite value(s)" in message and "[3, 5]" in message


def test_non_finite_weight_makes_the_cli_exit_1(base, tmp_path, capsys):
    from numbert.cli import main

    tensors = stored(base)
    tensors[KEY] = tensors[KEY].copy()
    tensors[KEY][0, 0] = np.nan
    folder = clone(base, tmp_path / "nan-cli", tensors)
    assert main(["classify", "--model", str(folder), "--json", "hello"]) == 1
    out = capsys.readouterr()
    assert out.out == "" and "non-finite" in out.err


def test_integer_tensor_in_a_float_slot(base, tmp_path):
    tensors = stored(base)
    tensors[KEY] = tensors[KEY].astype(np.int32)
    folder = clone(base, tmp_path / "int", tensors)
    with pytest.raises(numbert.CheckpointError, match=r"'encoder.layer.0.intermediate.dense.weight' .* dtype int32"):
        numbert.load(folder)


def test_unexpected_keys_warn(base, tmp_path):
    tensors = stored(base)
    tensors["bert.encoder.layer.0.attention.self.rotary.weight"] = np.zeros(4, np.float32)
    tensors["cls.predictions.bias"] = np.zeros(3, np.float32)  # another task's head: ignored quietly
    folder = clone(base, tmp_path / "extra", tensors)
    with pytest.warns(UserWarning, match=r"1 unexpected tensors .*encoder\.layer\.0\.attention\.self\.rotary\.weight"):
        model = numbert.load(folder)
    assert_same_weights(model, numbert.load(base))


def test_no_weights_file(base, tmp_path):
    folder = clone(base, tmp_path / "noweights", files=("config.json", "tokenizer.json"))
    (folder / "model.safetensors").unlink()
    with pytest.raises(numbert.CheckpointError, match=r"no model\.safetensors or model\.safetensors\.index\.json"):
        numbert.load(folder)
    (folder / "pytorch_model.bin").write_bytes(b"")
    with pytest.raises(numbert.CheckpointError, match="pytorch_model.bin: numbert reads only safetensors"):
        numbert.load(folder)


def test_shard_index_problems(base, tmp_path):
    folder = tmp_path / "sharded"
    torch_model(base).save_pretrained(str(folder), max_shard_size="50KB")
    shutil.copy(base / "tokenizer.json", folder / "tokenizer.json")
    shard = sorted(folder.glob("model-*.safetensors"))[1]
    shard.rename(folder / "moved.safetensors")
    with pytest.raises(numbert.CheckpointError, match=f"lists shards that are missing: .*{shard.name}"):
        numbert.load(folder)
    (folder / "model.safetensors.index.json").write_text("{not json")
    with pytest.raises(numbert.CheckpointError, match=r"model\.safetensors\.index\.json: unreadable shard index"):
        numbert.load(folder)


def test_no_tokenizer_files(base, tmp_path):
    folder = clone(base, tmp_path / "notok", files=("config.json",))
    with pytest.raises(numbert.CheckpointError, match="no tokenizer.json or vocab.txt"):
        numbert.load(folder)


def test_corrupt_tokenizer_json(base, tmp_path):
    folder = clone(base, tmp_path / "badtok", files=("config.json",))
    (folder / "tokenizer.json").write_text("{not a tokenizer")
    with pytest.raises(numbert.CheckpointError, match=r"tokenizer\.json: unreadable tokenizer"):
        numbert.load(folder)


# ---------------------------------------------------------------- refusals: config.json


def test_missing_config(base, tmp_path):
    folder = clone(base, tmp_path / "noconfig")
    (folder / "config.json").unlink()
    with pytest.raises(numbert.ConfigError, match="config.json not found"):
        numbert.load(folder)


@pytest.mark.parametrize("text, reason", [
    ("{not json", "cannot read config.json"),
    ("[1, 2]", "must hold a JSON object, found list"),
])
def test_unreadable_config(base, tmp_path, text, reason):
    folder = clone(base, tmp_path / "badconfig")
    (folder / "config.json").write_text(text)
    with pytest.raises(numbert.ConfigError, match=reason):
        numbert.load(folder)


@pytest.mark.parametrize("change, reason", [
    ({"model_type": "albert"}, r"model_type is 'albert'; numbert runs bert, distilbert, roberta"),
    ({"position_embedding_type": "relative_key"}, r"position_embedding_type is 'relative_key'.*only 'absolute'"),
    ({"hidden_size": 30}, "hidden_size 30 is not divisible by num_attention_heads 4"),
    ({"hidden_act": "swish"}, r"hidden_act 'swish' is not supported \(supported: gelu, gelu_new"),
    ({"is_decoder": True}, "decoder"),
    ({"num_hidden_layers": 0}, "num_hidden_layers must be a positive integer, found 0"),
    ({"vocab_size": "many"}, "vocab_size must be a positive integer, found 'many'"),
])
def test_unsupported_config(base, tmp_path, change, reason):
    folder = clone(base, tmp_path / "config", config={**config_of(base), **change})
    with pytest.raises(numbert.ConfigError, match=reason) as e:
        numbert.load(folder)
    assert str(folder / "config.json") in str(e.value)


def test_config_shapes_disagree_with_weights(base, tmp_path):
    # config.json says 48 intermediate units; the stored tensors have 37
    folder = clone(base, tmp_path / "config", config={**config_of(base), "intermediate_size": 48})
    with pytest.raises(numbert.CheckpointError, match=r"intermediate\.dense\.weight' .* has shape \[37, 32\], "
                                                      r"expected \[48, 32\] from config.json"):
        numbert.load(folder)


def test_errors_are_value_errors():
    assert issubclass(numbert.CheckpointError, ValueError) and issubclass(numbert.ConfigError, ValueError)
