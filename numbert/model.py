"""numbert.load and the Model it returns: config + weights + tokenizer + a backend."""

from __future__ import annotations

import contextlib
from dataclasses import replace
from pathlib import Path

import numpy as np

from . import hub
from . import warmup
from .backend import NUMPY, NumbaOps, check_backend, get_ops
from .config import BertConfig
from .errors import CheckpointError, ConfigError
from .families import Family, family_named
from .heads import Head, head_for, load_with_head
from .modeling import ModelOutput
from .threads import set_threads
from .tokenizer import Batch, Tokenizer
from .weights import BertWeights, load_weights

class Model:
    """A loaded BERT checkpoint. Call it like a transformers model: `model(**model.tokenize(texts))`."""

    def __init__(self, config: BertConfig, weights: BertWeights, tokenizer: Tokenizer | None,
                 backend: str = "auto", path: Path | None = None, source: str = "local folder",
                 head: Head | None = None, head_weights=None):
        self.config = config
        self.weights = weights  # the checkpoint's tree, as loaded
        # a task head on the encoder's output (token classification, question answering, masked LM;
        # numbert.heads) and its own weight tree; None: the base model, or sequence classification
        # (which the family's forward runs on the pooled / first token)
        self.head = head
        self.head_weights = head_weights
        self.tokenizer = tokenizer
        self._ops = get_ops(backend, weights)  # the backend adapter, with its own weight layout prepared (refuses an unknown name)
        self.requested_backend = backend  # "auto", "numba" or "numpy", as asked
        # "auto" that started on NumPy: the kernels are compiling in the background (numbert.warmup)
        self._waiting = backend == "auto" and self._ops is NUMPY
        self.path = path
        self.source = source  # where hub.resolve found the folder, for `numbert info`
        self.family: Family = family_named(config.model_type)  # its forward pass (numbert.families)

    @property
    def ops(self):
        """The backend adapter the next forward pass runs: a model on "auto" that started on NumPy
        moves to the Numba kernels here, between calls, once they are compiled (a cheap check)."""
        if self._waiting and warmup.ready():
            self._ops = NumbaOps(self.weights)  # two threads may both build one: either is right
            self._waiting = False
        return self._ops

    @property
    def backend(self) -> str:
        """What runs now: "numba" or "numpy" (requested_backend says what was asked for)."""
        return self.ops.name

    def __repr__(self):
        c = self.config
        head = f", {c.num_labels} labels" if self.weights.classifier is not None else ""
        if self.head is not None:
            head = f", {self.head.task} head" + (f" ({c.num_labels} labels)" if self.head.task == "token-classification"
                                                 else "")
        return (f"Model({str(self.path)!r}, {c.num_hidden_layers} layers, hidden {c.hidden_size}, "
                f"{c.num_attention_heads} heads{head}, backend={self.backend!r}{self._backend_note()})")

    def _backend_note(self) -> str:
        if self.requested_backend != "auto":
            return ""
        return " (auto: numba once its kernels are compiled)" if self._waiting else " (auto)"

    def tokenize(self, texts, text_pairs=None, max_length=None) -> Batch:
        if self.tokenizer is None:
            raise CheckpointError(f"{self.path}: this model was loaded without a tokenizer")
        batch = self.tokenizer(texts, text_pairs, max_length)
        if not self.family.token_types:  # as the family's tokenizer, which returns no token_type_ids
            batch = replace(batch, token_type_ids=np.zeros_like(batch.token_type_ids))
        return batch

    def __call__(self, input_ids, attention_mask=None, token_type_ids=None, *,
                 output_hidden_states=False, output_attentions=False) -> ModelOutput:
        input_ids, attention_mask, token_type_ids = self.check_inputs(input_ids, attention_mask, token_type_ids)
        ops = self.ops  # once: a whole call runs on one backend
        # NumPy while the kernels compile in the background: BLAS leaves that process a core
        with warmup.leave_a_core() if self._waiting else contextlib.nullcontext():
            out = self.family.forward(input_ids, attention_mask, token_type_ids, self.weights, self.config, ops,
                                      output_hidden_states=output_hidden_states, output_attentions=output_attentions)
            return out if self.head is None else self.head.apply(self.head_weights, out, self, ops)

    def forward_recorded(self, batch, record, output_attentions=False) -> ModelOutput:
        """The NumPy reference forward with a recorder: what numbert.trace runs."""
        input_ids, attention_mask, token_type_ids = self.check_inputs(
            batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        out = self.family.forward(input_ids, attention_mask, token_type_ids, self.weights, self.config, NUMPY,
                                  output_attentions=output_attentions, record=record)
        return out if self.head is None else self.head.apply(self.head_weights, out, self, NUMPY, record)

    def check_inputs(self, input_ids, attention_mask, token_type_ids):
        """Validate and normalise the three [B, T] inputs; raise naming what is wrong."""
        c = self.config
        input_ids = _int_array(input_ids, "input_ids")
        if input_ids.ndim != 2:
            raise ValueError(f"input_ids must be 2-D [batch, tokens], found shape {list(input_ids.shape)}")
        B, T = input_ids.shape
        if B == 0 or T == 0:
            raise ValueError(f"input_ids is empty (shape {[B, T]}): nothing to run")
        if T > c.max_tokens:
            limit = (f"max_position_embeddings {c.max_position_embeddings}" if not c.position_offset else
                     f"the {c.max_tokens} tokens that max_position_embeddings {c.max_position_embeddings} numbers "
                     f"from {c.position_offset}")
            raise ValueError(f"sequence length {T} exceeds {limit}: truncate the input (model.tokenize does)")
        _check_range(input_ids, "input_ids", c.vocab_size, "vocab_size")
        if attention_mask is None:
            attention_mask = np.ones((B, T), dtype=np.int64)
        else:
            attention_mask = _int_array(attention_mask, "attention_mask", allow_bool=True)
            _check_shape(attention_mask, "attention_mask", (B, T))
            if not np.isin(attention_mask, (0, 1)).all():
                raise ValueError("attention_mask must hold only 0 (padding) and 1 (token)")
        if token_type_ids is None or not self.family.token_types:  # DistilBERT, MPNet: not read at all
            token_type_ids = np.zeros((B, T), dtype=np.int64)
        else:
            token_type_ids = _int_array(token_type_ids, "token_type_ids")
            _check_shape(token_type_ids, "token_type_ids", (B, T))
            _check_range(token_type_ids, "token_type_ids", c.type_vocab_size, "type_vocab_size")
        return input_ids, attention_mask, token_type_ids


def _int_array(x, name, allow_bool=False) -> np.ndarray:
    try:
        a = np.asarray(x)
    except ValueError:  # rows of different lengths: NumPy's own message names neither the input nor the fix
        raise ValueError(f"{name} has rows of different lengths; pad them to one length "
                         "(model.tokenize does) and pass attention_mask") from None
    if a.dtype == np.bool_ and allow_bool:
        return a.astype(np.int64)
    if a.size and not np.issubdtype(a.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, found dtype {a.dtype}")
    return a.astype(np.int64, copy=False)


def _check_shape(a, name, shape):
    if a.shape != shape:
        raise ValueError(f"{name} has shape {list(a.shape)}, expected {list(shape)} like input_ids")


def _check_range(a, name, limit, limit_name):
    bad = np.argwhere((a < 0) | (a >= limit))
    if len(bad):
        b, t = bad[0]
        raise ValueError(f"{name}[{b}, {t}] = {a[b, t]} is outside [0, {limit}) ({limit_name} of config.json); "
                         f"{len(bad)} value(s) out of range")


def load(path, num_labels=None, seed=0, backend="auto", threads=None, revision=None) -> Model:
    """Load a BERT checkpoint folder: config.json, safetensors weights, tokenizer.

    path: a checkpoint folder, a Hugging Face Hub id (`org/name`, at `revision`), or a model
    shipped by a known offline package (see numbert.hub).

    backend: "auto" (default) runs the Numba kernels when Numba's cache holds them; on a fresh
    install (or after an upgrade) it runs the NumPy reference while one background process
    compiles the kernels, and moves to them, between calls, when they are ready (numbert.warmup;
    NUMBERT_BACKGROUND_COMPILE=0 compiles in this process instead). "numba": the kernels, compiled
    here at the first call if need be. "numpy": the reference. Numba and NumPy agree within 1e-5.
    model.backend says which runs now.

    threads: how many cores Numba and BLAS use (default: NUMBERT_NUM_THREADS, else all).

    num_labels: give an encoder-only checkpoint a fresh, seeded classification head
    (normal(0, initializer_range) weights, zero bias), as transformers does when
    BertForSequenceClassification is loaded from a BertModel checkpoint.
    """
    check_backend(backend)
    resolved = hub.resolve(path, revision)  # a folder, the Hub cache, a download, or an offline package
    folder = resolved.folder
    set_threads(threads)
    if backend == "auto":
        warmup.start()  # a cold cache: the background compile starts now, while the weights load
    config = BertConfig.from_json(folder / "config.json")  # refuses a family numbert cannot run
    family = family_named(config.model_type)
    if num_labels is not None and family.name != "bert":
        raise ConfigError(f"num_labels={num_labels}: a fresh classification head is built for BERT checkpoints only; "
                          f"{folder} is a {family.name} checkpoint (load one saved as {family.head})")
    head = head_for(config.architectures, family.name)  # token classification, QA, masked LM (numbert.heads)
    if head is not None and not _holds_head(folder, head, family.prefix):
        # e.g. sentence-transformers/all-mpnet-base-v2: config.json still names MPNetForMaskedLM, the
        # file holds the encoder alone. transformers' AutoModel reads it as the base model; so does numbert.
        head = None
    if head is None:
        weights, config = load_weights(folder, config, num_labels=num_labels, seed=seed, tree=family.weights,
                                       prefix=family.prefix)
        head_weights = None
    else:
        if num_labels is not None:
            raise ConfigError(f"num_labels={num_labels} adds a sequence-classification head, but {folder} is a "
                              f"{', '.join(config.architectures)} checkpoint with its own {head.task} head")
        weights, head_weights = load_with_head(folder, config, head, tree=family.weights, prefix=family.prefix)
    if family.check is not None:
        family.check(weights, config, str(folder))
    tokenizer = Tokenizer.from_folder(folder, config)
    return Model(config, weights, tokenizer, backend=backend, path=folder, source=resolved.source, head=head,
                 head_weights=head_weights)


def _holds_head(folder: Path, head: Head, prefix: str) -> bool:
    """Does the checkpoint store any tensor of the head (keys read from the safetensors headers only)?"""
    from dataclasses import fields

    from .weights import _read_header, canonical_key, checkpoint_files

    tops = tuple(f"{f.name}." for f in fields(head.tree))  # "lm_head.", "cls.", "classifier.", "qa_outputs." ...
    return any(canonical_key(key, prefix).startswith(tops)
               for path in checkpoint_files(folder) for key in _read_header(path) if key != "_data_start")
