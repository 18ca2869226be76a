"""Models and vocabularies named by a Hugging Face Hub ID wherever a local path is taken:
`--init-from`, `--vocab` and `--model` accept `uer/gpt2-chinese-cluecorpussmall`, `gpt2-medium` or
`owner/name@revision` (a branch, tag or commit) as well as a directory.

An existing path always wins. An ID goes through `huggingface_hub` and its cache: a cached
snapshot is used without network when `HF_HUB_OFFLINE=1` (or when the Hub cannot be reached),
`HF_HUB_CACHE` says where the cache is. Only what gpt2zh reads is fetched: the config, the
weights (safetensors when the repository has them, else the PyTorch file), the tokenizer and
gpt2zh's own files (the human bands and the reference model).
"""
from __future__ import annotations

import os
import re
from pathlib import Path

# `name` or `owner/name`, then an optional `@revision`; what the Hub allows in names
HUB_ID = re.compile(r"^(?:[A-Za-z0-9][A-Za-z0-9_.-]*/)?[A-Za-z0-9][A-Za-z0-9_.-]*(?:@[A-Za-z0-9_./-]+)?$")
TOKENIZER_FILES = ["tokenizer.json", "vocab.txt", "tokenizer_config.json", "special_tokens_map.json"]
MODEL_FILES = ["config.json", "generation_config.json", "gpt2zh.json", "calibration.json", "reference.npz",
               *TOKENIZER_FILES]
SAFETENSORS = ["model.safetensors", "model-*.safetensors", "model.safetensors.index.json"]
PYTORCH = ["pytorch_model.bin", "pytorch_model-*.bin", "pytorch_model.bin.index.json"]


class HubError(FileNotFoundError):
    """A name that is neither a local path nor a Hub model we can get."""


def is_hub_id(spec: str) -> bool:
    """Whether `spec` reads as a Hub ID rather than a path (and names nothing on disk)."""
    return (not Path(spec).exists() and bool(HUB_ID.match(spec)) and ".." not in spec
            and not spec.startswith((".", "~")))


def split_id(spec: str) -> tuple[str, str | None]:
    repo, _, revision = spec.partition("@")
    return repo, revision or None


def _offline() -> bool:
    # read at call time (huggingface_hub reads it once, at import)
    return os.environ.get("HF_HUB_OFFLINE", os.environ.get("TRANSFORMERS_OFFLINE", "")).strip().lower() in \
        ("1", "true", "yes", "on")


def _cache_dir() -> str | None:
    return os.environ.get("HF_HUB_CACHE") or None


def _snapshot(repo: str, revision: str | None, patterns: list[str]) -> Path:
    from huggingface_hub import snapshot_download

    return Path(snapshot_download(repo, revision=revision, allow_patterns=patterns, cache_dir=_cache_dir(),
                                  local_files_only=_offline(), etag_timeout=5))


def _download_hint(spec: str) -> str:
    repo, revision = split_id(spec)
    where = _cache_dir() or "the Hugging Face cache (~/.cache/huggingface/hub, or HF_HUB_CACHE)"
    rev = f" --revision {revision}" if revision else ""
    return (f"download it once on a machine with network (`hf download {repo}{rev}`, or `huggingface-cli download "
            f"{repo}{rev}`) into {where}, or give a local model directory")


def fetch(spec: str, what: str = "model") -> Path:
    """The local directory for `spec`: the path itself, or the cached snapshot of a Hub ID
    (downloaded if needed and possible). `what` is 'model' (config, weights, tokenizer) or
    'vocab' (the tokenizer only). HubError, naming the ID and how to get it, otherwise."""
    if Path(spec).exists():
        return Path(spec)
    if not is_hub_id(spec):
        raise HubError(f"{spec}: no such {what} directory (and not a Hugging Face Hub ID such as "
                       "uer/gpt2-chinese-cluecorpussmall)")
    from huggingface_hub.errors import (GatedRepoError, LocalEntryNotFoundError, RepositoryNotFoundError,
                                        RevisionNotFoundError)

    repo, revision = split_id(spec)
    try:
        if what == "vocab":
            return _snapshot(repo, revision, TOKENIZER_FILES)
        path = _snapshot(repo, revision, MODEL_FILES + SAFETENSORS)
        if not any(path.glob("*.safetensors")):   # an older repository: the PyTorch weights instead
            path = _snapshot(repo, revision, MODEL_FILES + PYTORCH)
        return path
    except GatedRepoError:
        raise HubError(f"{spec}: the Hub model is gated; accept its terms on huggingface.co and log in "
                       "(`hf auth login`)") from None
    except RepositoryNotFoundError:
        raise HubError(f"{spec}: no such model on the Hugging Face Hub (or it is private: log in with "
                       "`hf auth login`), and no such local directory") from None
    except RevisionNotFoundError:
        raise HubError(f"{spec}: the Hub model has no revision {revision!r}") from None
    except LocalEntryNotFoundError:
        why = "HF_HUB_OFFLINE is set" if _offline() else "the Hub cannot be reached"
        raise HubError(f"{spec}: not a local directory, and the Hub model {repo!r}"
                       f"{f' at {revision!r}' if revision else ''} is not in the cache while {why}; "
                       + _download_hint(spec)) from None

