"""Tiny random checkpoints of the BERT family (DistilBERT, RoBERTa, XLM-R, ELECTRA, MPNet).

Each is written by transformers itself (`save_pretrained(safe_serialization=True)`) beside a
tokenizer of the family's own kind, trained here with `tokenizers` on the same small corpus as
tests/conftest.py and saved through the family's transformers tokenizer class, so that
`AutoTokenizer.from_pretrained(folder)` and numbert read the same folder:

    family        tokenizer                       special tokens              pair format
    distilbert    WordPiece (BertTokenizer)       [CLS] [SEP] [PAD]=0         [CLS] A [SEP] B [SEP]
    electra       WordPiece (BertTokenizer)       [CLS] [SEP] [PAD]=0         [CLS] A [SEP] B [SEP]
    roberta       byte-level BPE                  <s>=0 <pad>=1 </s>=2        <s> A </s></s> B </s>
    xlm-roberta   Unigram (SentencePiece)         <s>=0 <pad>=1 </s>=2        <s> A </s></s> B </s>
    mpnet         WordPiece (MPNetTokenizer)      <s>=0 <pad>=1 </s>=2        <s> A </s></s> B </s>

As in conftest.build_checkpoint, initializer_range=0.2 pushes activations out of the linear
range and the LayerNorms and biases are randomised too, so that a wrong activation, a missing
bias or a shifted position id gives a measurable difference.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import CORPUS

FAMILIES = ("distilbert", "roberta", "xlm-roberta", "electra", "mpnet")

# model_type -> (base model class, sequence-classification class) in transformers
CLASSES = {
    "distilbert": ("DistilBertModel", "DistilBertForSequenceClassification"),
    "roberta": ("RobertaModel", "RobertaForSequenceClassification"),
    "xlm-roberta": ("XLMRobertaModel", "XLMRobertaForSequenceClassification"),
    "electra": ("ElectraModel", "ElectraForSequenceClassification"),
    "mpnet": ("MPNetModel", "MPNetForSequenceClassification"),
}

# Two tiny configurations per family (transformers' own config names), chosen so that each
# family's differences are exercised: DistilBERT with learned and sinusoidal positions and
# both activations; ELECTRA with and without embeddings_project; RoBERTa-style models with
# and without a pooler; MPNet long enough (64 positions) to reach the logarithmic buckets.
CONFIGS = {
    "distilbert": [
        dict(dim=32, n_layers=2, n_heads=4, hidden_dim=37, activation="gelu", max_position_embeddings=64),
        dict(dim=24, n_layers=3, n_heads=2, hidden_dim=40, activation="relu", max_position_embeddings=64,
             sinusoidal_pos_embds=True),
    ],
    "roberta": [
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=40,
             hidden_act="gelu_new", layer_norm_eps=1e-5, add_pooling_layer=False),
    ],
    "xlm-roberta": [
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=40,
             layer_norm_eps=1e-5, add_pooling_layer=False),
    ],
    "electra": [
        dict(embedding_size=16, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        dict(embedding_size=24, hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=40,
             hidden_act="gelu_new"),
    ],
    "mpnet": [
        dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=4, intermediate_size=37),
        dict(hidden_size=24, num_hidden_layers=3, num_attention_heads=2, intermediate_size=40,
             relative_attention_num_buckets=40, layer_norm_eps=1e-5, add_pooling_layer=False),
    ],
}

MAX_TOKENS = 64  # every tiny model reads at most 64 tokens (RoBERTa-style tables hold 2 more rows)


# ------------------------------------------------------------------- tokenizers

def _wordpiece_vocab(special_tokens, unk_token, vocab_size=400) -> dict[str, int]:
    from tokenizers.implementations import BertWordPieceTokenizer

    tok = BertWordPieceTokenizer(lowercase=True, unk_token=unk_token)
    tok.train_from_iterator(CORPUS, vocab_size=vocab_size, min_frequency=1, special_tokens=special_tokens,
                            show_progress=False)
    return tok.get_vocab()


def build_family_tokenizer(folder: Path, family: str) -> int:
    """Train the family's tokenizer on CORPUS and save it (tokenizer.json + tokenizer_config.json).

    Returns the vocabulary size. Saved through transformers' own tokenizer class, as real
    checkpoints are, so the tokenizer.json holds exactly the pipeline AutoTokenizer runs.
    """
    import transformers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if family in ("distilbert", "electra"):
        from conftest import build_tokenizer

        size = build_tokenizer(folder, model_max_length=MAX_TOKENS)
        if family == "distilbert":  # its tokenizer returns no token_type_ids
            cfg = json.loads((folder / "tokenizer_config.json").read_text())
            cfg["tokenizer_class"] = "DistilBertTokenizer"
            (folder / "tokenizer_config.json").write_text(json.dumps(cfg))
        return size
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]  # fairseq's order: <pad> is id 1
    if family == "roberta":
        from tokenizers import ByteLevelBPETokenizer

        bpe = ByteLevelBPETokenizer()
        bpe.train_from_iterator(CORPUS, vocab_size=400, min_frequency=1, special_tokens=specials,
                                show_progress=False)
        merges = json.loads(bpe._tokenizer.to_str())["model"]["merges"]
        merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in merges]
        tok = transformers.RobertaTokenizer(vocab=bpe.get_vocab(), merges=merges, model_max_length=MAX_TOKENS)
    elif family == "xlm-roberta":
        from tokenizers import SentencePieceUnigramTokenizer

        spm = SentencePieceUnigramTokenizer()
        spm.train_from_iterator(CORPUS, vocab_size=300, special_tokens=specials, unk_token="<unk>",
                                show_progress=False)
        vocab = [tuple(v) for v in json.loads(spm._tokenizer.to_str())["model"]["vocab"]]
        tok = transformers.XLMRobertaTokenizer(vocab=vocab, model_max_length=MAX_TOKENS)
    elif family == "mpnet":
        vocab = _wordpiece_vocab(["<s>", "<pad>", "</s>", "[UNK]", "<mask>"], "[UNK]")
        tok = transformers.MPNetTokenizer(vocab=vocab, model_max_length=MAX_TOKENS)
    else:
        raise ValueError(f"unknown family {family!r}")
    tok.save_pretrained(str(folder))
    return len(tok)


# ------------------------------------------------------------------- checkpoints

def _config(family: str, vocab_size: int, options: dict, num_labels, id2label, initializer_range):
    import transformers

    kw = dict(options)
    kw.update(vocab_size=vocab_size, initializer_range=initializer_range)
    if family == "distilbert":
        kw.setdefault("max_position_embeddings", MAX_TOKENS)
        cls = transformers.DistilBertConfig
    elif family in ("roberta", "xlm-roberta"):
        # fairseq's positions start after the pad id: 2 + MAX_TOKENS rows, one token type
        kw.update(max_position_embeddings=MAX_TOKENS + 2, type_vocab_size=1, pad_token_id=1, bos_token_id=0,
                  eos_token_id=2)
        cls = transformers.RobertaConfig if family == "roberta" else transformers.XLMRobertaConfig
    elif family == "electra":
        kw.setdefault("max_position_embeddings", MAX_TOKENS)
        cls = transformers.ElectraConfig
    elif family == "mpnet":
        kw.update(max_position_embeddings=MAX_TOKENS + 2, pad_token_id=1, bos_token_id=0, eos_token_id=2)
        cls = transformers.MPNetConfig
    else:
        raise ValueError(f"unknown family {family!r}")
    if num_labels is not None:
        kw["num_labels"] = num_labels
        if id2label:
            kw["id2label"] = id2label
            kw["label2id"] = {v: k for k, v in id2label.items()}
    return cls(**kw)


def build_family_checkpoint(folder: Path, family: str, config: int | dict = 0, *, num_labels=None, id2label=None,
                            seed=0, initializer_range=0.2, torch_dtype=None, max_shard_size=None) -> Path:
    """A random `family` checkpoint (config: an index into CONFIGS[family] or a dict of options).

    num_labels=None saves the base model; an int saves <Family>ForSequenceClassification.
    `add_pooling_layer` in the options is passed to the base model's constructor.
    """
    import torch
    import transformers

    folder = Path(folder)
    options = dict(CONFIGS[family][config] if isinstance(config, int) else config)
    add_pooling_layer = options.pop("add_pooling_layer", True)
    vocab = build_family_tokenizer(folder, family)
    cfg = _config(family, vocab, options, num_labels, id2label, initializer_range)
    cfg._attn_implementation = "eager"
    base_name, head_name = CLASSES[family]
    torch.manual_seed(seed)
    if num_labels is None:
        cls = getattr(transformers, base_name)
        kwargs = {"add_pooling_layer": add_pooling_layer} if family in ("roberta", "xlm-roberta", "mpnet") else {}
        model = cls(cfg, **kwargs)
    else:
        model = getattr(transformers, head_name)(cfg)
    with torch.no_grad():  # LayerNorms start at (1, 0) and biases at 0: randomise them too
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(torch.randn_like(p) * initializer_range)
            if name.endswith("relative_attention_bias.weight"):
                p.mul_(5.0)  # MPNet's bias on the scores: large enough that a wrong bucket shows
    model.eval()
    save = {"safe_serialization": True}
    if max_shard_size is not None:
        save["max_shard_size"] = max_shard_size
    if torch_dtype is not None:
        model = model.to(torch_dtype)
    model.save_pretrained(str(folder), **save)
    return folder


def family_torch_model(folder):
    """The transformers oracle for a family folder: AutoModel(ForSequenceClassification), fp32, eager."""
    import torch
    import transformers

    config = json.loads((Path(folder) / "config.json").read_text())
    head = any("SequenceClassification" in a for a in config.get("architectures") or [])
    cls = transformers.AutoModelForSequenceClassification if head else transformers.AutoModel
    model = cls.from_pretrained(str(folder), attn_implementation="eager", dtype=torch.float32)
    return model.eval()


def add_sentence_transformers_files(folder: Path, hidden_size: int, max_seq_length: int = 24,
                                    normalize: bool = True) -> Path:
    """Turn a checkpoint folder into a sentence-transformers folder: mean pooling (+ Normalize)."""
    folder = Path(folder)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
    ]
    if normalize:
        modules.append({"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"})
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length,
                                                                   "do_lower_case": False}))
    (folder / "1_Pooling").mkdir(exist_ok=True)
    (folder / "1_Pooling" / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden_size, "pooling_mode_cls_token": False, "pooling_mode_mean_tokens": True,
        "pooling_mode_max_tokens": False, "pooling_mode_mean_sqrt_len_tokens": False}))
    return folder
