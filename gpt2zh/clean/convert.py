"""Script conversion (opt-in): traditional to simplified characters with OpenCC."""
from __future__ import annotations

from .base import Doc, Rule, register

_opencc = None


@register
class ToSimplified(Rule):
    name = "to_simplified"
    help = "traditional to simplified characters (OpenCC t2s)"
    default = False

    def apply(self, text: str, doc: Doc) -> str:
        global _opencc
        if _opencc is None:
            import opencc

            _opencc = opencc.OpenCC("t2s")
        out = _opencc.convert(text)
        if len(out) == len(text):
            doc.report.normalized += sum(a != b for a, b in zip(text, out))
            return out
        # Phrase-level conversion changed the length: account for it as a drop so the
        # balance still holds (rare; OpenCC's t2s is almost always character for character).
        doc.report.dropped[self.name] += len(text) - len(out)
        return out
