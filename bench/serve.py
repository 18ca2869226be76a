"""Serving: many streaming clients at once against one `gpt2zh serve`.

One model of the config's shape, one process, two servers on 127.0.0.1:

  gpt2zh   the real `serve` app (engine thread, slots, continuous batching, SSE)
  naive    FastAPI + transformers' generate() per request, streamed with TextIteratorStreamer,
           one request at a time under a lock (what a hand-stitched server does)

For 1, 4, 8 and 16 concurrent clients, each client sends its share of the same requests
(prompt, --tokens new tokens, temperature 0.9, top-k 40, top-p 0.95, a seed per request)
one after the other, streaming. Reports aggregate completion tokens/s and time to first
streamed text (p50/p95), and the ratio to one-at-a-time serving (1 client) by the same
server.

  python bench/serve.py --config tiny                     # CPU
  python bench/serve.py --config small --device cuda      # GPU
"""

import argparse
import asyncio
import json
import multiprocessing
import socket
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import httpx  # noqa: E402
import torch  # noqa: E402

from generate import make_model  # noqa: E402

PROMPT = "第一回　宴桃园豪杰三结义　斩黄巾英雄首立功\n话说天下大势，分久必合，合久必分。"
SAMPLING = dict(temperature=0.9, top_k=40, top_p=0.95)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(app) -> tuple[str, object]:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    threading.Thread(target=server.run, daemon=True).start()
    deadline = time.time() + 60
    while not server.started:
        if time.time() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.05)
    return f"http://127.0.0.1:{port}", server


def naive_app(model, tokenizer, device):
    """transformers' generate() per request, one at a time, streamed as OpenAI SSE."""
    from fastapi import FastAPI, Request
    from fastapi.responses import StreamingResponse
    from transformers import TextIteratorStreamer

    app, lock = FastAPI(), threading.Lock()

    @app.post("/v1/completions")
    async def completions(http: Request):
        body = await http.json()
        ids = torch.tensor([tokenizer.encode(body["prompt"])], device=device)
        streamer = TextIteratorStreamer(tokenizer, skip_prompt=True)
        n = body["max_tokens"]

        def run():
            with lock:
                torch.manual_seed(body.get("seed", 0))
                model.generate(ids, do_sample=True, max_new_tokens=n, min_new_tokens=n, pad_token_id=0,
                               streamer=streamer, **SAMPLING)

        threading.Thread(target=run, daemon=True).start()

        async def events():
            it = iter(streamer)
            while True:
                piece = await asyncio.to_thread(next, it, None)
                if piece is None:
                    break
                if piece:
                    yield "data: " + json.dumps({"choices": [{"text": piece, "index": 0}]}) + "\n\n"
            yield "data: " + json.dumps({"choices": [{"text": "", "index": 0, "finish_reason": "length"}],
                                         "usage": {"completion_tokens": n}}) + "\n\n"
            yield "data: [DONE]\n\n"

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


async def one_request(client: httpx.AsyncClient, url: str, seed: int, tokens: int) -> tuple[float, int]:
    body = {"prompt": PROMPT, "max_tokens": tokens, "seed": seed, "stream": True,
            "stream_options": {"include_usage": True}, **SAMPLING}
    t0 = time.perf_counter()
    ttft, used = None, 0
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if ttft is None and any(c.get("text") for c in chunk.get("choices", [])):
                ttft = time.perf_counter() - t0
            if chunk.get("usage"):
                used = chunk["usage"]["completion_tokens"]
    if used != tokens:
        raise RuntimeError(f"asked for {tokens} tokens, got {used}")
    return ttft, used


async def aload(url: str, clients: int, requests: int, tokens: int) -> dict:
    """`requests` requests spread over `clients` concurrent clients, each sending its share in turn."""
    queue: asyncio.Queue = asyncio.Queue()
    for seed in range(requests):
        queue.put_nowait(seed)
    ttfts, total = [], 0

    async def worker(client):
        nonlocal total
        while not queue.empty():
            seed = queue.get_nowait()
            ttft, used = await one_request(client, url, seed, tokens)
            ttfts.append(ttft)
            total += used

    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        t0 = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(clients)))
        wall = time.perf_counter() - t0
    ttfts.sort()
    return {"tokens_per_s": total / wall, "ttft_p50": statistics.median(ttfts),
            "ttft_p95": ttfts[min(len(ttfts) - 1, int(round(0.95 * (len(ttfts) - 1))))], "wall": wall,
            "requests": requests}


def load(url: str, clients: int, requests: int, tokens: int) -> dict:
    return asyncio.run(aload(url, clients, requests, tokens))


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default=str(ROOT.parent / "shared" / "corpora"))
    ap.add_argument("--config", default="tiny")
    ap.add_argument("--model", help="a model directory (default: a fresh one of --config's shape)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--tokens", type=int, default=128, help="new tokens per request")
    ap.add_argument("--requests", type=int, default=32, help="requests per measurement")
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 4, 8, 16])
    ap.add_argument("--max-batch", type=int, default=16)
    ap.add_argument("--skip-naive", action="store_true")
    args = ap.parse_args()

    from transformers import PreTrainedTokenizerFast

    from gpt2zh.sampling import SamplingConfig
    from gpt2zh.serve import ServeConfig, Studio

    work = Path(tempfile.mkdtemp(prefix="bench_serve_"))
    model_dir = Path(args.model) if args.model else make_model(args.config, Path(args.corpora), work, [])
    studio = Studio(ServeConfig(model=str(model_dir), max_batch=args.max_batch, max_queue=1024,
                                device=args.device, sampling=SamplingConfig(**SAMPLING)))
    studio.start()
    ours_url, _ = start(studio.app)
    dev = studio.engine.device
    print(f"model {model_dir} ({args.config}), n_ctx {studio.engine.n_ctx}, device {dev}, {torch.get_num_threads()} "
          f"threads; {args.requests} requests of {args.tokens} tokens per row; {args.max_batch} slots")
    # The clients run in a process of their own, so that they do not take the servers' GIL.
    pool = ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn"))

    def measure(url, clients, requests):
        return pool.submit(load, url, clients, requests, args.tokens).result()

    measure(ours_url, 2, 4)  # warm up
    rows = {c: measure(ours_url, c, args.requests) for c in args.clients}
    naive = {}
    if not args.skip_naive:
        tok = PreTrainedTokenizerFast(tokenizer_file=str(studio.engine.model_dir / "tokenizer.json"))
        naive_url, _ = start(naive_app(studio.engine.model, tok, dev))
        measure(naive_url, 1, 2)
        naive = {c: measure(naive_url, c, min(args.requests, 16)) for c in (1, 8) if c in args.clients}

    base = rows[min(rows)]["tokens_per_s"]
    print(f"\n{'clients':>7}  {'gpt2zh tok/s':>12}  {'vs one at a time':>16}  {'TTFT p50':>9}  {'TTFT p95':>9}  "
          f"{'naive tok/s':>11}  {'naive p50':>9}  {'naive p95':>9}  {'gpt2zh/naive':>12}")
    for c, r in rows.items():
        n = naive.get(c)
        tail = (f"{n['tokens_per_s']:>11.0f}  {n['ttft_p50']:>8.3f}s  {n['ttft_p95']:>8.3f}s  "
                f"{r['tokens_per_s'] / n['tokens_per_s']:>11.2f}x") if n else ""
        print(f"{c:>7}  {r['tokens_per_s']:>12.0f}  {r['tokens_per_s'] / base:>15.2f}x  {r['ttft_p50']:>8.3f}s  "
              f"{r['ttft_p95']:>8.3f}s  {tail}")
    pool.shutdown()
    studio.stop()


if __name__ == "__main__":
    main()
