"""The engines compared, each behind one call: forward(input_ids, attention_mask, token_type_ids).

numbert-numba and numbert-numpy run numbert's two backends; torch runs transformers'
BertModel in fp32 eager mode (its default SDPA attention, under inference_mode); onnxruntime
runs the same model exported with torch.onnx.export. All four read the same checkpoint folder.
"""

from __future__ import annotations

import copy
import shutil
import warnings
from pathlib import Path

import numpy as np

TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json")


class NumbertEngine:
    def __init__(self, folder, backend, threads):
        import numbert

        self.name = f"numbert-{backend}"
        self.model = numbert.load(folder, backend=backend, threads=threads)

    def forward(self, ids, mask, types):
        return self.model(ids, mask, types).last_hidden_state


class TorchEngine:
    name = "torch"

    def __init__(self, folder, threads):
        import torch
        import transformers

        torch.set_num_threads(threads)
        self.torch = torch
        self.model = transformers.BertModel.from_pretrained(str(folder), dtype=torch.float32).eval()

    def forward(self, ids, mask, types):
        t = self.torch
        with t.inference_mode():
            return self.model(input_ids=t.from_numpy(ids), attention_mask=t.from_numpy(mask),
                              token_type_ids=t.from_numpy(types)).last_hidden_state


class OnnxEngine:
    name = "onnxruntime"

    def __init__(self, folder, threads, workdir):
        import onnxruntime as ort

        path = export_onnx(folder, Path(workdir) / (Path(folder).name + ".onnx"))
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # ORT's workers spin after each run by default, stealing the cores of the next engine
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def forward(self, ids, mask, types):
        return self.session.run(["last_hidden_state"], {"input_ids": ids, "attention_mask": mask,
                                                        "token_type_ids": types})[0]


def export_onnx(folder, path: Path) -> Path:
    """BertModel -> ONNX (opset 17, dynamic batch and length), the additive mask built explicitly."""
    import torch
    import transformers

    model = transformers.BertModel.from_pretrained(str(folder), attn_implementation="eager", dtype=torch.float32)
    model = copy.deepcopy(model).eval()  # export flips the module to training mode: keep ours apart

    class Wrapper(torch.nn.Module):
        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            emb = self.bert.embeddings(input_ids=input_ids, token_type_ids=token_type_ids)
            bias = (1.0 - attention_mask[:, None, None, :].to(torch.float32)) * torch.finfo(torch.float32).min
            return self.bert.encoder(emb, attention_mask=bias).last_hidden_state

    ids = torch.ones(2, 8, dtype=torch.long)
    mask = ids.clone()
    mask[0, 5:] = 0
    names = ["input_ids", "attention_mask", "token_type_ids"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Wrapper(model), (ids, mask, torch.zeros_like(ids)), str(path), input_names=names,
                          output_names=["last_hidden_state"], dynamic_axes={n: {0: "batch", 1: "tokens"} for n in names},
                          opset_version=17, dynamo=False)
    return path


def random_bert_base(folder: Path, tokenizer_from: Path, seed=0) -> Path:
    """BERT-base (12 x 768, 12 heads, 3072) with transformers' random init, saved as safetensors."""
    import torch
    import transformers

    torch.manual_seed(seed)
    model = transformers.BertModel(transformers.BertConfig())
    model.save_pretrained(str(folder))
    copy_tokenizer(tokenizer_from, folder)
    return folder


def minilm_classifier(folder: Path, minilm: Path, seed=0) -> Path:
    """all-MiniLM-L6-v2 with a seeded random 2-label head, as BertForSequenceClassification."""
    import torch
    import transformers

    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.BertForSequenceClassification.from_pretrained(str(minilm), num_labels=2)
    model.save_pretrained(str(folder))
    copy_tokenizer(minilm, folder)
    return folder


def copy_tokenizer(src: Path, dst: Path):
    for name in TOKENIZER_FILES:
        if (Path(src) / name).is_file():
            shutil.copy(Path(src) / name, Path(dst) / name)


def flops(config, B, T) -> float:
    """Multiply-adds x 2 of one forward: the GEMMs, the attention products, the pooler."""
    H, I, L = config.hidden_size, config.intermediate_size, config.num_hidden_layers
    gemm = 2 * B * T * (4 * H * H + 2 * H * I)  # QKV, output projection, FFN up and down
    attn = 2 * 2 * B * T * T * H  # q.k^T and probs.v over all heads
    return float(L * (gemm + attn) + 2 * B * H * H)


class GemmFloor:
    """The model's dense layers alone, through the same sgemm: the floor a forward can approach."""

    name = "gemm-floor"

    def __init__(self, config):
        H, I = config.hidden_size, config.intermediate_size
        rng = np.random.default_rng(0)
        self.L = config.num_hidden_layers
        self.weights = [rng.standard_normal(s).astype(np.float32) for s in ((3 * H, H), (H, H), (I, H), (H, I))]
        self.inputs = {}

    def forward(self, ids, mask, types):
        M = ids.size
        if M not in self.inputs:
            rng = np.random.default_rng(1)
            self.inputs[M] = [rng.standard_normal((M, w.shape[1])).astype(np.float32) for w in self.weights]
        for _ in range(self.L):
            for x, w in zip(self.inputs[M], self.weights):
                x @ w.T
