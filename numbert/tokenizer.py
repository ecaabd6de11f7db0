"""Text to ids with Hugging Face `tokenizers`, padded and truncated as transformers does.

`Tokenizer(...)(texts, text_pairs)` returns a `Batch` equal to what
`transformers.AutoTokenizer.from_pretrained(folder)(texts, text_pairs, padding=True,
truncation=True)` gives: [CLS] text [SEP] (pair [SEP]), padded on the right to the longest
sequence, truncated longest-first to min(model_max_length, max_position_embeddings).
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.processors import TemplateProcessing

from .config import BertConfig
from .errors import CheckpointError, positive_int

TOKENIZER_FILE = "tokenizer.json"
VOCAB_FILE = "vocab.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
BPE_FILES = ("vocab.json", "merges.txt")  # RoBERTa's byte-level BPE, as transformers' RobertaTokenizer reads them
# The families whose tokenizers read pairs as <s> A </s></s> B </s> and pad with <pad> (numbert.families)
FAIRSEQ_FAMILIES = ("roberta", "xlm-roberta", "mpnet")


@dataclass(frozen=True, eq=False)
class Batch(Mapping):
    """Model inputs, each np.int64 [B, T]. A Mapping of the three arrays, so `model(**batch)` works."""

    input_ids: np.ndarray  # [B, T] token ids, [PAD] after the end of each text
    attention_mask: np.ndarray  # [B, T] 1 for a real token, 0 for padding
    token_type_ids: np.ndarray  # [B, T] 0 for the first text, 1 for the pair
    tokens: list[list[str]] = field(default_factory=list, compare=False)  # the token strings, for people

    _KEYS = ("input_ids", "attention_mask", "token_type_ids")

    def __getitem__(self, key):
        if key not in self._KEYS:
            raise KeyError(key)
        return getattr(self, key)

    def __iter__(self):
        return iter(self._KEYS)

    def __len__(self):
        return len(self._KEYS)


def check_texts(texts, name="texts") -> list[str]:
    """A list of str from a str or a sequence of str; TypeError naming the first bad index."""
    if isinstance(texts, str):
        texts = [texts]
    elif isinstance(texts, (bytes, bytearray, memoryview)):  # iterating would give ints
        raise TypeError(f"{name} must be a str or a list of str, found {type(texts).__name__}: decode it first "
                        "(e.g. .decode('utf-8'))")
    elif isinstance(texts, Mapping):  # iterating would give its keys, silently
        raise TypeError(f"{name} must be a str or a list of str, found {type(texts).__name__}: pass "
                        "list(d.values()) for its values or list(d) for its keys")
    elif texts is None or not hasattr(texts, "__iter__"):
        raise TypeError(f"{name} must be a str or a list of str, found {type(texts).__name__}")
    texts = list(texts)
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise TypeError(f"{name}[{i}] is {type(t).__name__} ({t!r:.40}), expected str")
        try:
            t.encode("utf-8")
        except UnicodeEncodeError as e:  # a lone surrogate: the tokenizer would fail with a type error
            raise ValueError(f"{name}[{i}] holds a lone surrogate {t[e.start]!r} at character {e.start}, which is "
                             "not text (often undecodable bytes read with errors='surrogateescape'); decode the "
                             "input as UTF-8, or replace the character") from None
    return texts


class Tokenizer:
    """A checkpoint's tokenizer, safe to call from many threads at once.

    `tokenizers` keeps truncation and padding as settings *on the tokenizer object*. Setting them
    per call on one shared object let concurrent calls overwrite each other's settings mid-call
    (ragged batches, texts cut at another call's max_length). So `self.backend` is never changed
    after __init__ (it neither truncates nor pads), and each max_length gets its own copy, set up
    once when made and only read afterwards (`_encoder`).
    """

    ENCODERS_KEPT = 8  # copies kept, one per recent max_length (each a few MB for a 30k vocabulary)

    def __init__(self, backend: HFTokenizer, model_max_length: int, pad_token: str = "[PAD]"):
        self.backend = backend
        self._encoders: OrderedDict = OrderedDict()  # max_length -> configured copy, most recent last
        self._encoders_lock = threading.Lock()
        self.model_max_length = model_max_length
        self.pad_token = pad_token
        self.pad_token_id = backend.token_to_id(pad_token)
        if self.pad_token_id is None:
            raise CheckpointError(f"the tokenizer's vocabulary has no pad token {pad_token!r}")
        backend.no_padding()
        backend.no_truncation()
        if backend.post_processor is None:
            # A tokenizer.json saved without a post-processor: BERT always reads
            # [CLS] A [SEP] (B [SEP]), and transformers' BertTokenizer adds that template too.
            cls_id, sep_id = backend.token_to_id("[CLS]"), backend.token_to_id("[SEP]")
            if cls_id is None or sep_id is None:
                raise CheckpointError("the tokenizer has no post-processor and no [CLS] / [SEP] tokens to build one")
            backend.post_processor = TemplateProcessing(
                single="[CLS]:0 $A:0 [SEP]:0", pair="[CLS]:0 $A:0 [SEP]:0 $B:1 [SEP]:1",
                special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)])

    @classmethod
    def from_folder(cls, folder: str | Path, config: BertConfig) -> "Tokenizer":
        folder = Path(folder)
        tok_config = {}
        if (folder / TOKENIZER_CONFIG_FILE).is_file():
            try:
                tok_config = json.loads((folder / TOKENIZER_CONFIG_FILE).read_text(encoding="utf-8"))
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{folder / TOKENIZER_CONFIG_FILE}: unreadable ({e})") from None
        if (folder / TOKENIZER_FILE).is_file():
            try:
                backend = HFTokenizer.from_file(str(folder / TOKENIZER_FILE))
            except Exception as e:  # tokenizers raises a bare Exception on a bad file
                raise CheckpointError(f"{folder / TOKENIZER_FILE}: unreadable tokenizer ({e})") from None
        elif all((folder / name).is_file() for name in BPE_FILES):
            backend = byte_level_bpe_from_files(folder / BPE_FILES[0], folder / BPE_FILES[1], tok_config)
        elif (folder / VOCAB_FILE).is_file():
            backend = wordpiece_from_vocab(folder / VOCAB_FILE, tok_config,
                                           fairseq=config.model_type in FAIRSEQ_FAMILIES)  # MPNet's vocab.txt
        else:
            raise CheckpointError(f"{folder}: no {TOKENIZER_FILE} or {VOCAB_FILE} (or {' + '.join(BPE_FILES)}); "
                                  "numbert needs one of them to tokenize (a SentencePiece .model file alone is not "
                                  "read: save the tokenizer with transformers to get tokenizer.json)")
        # transformers' AutoTokenizer takes model_max_length from tokenizer_config.json; without
        # one it would not truncate at all, but the model cannot read past its position table.
        # (config.max_tokens: the position table's rows, less RoBERTa's and MPNet's offset)
        model_max_length = int(min(tok_config.get("model_max_length", config.max_tokens), config.max_tokens))
        default_pad = "<pad>" if config.model_type in FAIRSEQ_FAMILIES else "[PAD]"  # the tokenizer classes' default
        pad_token = tok_config.get("pad_token", default_pad)
        if isinstance(pad_token, dict):  # AddedToken serialised as a dict
            pad_token = pad_token.get("content", default_pad)
        return cls(backend, model_max_length, pad_token)

    def __call__(self, texts, text_pairs=None, max_length=None) -> Batch:
        texts = check_texts(texts)
        pairs = None
        if text_pairs is not None:
            pairs = check_texts(text_pairs, "text_pairs")
            if len(pairs) != len(texts):
                raise ValueError(f"text_pairs has {len(pairs)} texts but texts has {len(texts)}; they must pair up")
        if max_length is None:
            max_length = self.model_max_length
        elif positive_int(max_length, "max_length") > self.model_max_length:
            raise ValueError(f"max_length {max_length} exceeds what this model can read ({self.model_max_length} tokens)")
        self.check_room(max_length, pair=pairs is not None)
        if not texts:
            empty = np.zeros((0, 0), dtype=np.int64)
            return Batch(empty, empty.copy(), empty.copy(), [])

        try:
            inputs = list(zip(texts, pairs)) if pairs is not None else texts
            encodings = self._encoder(max_length).encode_batch(inputs, add_special_tokens=True)
        except Exception as e:
            raise ValueError(f"cannot tokenize with max_length={max_length}: {e}") from None
        return Batch(
            input_ids=np.array([e.ids for e in encodings], dtype=np.int64),  # [B, T]
            attention_mask=np.array([e.attention_mask for e in encodings], dtype=np.int64),  # [B, T]
            token_type_ids=np.array([e.type_ids for e in encodings], dtype=np.int64),  # [B, T]
            tokens=[e.tokens for e in encodings],
        )

    def check_room(self, max_length: int, pair: bool = False):
        """Refuse a max_length too short to hold the special tokens ([CLS] a [SEP], [CLS] a [SEP] b [SEP]).

        Below that, `tokenizers` (and transformers' AutoTokenizer with it) silently does not truncate
        at all: max_length=1 would read a 1,000-word text whole.
        """
        special = self.backend.num_special_tokens_to_add(pair)
        if max_length < special:
            form = "[CLS] text [SEP] pair [SEP]" if pair else "[CLS] text [SEP]"
            raise ValueError(f"max_length={max_length} is too short: each {'text pair' if pair else 'text'} needs "
                             f"{special} special tokens ({form}); give max_length >= {special}")

    def _encoder(self, max_length: int) -> HFTokenizer:
        """A private copy of the backend that truncates (longest first) at max_length and pads to the longest."""
        with self._encoders_lock:
            encoder = self._encoders.get(max_length)
            if encoder is None:
                encoder = HFTokenizer.from_str(self.backend.to_str())
                encoder.enable_truncation(max_length, strategy="longest_first")
                encoder.enable_padding(pad_id=self.pad_token_id, pad_token=self.pad_token, pad_type_id=0)
                self._encoders[max_length] = encoder
                while len(self._encoders) > self.ENCODERS_KEPT:  # a caller still holding one keeps it alive
                    self._encoders.popitem(last=False)
            self._encoders.move_to_end(max_length)
            return encoder

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Untruncated token count of each text, special tokens included."""
        return [len(e.ids) for e in self.backend.encode_batch(texts, add_special_tokens=True)]

    def piece_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's token ids, untruncated and without [CLS] / [SEP]."""
        return [e.ids for e in self.backend.encode_batch(texts, add_special_tokens=False)]

    def special_ids(self) -> tuple[list[int], list[int]]:
        """The ids the post-processor puts before and after one text: ([CLS], [SEP]) or RoBERTa's (<s>, </s>)."""
        e = self.backend.encode("a", add_special_tokens=True)
        first = e.special_tokens_mask.index(0)  # the text's first token
        last = len(e.ids) - e.special_tokens_mask[::-1].index(0)  # one past its last
        return e.ids[:first], e.ids[last:]


def wordpiece_from_vocab(vocab: Path, tok_config: dict, fairseq: bool = False) -> HFTokenizer:
    """The BERT WordPiece pipeline for a checkpoint that ships only vocab.txt.

    The same pipeline transformers' converter builds from a slow BertTokenizer: BertNormalizer
    (clean text, split CJK, lowercase and strip accents if uncased), BertPreTokenizer,
    WordPiece, [CLS] ... [SEP] template. fairseq (MPNet's MPNetTokenizer): <s> A </s></s> B </s>.
    """
    from tokenizers.implementations import BertWordPieceTokenizer
    from tokenizers.processors import RobertaProcessing

    lowercase = bool(tok_config.get("do_lower_case", True))
    cls_token, sep_token, pad_token, mask_token = (("<s>", "</s>", "<pad>", "<mask>") if fairseq
                                                   else ("[CLS]", "[SEP]", "[PAD]", "[MASK]"))
    try:
        wrapper = BertWordPieceTokenizer(
            str(vocab),
            unk_token=tok_config.get("unk_token", "[UNK]") if isinstance(tok_config.get("unk_token", "[UNK]"), str) else "[UNK]",
            sep_token=sep_token, cls_token=cls_token, pad_token=pad_token, mask_token=mask_token,
            clean_text=True,
            handle_chinese_chars=bool(tok_config.get("tokenize_chinese_chars", True)),
            strip_accents=tok_config.get("strip_accents"),
            lowercase=lowercase,
        )
    except Exception as e:
        raise CheckpointError(f"{vocab}: cannot build a WordPiece tokenizer ({e})") from None
    if fairseq:
        backend = wrapper._tokenizer
        backend.post_processor = RobertaProcessing((sep_token, backend.token_to_id(sep_token)),
                                                   (cls_token, backend.token_to_id(cls_token)))
    return wrapper._tokenizer


def byte_level_bpe_from_files(vocab: Path, merges: Path, tok_config: dict) -> HFTokenizer:
    """RoBERTa's byte-level BPE for a checkpoint that ships vocab.json + merges.txt (no tokenizer.json).

    As transformers' RobertaTokenizer builds it: ByteLevel pre-tokenizer (add_prefix_space from
    tokenizer_config.json, default False), BPE, <s> A </s></s> B </s> (RobertaProcessing).
    """
    from tokenizers.implementations import ByteLevelBPETokenizer
    from tokenizers.processors import RobertaProcessing

    add_prefix_space = bool(tok_config.get("add_prefix_space", False))
    try:
        backend = ByteLevelBPETokenizer(str(vocab), str(merges), add_prefix_space=add_prefix_space)._tokenizer
    except Exception as e:
        raise CheckpointError(f"{vocab}, {merges}: cannot build a byte-level BPE tokenizer ({e})") from None
    specials = [t for t in ("<s>", "<pad>", "</s>", "<unk>", "<mask>") if backend.token_to_id(t) is not None]
    backend.add_special_tokens(specials)  # so that "<mask>" in a text is one token, as transformers reads it
    if backend.token_to_id("<s>") is None or backend.token_to_id("</s>") is None:
        raise CheckpointError(f"{vocab}: no <s> / </s> tokens for RoBERTa's <s> A </s> template")
    backend.post_processor = RobertaProcessing(("</s>", backend.token_to_id("</s>")), ("<s>", backend.token_to_id("<s>")),
                                               trim_offsets=True, add_prefix_space=add_prefix_space)
    return backend
