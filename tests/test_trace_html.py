"""trace --html: one self-contained page that a real browser renders (headless Chromium)."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
import pytest

import numbert

CHROMIUM = "/usr/bin/chromium"
TEXTS = ["I love cats!", "He hates pineapple pizza."]
TINY = dict(num_labels=3, hidden_size=32, num_attention_heads=4, intermediate_size=37, num_hidden_layers=2)
needs_chromium = pytest.mark.skipif(not Path(CHROMIUM).exists(), reason=f"{CHROMIUM} absent (apt-get install chromium)")


@pytest.fixture(scope="module")
def trace(checkpoint_factory):
    return numbert.trace(TEXTS, numbert.load(checkpoint_factory(**TINY), backend="numpy"))


@pytest.fixture(scope="module")
def page(trace, tmp_path_factory):
    path = tmp_path_factory.mktemp("html") / "trace.html"
    trace.save_html(path)
    return path


def chromium(*args, timeout=120) -> subprocess.CompletedProcess:
    """Headless Chromium as root in a container: no sandbox, no GPU, nothing from the network."""
    profile = tempfile.mkdtemp(prefix="numbert-chromium-")
    try:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--hide-scrollbars", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=timeout)
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def test_page_is_self_contained(page, trace):
    html = page.read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    # nothing fetched: no external scripts, styles, images or fonts (the SVG namespace is only a name)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", html)
    assert "@import" not in html and "url(http" not in html and "<script" not in html
    for section in ("tokens", "flow", "attention", "steps"):
        assert f'id="{section}"' in html
    L, nh = trace.config.num_hidden_layers, trace.config.num_attention_heads
    assert html.count('<svg class="hm"') == len(TEXTS) * L * nh  # a heatmap per text, layer and head
    assert html.count('<svg class="flow"') == 1


def test_flow_diagram_has_a_shape_on_every_edge(page, trace):
    svg = re.search(r'<svg class="flow".*?</svg>', page.read_text(encoding="utf-8"), re.S).group(0)
    edges = svg.count('class="edge"') + svg.count('class="edge residual"')
    shapes = re.findall(r'class="shape[^"]*"[^>]*>(?:residual )?(\[[\d, ]+\])</text>', svg)
    assert edges >= 30 and len(shapes) == edges
    B, T = trace.batch.input_ids.shape
    c = trace.config
    for shape in ([B, T], [B, T, c.hidden_size], [B, c.num_attention_heads, T, c.head_size],
                  [B, c.num_attention_heads, c.head_size, T], [B, c.num_attention_heads, T, T],
                  [B, T, c.intermediate_size], [B, c.hidden_size]):
        assert str(shape) in shapes, f"no edge labelled {shape}"


def test_heatmaps_have_tokens_on_the_axes(page, trace):
    html = page.read_text(encoding="utf-8")
    first = re.search(r'<svg class="hm".*?</svg>', html, re.S).group(0)
    real = [tok for tok, m in zip(trace.tokens[0], trace.batch.attention_mask[0]) if m]
    labels = re.findall(r"<text[^>]*>([^<]*)</text>", first)
    assert labels == [x for tok in real for x in (tok, tok)]  # each token on the query and the key axis
    assert first.count("<rect") == len(real) ** 2  # padding left out


@needs_chromium
def test_page_renders_in_headless_chromium(page, trace, tmp_path):
    dom = chromium("--dump-dom", page.as_uri())
    assert dom.returncode == 0, dom.stderr[-2000:]
    for needle in ('id="tokens"', 'id="flow"', 'id="attention"', 'id="steps"', "The flow of the forward pass",
                   "BERT LAYER 1", "Attention Probabilities Softmax Layer", "[CLS]"):
        assert needle in dom.stdout, f"{needle!r} not in the rendered DOM"
    assert dom.stdout.count('class="hm"') == len(TEXTS) * trace.config.num_hidden_layers * 4

    PIL = pytest.importorskip("PIL.Image")
    shot = tmp_path / "page.png"
    run = chromium(f"--screenshot={shot}", "--window-size=1280,1000", page.as_uri())
    assert run.returncode == 0 and shot.exists(), run.stderr[-2000:]
    pixels = np.asarray(PIL.open(shot).convert("RGB")).astype(np.int16)  # [h, w, 3]
    assert pixels.shape[:2] == (1000, 1280)
    background = np.median(pixels.reshape(-1, 3), axis=0)
    drawn = (np.abs(pixels - background).sum(-1) > 40).mean()
    colours = len(np.unique(pixels.reshape(-1, 3) // 16, axis=0))
    assert drawn > 0.05 and colours > 20, f"the page looks blank: {drawn:.1%} drawn, {colours} colours"
    dark_header = pixels[:40].mean()  # the page's dark header band came out, so the CSS applied
    assert dark_header < 100
