"""The `numbert` command: end to end in subprocesses (as a shell user runs it), refusals in-process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import numbert
from numbert.cli import main

from conftest import CORPUS, torch_model

TEXTS = ["I love cats!", "He hates pineapple pizza."]
# Run the command with torch and transformers unimportable: numbert must not need them.
NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['transformers'] = None; "
            "from numbert.cli import main; sys.exit(main())")


@pytest.fixture(scope="module")
def head(checkpoint_factory):
    return checkpoint_factory(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"})


@pytest.fixture
def run(tmp_path):
    """numbert ARGS in a subprocess on a 'fresh machine': empty HF_HOME, offline, outside the repo."""
    env = dict(os.environ, HF_HOME=str(tmp_path / "hf_home"), HF_HUB_OFFLINE="1", NUMBERT_NUM_THREADS="1")
    env.pop("HF_HUB_CACHE", None)

    def run_(*args, stdin=None, no_torch=False):
        prefix = [sys.executable, "-c", NO_TORCH] if no_torch else [sys.executable, "-m", "numbert"]
        return subprocess.run(prefix + [str(a) for a in args], input=stdin, capture_output=True, text=True,
                              cwd=tmp_path, env=env, timeout=300)

    return run_


def test_readme_first_command_without_torch(run, minilm_path):
    r = run("classify", *TEXTS, no_torch=True)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split() == ["TEXT", "LABEL", "SCORE"]
    assert lines[1].startswith("I love cats!") and lines[1].split()[-2] == "positive"
    assert lines[2].startswith("He hates pineapple pizza.") and lines[2].split()[-2] == "negative"
    assert r.stderr == ""  # no progress bar, no warnings when piped


def test_classify_file_and_stdin_json(run, head, tmp_path):
    texts = [t for t in CORPUS if t][:5]
    (tmp_path / "texts.txt").write_text("\n".join(texts[:3]) + "\n\n" + "\n".join(texts[3:]) + "\n")
    expected = numbert.classify(texts, head, top_k=2)
    from_file = run("classify", "--model", head, "--file", tmp_path / "texts.txt", "--json", "--top-k", "2")
    from_stdin = run("classify", "--model", head, "--json", "-k", "2", "-", stdin="\n".join(texts))
    for r in (from_file, from_stdin):
        assert r.returncode == 0, r.stderr
        rows = [json.loads(line) for line in r.stdout.splitlines()]
        assert [row["text"] for row in rows] == texts  # the blank line was skipped
        for row, exp in zip(rows, expected):
            assert [d["label"] for d in row["labels"]] == [d["label"] for d in exp]
            np.testing.assert_allclose([d["score"] for d in row["labels"]], [d["score"] for d in exp], atol=1e-6)


def test_embed_out_npy(run, head, tmp_path):
    r = run("embed", *CORPUS[:4], "--model", head, "--out", tmp_path / "v.npy")
    assert r.returncode == 0, r.stderr
    assert "wrote 4 x 32 float32 embeddings" in r.stderr and r.stdout == ""
    vectors = np.load(tmp_path / "v.npy")
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, numbert.embed(CORPUS[:4], head), atol=1e-6)


def test_info_json(run, head):
    r = run("info", head, "--json")
    assert r.returncode == 0, r.stderr
    info = json.loads(r.stdout)
    assert info["parameters"] == sum(p.numel() for p in torch_model(head).parameters())
    assert info["labels"] == ["neg", "neu", "pos"] and info["found_in"] == "local folder"
    assert info["layers"] == 2 and info["hidden_size"] == 32 and "model.safetensors" in info["files"]


def test_not_found_exit_code(run):
    r = run("classify", "--model", "org/missing", "hello")
    assert r.returncode == 1 and r.stdout == ""
    assert "model 'org/missing' not found. Tried:" in r.stderr and "To fix:" in r.stderr


# ------------------------------------------------------------------- in-process: output shapes

def test_table_with_several_labels(head, capsys):
    assert main(["classify", "--model", str(head), "-k", "all", "one text"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 4 and lines[1].startswith("one text")
    assert all(line.startswith(" ") for line in lines[2:])  # the text is written once
    scores = [float(line.split()[-1]) for line in lines[1:]]
    assert scores == sorted(scores, reverse=True) and abs(sum(scores) - 1) < 1e-3


def test_zero_shot_labels_option(minilm_path, capsys):
    code = main(["classify", "--model", str(minilm_path), "--labels", "sport, cooking", "--json",
                 "Add two eggs and stir the sauce."])
    assert code == 0
    row = json.loads(capsys.readouterr().out)
    assert row["label"] == "cooking" and 0.5 < row["score"] <= 1


def test_embed_json_and_table(head, capsys):
    assert main(["embed", "--model", str(head), "--json", "a", "b"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in rows] == ["a", "b"] and len(rows[0]["embedding"]) == 32
    assert main(["embed", "--model", str(head), "--normalize", "a"]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines()[1].split()[1] == "1.000" and "--out F.npy" in out.err


def test_help_teaches(capsys):
    for args in (["--help"], ["classify", "--help"], ["embed", "--help"], ["info", "--help"]):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 0
    out = capsys.readouterr().out
    assert "exit codes: 0 success" in out and 'numbert classify "I love cats!"' in out
    assert "--top-k" in out and "--out F.npy" in out


# ------------------------------------------------------------------- in-process: refusals

@pytest.mark.parametrize("args, code, message", [
    (["classify"], 2, "no texts: give them as arguments, with --file F, or as - to read stdin"),
    (["classify", "--file", "missing.txt"], 2, "cannot read --file missing.txt"),
    (["classify", "--file", "t.txt", "also a text"], 2, "not both"),
    (["classify", "-k", "0", "x"], 2, "--top-k must be a positive integer or 'all'"),
    (["classify", "--model", "HEAD", "--labels", "a,b", "x"], 2, "labels= is for zero-shot"),
    (["classify", "--model", "HEAD", "--batch-size", "0", "x"], 2, "batch_size must be a positive integer"),
    (["classify", "--model", "HEAD", "--max-length", "1000", "x"], 2, "max_length 1000 exceeds"),
    (["embed", "--out", "vectors.txt", "x"], 2, "--out must name a .npy file"),
    (["info", "./no/such/folder"], 1, "not a Hub id"),
])
def test_refusals(head, tmp_path, monkeypatch, capsys, args, code, message):
    monkeypatch.chdir(tmp_path)
    args = [str(head) if a == "HEAD" else a for a in args]
    assert main(args) == code
    captured = capsys.readouterr()
    assert message in captured.err and captured.out == ""


def test_empty_stdin(monkeypatch, capsys):
    import io

    monkeypatch.setattr(sys, "stdin", io.StringIO("\n  \n"))
    assert main(["classify", "-"]) == 2
    assert "stdin holds no texts" in capsys.readouterr().err


def test_argparse_refusals_exit_2(capsys):
    with pytest.raises(SystemExit) as e:
        main(["classify", "--long-text", "split", "x"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main([])
    assert e.value.code == 2
    assert "COMMAND" in capsys.readouterr().err
