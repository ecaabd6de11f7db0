"""trace(..., check="torch"): the same intermediates from transformers, and how far each one is.

transformers' eager BertModel / BertForSequenceClassification runs on the trace's own ids.
Forward hooks on its modules capture every step that is a module's output (`query`,
`attention.output.dense`, `intermediate.intermediate_act_fn`, `pooler.activation`, ...) under
the module's own path, which is numbert's step name. The steps inside the attention
(heads, scores, softmax, context) are not module outputs: they are recomputed here from the
hooked query / key / value outputs and the mask torch passed to the attention, with the
same torch ops eager_attention_forward uses; its softmax (the attention weights) and its
context (the self-attention output) are the module's real outputs.

The only module of numbert that imports torch.
"""

from __future__ import annotations

import numpy as np

from .model import Model
from .trace import Check, StepCheck, Trace, token_mask


def torch_reference(model: Model):
    """transformers' model for the trace's checkpoint: fp32, eager attention, eval mode."""
    import torch
    import transformers

    if model.path is None:
        raise ValueError("check='torch' needs the model's checkpoint folder; this Model has no path")
    log_level = transformers.logging.get_verbosity()
    bar = transformers.logging.is_progress_bar_enabled()
    transformers.logging.set_verbosity_error()  # "some weights were not initialised": we copy them below
    transformers.logging.disable_progress_bar()
    try:
        if model.weights.classifier is not None:
            ref = transformers.BertForSequenceClassification.from_pretrained(
                str(model.path), attn_implementation="eager", dtype=torch.float32,
                num_labels=model.weights.classifier.weight.shape[0])
        else:
            ref = transformers.BertModel.from_pretrained(str(model.path), attn_implementation="eager",
                                                         dtype=torch.float32)
    finally:
        transformers.logging.set_verbosity(log_level)
        if bar:
            transformers.logging.enable_progress_bar()
    if model.weights.classifier is not None:
        # numbert may have given an encoder-only checkpoint a fresh seeded head (load(num_labels=...)),
        # which transformers initialises differently: compare the rest, with the same head.
        with torch.no_grad():
            ref.classifier.weight.copy_(torch.from_numpy(np.ascontiguousarray(model.weights.classifier.weight)))
            ref.classifier.bias.copy_(torch.from_numpy(np.ascontiguousarray(model.weights.classifier.bias)))
    return ref.eval()


def capture(ref, batch, num_heads: int, names) -> dict[str, np.ndarray]:
    """Run transformers on the batch; return its intermediates under numbert's step names."""
    import torch

    bert = ref.bert if hasattr(ref, "bert") else ref
    prefix = "bert." if bert is not ref else ""
    got: dict[str, np.ndarray] = {}
    attn_inputs: dict[str, dict] = {}

    def keep(name, tensor):
        got[name] = tensor.detach().to(torch.float32).numpy().copy() if tensor.is_floating_point() \
            else tensor.detach().numpy().copy()

    def on_output(name):
        def hook(module, args, output):
            keep(name, output[0] if isinstance(output, tuple) else output)
        return hook

    def on_input(name):
        def hook(module, args):
            keep(name, args[0])
        return hook

    def on_attention_call(name):
        def hook(module, args, kwargs):
            attn_inputs[name] = {"mask": kwargs.get("attention_mask", args[1] if len(args) > 1 else None)}
        return hook

    def on_attention_output(name):
        def hook(module, args, output):
            attn_inputs[name]["probs"] = output[1]
            attn_inputs[name]["context_reshaped"] = output[0]
        return hook

    handles = []
    for full, module in ref.named_modules():
        name = full[len(prefix):] if full.startswith(prefix) else full
        if not name or "dropout" in name:
            continue
        if name.endswith("attention.self"):
            handles.append(module.register_forward_pre_hook(on_attention_call(name), with_kwargs=True))
            handles.append(module.register_forward_hook(on_attention_output(name)))
        elif name == "classifier":
            handles.append(module.register_forward_hook(on_output("classifier.logits")))
        elif name in names:  # a step that is this module's output
            handles.append(module.register_forward_hook(on_output(name)))
    emb = bert.embeddings
    handles += [
        emb.word_embeddings.register_forward_pre_hook(on_input("embeddings.input_ids")),
        emb.position_embeddings.register_forward_pre_hook(on_input("embeddings.position_ids")),
        emb.token_type_embeddings.register_forward_pre_hook(on_input("embeddings.token_type_ids")),
        emb.LayerNorm.register_forward_pre_hook(on_input("embeddings.sum")),
    ]
    if bert.pooler is not None:
        handles.append(bert.pooler.dense.register_forward_pre_hook(on_input("pooler.first_token")))
    try:
        with torch.no_grad():
            ref(input_ids=torch.from_numpy(batch.input_ids), attention_mask=torch.from_numpy(batch.attention_mask),
                token_type_ids=torch.from_numpy(batch.token_type_ids))
            for name, seen in attn_inputs.items():
                got.update(attention_internals(name, got, seen, num_heads))
    finally:
        for h in handles:
            h.remove()
    return got


def attention_internals(name, got, seen, num_heads) -> dict[str, np.ndarray]:
    """The steps inside eager_attention_forward, from the hooked projections, with torch ops."""
    import torch

    q, k, v = (torch.from_numpy(got[f"{name}.{p}"]) for p in ("query", "key", "value"))  # [B, T, H]
    B, T, H = q.shape
    hs = H // num_heads

    def heads(x):  # [B, T, H] -> [B, nh, T, hs], as BertSelfAttention.forward
        return x.view(B, T, -1, hs).transpose(1, 2)

    qh, kh, vh = heads(q), heads(k), heads(v)
    mask = seen["mask"]
    if mask is None:  # transformers skips the mask when nothing is padded
        mask = torch.zeros(B, 1, 1, T)
    elif mask.dtype == torch.bool:  # a "keep" mask (sdpa style): make it additive, as eager needs
        mask = torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    key_t = kh.transpose(2, 3)
    scores = torch.matmul(qh, key_t)
    scaled = scores * (hs ** -0.5)  # eager_attention_forward multiplies by module.scaling
    masked = scaled + mask
    probs = seen["probs"]
    context = torch.matmul(probs, vh)
    out = {"query_heads": qh, "key_heads": kh, "value_heads": vh, "key_transposed": key_t, "scores": scores,
           "scores_scaled": scaled, "scores_masked": masked, "probs": probs, "context": context,
           "context_permuted": context.transpose(1, 2), "context_reshaped": seen["context_reshaped"]}
    result = {f"{name}.{k}": t.numpy().copy() for k, t in out.items()}
    if name.endswith("layer.0.attention.self"):
        result["extended_attention_mask"] = mask.numpy().copy()
    return result


def compare(trace: Trace, theirs: dict[str, np.ndarray], tolerance: float) -> dict[str, StepCheck]:
    """Max abs difference per step at real token positions, in forward order."""
    mask = trace.batch.attention_mask
    out = {}
    for step in trace.steps:
        ref = theirs.get(step.name)
        if ref is None:
            out[step.name] = StepCheck(step.name, None, tolerance, True)
            continue
        ours = step.array
        if ref.shape != ours.shape:
            try:  # e.g. torch's mask [B, 1, T, T] against numbert's [B, 1, 1, T]
                shape = np.broadcast_shapes(ref.shape, ours.shape)
            except ValueError:
                out[step.name] = StepCheck(step.name, float("inf"), tolerance, False)
                continue
            ours, ref = np.broadcast_to(ours, shape), np.broadcast_to(ref, shape)
        keep = token_mask(step.layout, ours.shape, mask) if ours.shape == step.shape else np.ones(ours.shape, bool)
        a, b = ours.astype(np.float64)[keep], ref.astype(np.float64)[keep]
        diff = float(np.abs(a - b).max()) if a.size else 0.0
        if not np.isfinite(diff):
            diff = float("inf")
        scale = float(np.abs(b).max()) if b.size else 0.0
        limit = tolerance * max(1.0, scale if np.isfinite(scale) else 1.0)
        out[step.name] = StepCheck(step.name, diff, limit, diff <= limit)
    return out


def check_against_torch(trace: Trace, model: Model, tolerance: float = 1e-4) -> Check:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        raise ImportError(f"check='torch' needs torch and transformers ({e}); pip install torch transformers") from None
    ref = torch_reference(model)
    theirs = capture(ref, trace.batch, model.config.num_attention_heads, set(trace.names()))
    reference = f"transformers {transformers.__version__} {type(ref).__name__} (eager, fp32)"
    return Check(compare(trace, theirs, tolerance), reference, tolerance)
