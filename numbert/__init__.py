"""numbert: BERT inference from scratch in NumPy and Numba, equal to transformers in fp32."""

from .api import classify, embed
from .config import BertConfig
from .errors import CheckpointError, ConfigError
from .hub import ModelNotFoundError
from .model import Model, load
from .modeling import ModelOutput
from .tasks import answer, fill_mask, ner, rerank  # the other pipelines: NER, QA, fill-mask, reranking
from .tokenizer import Batch
from . import trace  # the package numbert.trace; calling it runs numbert.trace.trace(...)

__all__ = ["BertConfig", "Batch", "CheckpointError", "ConfigError", "Model", "ModelNotFoundError", "ModelOutput",
           "answer", "classify", "embed", "fill_mask", "load", "ner", "rerank", "trace"]
__version__ = "0.1.0"
