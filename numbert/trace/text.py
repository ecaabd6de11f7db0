"""print(trace): the walkthrough as text, one line per step, layers in BERT LAYER n blocks."""

from __future__ import annotations

import numpy as np

from .catalogue import ALL_STEPS, StepInfo, split_name
from .core import Recording, fmt_shape, token_mask

TITLE_W, SHAPE_W, LAYOUT_W = 43, 16, 11
RULE = "-----------------"
UNKNOWN = StepInfo("", "", "")  # a step the catalogue does not list: no hidden state, no dropout note


def fmt_num(x: float) -> str:
    x = float(x) + 0.0  # no "-0"
    return f"{x:.6g}" if float(x).is_integer() and abs(x) < 1e7 else f"{x:.4g}"


def header(trace: Recording) -> list[str]:
    c = trace.config
    B, T = trace.batch.input_ids.shape
    lines = [
        f"numbert trace: {trace.model_name}, {B} text(s) x {T} tokens, NumPy reference path",
        f"NUMBER OF LAYERS: {c.num_hidden_layers}   EMBEDDING SIZE: {c.hidden_size}   "
        f"HEADS: {c.num_attention_heads} x {c.head_size}   INTERMEDIATE SIZE: {c.intermediate_size}   "
        f"ACTIVATIONS: {c.hidden_act}",
        "",
        "TOKENIZER",
    ]
    b = trace.batch
    for i, text in enumerate(trace.texts):
        pair = f" + {trace.text_pairs[i]!r}" if trace.text_pairs else ""
        lines.append(f"text {i}: {text!r}{pair}")
        toks = b.tokens[i] if b.tokens else [str(t) for t in b.input_ids[i]]
        rows = [("tokens", toks), ("input_ids", [str(v) for v in b.input_ids[i]]),
                ("attention_mask", [str(v) for v in b.attention_mask[i]]),
                ("token_type_ids", [str(v) for v in b.token_type_ids[i]])]
        widths = [max(len(r[1][j]) for r in rows) for j in range(len(toks))]
        for label, cells in rows:
            lines.append(f"  {label:<15} " + "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    lines.append("")
    return lines


def step_line(title, shape, layout, name, diff="", flag="") -> str:
    return f"  {title:<{TITLE_W}} {shape:<{SHAPE_W}} {layout:<{LAYOUT_W}} {diff}{name}{flag}".rstrip()


def diff_cells(trace: Recording, name: str) -> tuple[str, str]:
    """The check column ("diff 7.2e-07 ok") and a flag at the line's end for a divergent step."""
    if trace.check is None:
        return "", ""
    s = trace.check.steps.get(name)
    if s is None or s.max_abs_diff is None:
        return f"{'no torch twin':<17}", ""
    cell = f"diff {s.max_abs_diff:.1e} {'ok' if s.ok else 'BAD':<4}"
    if s.ok:
        return cell, ""
    first = name == trace.check.first_divergence
    return cell, f"   <-- {'FIRST DIVERGENCE' if first else 'diverges'} (tolerance {s.tolerance:.1e})"


def detail_lines(step, mask, values: bool, stats: bool) -> list[str]:
    a = step.array
    pad = " " * 6
    out = []
    if values:
        index = (0,) * (a.ndim - 1)
        row = a[index] if a.ndim else a.reshape(1)
        n = 12 if np.issubdtype(a.dtype, np.integer) else 6
        integer = np.issubdtype(a.dtype, np.integer)
        shown = " ".join(str(v) if integer else f"{v + 0.0: .4f}" for v in row[:n])  # + 0.0: no "-0.0000"
        more = " ..." if row.size > n else ""
        where = "[" + ", ".join([*map(str, index), f":{n}" if row.size > n else ":"]) + "]"
        out.append(f"{pad}{where} = {shown}{more}")
    if stats:
        real = a[mask].astype(np.float64) if mask.shape == a.shape else a.astype(np.float64).ravel()
        if real.size:
            out.append(f"{pad}min {fmt_num(real.min())}  max {fmt_num(real.max())}  "
                       f"mean {fmt_num(real.mean())}  std {fmt_num(real.std())}   (real tokens)")
    return out


def layer_rule(layer: int | None, layers: list[int] | None, name: str = "") -> list[str]:
    """The "---- BERT LAYER n ----" line that opens an encoder layer; "..." under it when it is not shown.

    name: the layer's first step, whose path names the layer (DistilBERT's is transformer.layer.N).
    """
    if layer is None:
        return []
    path = name[:len(name) - len(split_name(name)[1]) - 1] if name else f"encoder.layer.{layer}"
    lines = [f"{RULE} BERT LAYER {layer + 1} {RULE}   {path}"]
    if layers is not None and layer + 1 not in layers:
        lines.append("  ...")
    return lines


def module_lines(trace: Recording, module: str, hidden, layer: int | None, blank: str) -> list[str]:
    """The line that opens a transformers module, then the Hidden States it reads (the walkthrough's input line)."""
    c = trace.config
    extra = ""
    if module == "BertSelfAttention":
        extra = f"   Attention Head Size: {c.head_size}   Combined Attentions Head Size: {c.hidden_size}"
    lines = [f"{module}{extra}"]
    if hidden is not None and module not in ("BertEmbeddings", "BertModel"):
        label = "Pooled Output" if module == "Classifier" else "Hidden States"
        source = hidden.key if hidden.layer is not None and hidden.layer == layer else hidden.name
        lines.append(step_line(label, fmt_shape(hidden.shape), hidden.layout or "", blank + f"(input: {source})"))
    return lines


def step_lines(trace: Recording, step, info: StepInfo, values: bool, stats: bool, blank: str) -> list[str]:
    """One step's line, its details, and the dropout the walkthrough shows around it."""
    lines = []
    if info.dropout_before:
        lines.append(step_line(info.dropout_before, "", "", blank + "identity at inference"))
    name = step.key if step.layer is not None else step.name
    lines.append(step_line(step.title, fmt_shape(step.shape), step.layout or "", name, *diff_cells(trace, step.name)))
    if values or stats:
        mask = token_mask(step.layout, step.shape, trace.batch.attention_mask)
        lines.extend(detail_lines(step, mask, values, stats))
    if info.dropout_after:
        lines.append(step_line(info.dropout_after, "", "", blank + "identity at inference"))
    return lines


def render(trace: Recording, layers: list[int] | None, values: bool = False, stats: bool = False) -> str:
    lines = header(trace)
    module = layer = None
    hidden = None  # the step whose output the next module reads
    blank = " " * 17 if trace.check is not None else ""  # keeps the name column aligned under a check
    for step in trace.steps:
        info = ALL_STEPS.get(step.key, UNKNOWN)
        if step.layer != layer:
            layer, module = step.layer, None
            lines.extend(layer_rule(layer, layers, step.name))
        if layer is None or layers is None or layer + 1 in layers:
            if step.module != module:
                module = step.module
                lines.extend(module_lines(trace, module, hidden, layer, blank))
            lines.extend(step_lines(trace, step, info, values, stats, blank))
        if info.hidden:
            hidden = step
    if trace.check is not None:
        lines.extend(["", check_summary(trace)])
    return "\n".join(lines)


def check_summary(trace: Recording) -> str:
    ch = trace.check
    n = sum(s.max_abs_diff is not None for s in ch.steps.values())
    head = (f"checked against {ch.reference}: {n} steps at real tokens, max abs diff {ch.max_abs_diff:.2e} "
            f"(tolerance {ch.tolerance:g} x max(1, |value|))")
    if ch.ok:
        return head + "\nall steps within tolerance"
    first = ch.steps[ch.first_divergence]
    bad = sum(not s.ok for s in ch.steps.values())
    return (head + f"\nFIRST DIVERGENCE: {first.name} (max abs diff {first.max_abs_diff:.3e} > {first.tolerance:.1e}); "
            f"{bad} step(s) beyond tolerance")
