"""Generate the built-in character vocabulary `vocab/gb2312/tokenizer.json`.

Token order, fixed so that ids never change between versions:
special tokens, the line break, printable ASCII, GB2312's non-hanzi rows 1-9
(full-width punctuation, digits, Latin, kana, box drawing...), then GB2312's 6,763
hanzi in code order (rows 16-87). Run:  python vocab/make_gb2312_vocab.py
"""
from __future__ import annotations

import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from gpt2zh.vocab import build_char_tokenizer, save_tokenizer  # noqa: E402


def gb2312_rows(first: int, last: int) -> list[str]:
    chars = []
    for row in range(first, last + 1):
        for col in range(1, 95):
            try:
                chars.append(bytes([0xA0 + row, 0xA0 + col]).decode("gb2312"))
            except UnicodeDecodeError:
                pass  # unassigned cells (row 55 ends at column 89; gaps in rows 1-9)
    return chars


def main() -> None:
    ascii_chars = [chr(c) for c in range(0x20, 0x7F)]
    symbols = gb2312_rows(1, 9)
    hanzi = gb2312_rows(16, 87)
    assert len(hanzi) == 6763, len(hanzi)
    tok = build_char_tokenizer(ascii_chars + symbols + hanzi)
    save_tokenizer(tok, HERE / "gb2312")
    print(f"{len(hanzi)} hanzi, {len(symbols)} symbols, {len(ascii_chars)} ASCII -> "
          f"{tok.get_vocab_size()} tokens in {HERE / 'gb2312' / 'tokenizer.json'}")


if __name__ == "__main__":
    main()
