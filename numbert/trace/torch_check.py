"""trace(..., check="torch"): the same intermediates from transformers, and how far each one is.

transformers' eager BertModel / BertForSequenceClassification runs on the trace's own ids.
The catalogue says where each step's twin is (`Twin`): most steps are a module's output
(`query`, `attention.output.dense`, `intermediate.intermediate_act_fn`, ...) under the
module's own path, which is numbert's step name; a few are a module's input (the ids, the
embeddings' sum) or the mask an attention is called with. Forward hooks keep those. The
steps inside the attention (heads, scores, context) are no module's output: they are
recomputed here from their catalogue inputs with the same torch ops eager_attention_forward
uses; its softmax (the attention weights) and its context (the self-attention output) are
the module's real outputs.

The only module of numbert that imports torch.
"""

from __future__ import annotations

import numpy as np

from ..model import Model
from .catalogue import ALL_STEPS, Twin, full_name, split_name
from .core import Check, Recording, StepCheck, token_mask


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
        if getattr(model, "head", None) is not None:  # a task head (numbert.heads): the checkpoint's own class
            cls = getattr(transformers, model.config.architectures[0])
            return cls.from_pretrained(str(model.path), attn_implementation="eager", dtype=torch.float32).eval()
        if model.family.name != "bert":  # the family's own classes, as pipeline() would pick them
            auto = (transformers.AutoModelForSequenceClassification if model.weights.classifier is not None
                    else transformers.AutoModel)
            return auto.from_pretrained(str(model.path), attn_implementation="eager", dtype=torch.float32).eval()
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


def module_path(name: str, twin: Twin) -> str:
    """The path (inside BertModel) of the transformers module that holds step `name`'s twin."""
    if twin.module is None:
        return name
    scope = name.rpartition(".")[0]
    return ".".join(p for p in (scope, twin.module) if p)


def additive_mask(mask, B: int, T: int):
    """The mask transformers handed an attention module, as the additive bias eager attention adds."""
    import torch

    if mask is None:  # transformers skips the mask when nothing is padded
        return torch.zeros(B, 1, 1, T)
    if mask.dtype == torch.bool:  # a "keep" mask (sdpa style): make it additive, as eager needs
        return torch.zeros(mask.shape).masked_fill(~mask, torch.finfo(torch.float32).min)
    return mask


def eager_ops(num_heads: int, head_size: int) -> dict:
    """The torch ops of eager attention whose results are no module's output (Twin kind "op")."""
    import torch

    def split_heads(x):  # [B, T, H] -> [B, nh, T, hs], as BertSelfAttention.forward
        B, T, H = x.shape
        return x.view(B, T, -1, head_size).transpose(1, 2)

    return {"split_heads": split_heads,
            "transpose_last": lambda x: x.transpose(2, 3),  # [B, nh, T, hs] -> [B, nh, hs, T]
            "matmul": torch.matmul,
            "scale": lambda x: x * (head_size ** -0.5),  # eager_attention_forward multiplies by module.scaling
            "add": lambda a, b: a + b,
            "swap_heads_tokens": lambda x: x.transpose(1, 2),  # [B, nh, T, hs] -> [B, T, nh, hs]
            # BertForQuestionAnswering: logits.split(1, dim=-1), squeezed: [B, T, 2] -> [B, T] each
            "first_of_last": lambda x: x[..., 0].contiguous(),
            "second_of_last": lambda x: x[..., 1].contiguous()}


def hook(module, name: str, twin: Twin, keep, B: int, T: int):
    """Register on `module` the hook that keeps step `name`'s twin; returns its handle."""
    if twin.kind == "output":
        return module.register_forward_hook(
            lambda m, args, output: keep(name, output[twin.index] if isinstance(output, tuple) else output))
    if twin.kind == "input":
        return module.register_forward_pre_hook(lambda m, args: keep(name, args[0]))
    if twin.kind == "arg":  # a positional argument the module is called with (MPNet's position bias)
        return module.register_forward_pre_hook(lambda m, args: keep(name, args[twin.index]))
    if twin.kind == "mask":
        def on_call(m, args, kwargs):
            keep(name, additive_mask(kwargs.get("attention_mask", args[1] if len(args) > 1 else None), B, T))
        return module.register_forward_pre_hook(on_call, with_kwargs=True)
    raise ValueError(f"step {name}: no hook for a twin of kind {twin.kind!r}")


def capture(ref, batch, num_heads: int, names: list[str], token_types: bool = True) -> dict[str, np.ndarray]:
    """Run transformers on the batch; return its twin of each step in `names` (forward order) by name."""
    import torch

    base = ref.base_model_prefix  # "bert", "roberta", "distilbert" ...: the head model's base module
    prefix = f"{base}." if hasattr(ref, base) else ""
    got: dict[str, np.ndarray] = {}

    def keep(name, tensor):
        got[name] = tensor.detach().to(torch.float32).numpy().copy() if tensor.is_floating_point() \
            else tensor.detach().numpy().copy()

    twins = {name: ALL_STEPS[split_name(name)[1]].twin for name in names if split_name(name)[1] in ALL_STEPS}
    by_module: dict[str, list[str]] = {}
    for name, twin in twins.items():
        if twin.kind != "op":
            by_module.setdefault(module_path(name, twin), []).append(name)
    B, T = batch.input_ids.shape
    handles = []
    for full, module in ref.named_modules():
        path = full[len(prefix):] if full.startswith(prefix) else full
        handles += [hook(module, name, twins[name], keep, B, T) for name in by_module.get(path, ())]
    try:
        inputs = {"input_ids": torch.from_numpy(batch.input_ids),
                  "attention_mask": torch.from_numpy(batch.attention_mask)}
        if token_types:  # DistilBERT and MPNet take none
            inputs["token_type_ids"] = torch.from_numpy(batch.token_type_ids)
        if ref.config.model_type == "mpnet":  # MPNetSelfAttention returns its probabilities only when asked
            inputs["output_attentions"] = True
        with torch.no_grad():
            ref(**inputs)
            recompute(got, twins, eager_ops(num_heads, ref.config.hidden_size // num_heads))
    finally:
        for h in handles:
            h.remove()
    return got


def recompute(got: dict[str, np.ndarray], twins: dict, ops: dict) -> None:
    """Add the twins that are no module's output: each from its catalogue inputs, in forward order."""
    import torch

    for name, twin in twins.items():
        if twin.kind == "op":
            layer, key = split_name(name)
            sources = [full_name(a, layer) for a in ALL_STEPS[key].inputs]
            if any(a not in got for a in sources):  # an input with no twin: this step stays unchecked
                continue
            args = [torch.from_numpy(got[a]) for a in sources]
            got[name] = ops[twin.op](*args).numpy().copy()


def compare(trace: Recording, theirs: dict[str, np.ndarray], tolerance: float) -> dict[str, StepCheck]:
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


def check_against_torch(trace: Recording, model: Model, tolerance: float = 1e-4) -> Check:
    try:
        import torch  # noqa: F401
        import transformers
    except ImportError as e:
        raise ImportError(f"check='torch' needs torch and transformers ({e}); pip install torch transformers") from None
    ref = torch_reference(model)
    theirs = capture(ref, trace.batch, model.config.num_attention_heads, trace.names(), model.family.token_types)
    reference = f"transformers {transformers.__version__} {type(ref).__name__} (eager, fp32)"
    return Check(compare(trace, theirs, tolerance), reference, tolerance)
