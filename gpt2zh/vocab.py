"""Vocabularies, built with the `tokenizers` library and saved as `tokenizer.json`.

Four kinds:
- `char`: every character of the training text seen at least `min_count` times;
- `gb2312`: the built-in vocabulary under `vocab/gb2312/` (GB2312's 6,763 hanzi,
  its punctuation and symbols, ASCII), so that models trained on different corpora
  share token ids;
- a BERT / GPT2-Chinese `vocab.txt` given by the user (its ids are kept; `[SEP]`
  stands for a line break and `[CLS]` ends a document, as in GPT2-Chinese);
- `words`: frequent jieba words plus every character of the char vocabulary, as a
  Unigram model whose scores are log frequencies, so unknown words fall back to
  characters rather than to the unknown token.

Every tokenizer decodes by plain concatenation (no spaces between characters), and
the line break is a token of its own, so decode(encode(text)) == text whenever no
character is unknown.
"""
from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
from tokenizers import Tokenizer, decoders, models

# vocab/ at the top of a checkout (editable install), or gpt2zh/vocab_data inside a wheel.
_HERE = Path(__file__).resolve().parent
BUILTIN_DIR = next((d for d in (_HERE.parent / "vocab", _HERE / "vocab_data") if (d / "gb2312").is_dir()),
                   _HERE.parent / "vocab")
GB2312_TOKENIZER = BUILTIN_DIR / "gb2312" / "tokenizer.json"


@dataclass(frozen=True)
class Specials:
    eos: str = "<|endoftext|>"
    unk: str = "<unk>"
    pad: str = "<pad>"
    newline: str = "\n"

    def as_list(self) -> list[str]:
        return [self.pad, self.unk, self.eos, self.newline]


OURS = Specials()
GPT2_CHINESE = Specials(eos="[CLS]", unk="[UNK]", pad="[PAD]", newline="\n")  # "\n" sits at [SEP]'s id


class VocabError(Exception):
    pass


def _char_tokenizer(tokens: list[str], specials: Specials) -> Tokenizer:
    vocab = {t: i for i, t in enumerate(tokens)}
    # BPE with no merges and no pre-tokenizer splits text into single characters
    # (the line break included) at ~20 M characters/s; a per-character regex
    # pre-tokenizer with WordLevel does the same ten times slower.
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token=specials.unk))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([specials.eos, specials.unk, specials.pad])
    return tok


def build_char_tokenizer(chars: Iterable[str], specials: Specials = OURS) -> Tokenizer:
    head = specials.as_list()
    seen = set(head)
    tokens = head + [c for c in chars if not (c in seen or seen.add(c))]
    return _char_tokenizer(tokens, specials)


def char_counts_sparse(texts: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
    """(code points, counts) over the texts: a bincount over UTF-32, ~20x faster than
    Counter(text), and only as long as the largest code point present."""
    parts = [np.frombuffer(t.encode("utf-32-le"), dtype=np.uint32) for t in texts]
    if not parts:
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
    counts = np.bincount(np.concatenate(parts))
    nz = np.flatnonzero(counts)
    return nz, counts[nz]


def counts_to_counter(cps: np.ndarray, counts: np.ndarray) -> Counter:
    return Counter(dict(zip(map(chr, cps.tolist()), counts.tolist())))


def char_counts(texts: Iterable[str]) -> Counter:
    return counts_to_counter(*char_counts_sparse(texts))


def build_corpus_char_tokenizer(counts: Counter, min_count: int = 1) -> Tokenizer:
    chars = [c for c, n in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if n >= min_count]
    return build_char_tokenizer(chars)


def load_vocab_txt(path: str | Path) -> Tokenizer:
    """A BERT / GPT2-Chinese vocab.txt, ids unchanged. Multi-character entries (English
    words, '##' pieces) stay in the table but text is split into single characters."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    tokens = [line.rstrip("\r") for line in lines]
    if not tokens or "[UNK]" not in tokens:
        raise VocabError(f"{path}: not a BERT-style vocab.txt (no [UNK] entry)")
    for name in ("[SEP]", "[CLS]", "[PAD]"):
        if name not in tokens:
            raise VocabError(f"{path}: vocab.txt has no {name} entry")
    # GPT2-Chinese writes a line break as [SEP]: give that id to the "\n" character.
    tokens[tokens.index("[SEP]")] = "\n"
    dup = [t for t, n in Counter(tokens).items() if n > 1]
    if dup:
        raise VocabError(f"{path}: duplicate entries {dup[:5]}")
    return _char_tokenizer(tokens, GPT2_CHINESE)


def build_word_tokenizer(texts: list[str], min_char_count: int = 1, min_word_count: int = 5,
                         max_words: int = 30000) -> Tokenizer:
    import jieba

    jieba.setLogLevel(60)
    chars = char_counts(texts)
    words: Counter = Counter()
    for text in texts:
        for para in text.split("\n"):
            words.update(w for w in jieba.lcut(para, HMM=False) if len(w) > 1)
    kept_chars = {c: n for c, n in chars.items() if n >= min_char_count}
    frequent = [(w, n) for w, n in words.most_common(max_words) if n >= min_word_count
                and all(c in kept_chars for c in w)]
    total = sum(kept_chars.values()) + sum(n for _, n in frequent)
    pieces = [(s, 0.0) for s in OURS.as_list()]
    pieces += [(c, math.log(n / total)) for c, n in sorted(kept_chars.items(), key=lambda kv: -kv[1])
               if c not in OURS.as_list()]
    # A word must beat the product of its characters' probabilities to be chosen,
    # which is what its own frequency says; the Viterbi search does the rest.
    pieces += [(w, math.log(n / total)) for w, n in frequent]
    tok = Tokenizer(models.Unigram(pieces, unk_id=1, byte_fallback=False))
    tok.decoder = decoders.Fuse()
    tok.add_special_tokens([OURS.eos, OURS.unk, OURS.pad])
    return tok


def load_tokenizer_json(path: str | Path) -> Tokenizer:
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises a bare Exception on bad files
        raise VocabError(f"{path}: cannot load tokenizer: {e}") from None


def specials_of(tok: Tokenizer) -> Specials:
    vocab = tok.get_vocab()
    for s in (OURS, GPT2_CHINESE):
        if s.eos in vocab and s.unk in vocab:
            return s
    raise VocabError("tokenizer has neither <|endoftext|>/<unk> nor [CLS]/[UNK] special tokens")


def tokenizer_hash(tok: Tokenizer) -> str:
    # Hash the serialized form after one save/load round trip: a freshly built Unigram
    # serializes its scores differently from the same tokenizer loaded from its file.
    canonical = Tokenizer.from_str(tok.to_str()).to_str()
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def save_tokenizer(tok: Tokenizer, out_dir: str | Path, model_max_length: int = 1024) -> None:
    """tokenizer.json plus the tokenizer_config.json that lets
    `AutoTokenizer.from_pretrained(out_dir)` build a PreTrainedTokenizerFast."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tok.save(str(out / "tokenizer.json"))
    sp = specials_of(tok)
    cfg = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": sp.eos, "eos_token": sp.eos, "unk_token": sp.unk, "pad_token": sp.pad,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(cfg, ensure_ascii=False, indent=2), encoding="utf-8")


def resolve_vocab(spec: str, train_texts: list[str], min_count: int = 1) -> Tokenizer:
    """`spec` is 'char', 'gb2312', 'words', a path to a vocab.txt / tokenizer.json (or a
    directory holding one, such as a model to fine-tune), or a Hugging Face Hub ID whose
    repository holds one."""
    if spec == "char":
        return build_corpus_char_tokenizer(char_counts(train_texts), min_count)
    if spec == "gb2312":
        return load_tokenizer_json(GB2312_TOKENIZER)
    if spec == "words":
        return build_word_tokenizer(train_texts, min_char_count=min_count)
    from .hub import fetch, is_hub_id

    p = fetch(spec, "vocab") if is_hub_id(spec) else Path(spec)
    if p.is_dir():
        for name in ("tokenizer.json", "vocab.txt"):
            if (p / name).exists():
                p = p / name
                break
        else:
            raise VocabError(f"{spec}: directory holds no tokenizer.json or vocab.txt")
    if not p.exists():
        raise VocabError(f"--vocab {spec}: not 'char', 'gb2312', 'words', an existing file or a Hub ID")
    return load_vocab_txt(p) if p.suffix == ".txt" else load_tokenizer_json(p)


def token_char_lengths(tok, vocab_size: int) -> np.ndarray:
    """Characters each token id stands for (0 for special tokens), for per-character perplexity."""
    special = {t.content for t in tok.get_added_tokens_decoder().values()}
    lengths = np.zeros(vocab_size, dtype=np.int64)
    for piece, i in tok.get_vocab().items():
        if i < vocab_size and piece not in special:
            lengths[i] = len(piece[2:] if piece.startswith("##") else piece)
    return lengths
