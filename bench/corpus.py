"""A real, variable-length English corpus that ships with every Python: the sentences of the
standard library's docstrings (modules, classes, functions), in a fixed order."""

from __future__ import annotations

import ast
import re
import sysconfig
from pathlib import Path

_SENTENCE = re.compile(r"(?<=[.!?])\s+(?=[A-Z])")
_WORDY = re.compile(r"^[A-Z][A-Za-z ,;:'()\-]+[.!?]$")


def stdlib_sentences(n: int = 2000, min_words: int = 3, max_words: int = 80) -> list[str]:
    """The first n distinct docstring sentences of the stdlib's top-level modules, sorted by file name."""
    root = Path(sysconfig.get_paths()["stdlib"])
    seen, out = set(), []
    for path in sorted(root.glob("*.py")):
        try:
            tree = ast.parse(path.read_text(encoding="utf-8"))
        except (SyntaxError, UnicodeDecodeError, OSError):
            continue
        for node in ast.walk(tree):
            if not isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            doc = ast.get_docstring(node)
            if not doc:
                continue
            for para in re.split(r"\n\s*\n", doc):
                text = " ".join(para.split())
                for s in _SENTENCE.split(text):
                    words = len(s.split())
                    if min_words <= words <= max_words and _WORDY.match(s) and s not in seen:
                        seen.add(s)
                        out.append(s)
                        if len(out) >= n:
                            return out
    return out
