"""BERT: the reference every other family is written against (numbert.modeling, numbert.weights)."""

from __future__ import annotations

from ..modeling import bert_forward
from ..weights import BertWeights
from . import Family


def config(d: dict) -> dict:
    return d  # config.json already speaks BertConfig's names


FAMILY = Family(name="bert", model_types=("bert",), prefix="bert.", base="BertModel",
                head="BertForSequenceClassification", weights=BertWeights, config=config, forward=bert_forward,
                pretraining=None)
