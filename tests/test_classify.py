"""numbert.classify against transformers' pipeline("text-classification"), zero-shot, batching, refusals."""

from __future__ import annotations

import numpy as np
import pytest

import numbert
from numbert import api

from conftest import CORPUS, torch_model

TEXTS = [
    "I love cats! He hates pineapple pizza.",
    "",
    "Beautiful is better than ugly.",
    CORPUS[5] + " " + CORPUS[6] + " " + CORPUS[7],
    "Café au lait, naïve résumé.",
    "東京は日本の首都です。",
    "Now is better than never. " * 4,
    "x",
]
PAIRS = ["Explicit is better than implicit.", "a", "", "Simple is better than complex.",
         "Flat is better than nested.", "Sparse is better than dense.", "Readability counts.", "?"]
TOL = 1e-5

HEADS = {  # name -> build_checkpoint options
    "single": dict(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"}),
    "single_pt": dict(num_labels=2, problem_type="single_label_classification", seed=1),
    "multi": dict(num_labels=4, problem_type="multi_label_classification", seed=2),
    "regression": dict(num_labels=1, problem_type="regression", seed=3),
    "one_output": dict(num_labels=1, seed=4),  # no problem_type, one logit: the pipeline uses sigmoid
}


@pytest.fixture(scope="module")
def heads(checkpoint_factory):
    return {name: checkpoint_factory(**kw) for name, kw in HEADS.items()}


@pytest.fixture(scope="module")
def pipelines(heads):
    import transformers

    out = {}
    for name, folder in heads.items():
        tok = transformers.AutoTokenizer.from_pretrained(str(folder))
        out[name] = transformers.pipeline("text-classification", model=torch_model(folder), tokenizer=tok,
                                          device="cpu")
    return out


def assert_same(ours, theirs, where=""):
    """Same labels in the same order, scores within TOL; dicts or lists of dicts."""
    if isinstance(theirs, dict):
        assert isinstance(ours, dict), where
        assert ours["label"] == theirs["label"], where
        assert abs(ours["score"] - theirs["score"]) <= TOL, (where, ours, theirs)
        return
    assert isinstance(ours, list) and len(ours) == len(theirs), (where, ours, theirs)
    for o, t in zip(ours, theirs):
        assert_same(o, t, where)


def max_score_diff(ours, theirs):
    flat = lambda r: [r] if isinstance(r, dict) else [d for x in r for d in ([x] if isinstance(x, dict) else x)]
    return max(abs(o["score"] - t["score"]) for o, t in zip(flat(ours), flat(theirs)))


# ------------------------------------------------------------------- parity with the pipeline

@pytest.mark.parametrize("name", list(HEADS))
@pytest.mark.parametrize("top_k", [1, 3, None])
def test_matches_pipeline(heads, pipelines, name, top_k):
    pipe = pipelines[name]
    kwargs = {} if top_k == 1 else {"top_k": top_k}  # the pipeline's default shape is our top_k=1
    theirs = pipe(TEXTS, truncation=True, **kwargs)
    ours = numbert.classify(TEXTS, heads[name], top_k=top_k, backend="numpy", batch_size=3)
    assert_same(ours, theirs, f"{name} top_k={top_k}")


@pytest.mark.parametrize("name", ["single", "multi"])
def test_pairs_match_pipeline(heads, pipelines, name):
    theirs = pipelines[name]([{"text": a, "text_pair": b} for a, b in zip(TEXTS, PAIRS)], truncation=True,
                             top_k=None)
    ours = numbert.classify(TEXTS, heads[name], text_pair=PAIRS, top_k=None, batch_size=3)
    assert_same(ours, theirs, name)
    one = numbert.classify(TEXTS[0], heads[name], text_pair=PAIRS[0], top_k=None)  # str in, result out
    assert_same(one, theirs[0], name)


@pytest.mark.parametrize("function", ["softmax", "sigmoid", "none"])
def test_function_to_apply_matches_pipeline(heads, pipelines, function):
    theirs = pipelines["single"](TEXTS, truncation=True, top_k=None, function_to_apply=function)
    ours = numbert.classify(TEXTS, heads["single"], top_k=None, function_to_apply=function)
    assert_same(ours, theirs, function)


def test_default_function_follows_the_pipeline(heads):
    pick = {name: api.default_function(numbert.load(folder).config) for name, folder in heads.items()}
    assert pick == {"single": "softmax", "single_pt": "softmax", "multi": "sigmoid", "regression": "none",
                    "one_output": "sigmoid"}


def test_single_string_is_unwrapped(heads, pipelines):
    theirs = pipelines["single"](TEXTS[2])  # the pipeline wraps a single text's result in a list
    ours = numbert.classify(TEXTS[2], heads["single"])
    assert isinstance(ours, dict)
    assert_same(ours, theirs[0])
    assert isinstance(numbert.classify(TEXTS[2], heads["single"], top_k=2), list)


def test_backends_agree(heads):
    pytest.importorskip("numbert.kernels.attention", reason="the Numba kernels are not there yet")
    a = numbert.classify(TEXTS, heads["single"], top_k=None, backend="numpy")
    b = numbert.classify(TEXTS, heads["single"], top_k=None, backend="numba")
    assert max_score_diff(a, b) <= TOL


# ------------------------------------------------------------------- batching, long texts

def test_batch_invariance_and_input_order(heads):
    folder = heads["single"]
    model = numbert.load(folder, backend="numpy")
    together = api._encode(model, TEXTS, None, api._logits_head, batch_size=3, max_length=None, truncation=True,
                           long_text="truncate", stride=None, progress=False, desc="")  # [N, C]
    for i, text in enumerate(TEXTS):
        alone = model(**model.tokenize([text])).logits[0]  # [C]
        np.testing.assert_allclose(together[i], alone, atol=TOL, rtol=0, err_msg=f"texts[{i}]")
    assert len(numbert.classify(TEXTS * 5, model, batch_size=4)) == len(TEXTS) * 5


LONG = " ".join(CORPUS[:12])  # well over the 64 positions of the tiny checkpoints


def test_truncation_by_default_and_refused_when_off(heads):
    model = numbert.load(heads["single"])
    assert model.tokenizer.count_tokens([LONG])[0] > 64
    numbert.classify([LONG], model)  # truncates, as the pipeline with truncation=True
    with pytest.raises(ValueError, match=r"texts\[1\] is \d+ tokens"):
        numbert.classify(["short", LONG], model, truncation=False)


@pytest.mark.parametrize("stride", [0, 7, 20])
def test_windows_average_the_logits_of_transformers_windows(heads, stride):
    """Oracle: transformers' tokenizer cuts the overflowing windows, torch runs each, we average."""
    import torch
    import transformers

    folder = heads["single"]
    tok = transformers.AutoTokenizer.from_pretrained(str(folder))
    enc = tok(LONG, truncation=True, max_length=32, stride=stride, return_overflowing_tokens=True,
              padding=True, return_tensors="pt")
    assert enc["input_ids"].shape[0] > 2
    with torch.no_grad():
        logits = torch_model(folder)(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).logits
    expected = torch.softmax(logits.mean(0), -1).numpy()  # [C]
    ours = numbert.classify(LONG, folder, long_text="window", max_length=32, stride=stride, top_k=None)
    ours = np.array([next(d["score"] for d in ours if d["label"] == lab) for lab in ("neg", "neu", "pos")])
    np.testing.assert_allclose(ours, expected, atol=TOL, rtol=0)


def test_windows_equal_truncation_for_short_texts(heads):
    a = numbert.classify(TEXTS, heads["single"], top_k=None)
    b = numbert.classify(TEXTS, heads["single"], top_k=None, long_text="window")
    assert max_score_diff(a, b) <= TOL


def test_progress_bar_only_when_asked(heads, capsys):
    numbert.classify(TEXTS, heads["single"], batch_size=2)  # stderr is not a terminal here
    assert capsys.readouterr().err == ""
    numbert.classify(TEXTS, heads["single"], batch_size=2, progress=True)
    err = capsys.readouterr().err
    assert "classify" in err and "/4 " in err  # tqdm: 4 batches of 2


# ------------------------------------------------------------------- zero-shot

# A small hand-written sentiment set: 20 positive, 20 negative, everyday sentences.
SENTIMENT = [
    ("I love cats!", "positive"), ("He hates pineapple pizza.", "negative"),
    ("This is the best day of my life.", "positive"), ("The movie was a complete waste of time.", "negative"),
    ("What a wonderful surprise, thank you so much!", "positive"),
    ("The food was cold and the waiter was rude.", "negative"),
    ("I am so happy with my new phone.", "positive"), ("My flight got cancelled and I lost my luggage.", "negative"),
    ("The concert was absolutely amazing.", "positive"), ("This product broke after one day. Terrible.", "negative"),
    ("She gave a brilliant, inspiring speech.", "positive"), ("I regret buying this laptop.", "negative"),
    ("Our holiday by the sea was perfect.", "positive"), ("The service was slow and disappointing.", "negative"),
    ("I really enjoyed reading this book.", "positive"), ("The hotel room was dirty and smelled awful.", "negative"),
    ("Great job, the team did fantastic work!", "positive"), ("I feel sad and lonely today.", "negative"),
    ("The kids had a lot of fun at the park.", "positive"), ("This is the worst coffee I have ever had.", "negative"),
    ("Delicious meal, friendly staff, we will come back.", "positive"),
    ("The update made everything slower and buggier.", "negative"),
    ("I'm thrilled to announce that I got the job!", "positive"), ("He was angry and shouted at everyone.", "negative"),
    ("The garden looks beautiful in spring.", "positive"), ("I can't stand the noise from the neighbours.", "negative"),
    ("Thanks for your help, it was very kind of you.", "positive"),
    ("The instructions were confusing and useless.", "negative"),
    ("What a lovely little village.", "positive"), ("The battery dies within an hour, very annoying.", "negative"),
    ("This song always makes me smile.", "positive"), ("I was bored during the whole lecture.", "negative"),
    ("Excellent quality and fast delivery.", "positive"), ("The traffic this morning was a nightmare.", "negative"),
    ("We had a great time at the wedding.", "positive"), ("My order arrived damaged and late.", "negative"),
    ("The new design is elegant and easy to use.", "positive"),
    ("That joke was offensive and not funny at all.", "negative"),
    ("I adore this little puppy.", "positive"), ("The exam results were a huge disappointment.", "negative"),
]
# Measured with all-MiniLM-L6-v2 and the default template "This is {}.": 35 / 40 = 0.875.
# The floor leaves room for backend rounding, not for a real regression.
ZERO_SHOT_FLOOR = 0.8


@pytest.fixture(scope="module")
def minilm(minilm_path):
    return numbert.load(minilm_path)


def test_zero_shot_sentiment_accuracy(minilm):
    texts = [t for t, _ in SENTIMENT]
    results = numbert.classify(texts, minilm, labels=["positive", "negative"])
    accuracy = np.mean([r["label"] == gold for r, (_, gold) in zip(results, SENTIMENT)])
    print(f"zero-shot accuracy {accuracy:.3f} on {len(texts)} texts")
    assert accuracy >= ZERO_SHOT_FLOOR


def test_zero_shot_is_softmax_of_scaled_cosine(minilm):
    texts, labels, template = ["I love cats!", "He hates pineapple pizza.", ""], ["happy", "angry", "bored"], "A {} text."
    results = numbert.classify(texts, minilm, labels=labels, template=template, top_k=None)
    t = numbert.embed(texts, minilm)  # MiniLM normalizes: cosine = dot product
    lab = numbert.embed([template.format(x) for x in labels], minilm)
    logits = 20.0 * t @ lab.T
    expected = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)  # [N, K]
    for r, row in zip(results, expected):
        assert abs(sum(d["score"] for d in r) - 1) < 1e-6
        assert [d["label"] for d in r] == [labels[i] for i in np.argsort(-row)]
        np.testing.assert_allclose([d["score"] for d in r], np.sort(row)[::-1], atol=1e-5)


def test_default_model_and_labels_are_minilm_sentiment(minilm, monkeypatch):
    seen = []
    monkeypatch.setattr(api, "get_model", lambda model=None, **kw: seen.append(model) or minilm)
    results = numbert.classify(["I love cats!", "He hates pineapple pizza."])
    assert seen[0] is None
    assert [r["label"] for r in results] == ["positive", "negative"]
    assert api.DEFAULT_MODEL == "sentence-transformers/all-MiniLM-L6-v2"


def test_zero_shot_labels_default_to_sentiment_and_head_models_refuse_them(heads, minilm):
    # one rule (issue 10): a model without a head, named or loaded, reads labels=None as positive/negative
    texts = ["I love cats!", "He hates pineapple pizza."]
    assert numbert.classify(texts, minilm) == numbert.classify(texts, minilm, labels=["positive", "negative"])
    assert [r["label"] for r in numbert.classify(texts, minilm)] == ["positive", "negative"]
    with pytest.raises(ValueError, match="has one, with labels"):
        numbert.classify("x", heads["single"], labels=["a", "b"])
    with pytest.raises(ValueError, match="at least 2 labels"):
        numbert.classify("x", minilm, labels=["only"])
    with pytest.raises(ValueError, match="distinct"):
        numbert.classify("x", minilm, labels=["a", "a"])
    with pytest.raises(ValueError, match=r"labels\[1\] is empty"):
        numbert.classify("x", minilm, labels=["a", " "])
    with pytest.raises(ValueError, match="template"):
        numbert.classify("x", minilm, labels=["a", "b"], template="no slot")
    with pytest.raises(ValueError, match="text_pair needs a model with a classification head"):
        numbert.classify("x", minilm, labels=["a", "b"], text_pair="y")


# ------------------------------------------------------------------- the model cache

def test_models_are_loaded_once(heads, monkeypatch):
    api.clear_model_cache()
    calls = []
    real_load = api.load
    monkeypatch.setattr(api, "load", lambda *a, **kw: calls.append(a) or real_load(*a, **kw))
    for _ in range(3):
        numbert.classify(["a", "b"], str(heads["single"]))
    assert len(calls) == 1
    for name in ("multi", "regression", "one_output", "single"):  # 4 models: all kept
        numbert.classify("a", str(heads[name]))
    assert len(calls) == 4
    numbert.classify("a", str(heads["single_pt"]))  # a fifth: the least recently used (multi) goes
    assert len(calls) == 5 and len(api._MODELS) == api.MODEL_CACHE_SIZE
    assert str(heads["multi"]) not in [key[0] for key in api._MODELS]
    api.clear_model_cache()


# ------------------------------------------------------------------- bad input

def test_empty_inputs(heads):
    assert numbert.classify([], heads["single"]) == []
    assert numbert.classify([]) == []  # no model needed for nothing
    assert isinstance(numbert.classify("", heads["single"]), dict)  # an empty text is classified, as transformers does


@pytest.mark.parametrize("texts, error, match", [
    (None, TypeError, "texts must be a str or a list of str"),
    (["ok", None], TypeError, r"texts\[1\] is NoneType"),
    (["ok", "fine", 3], TypeError, r"texts\[2\] is int"),
    (42, TypeError, "found int"),
])
def test_bad_texts_name_the_index(heads, texts, error, match):
    with pytest.raises(error, match=match):
        numbert.classify(texts, heads["single"])


@pytest.mark.parametrize("kwargs, error, match", [
    (dict(text_pair=["one"]), ValueError, r"text_pair has 1 texts but texts has 2"),
    (dict(text_pair=["one", 2]), TypeError, r"text_pair\[1\] is int"),
    (dict(text_pair="one"), TypeError, "text_pair must be a str when texts is a str"),
    (dict(top_k=0), ValueError, "top_k must be a positive integer or None"),
    (dict(top_k="3"), ValueError, "top_k"),
    (dict(function_to_apply="relu"), ValueError, "function_to_apply must be one of"),
    (dict(batch_size=0), ValueError, "batch_size must be a positive integer"),
    (dict(long_text="split"), ValueError, "long_text must be one of"),
    (dict(max_length=1000), ValueError, "max_length 1000 exceeds"),
    (dict(long_text="window", stride=40, max_length=32), ValueError, r"stride .* must be an integer in \[0, 30\)"),
    (dict(long_text="window", text_pair=["a", "b"]), ValueError, "cannot window text pairs"),
])
def test_bad_options_are_refused(heads, kwargs, error, match):
    with pytest.raises(error, match=match):
        numbert.classify(["a", "b"], heads["single"], **kwargs)


def test_unknown_model_says_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HOME", str(tmp_path))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(numbert.ModelNotFoundError, match=r"(?s)not found\. Tried:.*local folder.*Hugging Face cache"):
        numbert.classify("x", "no-such-org/no-such-model")
