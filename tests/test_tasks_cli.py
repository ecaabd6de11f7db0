"""The task verbs of the CLI: numbert ner, answer, fill-mask, rerank, and classify --labels with an
NLI model; each run as a new user would, in a subprocess with torch and transformers
unimportable, its --json output equal to the Python API (itself held to the pipelines in
test_ner / test_qa / test_fill_mask / test_rerank / test_zero_shot_nli)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from task_models import TEXTS, build_task_checkpoint

import numbert
from numbert.cli import main

NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; "
            "sys.modules['sentence_transformers'] = None; from numbert.cli import main; sys.exit(main())")


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    return {task: build_task_checkpoint(tmp_path_factory.mktemp(task), task)
            for task in ("token-classification", "question-answering", "masked-lm", "nli", "cross-encoder")}


@pytest.fixture
def run(tmp_path):
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", NUMBERT_NUM_THREADS="1")

    def run_(*args, stdin=None):
        return subprocess.run([sys.executable, "-c", NO_TORCH] + [str(a) for a in args], input=stdin,
                              capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)

    return run_


def _lines(r):
    assert r.returncode == 0, r.stderr
    return [json.loads(line) for line in r.stdout.splitlines()]


def test_ner(run, folders):
    folder = folders["token-classification"]
    r = run("ner", "--model", folder, "--json", "--backend", "numpy", *TEXTS[:3])
    expected = numbert.ner(TEXTS[:3], numbert.load(folder, backend="numpy"), aggregation_strategy="simple")
    assert _lines(r) == [{"text": t, "entities": e} for t, e in zip(TEXTS[:3], expected)]
    r = run("ner", "--model", folder, "--aggregation", "none", "--ignore-labels", "", "-", stdin="Paris\nx\n")
    assert r.returncode == 0, r.stderr
    table = r.stdout.splitlines()
    assert table[0].split() == ["TEXT", "ENTITY", "CHARS", "SCORE", "WORDS"] and table[1].startswith("Paris")


def test_answer(run, folders, tmp_path):
    folder = folders["question-answering"]
    context = tmp_path / "context.txt"
    context.write_text(TEXTS[0] + "\n" + TEXTS[4], encoding="utf-8")
    r = run("answer", "--model", folder, "--context-file", context, "--top-k", "2", "--json", "Who?", "Where?")
    model = numbert.load(folder, backend="numpy")
    expected = numbert.answer(["Who?", "Where?"], context.read_text(encoding="utf-8"), model, top_k=2)
    got = _lines(r)
    assert [g["question"] for g in got] == ["Who?", "Where?"]
    for g, e in zip(got, expected):
        assert [(a["answer"], a["start"], a["end"]) for a in g["answers"]] == [(a["answer"], a["start"], a["end"])
                                                                               for a in e]
        assert max(abs(a["score"] - b["score"]) for a, b in zip(g["answers"], e)) < 1e-5
    r = run("answer", "--model", folder, "--context", TEXTS[0], "Who?")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["QUESTION", "SCORE", "CHARS", "ANSWER"]
    r = run("answer", "--model", folder, "Who?")
    assert r.returncode == 2 and "no context" in r.stderr


def test_fill_mask(run, folders):
    folder = folders["masked-lm"]
    texts = ["The [MASK] is better.", "[MASK] is [MASK]."]
    r = run("fill-mask", "--model", folder, "--json", "-k", "3", *texts)
    expected = numbert.fill_mask(texts, numbert.load(folder, backend="numpy"), top_k=3)
    got = _lines(r)
    assert got[0]["masks"][0][0]["token_str"] == expected[0][0]["token_str"]
    assert [[c["sequence"] for c in m] for m in got[1]["masks"]] == [[c["sequence"] for c in m] for m in expected[1]]
    r = run("fill-mask", "--model", folder, "no mask")
    assert r.returncode == 2 and "has no mask token [MASK]" in r.stderr


def test_rerank(run, folders):
    folder = folders["cross-encoder"]
    r = run("rerank", "--model", folder, "--query", "Who met Macron?", "--json", "--top-k", "3", *TEXTS)
    expected = numbert.rerank("Who met Macron?", TEXTS, numbert.load(folder, backend="numpy"), top_k=3,
                              return_documents=True)
    got = _lines(r)
    assert [g["corpus_id"] for g in got] == [e["corpus_id"] for e in expected]
    assert [g["text"] for g in got] == [TEXTS[e["corpus_id"]] for e in expected]
    r = run("rerank", "--model", folder, "--query", "q", "a", "b")
    assert r.returncode == 0 and r.stdout.splitlines()[0].split() == ["RANK", "ID", "SCORE", "DOCUMENT"]


def test_classify_nli(run, folders):
    folder = folders["nli"]
    r = run("classify", "--model", folder, "--labels", "sport,politics", "--multi-label", "--top-k", "all",
            "--json", TEXTS[0])
    expected = numbert.classify(TEXTS[0], numbert.load(folder, backend="numpy"), labels=["sport", "politics"],
                                top_k=None, multi_label=True)
    got = _lines(r)[0]["labels"]
    assert [g["label"] for g in got] == [e["label"] for e in expected]
    assert max(abs(g["score"] - e["score"]) for g, e in zip(got, expected)) < 1e-5


def test_exit_codes_and_help(folders, capsys):
    assert main(["ner", "x"]) == 2 and "needs --model" in capsys.readouterr().err
    assert main(["ner", "--model", str(folders["masked-lm"]), "x"]) == 2
    assert "ner needs a token-classification model" in capsys.readouterr().err
    assert main(["fill-mask", "--model", "/no/such/folder", "x [MASK]"]) == 1
    for verb in ("ner", "answer", "fill-mask", "rerank"):
        with pytest.raises(SystemExit) as e:
            main([verb, "--help"])
        assert e.value.code == 0 and "examples:" in capsys.readouterr().out


def test_info_names_the_task_head(folders, capsys):
    import transformers
    from task_models import CLASSES

    from numbert.cli import model_info

    for task, verb in [("token-classification", "numbert ner"), ("question-answering", "numbert answer"),
                       ("masked-lm", "numbert fill-mask")]:
        info = model_info(str(folders[task]))
        assert info["task_head"] == task and info["classifier"] is False
        # every parameter once (a tied decoder is the word embeddings), as transformers counts them
        assert info["parameters"] == getattr(transformers, CLASSES[task]).from_pretrained(
            str(folders[task])).num_parameters()
        assert main(["info", str(folders[task])]) == 0
        out = capsys.readouterr().out
        assert f"{task} head" in out and f"(use {verb})" in out
    assert model_info(str(folders["token-classification"]))["labels"][:2] == ["O", "B-PER"]
