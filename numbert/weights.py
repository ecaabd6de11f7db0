"""BertWeights: the checkpoint's tensors as a typed, frozen tree whose path is the key path.

`w.encoder.layer[3].attention.self.query.weight` is the tensor stored under
`encoder.layer.3.attention.self.query.weight`. Loading reads safetensors without torch
(one file, or shards listed in model.safetensors.index.json), upcasts fp16 / bf16 to
float32, accepts the `bert.` prefix and the legacy LayerNorm names `gamma` / `beta`, and
checks every tensor against the shape the config implies.
"""

from __future__ import annotations

import json
import struct
import warnings
from dataclasses import dataclass, field, fields, is_dataclass, replace
from pathlib import Path
from typing import get_args, get_type_hints

import numpy as np
from safetensors import SafetensorError, safe_open

from .config import BertConfig
from .errors import CheckpointError, positive_int

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# ---------------------------------------------------------------- declaring a tree
#
# A tree is declared once, as frozen dataclasses: each field is a checkpoint tensor with its
# shape, a submodule, or a list of submodules, and the attribute path is the key path. The
# shapes, the checks and the tree building all come from this declaration (see `build`).
# A dim is a number or a name: a name bound by an enclosing `module(...)` / `stack(...)`, else
# a field of the config. Bindings hold for the whole subtree below, so a family whose
# embeddings are narrower can reuse `Embeddings` with `module(hidden_size="embedding_size")`.


def tensor(*dims):
    """A checkpoint tensor of shape `dims`."""
    return field(metadata={"dims": dims})


def module(*, optional=False, **bind):
    """A submodule (the field's type); `bind` names its dims. optional: None when the checkpoint has no key below it."""
    return field(metadata={"bind": bind, "optional": optional})


def stack(count, **bind):
    """nn.ModuleList: `count` submodules (the type in tuple[Type, ...]), keys `name.0`, `name.1`, ..."""
    return field(metadata={"bind": bind, "count": count})


@dataclass(frozen=True)
class Linear:  # nn.Linear
    weight: np.ndarray = tensor("out_features", "in_features")
    bias: np.ndarray = tensor("out_features")


@dataclass(frozen=True)
class LayerNorm:  # nn.LayerNorm
    weight: np.ndarray = tensor("normalized_shape")  # (legacy name: gamma)
    bias: np.ndarray = tensor("normalized_shape")  # (legacy name: beta)


@dataclass(frozen=True)
class Embedding:  # nn.Embedding
    weight: np.ndarray = tensor("num_embeddings", "embedding_dim")


# ---------------------------------------------------------------- BERT

# the dims of a [H, H] projection and of a LayerNorm over H, used all over BERT
HH = dict(out_features="hidden_size", in_features="hidden_size")
NORM_H = dict(normalized_shape="hidden_size")


@dataclass(frozen=True)
class Embeddings:  # BertEmbeddings
    word_embeddings: Embedding = module(num_embeddings="vocab_size", embedding_dim="hidden_size")  # [V, H]
    position_embeddings: Embedding = module(num_embeddings="max_position_embeddings",
                                            embedding_dim="hidden_size")  # [P, H]
    token_type_embeddings: Embedding = module(num_embeddings="type_vocab_size", embedding_dim="hidden_size")  # [Y, H]
    LayerNorm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class SelfAttention:  # BertSelfAttention
    query: Linear = module(**HH)  # [H, H]
    key: Linear = module(**HH)  # [H, H]
    value: Linear = module(**HH)  # [H, H]


@dataclass(frozen=True)
class SelfOutput:  # BertSelfOutput
    dense: Linear = module(**HH)  # [H, H]
    LayerNorm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class Attention:  # BertAttention
    self: SelfAttention = module()  # (dataclasses allow a field named `self`; it keeps the key path)
    output: SelfOutput = module()


@dataclass(frozen=True)
class Intermediate:  # BertIntermediate
    dense: Linear = module(out_features="intermediate_size", in_features="hidden_size")  # [I, H]


@dataclass(frozen=True)
class Output:  # BertOutput
    dense: Linear = module(out_features="hidden_size", in_features="intermediate_size")  # [H, I]
    LayerNorm: LayerNorm = module(**NORM_H)


@dataclass(frozen=True)
class Layer:  # BertLayer
    attention: Attention = module()
    intermediate: Intermediate = module()
    output: Output = module()


@dataclass(frozen=True)
class Encoder:  # BertEncoder
    layer: tuple[Layer, ...] = stack("num_hidden_layers")


@dataclass(frozen=True)
class Pooler:  # BertPooler
    dense: Linear = module(**HH)  # [H, H]


@dataclass(frozen=True)
class BertWeights:  # BertModel (+ the classifier of BertForSequenceClassification)
    embeddings: Embeddings = module()
    encoder: Encoder = module()
    pooler: Pooler | None = module(optional=True)  # None: checkpoint saved with add_pooling_layer=False
    classifier: Linear | None = module(optional=True, out_features="num_labels",
                                       in_features="hidden_size")  # [C, H]; None: a plain BertModel

    def num_parameters(self) -> int:
        return sum(a.size for _, a in iter_tensors(self))


# ---------------------------------------------------------------- walking a tree


def _size(dim, bound: dict, config) -> int:
    return dim if isinstance(dim, int) else bound[dim] if dim in bound else getattr(config, dim)


def _node_type(hint):
    """The dataclass a field holds: Linear, Linear | None, tuple[Layer, ...] -> Linear, Linear, Layer."""
    if is_dataclass(hint):
        return hint
    return next(arg for arg in get_args(hint) if is_dataclass(arg))


def build(tree: type, config, take, present=lambda key: True, *, bound=None, prefix=""):
    """Assemble a `tree` (a declared dataclass) for `config`, walking its declaration.

    take(key, shape) gives the array for each tensor (and may check it); present(key) says
    whether an optional submodule is in the checkpoint. Keys are attribute paths.
    """
    bound = bound or {}
    hints = get_type_hints(tree)
    values = {}
    for f in fields(tree):
        key = f"{prefix}.{f.name}" if prefix else f.name
        meta = f.metadata
        if "dims" in meta:
            values[f.name] = take(key, tuple(_size(d, bound, config) for d in meta["dims"]))
            continue
        child = _node_type(hints[f.name])
        inner = {**bound, **{k: _size(v, bound, config) for k, v in meta["bind"].items()}}
        if "count" in meta:
            values[f.name] = tuple(build(child, config, take, present, bound=inner, prefix=f"{key}.{i}")
                                   for i in range(_size(meta["count"], bound, config)))
        elif meta["optional"] and not present(key):
            values[f.name] = None
        else:
            values[f.name] = build(child, config, take, present, bound=inner, prefix=key)
    return tree(**values)


def expected_shapes(tree: type, config, present=lambda key: True) -> dict[str, tuple]:
    """Every key a checkpoint of `tree` with this config holds, and the shape it must have."""
    shapes = {}
    build(tree, config, lambda key, shape: shapes.setdefault(key, shape), present)
    return shapes


def iter_tensors(node, prefix=""):
    """Yield (key, array) for every tensor in the tree, keys as in the checkpoint."""
    if node is None:
        return
    if isinstance(node, np.ndarray):
        yield prefix, node
    elif isinstance(node, tuple):
        for i, child in enumerate(node):
            yield from iter_tensors(child, f"{prefix}.{i}")
    elif is_dataclass(node):
        for f in fields(node):
            yield from iter_tensors(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name)


# ---------------------------------------------------------------- reading safetensors

# Buffers that transformers saves but that are not weights (positions are recomputed).
_IGNORED_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Heads of other tasks that may sit in a checkpoint next to the encoder: BERT's, and the
# pre-training heads of the other families (numbert.families), which load as the base model.
_OTHER_HEADS = ("cls.", "qa_outputs.", "lm_head.", "vocab_transform.", "vocab_layer_norm.", "vocab_projector.",
                "discriminator_predictions.", "generator_predictions.", "generator_lm_head.")


def canonical_key(key: str, prefix: str = "bert.") -> str:
    """The base model's key for a stored key: drop the prefix (`bert.`, `roberta.` ...), rename legacy gamma/beta."""
    if key.startswith(prefix):
        key = key[len(prefix):]
    if ".LayerNorm." in key or key.startswith("LayerNorm."):
        key = key.replace(".gamma", ".weight").replace(".beta", ".bias")
    return key


def _read_header(path: Path) -> dict:
    # A safetensors file: 8-byte little-endian header length, a JSON header mapping each
    # key to {dtype, shape, data_offsets}, then the raw little-endian tensor bytes.
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        header = json.loads(fh.read(n))
    header.pop("__metadata__", None)
    return {"_data_start": 8 + n, **header}


def _bf16_to_f32(raw: np.ndarray) -> np.ndarray:
    # bfloat16 is the top half of a float32: shift its 16 bits up and reinterpret.
    return (raw.astype(np.uint32) << 16).view(np.float32)


_ITEMSIZE = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}


def _header_problem(path: Path) -> str:
    """Which tensor a corrupt file's header is wrong about (safetensors' own message names none); "" if unknown."""
    try:
        header = _read_header(path)
        data_len = path.stat().st_size - header.pop("_data_start")
        entries = sorted((info["data_offsets"][0], info["data_offsets"][1], key, info) for key, info in header.items())
        expected_start = 0
        for start, end, key, info in entries:
            needed = int(np.prod(info["shape"], dtype=np.int64)) * _ITEMSIZE.get(info["dtype"], 0)
            if end - start != needed and info["dtype"] in _ITEMSIZE:
                return (f"tensor {key!r}: shape {list(info['shape'])} of {info['dtype']} needs {needed} bytes, "
                        f"its data_offsets [{start}, {end}] hold {end - start}")
            if start != expected_start:
                return f"tensor {key!r} starts at data byte {start}, expected {expected_start} (overlap or gap)"
            if end > data_len:
                return f"tensor {key!r} ends at data byte {end}, but the file holds only {data_len} bytes of data"
            expected_start = end
        if expected_start != data_len:
            return f"the header accounts for {expected_start} bytes of data, the file holds {data_len}"
    except Exception:  # the header itself is unreadable: safetensors' message says why
        return ""
    return ""


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """All tensors of one safetensors file as float32 arrays (ints kept as they are)."""
    try:  # safetensors reports a file it may not open as "No such file or directory": ask first
        open(path, "rb").close()
    except OSError as e:
        raise CheckpointError(f"{path}: cannot be read ({e.strerror or e})") from None
    try:
        out = {}
        with safe_open(str(path), framework="numpy") as f:
            keys = list(f.keys())
            bf16 = [k for k in keys if f.get_slice(k).get_dtype() == "BF16"]
            for k in keys:
                if k not in bf16:
                    out[k] = f.get_tensor(k)
        if bf16:  # NumPy has no bfloat16 dtype: read the raw bits (safe_open validated the offsets)
            header = _read_header(path)
            with open(path, "rb") as fh:
                for k in bf16:
                    start, end = header[k]["data_offsets"]
                    fh.seek(header["_data_start"] + start)
                    raw = np.frombuffer(fh.read(end - start), dtype="<u2")
                    out[k] = _bf16_to_f32(raw).reshape(header[k]["shape"])
    except (SafetensorError, OSError, ValueError, KeyError, struct.error) as e:
        problem = _header_problem(path)
        raise CheckpointError(f"{path}: not a readable safetensors file ({type(e).__name__}: {e})"
                              + (f"; {problem}" if problem else "")) from None
    for k, a in out.items():
        if a.dtype in (np.float16, np.float64):
            out[k] = a.astype(np.float32)
    return out


def checkpoint_files(folder: Path) -> list[Path]:
    """The safetensors files of a checkpoint folder: one file, or the shards of an index."""
    index = folder / INDEX_FILE
    if index.is_file():
        try:
            weight_map = json.loads(index.read_text(encoding="utf-8"))["weight_map"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise CheckpointError(f"{index}: unreadable shard index ({e})") from None
        shards = [folder / name for name in dict.fromkeys(weight_map.values())]
        missing = [str(s) for s in shards if not s.is_file()]
        if missing:
            raise CheckpointError(f"{index} lists shards that are missing: {', '.join(missing)}")
        return shards
    single = folder / SINGLE_FILE
    if single.is_file():
        return [single]
    found = sorted(p.name for p in folder.glob("*.safetensors"))
    if len(found) == 1:
        return [folder / found[0]]
    hint = " (found a pytorch_model.bin: numbert reads only safetensors; convert it with transformers' save_pretrained(..., safe_serialization=True))" if (folder / "pytorch_model.bin").exists() else ""
    raise CheckpointError(f"{folder}: no {SINGLE_FILE} or {INDEX_FILE}{hint}")


# ---------------------------------------------------------------- building the tree


def load_weights(folder: str | Path, config: BertConfig, *, num_labels=None, seed=0,
                 tree: type = BertWeights, prefix: str = "bert.") -> tuple[BertWeights, BertConfig]:
    """Read, check and assemble the weights of a checkpoint folder as a `tree` (a declared dataclass).

    prefix: the base model's key prefix in a head checkpoint (`bert.`; a family's in numbert.families).
    Returns the weights and the config (changed only when num_labels adds a new head).
    """
    folder = Path(folder)
    tensors, origin = read_checkpoint(folder, prefix)
    where = ", ".join(sorted({str(p) for p in origin.values()})) or str(folder)
    if tree is BertWeights:  # BERT's classifier reads the pooler; the other families' heads read the tokens
        check_heads(tensors, origin, num_labels, where)
    new_head = num_labels is not None and not _present(tensors, "classifier")
    if new_head:  # as BertForSequenceClassification.from_pretrained on a BertModel checkpoint
        head, config = new_classifier(config, num_labels, seed)
        tensors.update({"classifier.weight": head.weight, "classifier.bias": head.bias})
    taken = set()  # the keys the tree reads
    weights = build(tree, config, checked_take(tensors, origin, where, taken),
                    present=lambda key: _present(tensors, key))
    warn_unexpected(folder, [k for k in tensors if k not in taken])
    if new_head:
        warnings.warn(
            f"Some weights of BertForSequenceClassification were not initialized from the checkpoint at "
            f"{folder} and are newly initialized: ['classifier.bias', 'classifier.weight'] (seed={seed}). "
            "You should fine-tune this model before using its predictions.", stacklevel=3)
    return weights, config


def read_checkpoint(folder: Path, prefix: str = "bert.") -> tuple[dict[str, np.ndarray], dict[str, Path]]:
    """Every tensor of the folder's safetensors files under its canonical key, and the file it came from."""
    tensors: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {}
    for path in checkpoint_files(folder):
        for key, array in read_safetensors(path).items():
            key = canonical_key(key, prefix)
            tensors[key] = array
            origin[key] = path
    return tensors, origin


def _present(tensors, prefix: str) -> bool:  # does the checkpoint hold this submodule?
    return any(k.startswith(prefix + ".") for k in tensors)


def check_heads(tensors, origin, num_labels, where: str) -> None:
    """The classification head reads the pooler, and a trained head fixes the number of labels."""
    has_pooler, has_classifier = _present(tensors, "pooler"), _present(tensors, "classifier")
    if (has_classifier or num_labels is not None) and not has_pooler:
        raise CheckpointError(f"missing tensors 'pooler.dense.weight' / 'pooler.dense.bias' in {where}: a "
                              "classification head reads the pooled [CLS] vector, and this checkpoint has no pooler "
                              "(saved with add_pooling_layer=False)")
    if has_classifier and num_labels is not None and "classifier.weight" in tensors:
        stored = tensors["classifier.weight"].shape[0]
        if stored != num_labels:
            raise CheckpointError(f"num_labels={num_labels} was asked for, but {origin['classifier.weight']} "
                                  f"holds a trained classifier with {stored} labels")


def checked_take(tensors, origin, where: str, taken: set):
    """take(key, shape) for `build`: the tensor, once it is there with that shape and a float dtype."""
    def take(key, shape):
        if key not in tensors:
            raise CheckpointError(f"missing tensor {key!r} (expected shape {list(shape)}) in {where}")
        found = tuple(tensors[key].shape)
        if found != shape:
            raise CheckpointError(
                f"tensor {key!r} in {origin[key]} has shape {list(found)}, expected {list(shape)} from config.json"
            )
        if tensors[key].dtype != np.float32:
            raise CheckpointError(f"tensor {key!r} in {origin[key]} has dtype {tensors[key].dtype}, expected a float type")
        if key in origin:  # read from a file (a new head is drawn here, finite by construction)
            check_finite(key, tensors[key], origin[key])
        taken.add(key)
        return tensors[key]

    return take


def check_finite(key: str, a: np.ndarray, path: Path) -> None:
    # One NaN or inf in a weight turns every score it touches into NaN: a silently wrong label
    # with exit code 0. Refuse it at load, where the tensor and the file can still be named.
    if not np.isfinite(a).all():
        bad = np.argwhere(~np.isfinite(a))
        where = tuple(int(i) for i in bad[0])
        raise CheckpointError(f"tensor {key!r} in {path} holds {len(bad)} non-finite value(s) "
                              f"(first: {a[where]} at index {list(where)}); the checkpoint is corrupt")


def warn_unexpected(folder: Path, left: list[str]) -> None:
    """Warn about tensors no field reads, except buffers and the heads of other tasks."""
    unexpected = sorted(k for k in left if k not in _IGNORED_KEYS)
    others = [k for k in unexpected if not k.startswith(_OTHER_HEADS)]
    if others:
        warnings.warn(f"{folder}: checkpoint has {len(others)} unexpected tensors that numbert ignores: "
                      f"{', '.join(others[:10])}{' ...' if len(others) > 10 else ''}", stacklevel=4)


def new_classifier(config: BertConfig, num_labels: int, seed: int) -> tuple[Linear, BertConfig]:
    """A fresh classification head, initialised as transformers does (normal(0, initializer_range), zero bias)."""
    positive_int(num_labels, "num_labels")
    rng = np.random.default_rng(seed)
    weight = rng.normal(0.0, config.initializer_range, size=(num_labels, config.hidden_size)).astype(np.float32)
    bias = np.zeros(num_labels, dtype=np.float32)
    if config.num_labels == num_labels and len(config.id2label) == num_labels:
        id2label = config.id2label
    else:
        id2label = {i: f"LABEL_{i}" for i in range(num_labels)}
    config = replace(config, num_labels=num_labels, id2label=id2label,
                     label2id={v: k for k, v in id2label.items()})
    return Linear(weight, bias), config
