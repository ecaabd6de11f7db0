"""The tasks beyond classify and embed, each equal to the transformers pipeline (or
sentence-transformers call) it mirrors: named entities, question answering, fill-mask,
cross-encoder reranking, and zero-shot classification through an NLI model (numbert.classify)."""

from .fill_mask import fill_mask
from .ner import ner
from .qa import answer
from .rerank import rerank

__all__ = ["answer", "fill_mask", "ner", "rerank"]
