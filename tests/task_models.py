"""Tiny random BERT checkpoints with a task head, and the texts the task tests read.

Each is written by transformers itself (save_pretrained, safetensors) beside the small WordPiece
tokenizer of conftest.build_tokenizer (it has [MASK]), so that transformers' pipelines (or
sentence-transformers' CrossEncoder) and numbert read the same folder:

    task                   transformers class                   oracle
    token-classification   BertForTokenClassification          pipeline("token-classification")
    question-answering     BertForQuestionAnswering            tests/qa_reference.py (transformers 4.x's pipeline)
    masked-lm              BertForMaskedLM                      pipeline("fill-mask")
    nli                    BertForSequenceClassification (3)    pipeline("zero-shot-classification")
    cross-encoder          BertForSequenceClassification (1)    CrossEncoder.predict / rank

As in conftest.build_checkpoint, initializer_range=0.2 and randomised LayerNorms and biases
keep the outputs far from flat, so a wrong step shows.
"""

from __future__ import annotations

import json
from pathlib import Path

from conftest import CORPUS, build_tokenizer

NER_LABELS = {0: "O", 1: "B-PER", 2: "I-PER", 3: "B-LOC", 4: "I-LOC", 5: "B-ORG", 6: "I-ORG", 7: "MISC"}
NLI_LABELS = {0: "contradiction", 1: "neutral", 2: "entailment"}

CLASSES = {
    "token-classification": "BertForTokenClassification",
    "question-answering": "BertForQuestionAnswering",
    "masked-lm": "BertForMaskedLM",
    "nli": "BertForSequenceClassification",
    "cross-encoder": "BertForSequenceClassification",
}

# Texts with accents, CJK, punctuation, numbers, several capitalised names, unknown characters.
TEXTS = [
    "Angela Merkel met Emmanuel Macron in Paris.",
    "Café au lait, naïve résumé, Ångström, jalapeño!",
    "東京は日本の首都です。 北京欢迎你",
    "Numbers 12345 and punctuation ?!... -- ;:",
    "The quick brown fox jumps over the lazy dog near New York City.",
    "Beautiful is better than ugly. Explicit is better than implicit ✨ 🙂",
    "x",
]
LONG_TEXT = " ".join(CORPUS[:12])  # ~150 tokens: several windows of a 64-token model


def build_task_checkpoint(folder: Path, task: str, *, seed=0, hidden_size=32, num_hidden_layers=2,
                          num_attention_heads=4, intermediate_size=37, hidden_act="gelu", max_position_embeddings=64,
                          model_max_length=64, initializer_range=0.2, id2label=None, tie_word_embeddings=True,
                          activation_fn=None, lowercase=True) -> Path:
    """A random BERT checkpoint with `task`'s head (see CLASSES) and a WordPiece tokenizer."""
    import torch
    import transformers

    folder = Path(folder)
    vocab = build_tokenizer(folder, lowercase=lowercase, model_max_length=model_max_length)
    if id2label is None:
        id2label = {"token-classification": NER_LABELS, "nli": NLI_LABELS,
                    "cross-encoder": {0: "LABEL_0"}}.get(task)
    kwargs = dict(vocab_size=vocab, hidden_size=hidden_size, num_hidden_layers=num_hidden_layers,
                  num_attention_heads=num_attention_heads, intermediate_size=intermediate_size, hidden_act=hidden_act,
                  max_position_embeddings=max_position_embeddings, initializer_range=initializer_range,
                  tie_word_embeddings=tie_word_embeddings, attn_implementation="eager")
    if id2label is not None:
        kwargs.update(num_labels=len(id2label), id2label=id2label, label2id={v: k for k, v in id2label.items()})
    config = transformers.BertConfig(**kwargs)
    torch.manual_seed(seed)
    model = getattr(transformers, CLASSES[task])(config)
    with torch.no_grad():  # LayerNorms start at (1, 0) and biases at 0: randomise them too
        for name, p in model.named_parameters():
            if "LayerNorm" in name or name.endswith("bias"):
                p.add_(torch.randn_like(p) * initializer_range)
    model.eval()
    model.save_pretrained(str(folder))
    if activation_fn is not None:  # as sentence-transformers saves a CrossEncoder's activation
        cfg = json.loads((folder / "config.json").read_text())
        cfg["sentence_transformers"] = {"activation_fn": activation_fn}
        (folder / "config.json").write_text(json.dumps(cfg, indent=2))
    return folder


def oracle_model(folder, task: str):
    """The transformers model of a task checkpoint: fp32, eager attention, eval mode."""
    import torch
    import transformers

    cls = getattr(transformers, CLASSES[task])
    return cls.from_pretrained(str(folder), attn_implementation="eager", dtype=torch.float32).eval()


SCORE_TOL = 1e-5


def assert_same_results(ours, theirs, path="result"):
    """Pipeline-shaped results equal: the same nesting, keys in the same order, every value but
    "score" / "scores" exactly equal, scores within SCORE_TOL. Returns the largest score difference."""
    if isinstance(theirs, list):
        assert isinstance(ours, list), f"{path}: numbert gives {type(ours).__name__}, the oracle a list"
        assert len(ours) == len(theirs), f"{path}: {len(ours)} items vs the oracle's {len(theirs)}: {ours} vs {theirs}"
        return max([assert_same_results(a, b, f"{path}[{i}]") for i, (a, b) in enumerate(zip(ours, theirs))],
                   default=0.0)
    assert isinstance(ours, dict), f"{path}: numbert gives {type(ours).__name__}, the oracle a dict"
    assert list(ours) == list(theirs), f"{path}: keys {list(ours)} vs the oracle's {list(theirs)}"
    worst = 0.0
    for key in theirs:
        if key in ("score", "scores"):
            diff = float(abs(ours[key] - theirs[key]) if key == "score"
                         else max(abs(a - b) for a, b in zip(ours[key], theirs[key])))
            assert diff <= SCORE_TOL, f"{path}.{key}: {ours[key]} vs the oracle's {theirs[key]} (diff {diff:.2e})"
            worst = max(worst, diff)
        else:
            assert ours[key] == theirs[key], f"{path}.{key}: {ours[key]!r} vs the oracle's {theirs[key]!r}"
    return worst


FAMILY_CLASS_PREFIX = {"distilbert": "DistilBert", "roberta": "Roberta", "xlm-roberta": "XLMRoberta",
                       "electra": "Electra", "mpnet": "MPNet"}
TASK_CLASS_SUFFIX = {"token-classification": "ForTokenClassification",
                     "question-answering": "ForQuestionAnswering", "masked-lm": "ForMaskedLM"}


def family_task_class(family: str, task: str) -> str:
    return FAMILY_CLASS_PREFIX[family] + TASK_CLASS_SUFFIX[task]


def build_family_task_checkpoint(folder: Path, family: str, task: str, *, config=0, seed=0,
                                 initializer_range=0.2) -> Path:
    """A random checkpoint of another family (tests/families.py: its tokenizer and tiny configs) with `task`'s head."""
    import torch
    import transformers
    from families import CONFIGS, _config, build_family_tokenizer

    folder = Path(folder)
    options = dict(CONFIGS[family][config])
    options.pop("add_pooling_layer", None)
    vocab = build_family_tokenizer(folder, family)
    labels = NER_LABELS if task == "token-classification" else None
    cfg = _config(family, vocab, options, len(labels) if labels else None, labels, initializer_range)
    cfg._attn_implementation = "eager"
    torch.manual_seed(seed)
    model = getattr(transformers, family_task_class(family, task))(cfg)
    with torch.no_grad():  # as families.build_family_checkpoint: norms and biases randomised too
        for name, p in model.named_parameters():
            if "norm" in name.lower() or name.endswith("bias"):
                p.add_(torch.randn_like(p) * initializer_range)
    model.eval().save_pretrained(str(folder))
    return folder


FAMILIES = ("distilbert", "roberta", "xlm-roberta", "electra", "mpnet")
_BUILT: dict = {}


def cached_checkpoint(tmp_path_factory, build, *args, **kwargs) -> Path:
    """build(folder, *args, **kwargs) once per test session for the same arguments (any test module)."""
    key = (build.__name__, json.dumps([args, kwargs], sort_keys=True, default=str))
    if key not in _BUILT:
        _BUILT[key] = build(tmp_path_factory.mktemp("_".join(map(str, args)) or "ckpt"), *args, **kwargs)
    return _BUILT[key]
