"""trace.to_html(): the walkthrough as one self-contained page.

Four parts, all drawn here as HTML and inline SVG (no scripts, fonts or images from the
network): the tokens, the flow of the forward pass with the real shape on every edge, every
step with its statistics (and its difference to torch when checked), and the attention
probabilities of every layer and head as heatmaps with the tokens on the axes.
"""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from .trace import Trace, token_mask

# ---------------------------------------------------------------- small helpers


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def fmt_shape(shape) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


# "Blues" from ColorBrewer: light for small attention, dark for large.
_BLUES = np.array([[247, 251, 255], [222, 235, 247], [198, 219, 239], [158, 202, 225], [107, 174, 214],
                   [66, 146, 198], [33, 113, 181], [8, 81, 156], [8, 48, 107]], dtype=float)


def blue(p: float) -> str:
    x = min(max(float(p), 0.0), 1.0) * (len(_BLUES) - 1)
    i = min(int(x), len(_BLUES) - 2)
    c = _BLUES[i] + (_BLUES[i + 1] - _BLUES[i]) * (x - i)
    return "#%02x%02x%02x" % tuple(int(round(v)) for v in c)


# ---------------------------------------------------------------- the flow diagram


@dataclass
class Node:
    id: str
    col: int  # 0 left, 1 centre, 2 right
    row: float
    title: str
    step: str | None  # the trace step whose tensor leaves this box (its shape labels the edges out)
    kind: str = "op"  # op | input | norm | head


COL_X = (160, 370, 580)  # box centres
BOX_W, BOX_H, ROW_H, TOP = 176, 34, 60, 12
LANE_L, LANE_R = 44, 696  # the residual connections run down these x
WIDTH = 740
LAYER_ROW = 4.8  # first row inside the encoder layer frame


def flow_graph(trace: Trace) -> tuple[list[Node], list[tuple[str, str]], float]:
    """The boxes and edges of the forward pass: layer 1 in full, standing for all L layers."""
    L0 = "encoder.layer.0."
    r = LAYER_ROW
    nodes = [
        Node("ids", 0, 0, "input_ids", "embeddings.input_ids", "input"),
        Node("pos", 1, 0, "position_ids", "embeddings.position_ids", "input"),
        Node("typ", 2, 0, "token_type_ids", "embeddings.token_type_ids", "input"),
        Node("we", 0, 1, "Word Embeddings", "embeddings.word_embeddings"),
        Node("pe", 1, 1, "Position Embeddings", "embeddings.position_embeddings"),
        Node("te", 2, 1, "Token Type Embeddings", "embeddings.token_type_embeddings"),
        Node("sum", 1, 2, "Sum Up All Embeddings", "embeddings.sum"),
        Node("eln", 1, 3, "LayerNorm", "embeddings.LayerNorm", "norm"),
        Node("q", 0, r, "Query Linear", L0 + "attention.self.query"),
        Node("k", 1, r, "Key Linear", L0 + "attention.self.key"),
        Node("v", 2, r, "Value Linear", L0 + "attention.self.value"),
        Node("qh", 0, r + 1, "split heads: Query", L0 + "attention.self.query_heads"),
        Node("kh", 1, r + 1, "split heads: Key", L0 + "attention.self.key_heads"),
        Node("vh", 2, r + 1, "split heads: Value", L0 + "attention.self.value_heads"),
        Node("kt", 1, r + 2, "Key Transposed", L0 + "attention.self.key_transposed"),
        Node("sc", 1, r + 3, "Scores  Q · Kᵀ", L0 + "attention.self.scores"),
        Node("scs", 1, r + 4, "÷ √head size", L0 + "attention.self.scores_scaled"),
        Node("mask", 0, r + 5, "Attention Mask (additive)", "extended_attention_mask", "input"),
        Node("scm", 1, r + 5, "+ mask", L0 + "attention.self.scores_masked"),
        Node("pr", 1, r + 6, "Softmax: probabilities", L0 + "attention.self.probs", "head"),
        Node("ctx", 1, r + 7, "Context  P · V", L0 + "attention.self.context"),
        Node("ctp", 1, r + 8, "Context Permute", L0 + "attention.self.context_permuted"),
        Node("ctr", 1, r + 9, "Context Reshaped", L0 + "attention.self.context_reshaped"),
        Node("ad", 1, r + 10, "Attention Output Dense", L0 + "attention.output.dense"),
        Node("aln", 1, r + 11, "Add & LayerNorm", L0 + "attention.output.LayerNorm", "norm"),
        Node("id", 1, r + 12, "Intermediate Dense", L0 + "intermediate.dense"),
        Node("act", 1, r + 13, f"{trace.config.hidden_act.upper()} activation",
             L0 + "intermediate.intermediate_act_fn"),
        Node("od", 1, r + 14, "Output Dense", L0 + "output.dense"),
        Node("oln", 1, r + 15, "Add & LayerNorm", L0 + "output.LayerNorm", "norm"),
        Node("ft", 1, r + 16.4, "First Token [CLS]", "pooler.first_token"),
        Node("pd", 1, r + 17.4, "Pooler Dense", "pooler.dense"),
        Node("tanh", 1, r + 18.4, "Tanh", "pooler.activation"),
        Node("cls", 1, r + 19.4, "Classifier → logits", "classifier.logits", "head"),
    ]
    edges = [("ids", "we"), ("pos", "pe"), ("typ", "te"), ("we", "sum"), ("pe", "sum"), ("te", "sum"),
             ("sum", "eln"), ("eln", "q"), ("eln", "k"), ("eln", "v"), ("q", "qh"), ("k", "kh"), ("v", "vh"),
             ("kh", "kt"), ("qh", "sc"), ("kt", "sc"), ("sc", "scs"), ("scs", "scm"), ("mask", "scm"),
             ("scm", "pr"), ("pr", "ctx"), ("vh", "ctx"), ("ctx", "ctp"), ("ctp", "ctr"), ("ctr", "ad"),
             ("ad", "aln"), ("aln", "id"), ("id", "act"), ("act", "od"), ("od", "oln"), ("oln", "ft"),
             ("ft", "pd"), ("pd", "tanh"), ("tanh", "cls")]
    has = set(trace.names())
    nodes = [x for x in nodes if x.step in has]
    ids = {x.id for x in nodes}
    edges = [(a, b) for a, b in edges if a in ids and b in ids]
    return nodes, edges, max(x.row for x in nodes) + 1


def svg_flow(trace: Trace) -> str:
    nodes, edges, rows = flow_graph(trace)
    by_id = {x.id: x for x in nodes}
    shape = {s.name: fmt_shape(s.shape) for s in trace.steps}
    layout = {s.name: s.layout or "" for s in trace.steps}
    fan_out = {a for a, _ in edges if sum(1 for x, _ in edges if x == a) > 1}
    fan_in = {b for _, b in edges if sum(1 for _, y in edges if y == b) > 1}
    height = int(TOP + rows * ROW_H + 8)

    def top(n):
        return TOP + n.row * ROW_H

    def mid(n):
        return top(n) + BOX_H / 2

    parts = [f'<svg class="flow" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="flow of the forward pass">',
             '<defs><marker id="arr" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" fill="#6b7280"/></marker></defs>']
    # the encoder layer: a frame around its rows, with its repeat count
    L = trace.config.num_hidden_layers
    if "q" in by_id and "oln" in by_id:
        y0, y1 = top(by_id["q"]) - 40, top(by_id["oln"]) + BOX_H + 14
        parts.append(f'<rect x="14" y="{y0}" width="{WIDTH - 28}" height="{y1 - y0}" rx="12" class="layer"/>')
        parts.append(f'<text x="26" y="{y0 + 18}" class="layer-label">BertLayer × {L}</text>')
        parts.append(f'<text x="62" y="{y1 - 26}" class="layer-note">layer 1 drawn;</text>'
                     f'<text x="62" y="{y1 - 12}" class="layer-note">its output feeds layer 2</text>')
    labels = []
    for a, b in edges:
        s, d = by_id[a], by_id[b]
        label = esc(shape.get(s.step, ""))
        x1, y1 = COL_X[s.col], top(s) + BOX_H
        x2, y2 = COL_X[d.col], top(d)
        if s.row == d.row:  # side by side: from the side of one box into the side of the other
            xa, xb = x1 + BOX_W / 2, x2 - BOX_W / 2
            path = f"M{xa},{mid(s)} L{xb},{mid(d)}"
            lx, ly, anchor = x1, y1 + 13, "middle"  # under the source box: the gap is narrow
        elif s.col == d.col:
            path = f"M{x1},{y1} L{x2},{y2}"
            lx, ly, anchor = x1 + 6, (y1 + 9 if b in fan_in else (y1 + y2) / 2 + 4), "start"
        elif d.row - s.row <= 1.01 or a in fan_out:  # elbow just below the source (or above a merge)
            ym = y1 + 10 if a in fan_out else (y2 - 8 if b in fan_in else (y1 + y2) / 2)
            path = f"M{x1},{y1} L{x1},{ym} L{x2},{ym} L{x2},{y2}"
            lx, ly, anchor = (x2 + 6, y2 - 6, "start") if a in fan_out else (x1 + 6, y1 + 9, "start")
        else:  # down its own column, then across into the side of the box
            xb = x2 + (BOX_W / 2 if s.col > d.col else -BOX_W / 2)
            path = f"M{x1},{y1} L{x1},{mid(d)} L{xb},{mid(d)}"
            lx, ly, anchor = x1 + 6, y1 + 16, "start"
        if a in fan_out and s.col == d.col:
            lx, ly = x2 + 6, y2 - 6
        parts.append(f'<path d="{path}" class="edge" marker-end="url(#arr)"/>')
        labels.append(f'<text x="{lx}" y="{ly}" text-anchor="{anchor}" class="shape">{label}</text>')
    # residual connections: the input of each sub-layer, added back before its LayerNorm
    for a, b, lane in (("eln", "aln", LANE_L), ("aln", "oln", LANE_R)):
        if a not in by_id or b not in by_id:
            continue
        s, d = by_id[a], by_id[b]
        side = -1 if lane < COL_X[1] else 1
        xs = COL_X[1] + side * BOX_W / 2
        parts.append(f'<path d="M{xs},{mid(s)} L{lane},{mid(s)} L{lane},{mid(d)} L{xs},{mid(d)}" '
                     f'class="edge residual" marker-end="url(#arr)"/>')
        ym = (mid(s) + mid(d)) / 2
        lx = lane - 4 if side < 0 else lane + 12  # rotated text sits left of its baseline
        labels.append(f'<text x="{lx}" y="{ym}" text-anchor="middle" class="shape res" '
                      f'transform="rotate(-90 {lx} {ym})">residual {esc(shape.get(s.step, ""))}</text>')
    for x in nodes:
        cx, y = COL_X[x.col], top(x)
        parts.append(f'<g class="box {x.kind}"><title>{esc(x.step)}  {esc(shape.get(x.step, ""))}  '
                     f'{esc(layout.get(x.step, ""))}</title>'
                     f'<rect x="{cx - BOX_W / 2}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="7"/>'
                     f'<text x="{cx}" y="{y + 15}" class="t">{esc(x.title)}</text>'
                     f'<text x="{cx}" y="{y + 28}" class="n">{esc(x.step.split(".")[-1])}</text></g>')
    parts.extend(labels)
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- attention heatmaps


def svg_heatmap(probs: np.ndarray, tokens: list[str], title: str) -> str:
    """probs [T, T] (query rows, key columns) with the tokens on both axes."""
    T = len(tokens)
    cell = max(6, min(12, 100 // max(T, 1)))
    chars = max(len(t) for t in tokens)
    fs = 8 if cell >= 10 else 7
    margin = int(chars * fs * 0.62) + 6
    size = T * cell
    w, h = margin + size + 4, margin + size + 4
    titles = T <= 48  # a hover value per cell, while the page stays small
    out = [f'<svg class="hm" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" viewBox="0 0 {w} {h}">'
           f'<title>{esc(title)}</title>']
    for i in range(T):
        for j in range(T):
            p = float(probs[i, j])
            tip = f"<title>{esc(tokens[i])} → {esc(tokens[j])}: {p:.3f}</title>" if titles else ""
            out.append(f'<rect x="{margin + j * cell}" y="{margin + i * cell}" width="{cell}" height="{cell}" '
                       f'fill="{blue(p)}">{tip}</rect>')
    for i, t in enumerate(tokens):  # queries down the left, keys along the top (rotated)
        y = margin + i * cell + cell / 2 + fs / 3
        out.append(f'<text x="{margin - 3}" y="{y}" font-size="{fs}" text-anchor="end">{esc(t)}</text>')
        x = margin + i * cell + cell / 2 + fs / 3
        out.append(f'<text x="{x}" y="{margin - 3}" font-size="{fs}" transform="rotate(-90 {x} {margin - 3})">'
                   f'{esc(t)}</text>')
    out.append("</svg>")
    return "".join(out)


def attention_section(trace: Trace) -> str:
    L, nh = trace.config.num_hidden_layers, trace.config.num_attention_heads
    mask = trace.batch.attention_mask.astype(bool)
    out = ['<section id="attention"><h2>Attention, layer by layer and head by head</h2>',
           '<p class="note">Each square is one head\'s <code>attention.self.probs</code>: row = the token '
           'that looks (query), column = the token looked at (key); darker = more attention. Each row sums to 1. '
           'Padding is left out.</p>']
    shown = trace.layers or list(range(1, L + 1))
    # one tab per text: radio buttons and CSS, no script
    for b, text in enumerate(trace.texts):
        checked = " checked" if b == 0 else ""
        out.append(f'<input type="radio" name="attn-text" id="attn-t{b}" class="tab"{checked}>'
                   f'<label for="attn-t{b}">text {b}: {esc(text)}</label>')
    rules = " ".join(f"#attn-t{b}:checked ~ #attention-text-{b} {{ display:block; }}" for b in range(len(trace.texts)))
    out.append(f"<style>{rules}</style>")
    for b, text in enumerate(trace.texts):
        keep = np.flatnonzero(mask[b])
        tokens = [trace.tokens[b][t] for t in keep] if trace.tokens else [str(t) for t in keep]
        out.append(f'<div class="pane" id="attention-text-{b}">')
        for layer in shown:
            probs = trace[f"encoder.layer.{layer - 1}.attention.self.probs"][b]  # [nh, T, T]
            out.append(f'<div class="attn-layer" id="attention-{b}-layer-{layer}"><h4>BERT LAYER {layer}</h4>'
                       '<div class="heads">')
            for h in range(nh):
                p = probs[h][np.ix_(keep, keep)]
                out.append(f'<figure>{svg_heatmap(p, tokens, f"text {b}, layer {layer}, head {h + 1}")}'
                           f'<figcaption>head {h + 1}</figcaption></figure>')
            out.append("</div></div>")
        out.append("</div>")
    out.append("</section>")
    return "".join(out)


# ---------------------------------------------------------------- tokens and steps


def tokens_section(trace: Trace) -> str:
    b = trace.batch
    out = ['<section id="tokens"><h2>Tokens</h2><p class="note">What the tokenizer gives the model: '
           '<code>input_ids</code>, <code>token_type_ids</code> and <code>attention_mask</code> '
           f'[B, T] = {fmt_shape(b.input_ids.shape)}. Padding is grey.</p>']
    for i, text in enumerate(trace.texts):
        pair = f' <span class="pair">+ {esc(trace.text_pairs[i])}</span>' if trace.text_pairs else ""
        out.append(f'<div class="tokrow"><div class="src">text {i}: {esc(text)}{pair}</div><div class="toks">')
        for t in range(b.input_ids.shape[1]):
            tok = trace.tokens[i][t] if trace.tokens else str(b.input_ids[i, t])
            cls = "tok" + (" pad" if not b.attention_mask[i, t] else "") + (" seg1" if b.token_type_ids[i, t] else "")
            cls += " special" if tok.startswith("[") and tok.endswith("]") else ""
            out.append(f'<span class="{cls}"><b>{esc(tok)}</b><i>{b.input_ids[i, t]}</i>'
                       f'<i>type {b.token_type_ids[i, t]} · mask {b.attention_mask[i, t]}</i></span>')
        out.append("</div></div>")
    out.append("</section>")
    return "".join(out)


def steps_section(trace: Trace) -> str:
    ch = trace.check
    head = "<th>diff vs torch</th>" if ch else ""
    out = ['<section id="steps"><h2>Every step</h2>',
           '<p class="note">In forward order; statistics over real tokens. '
           + (esc(f"Checked against {ch.reference}: max abs diff {ch.max_abs_diff:.2e}, ")
              + ("all within tolerance." if ch.ok else esc(f"first divergence: {ch.first_divergence}."))
              if ch else "Run with --check-torch to add each step's difference to transformers.")
           + f'</p><table><thead><tr><th>step</th><th>name</th><th>shape</th><th>min</th><th>max</th>'
             f'<th>mean</th><th>std</th>{head}</tr></thead><tbody>']
    layer = None
    shown = trace.layers
    for s in trace.steps:
        if s.layer != layer:
            layer = s.layer
            if layer is not None:
                out.append(f'<tr class="sep"><td colspan="{8 if ch else 7}">BERT LAYER {layer + 1}</td></tr>')
        if layer is not None and shown is not None and layer + 1 not in shown:
            continue
        keep = token_mask(s.layout, s.shape, trace.batch.attention_mask)
        a = s.array[keep].astype(np.float64) if keep.shape == s.array.shape else s.array.astype(np.float64).ravel()
        stats = "".join(f"<td class=num>{v + 0.0:.4g}</td>" for v in (a.min(), a.max(), a.mean(), a.std())) if a.size \
            else "<td></td>" * 4
        diff = ""
        if ch:
            c = ch.steps.get(s.name)
            if c is None or c.max_abs_diff is None:
                diff = "<td>-</td>"
            else:
                diff = f'<td class="num {"ok" if c.ok else "bad"}">{c.max_abs_diff:.1e}</td>'
        out.append(f'<tr><td>{esc(s.title)}</td><td><code>{esc(s.key)}</code></td>'
                   f'<td class=num>{esc(fmt_shape(s.shape))} <span class="lay">{esc(s.layout or "")}</span></td>'
                   f'{stats}{diff}</tr>')
    out.append("</tbody></table></section>")
    return "".join(out)


CSS = """
:root { --ink:#1f2937; --mute:#6b7280; --line:#e5e7eb; --accent:#2563eb; --bg:#f8fafc; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;
       color:var(--ink); background:var(--bg); }
header { background:#0f172a; color:#f8fafc; padding:22px 32px; }
header h1 { margin:0 0 4px; font-size:22px; }
header .sub { color:#cbd5e1; }
.chips span { display:inline-block; margin:8px 8px 0 0; padding:3px 10px; border-radius:999px;
              background:#1e293b; color:#e2e8f0; font-size:12px; }
main { padding:8px 32px 40px; }
section { background:#fff; border:1px solid var(--line); border-radius:12px; padding:16px 20px; margin:18px 0; }
h2 { margin:0 0 8px; font-size:17px; } h3 { font-size:14px; margin:14px 0 6px; }
h4 { margin:10px 0 4px; font-size:13px; color:var(--mute); }
.note { color:var(--mute); margin:0 0 12px; }
code { font:12px ui-monospace,"DejaVu Sans Mono",monospace; }
.tokrow { margin:10px 0; } .src { margin-bottom:6px; }
.toks { display:flex; flex-wrap:wrap; gap:6px; }
.tok { display:flex; flex-direction:column; align-items:center; padding:5px 9px; border-radius:8px;
       background:#dbeafe; border:1px solid #bfdbfe; min-width:46px; }
.tok b { font-weight:600; } .tok i { font-style:normal; font-size:11px; color:var(--mute); }
.tok.special { background:#ede9fe; border-color:#ddd6fe; } .tok.seg1 { background:#dcfce7; border-color:#bbf7d0; }
.tok.pad { background:#f3f4f6; border-color:#e5e7eb; color:#9ca3af; }
.grid { display:grid; grid-template-columns: minmax(0, 790px) minmax(0, 1fr); gap:18px; align-items:start;
        margin:18px 0; }
.grid > section { margin:0; }
@media (max-width: 1200px) { .grid { grid-template-columns: 1fr; } }
svg.flow { max-width:100%; height:auto; }
svg.flow .box rect { fill:#eff6ff; stroke:#93c5fd; }
svg.flow .box.input rect { fill:#f5f3ff; stroke:#c4b5fd; }
svg.flow .box.norm rect { fill:#ecfdf5; stroke:#6ee7b7; }
svg.flow .box.head rect { fill:#fff7ed; stroke:#fdba74; }
svg.flow .t { font-size:12px; font-weight:600; text-anchor:middle; fill:#111827; }
svg.flow .n { font:10px ui-monospace,"DejaVu Sans Mono",monospace; text-anchor:middle; fill:#6b7280; }
svg.flow .edge { fill:none; stroke:#9ca3af; stroke-width:1.4; }
svg.flow .edge.residual { stroke:#10b981; stroke-dasharray:5 4; }
svg.flow .shape { font:10.5px ui-monospace,"DejaVu Sans Mono",monospace; fill:#b45309; paint-order:stroke;
                  stroke:#fff; stroke-width:3px; }
svg.flow .layer { fill:#fafafa; stroke:#cbd5e1; stroke-dasharray:6 4; }
svg.flow .shape.res { fill:#047857; }
svg.flow .layer-label { font-size:13px; fill:#475569; font-weight:700; }
svg.flow .layer-note { font-size:11px; fill:#64748b; }
table { border-collapse:collapse; width:100%; font-size:12px; }
th, td { text-align:left; padding:3px 8px; border-bottom:1px solid var(--line); white-space:nowrap; }
th { position:sticky; top:0; background:#fff; }
td.num { font-family:ui-monospace,"DejaVu Sans Mono",monospace; text-align:right; }
.lay { color:var(--mute); }
tr.sep td { background:#f1f5f9; font-weight:600; color:#334155; }
td.ok { color:#047857; } td.bad { color:#b91c1c; font-weight:700; }
.heads { display:flex; flex-wrap:wrap; gap:8px 10px; }
input.tab { display:none; }
input.tab + label { display:inline-block; padding:4px 12px; margin:0 6px 6px 0; border:1px solid var(--line);
                    border-radius:999px; cursor:pointer; color:var(--mute); }
input.tab:checked + label { background:var(--accent); border-color:var(--accent); color:#fff; }
.pane { display:none; }
#flow { position:sticky; top:8px; }
figure { margin:0; text-align:center; } figcaption { font-size:11px; color:var(--mute); }
svg.hm text { fill:#374151; font-family:ui-monospace,"DejaVu Sans Mono",monospace; }
"""


def render_html(trace: Trace) -> str:
    c = trace.config
    B, T = trace.batch.input_ids.shape
    chips = [f"B = {B} texts", f"T = {T} tokens", f"H = {c.hidden_size}", f"L = {c.num_hidden_layers} layers",
             f"nh = {c.num_attention_heads} heads", f"hs = {c.head_size}", f"I = {c.intermediate_size}",
             f"activation {c.hidden_act}", f"{len(trace.steps)} steps"]
    if trace.check:
        chips.append(f"vs torch: max diff {trace.check.max_abs_diff:.1e}")
    body = [
        "<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
        f"<title>numbert trace: {esc(trace.model_name)}</title>",
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<style>{CSS}</style></head><body>",
        f'<header><h1>Inside BERT: {esc(trace.model_name)}</h1>'
        f'<div class="sub">The forward pass of numbert\'s NumPy reference, tensor by tensor, '
        f'on {B} text(s).</div><div class="chips">{"".join(f"<span>{esc(x)}</span>" for x in chips)}</div></header>',
        "<main>",
        tokens_section(trace),
        '<div class="grid"><section id="flow"><h2>The flow of the forward pass</h2>'
        '<p class="note">Each box is a step of the code; each edge carries the tensor of the box above it, '
        'labelled with its shape. Hover a box for its step name.</p>' + svg_flow(trace) + "</section>",
        attention_section(trace) + "</div>",
        steps_section(trace),
        "</main></body></html>",
    ]
    return "\n".join(body)
