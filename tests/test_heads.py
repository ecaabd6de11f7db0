"""The task heads (numbert.heads) against transformers' *ForTokenClassification,
*ForQuestionAnswering and BertForMaskedLM: logits at every real token, both backends.

Tiny random checkpoints (tests/task_models.py), padded batches of texts with accents, CJK and
emoji, and question/context pairs; <= 1e-5 as every forward test here.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import max_diff_at_tokens
from task_models import CLASSES, FAMILIES, TEXTS, build_task_checkpoint, oracle_model

import numbert
from numbert.errors import ConfigError

TOL = 1e-5
CONFIGS = [dict(seed=0), dict(seed=1, hidden_size=24, num_hidden_layers=3, num_attention_heads=2,
                              intermediate_size=40, hidden_act="gelu_new")]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    cache = {}

    def make(task, i=0, **extra):
        key = (task, i, json.dumps(extra, sort_keys=True))
        if key not in cache:
            cache[key] = build_task_checkpoint(tmp_path_factory.mktemp(task), task, **CONFIGS[i], **extra)
        return cache[key]

    return make


def _inputs(model, pairs=False):
    if pairs:
        return model.tokenize(["Who met Macron?", "首都はどこ?", "Where?"], [TEXTS[0], TEXTS[2], TEXTS[4]])
    return model.tokenize(TEXTS)


def _oracle(folder, task, batch):
    with torch.no_grad():
        return oracle_model(folder, task)(**{k: torch.from_numpy(v) for k, v in batch.items()})


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("config", [0, 1])
def test_token_classification_logits(checkpoints, config, backend):
    folder = checkpoints("token-classification", config)
    model = numbert.load(folder, backend=backend)
    assert model.head.task == "token-classification" and model.weights.pooler is None
    batch = _inputs(model)
    out, ref = model(**batch), _oracle(folder, "token-classification", batch)
    assert out.logits.shape == tuple(ref.logits.shape) == (*batch.input_ids.shape, 8)
    assert max_diff_at_tokens(out.logits, ref.logits.numpy(), batch.attention_mask) <= TOL
    assert out.start_logits is None and out.end_logits is None


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("config", [0, 1])
def test_question_answering_logits(checkpoints, config, backend):
    folder = checkpoints("question-answering", config)
    model = numbert.load(folder, backend=backend)
    batch = _inputs(model, pairs=True)
    out, ref = model(**batch), _oracle(folder, "question-answering", batch)
    assert out.start_logits.shape == out.end_logits.shape == batch.input_ids.shape
    assert max_diff_at_tokens(out.start_logits, ref.start_logits.numpy(), batch.attention_mask) <= TOL
    assert max_diff_at_tokens(out.end_logits, ref.end_logits.numpy(), batch.attention_mask) <= TOL
    assert out.logits is None


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("config", [0, 1])
def test_masked_lm_logits(checkpoints, config, backend):
    folder = checkpoints("masked-lm", config)
    model = numbert.load(folder, backend=backend)
    assert model.head.task == "masked-lm"
    # tied: the decoder's weight is the word embedding table itself
    assert model.head_weights.cls.predictions.decoder.weight is model.weights.embeddings.word_embeddings.weight
    batch = _inputs(model)
    out, ref = model(**batch), _oracle(folder, "masked-lm", batch)
    assert out.logits.shape == (*batch.input_ids.shape, model.config.vocab_size)
    assert max_diff_at_tokens(out.logits, ref.logits.numpy(), batch.attention_mask) <= TOL


def test_masked_lm_untied_decoder(checkpoints):
    """tie_word_embeddings=False: the checkpoint's own decoder, not the word embeddings."""
    folder = checkpoints("masked-lm", 0, tie_word_embeddings=False)
    model = numbert.load(folder, backend="numpy")
    decoder = model.head_weights.cls.predictions.decoder
    assert not np.array_equal(decoder.weight, model.weights.embeddings.word_embeddings.weight)
    batch = _inputs(model)
    ref = _oracle(folder, "masked-lm", batch)
    assert max_diff_at_tokens(model(**batch).logits, ref.logits.numpy(), batch.attention_mask) <= TOL


def test_bert_for_pretraining_reads_as_masked_lm(tmp_path):
    """bert-base-uncased is saved as BertForPreTraining: pooler and NSP head beside cls.predictions."""
    import transformers
    from conftest import build_tokenizer

    vocab = build_tokenizer(tmp_path, model_max_length=64)
    config = transformers.BertConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                     intermediate_size=37, max_position_embeddings=64, initializer_range=0.2)
    torch.manual_seed(3)
    transformers.BertForPreTraining(config).eval().save_pretrained(str(tmp_path))
    model = numbert.load(tmp_path, backend="numpy")
    assert model.head.task == "masked-lm" and model.weights.pooler is not None
    batch = model.tokenize(TEXTS)
    with torch.no_grad():
        ref = transformers.BertForMaskedLM.from_pretrained(str(tmp_path), attn_implementation="eager").eval()(
            **{k: torch.from_numpy(v) for k, v in batch.items()})
    assert max_diff_at_tokens(model(**batch).logits, ref.logits.numpy(), batch.attention_mask) <= TOL


def test_head_shapes_are_checked(checkpoints, tmp_path):
    """A head tensor of the wrong shape is refused by name, as every other tensor."""
    import shutil

    from safetensors.numpy import load_file, save_file

    folder = tmp_path / "bad"
    shutil.copytree(checkpoints("question-answering", 0), folder)
    tensors = load_file(str(folder / "model.safetensors"))
    tensors["qa_outputs.weight"] = np.zeros((3, 32), np.float32)
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(numbert.CheckpointError, match=r"qa_outputs\.weight.*\[3, 32\].*\[2, 32\]"):
        numbert.load(folder, backend="numpy")


def test_num_labels_is_refused_with_a_task_head(checkpoints):
    with pytest.raises(ConfigError, match="num_labels=3.*token-classification head"):
        numbert.load(checkpoints("token-classification", 0), num_labels=3, backend="numpy")


def test_classes_cover_the_registry():
    """Every head numbert.heads registers has a test checkpoint class above, named like transformers'."""
    from numbert.heads import HEADS, head_for

    for task in HEADS:
        assert head_for([CLASSES[task]]) is HEADS[task]
    assert head_for(["BertForSequenceClassification"]) is None and head_for(["BertModel"]) is None
    assert head_for(["RobertaForMaskedLM"], "roberta").tree is not HEADS["masked-lm"].tree  # its own lm_head
    assert head_for(["DistilBertForMaskedLM"], "bert") is None  # a head runs only in the families it is written for
    assert head_for(["RobertaForTokenClassification"], "roberta") is HEADS["token-classification"]


@pytest.fixture(scope="module")
def family_checkpoints(tmp_path_factory):
    from task_models import build_family_task_checkpoint, cached_checkpoint

    return lambda family, task: cached_checkpoint(tmp_path_factory, build_family_task_checkpoint, family, task)


@pytest.mark.parametrize("backend", ["numpy", "numba"])
@pytest.mark.parametrize("task", ["token-classification", "question-answering", "masked-lm"])
@pytest.mark.parametrize("family", FAMILIES)
def test_family_heads(family_checkpoints, family, task, backend):
    """Every family's token-classification, QA and masked-LM checkpoints equal transformers' (padded batch)."""
    import transformers
    from task_models import family_task_class

    folder = family_checkpoints(family, task)
    model = numbert.load(folder, backend=backend)
    assert model.head is not None and model.head.task == task
    batch = model.tokenize(["Angela Merkel met Emmanuel Macron in Paris.", "Café, 東京 🙂", "x"])
    inputs = {k: torch.from_numpy(v) for k, v in batch.items()}
    if not model.family.token_types or family in ("roberta", "xlm-roberta"):
        inputs.pop("token_type_ids")
    ref_model = getattr(transformers, family_task_class(family, task)).from_pretrained(
        str(folder), attn_implementation="eager", dtype=torch.float32).eval()
    with torch.no_grad():
        ref = ref_model(**inputs)
    out = model(**batch)
    if task == "question-answering":
        pairs = [(out.start_logits, ref.start_logits), (out.end_logits, ref.end_logits)]
    else:
        pairs = [(out.logits, ref.logits)]
    for ours, theirs in pairs:
        assert ours.shape == tuple(theirs.shape)
        assert max_diff_at_tokens(ours, theirs.numpy(), batch.attention_mask) <= TOL
    if task == "masked-lm" and backend == "numpy":  # the trace shows the family's head, each step catalogued
        from numbert.trace.catalogue import ALL_STEPS

        t = numbert.trace(["Paris is nice."], model, check="torch")
        head_steps = [n for n in t.names() if n.startswith(("lm_head", "vocab_", "generator_"))]
        assert len(head_steps) == 3 and all(n in ALL_STEPS for n in head_steps), t.names()[-4:]
        assert all(t.check.steps[n].max_abs_diff is not None and t.check.steps[n].ok for n in head_steps)
        assert np.abs(t[head_steps[-1]] - model(**model.tokenize(["Paris is nice."])).logits).max() <= TOL


@pytest.mark.parametrize("task, steps", [
    ("token-classification", ["classifier.token_logits"]),
    ("question-answering", ["qa_outputs.logits", "qa_outputs.start_logits", "qa_outputs.end_logits"]),
    ("masked-lm", ["cls.predictions.transform.dense_act", "cls.predictions.transform.LayerNorm",
                   "cls.predictions.logits"]),
])
def test_trace_shows_the_head(checkpoints, task, steps):
    """The trace records the head's steps after the encoder, each in the catalogue with its axes, the
    last one the head's output, and check="torch" finds each one's twin in transformers' model."""
    from numbert.trace.catalogue import ALL_STEPS

    model = numbert.load(checkpoints(task, 0), backend="numpy")
    t = numbert.trace(["Paris is nice.", "x"], model, check="torch")
    assert CLASSES[task] in t.check.reference
    for name in steps:
        assert t.check.steps[name].max_abs_diff is not None and t.check.steps[name].ok, t.check.steps[name]
    assert t.names()[-len(steps):] == steps
    arrays = {s.name: s.array for s in t.steps}
    for name in steps:
        assert len(ALL_STEPS[name].axes.split()) == arrays[name].ndim, name
    out = model(**model.tokenize(["Paris is nice.", "x"]))
    last = out.end_logits if task == "question-answering" else out.logits
    assert max_diff_at_tokens(arrays[steps[-1]], last, t.batch.attention_mask) <= TOL


@pytest.mark.parametrize("task", ["token-classification", "question-answering", "masked-lm"])
def test_heads_on_the_real_minilm_encoder(minilm_path, tmp_path, task):
    """all-MiniLM-L6-v2's trained encoder under a freshly initialised head (transformers' own init,
    seeded), saved and read back: a real-scale check (H 384, 6 layers, V 30522) at 1e-4, both backends."""
    import shutil

    import transformers

    torch.manual_seed(0)
    kwargs = {"num_labels": 9} if task == "token-classification" else {}
    ref_model = getattr(transformers, CLASSES[task]).from_pretrained(str(minilm_path), attn_implementation="eager",
                                                                    **kwargs).eval()
    ref_model.save_pretrained(str(tmp_path))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm_path / name).is_file():
            shutil.copy(minilm_path / name, tmp_path / name)
    texts = ["Angela Merkel met Emmanuel Macron in Paris.", "Café au lait, naïve résumé!", "東京は日本の首都です。",
             " ".join(TEXTS) * 3]
    for backend in ("numpy", "numba"):
        model = numbert.load(tmp_path, backend=backend)
        batch = model.tokenize(texts)
        with torch.no_grad():
            ref = ref_model(**{k: torch.from_numpy(v) for k, v in batch.items()})
        out = model(**batch)
        names = ["start_logits", "end_logits"] if task == "question-answering" else ["logits"]
        for name in names:
            assert max_diff_at_tokens(getattr(out, name), getattr(ref, name).numpy(), batch.attention_mask) <= 1e-4
