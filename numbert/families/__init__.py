"""The BERT family: each model is BERT with a few named differences, one short module each.

    module       model_type            what it changes (everything else is numbert.modeling, BERT's)
    bert         bert                  nothing: the reference
    distilbert   distilbert            its own key names and config names; no token types, no pooler;
                                       pre_classifier + ReLU + classifier on the first token
    roberta      roberta, xlm-roberta  position ids count real tokens from pad_token_id + 1; one token
                                       type; dense + tanh + out_proj head on <s>
    electra      electra               embeddings of width embedding_size, then embeddings_project to H;
                                       no pooler; dense + GELU + out_proj head on [CLS]
    mpnet        mpnet                 its own key names; RoBERTa's position ids; a relative position
                                       bias (bucketed, shared by all layers) added to every attention's
                                       scores; no token types; RoBERTa's head

A `Family` bundles what numbert needs to run one: how to read its config.json, its weight
tree (whose attribute path is the checkpoint's key path, after the base model's prefix), and
its forward pass. `family_of(config_dict)` picks one by model_type and refuses, by name, a
model_type or an architecture numbert cannot run.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Callable

from ..errors import ConfigError


@dataclass(frozen=True)
class Family:
    name: str  # the model_type numbert reports ("roberta")
    model_types: tuple[str, ...]  # config.json model_type values it runs
    prefix: str  # the base model's key prefix in a head checkpoint ("roberta.": roberta.encoder.layer.0...)
    base: str  # transformers' base model class ("RobertaModel")
    head: str  # transformers' sequence-classification class ("RobertaForSequenceClassification")
    weights: type  # the weight tree: base model + optional head (see numbert.weights)
    config: Callable[[dict], dict]  # config.json as the family spells it -> BertConfig's field names
    forward: Callable  # (input_ids, attention_mask, token_type_ids, w, config, ops, ...) -> ModelOutput
    token_types: bool = True  # False: the model has no token-type table and ignores token_type_ids
    # Other checkpoints of the family that hold this base model plus a pre-training head that
    # numbert does not run (e.g. RobertaForMaskedLM, ElectraForPreTraining): loaded as the base
    # model. None: architectures are not checked (BERT, as before the families came).
    pretraining: tuple[str, ...] | None = ()
    # check(weights, config, where): what the declared tree cannot say, checked once loaded (ELECTRA:
    # embeddings_project is there when embedding_size != hidden_size); CheckpointError if not
    check: Callable | None = None


@lru_cache(maxsize=None)
def _registry() -> dict[str, Family]:
    from . import bert, distilbert, electra, mpnet, roberta

    families = [bert.FAMILY, distilbert.FAMILY, roberta.FAMILY, roberta.XLM_FAMILY, electra.FAMILY, mpnet.FAMILY]
    return {t: f for f in families for t in f.model_types}


def family_named(model_type: str) -> Family:
    """The Family registered for a model_type (BertConfig.model_type holds one)."""
    return _registry()[model_type]


def family_of(d: dict, source: str = "config.json") -> Family:
    """The Family that runs a config.json (a dict); ConfigError naming what numbert cannot run."""
    families = _registry()
    model_type = d.get("model_type", "bert")
    if model_type not in families:
        raise ConfigError(f"{source}: model_type is {model_type!r}; numbert runs {', '.join(families)}")
    family = families[model_type]
    from ..heads import head_for  # token classification, QA, masked LM: numbert.heads

    runnable = (family.base, family.head) + (family.pretraining or ())
    for arch in d.get("architectures") or () if family.pretraining is not None else ():
        if arch not in runnable and head_for([arch], family.name) is None:
            raise ConfigError(f"{source}: architectures lists {arch!r}; numbert runs {family.base}, {family.head} "
                              "and the token-classification and question-answering heads (numbert.heads); "
                              f"a {family.name} checkpoint with another task head cannot run")
    return family
