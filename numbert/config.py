"""BertConfig: the typed subset of a Hugging Face config.json that the forward pass needs.

Mirrors transformers' `BertConfig` (models/bert/configuration_bert.py). Fields keep the
Hugging Face names so a reader can hold the two side by side. The other families of
numbert.families are read into the same fields: each family's `config` function renames what it
spells differently (DistilBERT's `dim` is hidden_size) and sets the few fields below that only
some families use (embedding_size, position_offset, relative_attention_num_buckets).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError, positive_int

# The one table of activations: hidden_act as config.json spells it -> the name of the function
# that computes it, the same in both backends (numbert.layers.gelu_tanh, numbert.kernels.gelu_tanh).
ACTIVATIONS = {"gelu": "gelu", "gelu_new": "gelu_tanh", "gelu_pytorch_tanh": "gelu_tanh", "relu": "relu"}
SUPPORTED_ACTIVATIONS = tuple(ACTIVATIONS)


@dataclass(frozen=True)
class BertConfig:
    vocab_size: int = 30522  # rows of the word embedding table
    hidden_size: int = 768  # H: width of every token vector
    num_hidden_layers: int = 12  # L: encoder layers
    num_attention_heads: int = 12  # nh: heads per attention layer (hs = H // nh)
    intermediate_size: int = 3072  # I: width of the feed-forward layer
    hidden_act: str = "gelu"  # feed-forward activation: gelu (erf), gelu_new / gelu_pytorch_tanh (tanh), relu
    layer_norm_eps: float = 1e-12  # epsilon inside every LayerNorm
    max_position_embeddings: int = 512  # longest sequence the position table covers
    type_vocab_size: int = 2  # rows of the token-type (segment) table
    pad_token_id: int = 0
    initializer_range: float = 0.02  # std of freshly initialised weights (new classifier heads)
    num_labels: int = 2  # C: classifier outputs, when the checkpoint has a classifier
    id2label: dict[int, str] = field(default_factory=dict)
    label2id: dict[str, int] = field(default_factory=dict)
    problem_type: str | None = None  # single_label_classification / multi_label_classification / regression
    architectures: tuple[str, ...] = ()
    tie_word_embeddings: bool = True  # a masked-LM decoder reuses the word embedding table (numbert.heads)
    model_type: str = "bert"  # which family of numbert.families runs it
    embedding_size: int | None = None  # ELECTRA: width of the embeddings before embeddings_project
    position_offset: int = 0  # RoBERTa, MPNet: position ids start here (pad id + 1), not at 0
    relative_attention_num_buckets: int | None = None  # MPNet: rows of the relative position bias table

    @property
    def head_size(self) -> int:  # hs
        return self.hidden_size // self.num_attention_heads

    @property
    def max_tokens(self) -> int:  # the longest sequence the position table can number
        return self.max_position_embeddings - self.position_offset

    def __post_init__(self):
        problems = []
        if self.hidden_size % self.num_attention_heads:
            problems.append(
                f"hidden_size {self.hidden_size} is not divisible by num_attention_heads "
                f"{self.num_attention_heads}: the heads must split the hidden vector evenly"
            )
        if self.hidden_act not in SUPPORTED_ACTIVATIONS:
            problems.append(
                f"hidden_act {self.hidden_act!r} is not supported (supported: {', '.join(SUPPORTED_ACTIVATIONS)})"
            )
        for name in ("vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads",
                     "intermediate_size", "max_position_embeddings", "type_vocab_size"):
            try:
                positive_int(getattr(self, name), name, error=ConfigError)
            except ConfigError as e:
                problems.append(str(e))
        if problems:
            raise ConfigError("; ".join(problems))

    @classmethod
    def from_dict(cls, d: dict, source: str = "config.json") -> "BertConfig":
        from .families import family_of  # the families import the forward pass, which imports this module

        family = family_of(d, source)  # refuses a model_type or architecture numbert cannot run
        d = {**family.config(d), "model_type": family.name}  # the family's names -> BertConfig's
        pos_type = d.get("position_embedding_type", "absolute")
        if pos_type != "absolute":
            raise ConfigError(
                f"{source}: position_embedding_type is {pos_type!r}; numbert implements only 'absolute' "
                "position embeddings (a learned table added to the token embeddings)"
            )
        if d.get("is_decoder") or d.get("add_cross_attention"):
            raise ConfigError(f"{source}: decoder / cross-attention BERT is not supported, only the encoder")
        id2label = {int(k): str(v) for k, v in (d.get("id2label") or {}).items()}
        label2id = {str(k): int(v) for k, v in (d.get("label2id") or {}).items()}
        num_labels = int(d.get("num_labels", len(id2label) or 2))
        if not id2label:
            id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
            label2id = {v: k for k, v in id2label.items()}
        names = {f.name for f in cls.__dataclass_fields__.values()}
        kwargs = {k: v for k, v in d.items() if k in names}
        kwargs.update(id2label=id2label, label2id=label2id, num_labels=len(id2label),
                      architectures=tuple(d.get("architectures") or ()))
        try:
            return cls(**kwargs)
        except ConfigError as e:
            raise ConfigError(f"{source}: {e}") from None
        except TypeError as e:
            raise ConfigError(f"{source}: {e}") from None

    @classmethod
    def from_json(cls, path: str | Path) -> "BertConfig":
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: config.json not found; a checkpoint folder needs config.json")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ConfigError(f"{path}: cannot read config.json: {e}") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: config.json must hold a JSON object, found {type(d).__name__}")
        return cls.from_dict(d, source=str(path))
