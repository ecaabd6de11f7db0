"""Reliability (issue 10): threads sharing a model, an unanswering Hub, max_length below the
special tokens, odd inputs, unreadable files, --json that stays JSON.

Each test reproduces a failure seen before its fix.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

import numbert
from numbert import api

from conftest import CORPUS

THREADS = 8
CALLS_PER_THREAD = 16  # 128 concurrent calls
# Texts from 1 to ~60 tokens, so that max_length 5, 8, 16 and the model's 64 each truncate differently.
THREAD_TEXTS = [" ".join(CORPUS[:n])[:40 * n] for n in range(1, 12)] + ["good " * n for n in range(1, 30, 3)]
MAX_LENGTHS = (None, 5, 8, 16)


@pytest.fixture(scope="module")
def head_folder(checkpoint_factory):
    return checkpoint_factory(num_labels=3, id2label={0: "neg", 1: "neu", 2: "pos"})


@pytest.fixture(scope="module")
def encoder_folder(checkpoint_factory):
    return checkpoint_factory(seed=5)


def _jobs(head_model, encoder_model):
    """Calls mixing classify / embed / tokenize and every max_length, each a function of nothing."""
    jobs = []
    for i in range(THREADS * CALLS_PER_THREAD):
        ml = MAX_LENGTHS[i % len(MAX_LENGTHS)]
        kind = (i // len(MAX_LENGTHS)) % 3
        if kind == 0:
            jobs.append(lambda ml=ml: numbert.classify(THREAD_TEXTS, head_model, top_k=None, max_length=ml,
                                                       batch_size=7))
        elif kind == 1:
            jobs.append(lambda ml=ml: numbert.embed(THREAD_TEXTS, encoder_model, max_length=ml, batch_size=5))
        else:
            jobs.append(lambda ml=ml: dict(head_model.tokenize(THREAD_TEXTS, max_length=ml)))
    return jobs


def _same(a, b) -> bool:
    if isinstance(a, np.ndarray):
        return a.dtype == b.dtype and a.shape == b.shape and np.array_equal(a, b)
    if isinstance(a, dict) and all(isinstance(v, np.ndarray) for v in a.values()):
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    return a == b


def _run_concurrently(jobs, threads=THREADS):
    """Run jobs on `threads` threads started together; (results in job order, errors)."""
    results, errors = [None] * len(jobs), []
    start = threading.Barrier(threads)

    def worker(k):
        start.wait()
        for j in range(k, len(jobs), threads):
            try:
                results[j] = jobs[j]()
            except Exception as e:  # noqa: BLE001 -- every failure is a finding
                errors.append((j, f"{type(e).__name__}: {e}"[:200]))

    workers = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in workers:
        t.start()
    for t in workers:
        t.join(timeout=600)
    assert not any(t.is_alive() for t in workers), "a worker thread is still running after 600 s"
    return results, errors


@pytest.mark.parametrize("backend", ["numpy", "numba"])
def test_threads_sharing_a_model_equal_a_serial_run(head_folder, encoder_folder, backend):
    """Issue 10 item 1: 128 calls from 8 threads, mixed max_length, equal to the serial results exactly."""
    if backend == "numba":
        pytest.importorskip("numbert.kernels")
    head_model = numbert.load(head_folder, backend=backend)
    encoder_model = numbert.load(encoder_folder, backend=backend)
    jobs = _jobs(head_model, encoder_model)
    serial = [job() for job in jobs]
    results, errors = _run_concurrently(jobs)
    assert not errors, f"{len(errors)} of {len(jobs)} concurrent calls raised: {errors[:3]}"
    wrong = [j for j in range(len(jobs)) if not _same(results[j], serial[j])]
    assert not wrong, f"{len(wrong)} of {len(jobs)} concurrent calls differ from the serial run (jobs {wrong[:10]})"


def test_threads_loading_by_name_share_the_model_cache(head_folder):
    """The api's model cache is shared by threads: every thread gets a working model, none a KeyError."""
    api.clear_model_cache()
    # 6 keys (the revision is part of the key; a local folder ignores it) churn a cache of 4
    jobs = [lambda i=i: numbert.classify("Beautiful is better than ugly.", str(head_folder), backend="numpy",
                                         revision=f"r{i % 6}")
            for i in range(48)]
    serial = [job() for job in jobs]
    api.clear_model_cache()
    results, errors = _run_concurrently(jobs)
    assert not errors, errors[:3]
    assert results == serial
    assert len(api._MODELS) <= api.MODEL_CACHE_SIZE
    api.clear_model_cache()


# ------------------------------------------------------------------- max_length below the special tokens (item 5)

def test_max_length_below_the_special_tokens_is_refused_by_name(head_folder):
    """tokenizers (and transformers' AutoTokenizer) silently skip truncation there: 1,000 words read whole."""
    model = numbert.load(head_folder, backend="numpy")
    long = "Beautiful is better than ugly. " * 200
    with pytest.raises(ValueError, match=r"max_length=1 is too short: each text needs 2 special tokens"):
        model.tokenize([long], max_length=1)
    with pytest.raises(ValueError, match=r"max_length=2 is too short: each text pair needs 3 special tokens"):
        model.tokenize([long], ["a pair"], max_length=2)
    with pytest.raises(ValueError, match=r"max_length=1 is too short"):
        numbert.classify([long], model, max_length=1)
    with pytest.raises(ValueError, match=r"max_length=1 is too short"):
        numbert.embed("short", model, max_length=1)
    with pytest.raises(ValueError, match=r"max_length=2 is too short: each text pair"):
        numbert.classify([long], model, text_pair=["a pair"], max_length=2)


def test_max_length_at_the_special_tokens_truncates_as_transformers(head_folder):
    import transformers

    model = numbert.load(head_folder, backend="numpy")
    tok = transformers.AutoTokenizer.from_pretrained(str(head_folder))
    long = "Beautiful is better than ugly. " * 200
    for texts, pairs, max_length in (([long, "a"], None, 2), ([long, "a"], None, 3), ([long, "a"], ["b c", long], 3),
                                     ([long, "a"], ["b c", long], 4)):
        ours = model.tokenize(texts, pairs, max_length=max_length)
        theirs = tok(texts, pairs, max_length=max_length, truncation=True, padding=True, return_tensors="np")
        assert ours.input_ids.shape[1] == max_length
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            np.testing.assert_array_equal(ours[key], theirs[key], err_msg=f"{key}, max_length={max_length}")
    assert numbert.classify([long], model, max_length=2)[0]["label"] in ("neg", "neu", "pos")


# ------------------------------------------------------------------- inputs refused by name (item 7)

@pytest.mark.parametrize("texts, message", [
    (b"hello", r"texts must be a str or a list of str, found bytes: decode it first"),
    (bytearray(b"hello"), r"found bytearray: decode it first"),
    ({"a": "good", "b": "bad"}, r"texts must be a str or a list of str, found dict: pass list\(d.values\(\)\)"),
])
def test_bytes_and_dicts_are_refused_by_name(head_folder, texts, message):
    model = numbert.load(head_folder, backend="numpy")
    for call in (numbert.classify, numbert.embed, model.tokenize):
        with pytest.raises(TypeError, match=message):
            call(texts, model) if call is not model.tokenize else call(texts)


def test_a_lone_surrogate_names_the_text_and_the_character(head_folder):
    model = numbert.load(head_folder, backend="numpy")
    texts = ["fine", "also fine", "bad \ud800 here"]
    for call in (lambda: numbert.classify(texts, model), lambda: numbert.embed(texts, model),
                 lambda: model.tokenize(texts), lambda: numbert.classify("x", model, text_pair="\udcff")):
        with pytest.raises(ValueError, match=r"(texts\[2\]|text_pair\[0\]) holds a lone surrogate "
                                             r"'\\ud(800|cff)' at character (4|0)\b"):
            call()


# ------------------------------------------------------------------- a Hub that never answers (item 3)

@contextlib.contextmanager
def silent_listener(lifetime=120.0):
    """A TCP server on 127.0.0.1 that accepts connections and never sends a byte (a hung proxy).

    Yields (port, accepted sockets). Its thread stops by itself after `lifetime` seconds, or when the block ends.
    """
    server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    server.settimeout(0.2)
    accepted, stop = [], threading.Event()

    def serve():
        deadline = time.monotonic() + lifetime
        while not stop.is_set() and time.monotonic() < deadline:
            try:
                accepted.append(server.accept()[0])
            except socket.timeout:
                pass
        for conn in accepted:
            conn.close()
        server.close()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1], accepted
    finally:
        stop.set()
        thread.join(timeout=5)
        assert not thread.is_alive()


def _numbert_against(port, tmp_path, args, timeout=90):
    """Run the CLI with the Hub at the silent listener (network allowed, empty cache); (result, seconds)."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE") and "proxy" not in k.lower()}
    env.update(HF_ENDPOINT=f"http://127.0.0.1:{port}", HF_HUB_CACHE=str(tmp_path / "hub"),
               NUMBERT_HUB_TIMEOUT="2", HF_HUB_DISABLE_TELEMETRY="1")
    started = time.monotonic()
    try:
        result = subprocess.run([sys.executable, "-m", "numbert", *args], env=env, capture_output=True, text=True,
                                timeout=timeout)
    except subprocess.TimeoutExpired:
        pytest.fail(f"numbert {' '.join(args)} was still waiting on the silent Hub after {timeout} s")
    return result, time.monotonic() - started


def test_default_model_does_not_wait_on_a_silent_hub(minilm_path, tmp_path):
    """The installed offline package wins without any network call."""
    with silent_listener() as (port, accepted):
        r, _ = _numbert_against(port, tmp_path, ["classify", "--backend", "numpy", "I love cats!"])
        assert r.returncode == 0, r.stderr
        assert "positive" in r.stdout
        assert accepted == [], "numbert connected to the Hub although the offline package was installed"


def test_a_download_from_a_silent_hub_times_out_with_a_clear_message(tmp_path):
    with silent_listener() as (port, accepted):
        r, seconds = _numbert_against(port, tmp_path, ["info", "numbert-tests/not-cached-anywhere"])
        assert accepted, "the Hub was never asked"
    assert r.returncode == 1, r.stderr
    assert f"Hugging Face Hub: no answer from http://127.0.0.1:{port} for 2 s while fetching " \
           "numbert-tests/not-cached-anywhere; gave up (set NUMBERT_HUB_TIMEOUT to wait longer" in r.stderr
    assert seconds < 60


# ------------------------------------------------------------------- --file and stdin lines (items 6, 7)

LINE_BREAKERS = "one\u2028two\x0cthree\r\nfour\x1cfive\x0bsix\x1d\x1e\x85\nlast\rline\n\n  \n"
EXPECTED_LINES = ["one\u2028two\x0cthree", "four\x1cfive\x0bsix\x1d\x1e\x85", "last\rline"]


def _cli(argv, monkeypatch, capsys, stdin_bytes=None):
    from numbert import cli

    if stdin_bytes is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin_bytes), encoding="utf-8"))
    code = cli.main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_file_and_stdin_lines_end_at_newline_only(head_folder, tmp_path, monkeypatch, capsys):
    """str.splitlines also breaks at U+2028, form feed, U+001C, vertical tab...: outputs no longer line up."""
    path = tmp_path / "texts.txt"
    path.write_bytes(LINE_BREAKERS.encode("utf-8"))
    common = ["classify", "--model", head_folder, "--backend", "numpy", "--json"]
    for argv, stdin in ((common + ["--file", path], None), (common + ["-"], LINE_BREAKERS.encode("utf-8"))):
        code, out, err = _cli(argv, monkeypatch, capsys, stdin)
        assert code == 0, err
        assert [json.loads(line)["text"] for line in out.split("\n")[:-1]] == EXPECTED_LINES  # JSON lines end at \n


def test_invalid_utf8_on_stdin_names_the_line_and_text(head_folder, monkeypatch, capsys):
    code, out, err = _cli(["embed", "--model", head_folder, "--backend", "numpy", "-"], monkeypatch, capsys,
                          b"fine\n\nbad \xff here\n")
    assert code == 2 and out == ""
    assert "stdin line 3 (texts[1]) is not valid UTF-8: byte 0xff at byte 5 of the line (invalid start byte)" in err


def test_a_lone_surrogate_argument_is_refused_by_name(head_folder, monkeypatch, capsys):
    # what Python makes of an undecodable byte in argv (surrogateescape): '\udcff'
    code, out, err = _cli(["classify", "--model", head_folder, "--backend", "numpy", "ok", "bad \udcff"],
                          monkeypatch, capsys)
    assert code == 2 and out == ""
    assert "texts[1] holds a lone surrogate '\\udcff' at character 4" in err


# ------------------------------------------------------------------- unreadable and odd model paths (item 7)

def _unprivileged():
    """Command prefix under which file permissions apply (root ignores them without these capabilities)."""
    if os.geteuid() != 0:
        return []
    prefix = ["setpriv", "--bounding-set", "-dac_override,-dac_read_search", "--"]
    if not shutil.which("setpriv") or subprocess.run([*prefix, "true"], capture_output=True).returncode != 0:
        pytest.skip("running as root, and setpriv cannot drop the capabilities: file permissions cannot be tested")
    return prefix


def _numbert(args, cwd=None, prefix=()):
    env = dict(os.environ, HF_HUB_OFFLINE="1")
    return subprocess.run([*prefix, sys.executable, "-m", "numbert", *map(str, args)], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=120)


def test_an_unreadable_model_folder_exits_1_with_the_places_tried(head_folder, tmp_path):
    locked = tmp_path / "locked"
    shutil.copytree(head_folder, locked)
    locked.chmod(0)
    try:
        r = _numbert(["info", locked], prefix=_unprivileged())
    finally:
        locked.chmod(0o755)
    assert r.returncode == 1, r.stderr
    assert f"model '{locked}' cannot be read. Tried:\n  - local folder {locked}: cannot be read (permission " \
           "denied)" in r.stderr
    assert "Traceback" not in r.stderr


def test_an_unreadable_safetensors_file_is_named_unreadable(head_folder, tmp_path):
    folder = tmp_path / "ckpt"
    shutil.copytree(head_folder, folder)
    (folder / "model.safetensors").chmod(0)
    r = _numbert(["info", folder], prefix=_unprivileged())
    assert r.returncode == 1, r.stderr
    assert f"{folder / 'model.safetensors'}: cannot be read (Permission denied)" in r.stderr
    assert "FileNotFoundError" not in r.stderr


def test_a_symlink_loop_is_named_and_not_tried_on_the_hub(tmp_path, monkeypatch):
    (tmp_path / "org").mkdir()
    (tmp_path / "org" / "name").symlink_to("name")  # org/name -> itself; "org/name" also reads as a Hub id
    (tmp_path / "a").symlink_to(tmp_path / "b")
    (tmp_path / "b").symlink_to(tmp_path / "a")
    for model in ("org/name", tmp_path / "a"):
        monkeypatch.chdir(tmp_path)
        with pytest.raises(numbert.CheckpointError) as e:
            numbert.load(model)
        assert f"local folder {model}: is a symlink loop" in str(e.value)
        assert "Hugging Face" not in str(e.value)


def test_embed_out_into_a_folder_it_cannot_write_fails_before_any_compute(tmp_path):
    """The model does not exist: reaching it would exit 1; the --out check must come first (exit 2)."""
    for out in (tmp_path / "no-such-folder" / "v.npy", tmp_path / "v.txt"):
        r = _numbert(["embed", "--model", tmp_path / "no-model-here", "--out", out, "some text"])
        assert r.returncode == 2, r.stderr
        assert "--out" in r.stderr and "not found" not in r.stderr
    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    r = _numbert(["embed", "--model", tmp_path / "no-model-here", "--out", read_only / "v.npy", "x"],
                 prefix=_unprivileged())
    assert r.returncode == 2, r.stderr
    assert f"cannot write --out {read_only / 'v.npy'}: Permission denied" in r.stderr
    assert list(read_only.iterdir()) == []


# ------------------------------------------------------------------- one rule for labels, the bar's label (item 7)

def test_a_model_without_a_head_reads_no_labels_as_sentiment_named_or_loaded(encoder_folder):
    texts = ["I love cats!", "He hates pineapple pizza."]
    loaded = numbert.load(encoder_folder, backend="numpy")
    expected = numbert.classify(texts, loaded, labels=list(api.DEFAULT_LABELS))
    assert numbert.classify(texts, loaded) == expected
    assert numbert.classify(texts, str(encoder_folder), backend="numpy") == expected


def test_zero_shot_progress_bar_is_labelled_classify(encoder_folder, capsys):
    numbert.classify(["a", "b", "c"], numbert.load(encoder_folder, backend="numpy"), batch_size=1, progress=True)
    err = capsys.readouterr().err
    assert "classify" in err and "embed" not in err


# ------------------------------------------------------------------- non-finite results (item 4, the output side)

@pytest.fixture
def nan_outputs(monkeypatch):
    """Every forward pass returns NaN in row 0 of its logits and hidden states (as a NaN weight would)."""
    from numbert.model import Model

    real_call = Model.__call__

    def poisoned(self, *args, **kwargs):
        out = real_call(self, *args, **kwargs)
        hidden = out.last_hidden_state.copy()
        hidden[0, 0, 0] = np.nan
        logits = None if out.logits is None else out.logits.copy()
        if logits is not None:
            logits[0, 0] = np.nan
        return out._replace(last_hidden_state=hidden, logits=logits)

    monkeypatch.setattr(Model, "__call__", poisoned)


def test_non_finite_scores_are_refused_and_json_never_prints_nan(head_folder, encoder_folder, nan_outputs,
                                                                 monkeypatch, capsys):
    head = numbert.load(head_folder, backend="numpy")
    encoder = numbert.load(encoder_folder, backend="numpy")
    with pytest.raises(numbert.CheckpointError, match=r"score for texts\[0\] is not finite"):
        numbert.classify(["a"], head)
    with pytest.raises(numbert.CheckpointError, match=r"embedding for texts\[0\] is not finite"):
        numbert.embed(["a"], encoder)
    for verb, folder in (("classify", head_folder), ("embed", encoder_folder)):
        code, out, err = _cli([verb, "--model", folder, "--backend", "numpy", "--json", "a", "b"], monkeypatch,
                              capsys)
        assert code == 1 and out == "", (verb, out)
        assert "is not finite (NaN or inf)" in err and "NaN" not in out
