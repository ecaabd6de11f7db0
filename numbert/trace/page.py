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

from .catalogue import ALL_STEPS, CATALOGUE, LAYER_KEYS, RESIDUALS, STEPS, full_name
from .core import Recording, fmt_shape, token_mask

# ---------------------------------------------------------------- small helpers


def esc(x) -> str:
    return html.escape(str(x), quote=True)


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
    id: str  # the step's catalogue key
    col: int  # 0 left, 1 centre, 2 right
    row: float
    title: str
    step: str  # the trace step whose tensor leaves this box (its shape labels the edges out)
    kind: str = "op"  # op | input | norm | head

    @property
    def top(self) -> float:
        return TOP + self.row * ROW_H

    @property
    def mid(self) -> float:  # the height of the box's middle: where side arrows meet it
        return self.top + BOX_H / 2


COL_X = (160, 370, 580)  # box centres
BOX_W, BOX_H, ROW_H, TOP = 176, 34, 60, 12
LANE_L, LANE_R = 44, 696  # the residual connections run down these x
WIDTH = 740


def flow_graph(trace: Recording) -> tuple[list[Node], list[tuple[str, str]], float]:
    """The boxes and edges of the forward pass: layer 1 in full, standing for all L layers.

    Every step of the catalogue with a Box is a box; its inputs are the edges into it. Boxes
    come in reading order (row by row, left to right), edges in the order of the boxes they enter.
    """
    has = set(trace.names())
    act = trace.config.hidden_act.upper()
    nodes = [Node(s.key, s.box.col, s.box.row, s.box.label.format(act=act), full_name(s.key), s.box.kind)
             for s in STEPS if s.box is not None and full_name(s.key) in has]
    nodes.sort(key=lambda n: (n.row, n.col))
    ids = {x.id for x in nodes}
    edges = [(a, x.id) for x in nodes for a in CATALOGUE[x.id].inputs if a in ids]
    return nodes, edges, max(x.row for x in nodes) + 1


def svg_layer_frame(nodes: list[Node], num_layers: int) -> list[str]:
    """A frame around the encoder layer's rows, with its repeat count."""
    inside = [x for x in nodes if x.id in LAYER_KEYS]
    if not inside:
        return []
    y0 = min(x.top for x in inside) - 40
    y1 = max(x.top for x in inside) + BOX_H + 14
    return [f'<rect x="14" y="{y0}" width="{WIDTH - 28}" height="{y1 - y0}" rx="12" class="layer"/>',
            f'<text x="26" y="{y0 + 18}" class="layer-label">BertLayer × {num_layers}</text>',
            f'<text x="62" y="{y1 - 26}" class="layer-note">layer 1 drawn;</text>'
            f'<text x="62" y="{y1 - 12}" class="layer-note">its output feeds layer 2</text>']


def edge_route(s: Node, d: Node, fans_out: bool, fans_in: bool) -> tuple[str, float, float, str]:
    """The path of the arrow from box s to box d, and where its shape label goes: (path, x, y, anchor)."""
    x1, y1 = COL_X[s.col], s.top + BOX_H
    x2, y2 = COL_X[d.col], d.top
    if s.row == d.row:  # side by side: from the side of one box into the side of the other
        xa, xb = x1 + BOX_W / 2, x2 - BOX_W / 2
        path = f"M{xa},{s.mid} L{xb},{d.mid}"
        lx, ly, anchor = x1, y1 + 13, "middle"  # under the source box: the gap is narrow
    elif s.col == d.col:
        path = f"M{x1},{y1} L{x2},{y2}"
        lx, ly, anchor = x1 + 6, (y1 + 9 if fans_in else (y1 + y2) / 2 + 4), "start"
    elif d.row - s.row <= 1.01 or fans_out:  # elbow just below the source (or above a merge)
        ym = y1 + 10 if fans_out else (y2 - 8 if fans_in else (y1 + y2) / 2)
        path = f"M{x1},{y1} L{x1},{ym} L{x2},{ym} L{x2},{y2}"
        lx, ly, anchor = (x2 + 6, y2 - 6, "start") if fans_out else (x1 + 6, y1 + 9, "start")
    else:  # down its own column, then across into the side of the box
        xb = x2 + (BOX_W / 2 if s.col > d.col else -BOX_W / 2)
        path = f"M{x1},{y1} L{x1},{d.mid} L{xb},{d.mid}"
        lx, ly, anchor = x1 + 6, y1 + 16, "start"
    if fans_out and s.col == d.col:
        lx, ly = x2 + 6, y2 - 6
    return path, lx, ly, anchor


def svg_residual(s: Node, d: Node, lane: float, shape: str) -> tuple[str, str]:
    """The residual connection from box s down `lane` into box d: (the path, its rotated label)."""
    side = -1 if lane < COL_X[1] else 1
    xs = COL_X[1] + side * BOX_W / 2
    path = (f'<path d="M{xs},{s.mid} L{lane},{s.mid} L{lane},{d.mid} L{xs},{d.mid}" '
            f'class="edge residual" marker-end="url(#arr)"/>')
    ym = (s.mid + d.mid) / 2
    lx = lane - 4 if side < 0 else lane + 12  # rotated text sits left of its baseline
    label = (f'<text x="{lx}" y="{ym}" text-anchor="middle" class="shape res" '
             f'transform="rotate(-90 {lx} {ym})">residual {esc(shape)}</text>')
    return path, label


def svg_box(x: Node, shape: str, layout: str) -> str:
    cx, y = COL_X[x.col], x.top
    return (f'<g class="box {x.kind}"><title>{esc(x.step)}  {esc(shape)}  {esc(layout)}</title>'
            f'<rect x="{cx - BOX_W / 2}" y="{y}" width="{BOX_W}" height="{BOX_H}" rx="7"/>'
            f'<text x="{cx}" y="{y + 15}" class="t">{esc(x.title)}</text>'
            f'<text x="{cx}" y="{y + 28}" class="n">{esc(x.step.split(".")[-1])}</text></g>')


def svg_flow(trace: Recording) -> str:
    nodes, edges, rows = flow_graph(trace)
    by_id = {x.id: x for x in nodes}
    shape = {s.name: fmt_shape(s.shape) for s in trace.steps}
    layout = {s.name: s.layout or "" for s in trace.steps}
    fan_out = {a for a, _ in edges if sum(1 for x, _ in edges if x == a) > 1}
    fan_in = {b for _, b in edges if sum(1 for _, y in edges if y == b) > 1}
    height = int(TOP + rows * ROW_H + 8)
    parts = [f'<svg class="flow" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{height}" '
             f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="flow of the forward pass">',
             '<defs><marker id="arr" viewBox="0 0 8 8" refX="7" refY="4" markerWidth="7" markerHeight="7" '
             'orient="auto-start-reverse"><path d="M0,0 L8,4 L0,8 z" fill="#6b7280"/></marker></defs>']
    parts += svg_layer_frame(nodes, trace.config.num_hidden_layers)
    labels = []  # drawn last, over the edges
    for a, b in edges:
        s = by_id[a]
        path, lx, ly, anchor = edge_route(s, by_id[b], a in fan_out, b in fan_in)
        parts.append(f'<path d="{path}" class="edge" marker-end="url(#arr)"/>')
        label = esc(shape.get(s.step, ""))
        labels.append(f'<text x="{lx}" y="{ly}" text-anchor="{anchor}" class="shape">{label}</text>')
    for (a, b), lane in zip(RESIDUALS, (LANE_L, LANE_R)):
        if a in by_id and b in by_id:
            path, label = svg_residual(by_id[a], by_id[b], lane, shape.get(by_id[a].step, ""))
            parts.append(path)
            labels.append(label)
    parts += [svg_box(x, shape.get(x.step, ""), layout.get(x.step, "")) for x in nodes]
    parts.extend(labels)
    parts.append("</svg>")
    return "".join(parts)


# ---------------------------------------------------------------- attention heatmaps

HEATMAP = next(s.key for s in STEPS if s.heatmap)  # the attention probabilities


def heatmap_key(trace: Recording) -> str:
    """The attention probabilities' step in this trace: BERT's, or the family's (MPNet's attention.attn.probs ...)."""
    return next((s.key for s in trace.steps if s.layer is not None and s.key in ALL_STEPS and ALL_STEPS[s.key].heatmap),
                HEATMAP)


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


def attention_section(trace: Recording) -> str:
    L, nh = trace.config.num_hidden_layers, trace.config.num_attention_heads
    mask = trace.batch.attention_mask.astype(bool)
    key = heatmap_key(trace)
    out = ['<section id="attention"><h2>Attention, layer by layer and head by head</h2>',
           f'<p class="note">Each square is one head\'s <code>{key}</code>: row = the token '
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
            probs = trace[full_name(key, layer - 1)][b]  # [nh, T, T]
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


def tokens_section(trace: Recording) -> str:
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


def step_row(trace: Recording, s) -> str:
    """One row of the steps table: title, name, shape, statistics at real tokens, and the diff when checked."""
    keep = token_mask(s.layout, s.shape, trace.batch.attention_mask)
    a = s.array[keep].astype(np.float64) if keep.shape == s.array.shape else s.array.astype(np.float64).ravel()
    stats = "".join(f"<td class=num>{v + 0.0:.4g}</td>" for v in (a.min(), a.max(), a.mean(), a.std())) if a.size \
        else "<td></td>" * 4
    diff = ""
    if trace.check:
        c = trace.check.steps.get(s.name)
        if c is None or c.max_abs_diff is None:
            diff = "<td>-</td>"
        else:
            diff = f'<td class="num {"ok" if c.ok else "bad"}">{c.max_abs_diff:.1e}</td>'
    return (f'<tr><td>{esc(s.title)}</td><td><code>{esc(s.key)}</code></td>'
            f'<td class=num>{esc(fmt_shape(s.shape))} <span class="lay">{esc(s.layout or "")}</span></td>'
            f'{stats}{diff}</tr>')


def steps_section(trace: Recording) -> str:
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
        if layer is None or shown is None or layer + 1 in shown:
            out.append(step_row(trace, s))
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


def render_html(trace: Recording) -> str:
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
