"""Fuzzing `gpt2zh serve`: thousands of seeded random request bodies from several clients at
once against one live server, the long run of `tests/test_serve_fuzz.py` (which imports the
generators below).

Every field of the completion request gets values of every JSON type (huge and tiny numbers,
lone surrogates, NUL, lists, objects), and the bytes are often broken on top (truncated, invalid
UTF-8, duplicate keys, NaN and Infinity, nesting deep enough to exhaust a parser, a number of
5,000 digits, not an object at all); a third of the streams are left mid-way. Every answer must
be a 2xx or a 4xx OpenAI error object, within 30 s; afterwards /health must read ok with no
busy slot, and a seeded request must return exactly the text it returned on the fresh server.

  python bench/fuzz_serve.py --requests 5000 --clients 8        # CPU, a model of the tiny shape
"""
from __future__ import annotations

import argparse
import collections
import json
import random
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent

FIELDS = ["model", "prompt", "max_tokens", "length", "n", "stream", "stream_options", "stop", "seed", "temperature",
          "top_p", "top_k", "repetition_penalty", "penalty_window", "repetition", "dry_multiplier", "dry_base",
          "dry_allowed", "max_copy", "memory", "authors_note", "echo", "logprobs", "suffix", "best_of", "user",
          "presence_penalty", "frequency_penalty", "density_penalty", "focus_penalty", "focus_tokens",
          "recover_temperature", "logit_bias", "min_p"]   # the last: a field no server of ours takes
ANY = [None, True, False, 0, 1, -1, 7, 2 ** 31, 2 ** 63, -2 ** 63 - 1, 10 ** 30, 0.5, -0.0, 1e-308, 1e308, -1e308,
       "", "x", "话说", "\ud800", "a\udfff话", "\x00", [], ["话"], [1, 2], ["\ud800"], {}, {"a": 1}, [[[]]],
       {"include_usage": True}, {"include_usage": "yes"}]
VALID = {"prompt": ["话说", "第一回　", ["宋江"], "", "林冲道：“"], "max_tokens": [1, 8, 24, 10 ** 9],
         "length": [5, 40, 10 ** 9], "n": [1, 2, 3, 8], "stream": [True, True, False], "seed": [0, 5, 2 ** 62, -3],
         "temperature": [0, 0.01, 0.7, 1.5, 100], "top_p": [0.01, 0.5, 1.0], "top_k": [0, 1, 50, 10 ** 9],
         "repetition": ["off", "penalize", "rollback"], "memory": ["孙悟空", ""], "authors_note": ["夜深了", ""],
         "stop": ["。", ["，", "了"], []], "max_copy": [2, 3, 10 ** 6], "dry_base": [1.0, 10.0],
         "dry_multiplier": [0, 100], "dry_allowed": [1, 10 ** 4], "repetition_penalty": [0.1, 1.3, 10],
         "penalty_window": [1, 10 ** 6], "stream_options": [{"include_usage": True}, None], "echo": [False],
         "best_of": [1], "user": ["writer-1"], "presence_penalty": [-2, 0.5, 2], "frequency_penalty": [-2, 1.5],
         "density_penalty": [0, 10], "focus_penalty": [0, 100], "focus_tokens": [1, 100_000],
         "recover_temperature": [0, 2], "logprobs": [0, 2, 5], "logit_bias": [{}]}


def random_body(rng: random.Random, model_id: str) -> dict:
    """Half the bodies valid (edge values included), so that they reach the engine; the others
    with any JSON value in any field."""
    valid = rng.random() < 0.5
    body = {}
    for name in rng.sample(FIELDS, rng.randint(0, 9)):
        if name == "model" and (valid or rng.random() < 0.6):
            body[name] = model_id
        elif name in VALID and (valid or rng.random() < 0.6):
            body[name] = rng.choice(VALID[name])
        elif not valid:
            body[name] = rng.choice(ANY)
    return body


def raw_request(rng: random.Random, body: dict) -> bytes:
    """The body as bytes, valid JSON most of the time, every kind of broken JSON otherwise."""
    raw = json.dumps(body).encode()   # ensure_ascii: a lone surrogate travels as a legal \\ud800 escape
    kind = rng.random()
    if kind < 0.70:
        return raw
    if kind < 0.75:
        return raw[: rng.randrange(max(1, len(raw)))]                      # truncated
    if kind < 0.80:
        cut = rng.randrange(len(raw) + 1)
        return raw[:cut] + rng.choice([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x00"]) + raw[cut:]  # invalid UTF-8
    if kind < 0.85:
        return b'{"max_tokens": 3, "prompt": "x", ' + raw[1:] if len(raw) > 2 else raw   # duplicate keys
    if kind < 0.88:
        return b'{"prompt": "x", "temperature": ' + rng.choice([b"NaN", b"Infinity", b"-Infinity", b"1e999"]) + b"}"
    if kind < 0.90:
        return b'{"prompt": ' + b"[" * rng.choice([100, 100_000]) + b"}"   # nesting that exhausts the parser
    if kind < 0.92:
        return b'{"prompt": "x", "seed": 1' + b"0" * 5000 + b"}"          # a number of 5,000 digits
    return rng.choice([b"", b"null", b"[1]", b'"x"', b"1", b"{}", b"{", b"\xef\xbb\xbf{}"])


def check_answer(r: httpx.Response, body: dict, text: str, left_early: bool) -> None:
    assert r.status_code < 500, f"{r.status_code} for {body!r}: {text[:300]}"
    if r.status_code >= 400:
        err = json.loads(text)["error"]
        assert err["message"] and err["type"], text
        return
    if r.headers["content-type"].startswith("text/event-stream"):
        events = [line[6:] for line in text.splitlines() if line.startswith("data: ")]
        for e in events:
            if e != "[DONE]":
                chunk = json.loads(e)
                assert "error" not in chunk, f"{body!r}: {e}"
        assert left_early or events[-1] == "[DONE]", text[-300:]
    else:
        out = json.loads(text)
        assert len(out["choices"]) == body.get("n") or 1, text


def sent(raw: bytes) -> dict:
    """What the server read (a mutated body may differ from the one generated)."""
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):
        return {}
    return body if isinstance(body, dict) else {}


def fire(url: str, raw: bytes, leave_early: bool) -> int:
    body = sent(raw)
    with httpx.stream("POST", url + "/v1/completions", content=raw, timeout=30,
                      headers={"Content-Type": "application/json"}) as r:
        if leave_early and r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream"):
            text = ""
            for i, line in enumerate(r.iter_lines()):   # disconnect mid-stream
                text += line + "\n"
                if i >= 2:
                    break
            check_answer(r, body, text, left_early=True)
            return r.status_code
        check_answer(r, body, r.read().decode(), left_early=False)
        return r.status_code


def idle(url: str, timeout: float = 30) -> dict:
    deadline = time.time() + timeout
    while True:
        h = httpx.get(url + "/health", timeout=5)
        assert h.status_code == 200, h.text
        h = h.json()
        if (h["busy_slots"], h["waiting"]) == (0, 0) or time.time() > deadline:
            return h
        time.sleep(0.1)


def reference(url: str, model_id: str) -> str:
    body = {"model": model_id, "prompt": "话说天下大势，", "max_tokens": 40, "seed": 31}
    r = httpx.post(url + "/v1/completions", json=body, timeout=60)
    assert r.status_code == 200, r.text
    return r.json()["choices"][0]["text"]


def cases(seed: int, n: int, model_id: str) -> list[tuple[bytes, bool]]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        body = random_body(rng, model_id)
        out.append((raw_request(rng, body), rng.random() < 0.3))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--model", help="a model directory (default: a random-weight model of the tiny shape)")
    ap.add_argument("--corpora", default=str(ROOT.parent / "shared" / "corpora"))
    args = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    sys.path.insert(0, str(ROOT / "bench"))
    from generate import make_model
    from test_serve import Server

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else make_model("tiny", Path(args.corpora), Path(tmp), [])
        srv = Server(model, "--max-tokens", "32", "--max-length", "64", "--max-batch", "8", "--max-queue", "512")
        try:
            model_id = httpx.get(srv.url + "/v1/models").json()["data"][0]["id"]
            before = reference(srv.url, model_id)
            statuses: collections.Counter = collections.Counter()
            t0 = time.perf_counter()
            with ThreadPoolExecutor(args.clients) as pool:
                for f in [pool.submit(fire, srv.url, *c) for c in cases(args.seed, args.requests, model_id)]:
                    statuses[f.result()] += 1
            seconds = time.perf_counter() - t0
            health = idle(srv.url)
            same = reference(srv.url, model_id) == before
        finally:
            rc, out = srv.stop()
    print(f"{args.requests} requests from {args.clients} clients in {seconds:.1f} s "
          f"({args.requests / seconds:.0f} requests/s); answers by status: {dict(sorted(statuses.items()))}")
    print(f"health afterwards: {health['status']}, busy {health['busy_slots']}, waiting {health['waiting']}, "
          f"finished {health['finished']}; seeded request after the fuzz equals the fresh server's: {same}; "
          f"exit status {rc}; tracebacks in the log: {out.count('Traceback')}")
    if not same or rc != 0 or health["status"] != "ok" or "Traceback" in out:
        sys.exit(1)


if __name__ == "__main__":
    main()
