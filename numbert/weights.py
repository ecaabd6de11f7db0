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
from dataclasses import dataclass, fields, is_dataclass, replace
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from .config import BertConfig
from .errors import CheckpointError

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"

# ---------------------------------------------------------------- the tree


@dataclass(frozen=True)
class Linear:  # nn.Linear
    weight: np.ndarray  # [out, in]
    bias: np.ndarray  # [out]


@dataclass(frozen=True)
class LayerNorm:  # nn.LayerNorm
    weight: np.ndarray  # [H]  (legacy name: gamma)
    bias: np.ndarray  # [H]    (legacy name: beta)


@dataclass(frozen=True)
class Embedding:  # nn.Embedding
    weight: np.ndarray  # [rows, H]


@dataclass(frozen=True)
class Embeddings:  # BertEmbeddings
    word_embeddings: Embedding  # [V, H]
    position_embeddings: Embedding  # [P, H]
    token_type_embeddings: Embedding  # [Y, H]
    LayerNorm: LayerNorm


@dataclass(frozen=True)
class SelfAttention:  # BertSelfAttention
    query: Linear  # [H, H]
    key: Linear  # [H, H]
    value: Linear  # [H, H]
    # Filled by a backend's prepare() only: query, key and value stacked as one [3H, H]
    # matrix so the three projections are one GEMM. Never read from a checkpoint.
    qkv: Linear | None = None


@dataclass(frozen=True)
class SelfOutput:  # BertSelfOutput
    dense: Linear  # [H, H]
    LayerNorm: LayerNorm


@dataclass(frozen=True)
class Attention:  # BertAttention
    self: SelfAttention  # (dataclasses allow a field named `self`; it keeps the key path)
    output: SelfOutput


@dataclass(frozen=True)
class Intermediate:  # BertIntermediate
    dense: Linear  # [I, H]


@dataclass(frozen=True)
class Output:  # BertOutput
    dense: Linear  # [H, I]
    LayerNorm: LayerNorm


@dataclass(frozen=True)
class Layer:  # BertLayer
    attention: Attention
    intermediate: Intermediate
    output: Output


@dataclass(frozen=True)
class Encoder:  # BertEncoder
    layer: tuple[Layer, ...]


@dataclass(frozen=True)
class Pooler:  # BertPooler
    dense: Linear  # [H, H]


@dataclass(frozen=True)
class BertWeights:  # BertModel (+ the classifier of BertForSequenceClassification)
    embeddings: Embeddings
    encoder: Encoder
    pooler: Pooler | None  # None: checkpoint saved with add_pooling_layer=False
    classifier: Linear | None  # None: no classification head (a plain BertModel)

    def num_parameters(self) -> int:
        return sum(a.size for _, a in iter_tensors(self))


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
            if f.name == "qkv":  # derived by a backend, not a checkpoint tensor
                continue
            yield from iter_tensors(getattr(node, f.name), f"{prefix}.{f.name}" if prefix else f.name)


def expected_shapes(config: BertConfig, with_pooler=True, with_classifier=True) -> dict[str, tuple]:
    """Every key a BERT checkpoint with this config holds, and the shape it must have."""
    H, I = config.hidden_size, config.intermediate_size
    shapes = {
        "embeddings.word_embeddings.weight": (config.vocab_size, H),
        "embeddings.position_embeddings.weight": (config.max_position_embeddings, H),
        "embeddings.token_type_embeddings.weight": (config.type_vocab_size, H),
        "embeddings.LayerNorm.weight": (H,),
        "embeddings.LayerNorm.bias": (H,),
    }
    for i in range(config.num_hidden_layers):
        p = f"encoder.layer.{i}."
        for name in ("attention.self.query", "attention.self.key", "attention.self.value",
                     "attention.output.dense"):
            shapes[p + name + ".weight"] = (H, H)
            shapes[p + name + ".bias"] = (H,)
        shapes[p + "intermediate.dense.weight"] = (I, H)
        shapes[p + "intermediate.dense.bias"] = (I,)
        shapes[p + "output.dense.weight"] = (H, I)
        shapes[p + "output.dense.bias"] = (H,)
        for name in ("attention.output.LayerNorm", "output.LayerNorm"):
            shapes[p + name + ".weight"] = (H,)
            shapes[p + name + ".bias"] = (H,)
    if with_pooler:
        shapes["pooler.dense.weight"] = (H, H)
        shapes["pooler.dense.bias"] = (H,)
    if with_classifier:
        shapes["classifier.weight"] = (config.num_labels, H)
        shapes["classifier.bias"] = (config.num_labels,)
    return shapes


# ---------------------------------------------------------------- reading safetensors

# Buffers that transformers saves but that are not weights (positions are recomputed).
_IGNORED_KEYS = ("embeddings.position_ids", "embeddings.token_type_ids")
# Heads of other BERT tasks that may sit in a checkpoint next to the encoder.
_OTHER_HEADS = ("cls.", "qa_outputs.")


def canonical_key(key: str) -> str:
    """The BertModel key for a stored key: drop `bert.`, rename legacy gamma/beta."""
    if key.startswith("bert."):
        key = key[len("bert."):]
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


def load_weights(folder: str | Path, config: BertConfig, *, num_labels=None, seed=0) -> tuple[BertWeights, BertConfig]:
    """Read, check and assemble the weights of a checkpoint folder.

    Returns the weights and the config (changed only when num_labels adds a new head).
    """
    folder = Path(folder)
    tensors: dict[str, np.ndarray] = {}
    origin: dict[str, Path] = {}
    for path in checkpoint_files(folder):
        for key, array in read_safetensors(path).items():
            key = canonical_key(key)
            tensors[key] = array
            origin[key] = path

    has_pooler = any(k.startswith("pooler.") for k in tensors)
    has_classifier = any(k.startswith("classifier.") for k in tensors)
    if (has_classifier or num_labels is not None) and not has_pooler:
        where = ", ".join(sorted({str(p) for p in origin.values()})) or str(folder)
        raise CheckpointError(f"missing tensors 'pooler.dense.weight' / 'pooler.dense.bias' in {where}: a "
                              "classification head reads the pooled [CLS] vector, and this checkpoint has no pooler "
                              "(saved with add_pooling_layer=False)")
    if has_classifier and num_labels is not None and "classifier.weight" in tensors:
        stored = tensors["classifier.weight"].shape[0]
        if stored != num_labels:
            raise CheckpointError(f"num_labels={num_labels} was asked for, but {origin['classifier.weight']} "
                                  f"holds a trained classifier with {stored} labels")
    shapes = expected_shapes(config, with_pooler=has_pooler, with_classifier=has_classifier)
    for key, shape in shapes.items():
        if key not in tensors:
            where = ", ".join(sorted({str(p) for p in origin.values()})) or str(folder)
            raise CheckpointError(f"missing tensor {key!r} (expected shape {list(shape)}) in {where}")
        found = tuple(tensors[key].shape)
        if found != shape:
            raise CheckpointError(
                f"tensor {key!r} in {origin[key]} has shape {list(found)}, expected {list(shape)} from config.json"
            )
        if tensors[key].dtype != np.float32:
            raise CheckpointError(f"tensor {key!r} in {origin[key]} has dtype {tensors[key].dtype}, expected a float type")
    unexpected = sorted(k for k in tensors if k not in shapes and k not in _IGNORED_KEYS)
    heads = [k for k in unexpected if k.startswith(_OTHER_HEADS)]
    others = [k for k in unexpected if k not in heads]
    if others:
        warnings.warn(f"{folder}: checkpoint has {len(others)} unexpected tensors that numbert ignores: "
                      f"{', '.join(others[:10])}{' ...' if len(others) > 10 else ''}", stacklevel=3)

    if has_classifier:
        classifier = Linear(tensors["classifier.weight"], tensors["classifier.bias"])
    elif num_labels is not None:
        classifier, config = new_classifier(config, num_labels, seed)
        warnings.warn(
            f"Some weights of BertForSequenceClassification were not initialized from the checkpoint at "
            f"{folder} and are newly initialized: ['classifier.bias', 'classifier.weight'] (seed={seed}). "
            "You should fine-tune this model before using its predictions.", stacklevel=3)
    else:
        classifier = None

    def lin(p):
        return Linear(tensors[p + ".weight"], tensors[p + ".bias"])

    def ln(p):
        return LayerNorm(tensors[p + ".weight"], tensors[p + ".bias"])

    layers = tuple(
        Layer(
            attention=Attention(
                self=SelfAttention(query=lin(f"encoder.layer.{i}.attention.self.query"),
                                   key=lin(f"encoder.layer.{i}.attention.self.key"),
                                   value=lin(f"encoder.layer.{i}.attention.self.value")),
                output=SelfOutput(dense=lin(f"encoder.layer.{i}.attention.output.dense"),
                                  LayerNorm=ln(f"encoder.layer.{i}.attention.output.LayerNorm")),
            ),
            intermediate=Intermediate(dense=lin(f"encoder.layer.{i}.intermediate.dense")),
            output=Output(dense=lin(f"encoder.layer.{i}.output.dense"),
                          LayerNorm=ln(f"encoder.layer.{i}.output.LayerNorm")),
        )
        for i in range(config.num_hidden_layers)
    )
    weights = BertWeights(
        embeddings=Embeddings(
            word_embeddings=Embedding(tensors["embeddings.word_embeddings.weight"]),
            position_embeddings=Embedding(tensors["embeddings.position_embeddings.weight"]),
            token_type_embeddings=Embedding(tensors["embeddings.token_type_embeddings.weight"]),
            LayerNorm=ln("embeddings.LayerNorm"),
        ),
        encoder=Encoder(layer=layers),
        pooler=Pooler(dense=lin("pooler.dense")) if has_pooler else None,
        classifier=classifier,
    )
    return weights, config


def new_classifier(config: BertConfig, num_labels: int, seed: int) -> tuple[Linear, BertConfig]:
    """A fresh classification head, initialised as transformers does (normal(0, initializer_range), zero bias)."""
    if not isinstance(num_labels, int) or isinstance(num_labels, bool) or num_labels < 1:
        raise ValueError(f"num_labels must be a positive integer, found {num_labels!r}")
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
