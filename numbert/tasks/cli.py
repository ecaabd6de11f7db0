"""The command-line verbs of the tasks: numbert ner, answer, fill-mask, rerank.

Same conventions as `numbert classify`: texts as arguments, --file F (one per line), or - for
stdin; --json for JSON lines; exit codes 0 success, 1 the model could not be found or read,
2 bad usage or input (a model without the task's head included). Each verb needs --model:
there is no default model for these tasks.
"""

from __future__ import annotations

import argparse
import json
import sys

from .. import cli as base


def register(sub) -> None:
    _add_ner(sub)
    _add_answer(sub)
    _add_fill_mask(sub)
    _add_rerank(sub)


def _parser(sub, name, help, description, examples):
    return sub.add_parser(name, help=help, description=description, epilog="examples:\n" + examples,
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def _add_common(p, model_kind):
    p.add_argument("-m", "--model", default=None, metavar="MODEL",
                   help=f"checkpoint folder or Hugging Face Hub id of a {model_kind} (required)")
    p.add_argument("--revision", default=None, help="Hub revision: branch, tag or commit (default: main)")
    p.add_argument("--backend", choices=("auto", "numba", "numpy"), default=None,
                   help="auto (numba once its kernels are compiled, NumPy until then), numba kernels, or the "
                        "NumPy reference (default: numbert.load's default, auto)")
    p.add_argument("--batch-size", type=int, default=32, metavar="N", help="sequences per forward pass (default 32)")
    p.add_argument("--json", action="store_true", help="JSON lines on stdout, one per input")


def _model(args) -> str:
    if args.model is None:
        raise base.UsageError(f"numbert {args.command} needs --model: a checkpoint folder or Hub id")
    return args.model


def _run(args) -> dict:
    return dict(batch_size=args.batch_size, backend=args.backend, revision=args.revision)


def _write_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False) + "\n")


def _table(rows, headers) -> None:
    """Left-aligned columns; the last column is not padded."""
    widths = [max(len(str(r[i])) for r in [headers] + rows) for i in range(len(headers) - 1)]
    for r in [headers] + rows:
        cells = [f"{str(c):<{w}}" for c, w in zip(r, widths)] + [str(r[-1])]
        sys.stdout.write("  ".join(cells).rstrip() + "\n")


# ----------------------------------------------------------------------------- ner

def _add_ner(sub):
    p = _parser(sub, "ner", "named entities (token classification), as pipeline('ner')",
                "Label the words of each text with a token-classification model (BertForTokenClassification "
                "and the like), as transformers' pipeline('ner', aggregation_strategy=...) does. START and END "
                "are character positions in the text.",
                '  numbert ner --model ./bert-ner "Angela Merkel met Emmanuel Macron in Paris."\n'
                "  numbert ner --model ./bert-ner --aggregation none --json --file news.txt\n"
                "  numbert ner --model ./bert-ner --stride 128 --file long.txt     read long texts whole, in windows")
    base._add_texts(p)
    _add_common(p, "token-classification model")
    p.add_argument("-a", "--aggregation", choices=("none", "simple", "first", "average", "max"), default="simple",
                   help="group word pieces into words and B-/I- tags into entities (default simple; "
                        "none: one result per token, as the pipeline's default)")
    p.add_argument("--ignore-labels", default=None, metavar="A,B",
                   help="labels left out (default O); '' keeps every label")
    p.add_argument("--stride", type=int, default=None, metavar="N",
                   help="read long texts whole, in windows sharing N tokens (default: the first window only)")
    p.set_defaults(func=run_ner)


def run_ner(args) -> int:
    from .ner import ner

    texts = base._read_texts(args)
    ignore = None if args.ignore_labels is None else [s.strip() for s in args.ignore_labels.split(",") if s.strip()]
    results = ner(texts, _model(args), aggregation_strategy=args.aggregation, ignore_labels=ignore,
                  stride=args.stride, **_run(args))
    if args.json:
        for text, entities in zip(texts, results):
            _write_json({"text": text, "entities": entities})
        return base.EXIT_OK
    key = "entity" if args.aggregation == "none" else "entity_group"
    rows = []
    for i, (text, entities) in enumerate(zip(texts, results)):
        for j, e in enumerate(entities):
            rows.append([base._clip(text, 40) if j == 0 else "", e[key], f"{e['start']}-{e['end']}",
                         f"{e['score']:.4f}", text[e["start"]:e["end"]]])
        if not entities:
            rows.append([base._clip(text, 40), "-", "", "", "(no entity)"])
    _table(rows, ["TEXT", "ENTITY", "CHARS", "SCORE", "WORDS"])
    return base.EXIT_OK


# ----------------------------------------------------------------------------- answer

def _add_answer(sub):
    p = _parser(sub, "answer", "extractive question answering, as pipeline('question-answering')",
                "Find the answer to each question in the context with a question-answering model "
                "(BertForQuestionAnswering and the like), as transformers' question-answering pipeline does. "
                "A long context is read in windows that share --doc-stride tokens.",
                '  numbert answer --model ./bert-squad --context "My name is Wolfgang and I live in Berlin." '
                '"Where do I live?"\n'
                "  numbert answer --model ./bert-squad --context-file article.txt --top-k 3 --json < questions.txt -")
    p.add_argument("texts", nargs="*", metavar="QUESTION",
                   help="questions; a single - reads one question per line from stdin")
    p.add_argument("-f", "--file", metavar="F", help="read one question per line from file F (- for stdin)")
    context = p.add_mutually_exclusive_group()
    context.add_argument("-c", "--context", metavar="TEXT", help="the text that holds the answers")
    context.add_argument("--context-file", metavar="F", help="read the context from file F (all of it)")
    _add_common(p, "question-answering model")
    p.add_argument("-k", "--top-k", type=int, default=1, metavar="K", help="answers per question (default 1)")
    p.add_argument("--doc-stride", type=int, default=None, metavar="N",
                   help="tokens shared by consecutive windows of a long context (default min(max_seq_len/2, 128))")
    p.add_argument("--max-answer-len", type=int, default=15, metavar="N", help="longest answer in tokens (default 15)")
    p.add_argument("--max-seq-len", type=int, default=None, metavar="N",
                   help="tokens per window, question included (default min(the model's limit, 384))")
    p.add_argument("--impossible", action="store_true",
                   help="allow the empty answer (models trained on unanswerable questions, SQuAD 2.0)")
    p.add_argument("--no-align", action="store_true", help="do not widen answers to whole words")
    p.set_defaults(func=run_answer)


def run_answer(args) -> int:
    from pathlib import Path

    from .qa import answer

    if args.context_file is not None:
        try:
            context = Path(args.context_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise base.UsageError(f"cannot read --context-file {args.context_file}: {e}") from None
    elif args.context is not None:
        context = args.context
    else:
        raise base.UsageError("no context: give it with --context TEXT or --context-file F")
    questions = base._read_texts(args)
    results = answer(questions, context, _model(args), top_k=args.top_k, doc_stride=args.doc_stride,
                     max_answer_len=args.max_answer_len, max_seq_len=args.max_seq_len,
                     handle_impossible_answer=args.impossible, align_to_words=not args.no_align, **_run(args))
    if args.json:
        for q, r in zip(questions, results):
            _write_json({"question": q, **r} if isinstance(r, dict) else {"question": q, "answers": r})
        return base.EXIT_OK
    rows = []
    for q, r in zip(questions, results):
        for j, a in enumerate([r] if isinstance(r, dict) else r or []):
            rows.append([base._clip(q, 40) if j == 0 else "", f"{a['score']:.4f}", f"{a['start']}-{a['end']}",
                         base._clip(a["answer"], 60) if a["answer"] else "(no answer)"])
    _table(rows, ["QUESTION", "SCORE", "CHARS", "ANSWER"])
    return base.EXIT_OK


# ----------------------------------------------------------------------------- fill-mask

def _add_fill_mask(sub):
    p = _parser(sub, "fill-mask", "the words a masked-language model puts in place of [MASK]",
                "Predict the token behind each mask token ([MASK] for BERT) with a masked-LM model "
                "(BertForMaskedLM, BertForPreTraining), as transformers' pipeline('fill-mask') does.",
                '  numbert fill-mask --model ./bert-base-uncased "Paris is the [MASK] of France."\n'
                '  numbert fill-mask --model ./bert-base-uncased --targets capital,city --json "Paris is the '
                '[MASK] of France."')
    base._add_texts(p)
    _add_common(p, "masked-LM model")
    p.add_argument("-k", "--top-k", type=int, default=5, metavar="K", help="tokens per mask (default 5)")
    p.add_argument("--targets", default=None, metavar="A,B", help="score only these words (comma-separated)")
    p.add_argument("--truncate", action="store_true", help="read only the first tokens of a text too long for the model")
    p.set_defaults(func=run_fill_mask)


def run_fill_mask(args) -> int:
    from .fill_mask import fill_mask

    texts = base._read_texts(args)
    targets = None if args.targets is None else [s.strip() for s in args.targets.split(",") if s.strip()]
    results = fill_mask(texts, _model(args), top_k=args.top_k, targets=targets, truncation=args.truncate,
                        **_run(args))
    per_text = [[r] if r and isinstance(r[0], dict) else r for r in results]  # text -> masks -> candidates
    if args.json:
        for text, masks in zip(texts, per_text):
            _write_json({"text": text, "masks": masks})
        return base.EXIT_OK
    rows = []
    for text, masks in zip(texts, per_text):
        for m, candidates in enumerate(masks):
            for j, c in enumerate(candidates):
                head = base._clip(text, 40) if m == 0 and j == 0 else ""
                rows.append([head, str(m + 1) if j == 0 else "", c["token_str"], f"{c['score']:.4f}",
                             base._clip(c["sequence"], 70)])
    _table(rows, ["TEXT", "MASK", "TOKEN", "SCORE", "SEQUENCE"])
    return base.EXIT_OK


# ----------------------------------------------------------------------------- rerank

def _add_rerank(sub):
    p = _parser(sub, "rerank", "sort documents by relevance to a query with a cross-encoder",
                "Score each document against the query with a cross-encoder (a one-label sequence-classification "
                "model, e.g. cross-encoder/ms-marco-MiniLM-L6-v2), as sentence-transformers' CrossEncoder.rank "
                "does, and print them best first. ID is the document's position in the input (0-based).",
                '  numbert rerank --model ./ms-marco-MiniLM --query "Who wrote Hamlet?" "Shakespeare wrote it." '
                '"Paris is in France."\n'
                "  numbert rerank --model ./ms-marco-MiniLM --query \"Who wrote Hamlet?\" --file docs.txt --top-k 3 --json")
    p.add_argument("texts", nargs="*", metavar="DOCUMENT",
                   help="documents; a single - reads one document per line from stdin")
    p.add_argument("-f", "--file", metavar="F", help="read one document per line from file F (- for stdin)")
    p.add_argument("-q", "--query", required=True, help="the query the documents are scored against")
    _add_common(p, "cross-encoder")
    p.add_argument("-k", "--top-k", type=int, default=None, metavar="K", help="show the K best (default all)")
    p.add_argument("--activation", choices=("sigmoid", "none", "tanh"), default=None,
                   help="on the logits (default: the model's sentence-transformers config, else sigmoid)")
    p.set_defaults(func=run_rerank)


def run_rerank(args) -> int:
    from .rerank import rerank

    documents = base._read_texts(args)
    ranked = rerank(args.query, documents, _model(args), top_k=args.top_k, activation=args.activation,
                    return_documents=True, **_run(args))
    if args.json:
        for r in ranked:
            _write_json(r)
        return base.EXIT_OK
    _table([[str(i + 1), str(r["corpus_id"]), f"{r['score']:.4f}", base._clip(r["text"], 70)]
            for i, r in enumerate(ranked)], ["RANK", "ID", "SCORE", "DOCUMENT"])
    return base.EXIT_OK
