"""`gpt2zh serve`: the writing studio in the browser and an OpenAI-compatible completions API.

One model, loaded once; one engine thread decoding all requests together (`engine.Engine`:
the rows of the KV cache are slots that requests take and free at any step); FastAPI on
uvicorn in front. Streams are server-sent events ending in `data: [DONE]`, as the OpenAI
clients expect. A pretrained model continues text: there is no chat endpoint.
"""
# (no `from __future__ import annotations`: FastAPI reads the handlers' annotations at run time)
import asyncio
import json
import signal
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from .degeneration import flagged_spans
from .options import Knob, SettingError
from .repetition import repeated_spans
from .sampling import SamplingConfig

WEB = Path(__file__).resolve().parent / "web"


@dataclass
class ServeConfig:
    model: str
    host: str = "127.0.0.1"
    port: int = 8000
    max_batch: int = 8            # slots: requests written at once
    max_queue: int = 64           # requests waiting for a slot before new ones get 429
    max_n: int = 8                # choices per request
    max_tokens: int = 8192        # a larger max_tokens is capped to this (with a notice)
    max_length: int = 50_000      # characters per choice
    max_prompt_chars: int = 200_000
    hold: int = 32                # tokens held back from a stream (a rollback never unsays streamed text)
    stall_after: float = 60.0     # /health reports the engine stalled when it has not turned for this long
    api_key: str | None = None    # when set, every /v1 request needs `Authorization: Bearer <key>`
    device: str | None = None
    sampling: SamplingConfig = field(default_factory=SamplingConfig)

    def __post_init__(self):
        for name in ("max_batch", "max_queue", "max_n", "max_tokens", "max_length", "max_prompt_chars"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.stall_after <= 0:
            raise ValueError("stall_after must be > 0 seconds")
        if not 0 <= self.port < 65536:
            raise ValueError(f"port must be in 0..65535, got {self.port}")
        if self.api_key is not None and (not self.api_key.strip() or any(c.isspace() for c in self.api_key)):
            raise ValueError("the API key must be non-empty and hold no spaces (it travels in a header)")

    @property
    def loopback(self) -> bool:
        """Whether only this machine can reach the server."""
        return self.host in ("127.0.0.1", "localhost", "::1") or self.host.startswith("127.")


class ApiError(Exception):
    """An error the client gets as an OpenAI error object."""

    def __init__(self, status: int, message: str, param: str | None = None, code: str | None = None,
                 kind: str = "invalid_request_error"):
        # a message may quote the client's input: a lone surrogate in it could not be sent back
        message = message.encode("utf-8", "backslashreplace").decode("utf-8")
        if param is not None:   # (so may a field's name)
            param = param.encode("utf-8", "backslashreplace").decode("utf-8")
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.kind = status, message, param, code, kind

    def body(self) -> dict:
        return {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}


# ----------------------------------------------------------------------------
# Parsing a completion request


def _number(body: dict, name: str, kind, default, low=None, high=None):
    """An integer or number field (null: the default), checked as a knob is."""
    v = body.get(name)
    if v is None:
        return default
    try:
        return Knob(name, name, kind, default, "", low, high).check(v)
    except SettingError as e:
        raise ApiError(400, str(e), name) from None


def _flag(body: dict, name: str, default: bool = False) -> bool:
    v = body.get(name)
    if v is None:
        return default
    if not isinstance(v, bool):
        raise ApiError(400, f"'{name}' must be true or false", name)
    return v


def _text(v, name: str) -> str:
    """A string that is valid text: JSON's \\u escapes can carry a lone surrogate (\\ud800), which
    no encoder or tokenizer takes."""
    if not isinstance(v, str):
        raise ApiError(400, f"'{name}' must be a string", name)
    try:
        v.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ApiError(400, f"'{name}' is not valid text: a lone surrogate (U+{ord(v[e.start]):04X}) at "
                            f"character {e.start}", name) from None
    return v


def _string(body: dict, name: str, default: str = "") -> str:
    v = body.get(name)
    return default if v is None else _text(v, name)


@dataclass
class Completion:
    prompt: str
    n: int
    stream: bool
    include_usage: bool
    max_tokens: int | None
    stop: tuple[str, ...]
    seed: int | None
    memory: str
    note: str
    cfg: SamplingConfig
    notices: list[str]
    logprobs: int | None = None


# What a completion request may hold: OpenAI's fields (those we cannot honour are refused by
# name when they ask for something: echo, suffix, best_of > n, logit_bias), ours, and the sampling
# knobs. Anything else is refused by name rather than silently ignored.
OPENAI_FIELDS = {"model", "prompt", "best_of", "echo", "frequency_penalty", "logit_bias", "logprobs", "max_tokens",
                 "n", "presence_penalty", "seed", "stop", "stream", "stream_options", "suffix", "temperature",
                 "top_p", "user"}
OWN_FIELDS = {"length", "memory", "authors_note"}
MAX_LOGPROBS = 5     # OpenAI's limit for completions


def known_fields() -> set[str]:
    return OPENAI_FIELDS | OWN_FIELDS | {k.name for k in SamplingConfig.knobs()}


def _refuse_unknown(body: dict) -> None:
    unknown = sorted(set(body) - known_fields())
    if unknown:
        names = ", ".join(f"'{n[:60]}'" for n in unknown[:8]) + (" ..." if len(unknown) > 8 else "")
        raise ApiError(400, f"unsupported field{'s' if len(unknown) > 1 else ''} {names}: this server does not "
                            "take them (see /v1/defaults for the sampling settings it does)", unknown[0][:60],
                       "unsupported_field")
    opts = body.get("stream_options")
    if isinstance(opts, dict) and set(opts) - {"include_usage"}:
        extra = sorted(set(opts) - {"include_usage"})[0]
        raise ApiError(400, f"unsupported field 'stream_options.{extra[:60]}': only include_usage is taken",
                       "stream_options", "unsupported_field")


def _not_json(constant: str):
    raise ValueError(f"{constant} is not a JSON value")


def read_json(raw: bytes):
    """The request body as JSON, strictly: NaN and Infinity (which Python's parser takes) are
    refused, and so are numbers of thousands of digits and nesting deep enough to exhaust the
    parser's stack."""
    try:
        return json.loads(raw, parse_constant=_not_json)
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        reason = "nested too deeply" if isinstance(e, RecursionError) else str(e)[:200]
        raise ApiError(400, f"the request body is not valid JSON: {reason}") from None


SEED_RANGE = (-(2 ** 63), 2 ** 63 - 1)   # what torch.Generator.manual_seed takes


def parse_completion(body, cfg: ServeConfig, model_ids: set[str]) -> Completion:
    """A completion request, every field checked for type and range before use: an ApiError
    (an OpenAI error object naming the field) for anything malformed."""
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object")
    _refuse_unknown(body)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ApiError(400, "'model' must be a string", "model")
    if model is not None and model not in model_ids:
        raise ApiError(404, f"the model '{model[:100]}' does not exist; this server has {sorted(model_ids)[0]}",
                       "model", "model_not_found")
    prompt = body.get("prompt", "")
    if isinstance(prompt, list):
        if len(prompt) != 1 or not isinstance(prompt[0], str):
            raise ApiError(400, "'prompt' must be a string or a list of one string (token ids are not taken)",
                           "prompt")
        prompt = prompt[0]
    prompt = _text(prompt, "prompt")
    if len(prompt) > cfg.max_prompt_chars:
        raise ApiError(413, f"the prompt has {len(prompt):,} characters; this server takes at most "
                            f"{cfg.max_prompt_chars:,}", "prompt", "prompt_too_long")
    for name in ("echo", "suffix"):
        if body.get(name) not in (None, False, ""):
            raise ApiError(400, f"'{name}' is not supported: this server writes after the prompt only", name)
    if body.get("logit_bias") not in (None, {}):
        raise ApiError(400, "'logit_bias' is not supported", "logit_bias")
    # (`is`: 0 == False to Python, and logprobs 0 asks for the chosen tokens' own)
    logprobs = None if body.get("logprobs") is None or body.get("logprobs") is False else \
        _number(body, "logprobs", int, None, 0, MAX_LOGPROBS)
    n = _number(body, "n", int, 1, 1, cfg.max_n)
    if body.get("best_of") not in (None, 1, n):
        raise ApiError(400, "'best_of' is not supported", "best_of")
    _string(body, "user")   # OpenAI's end-user id: taken, and not used
    stream = _flag(body, "stream")
    opts = body.get("stream_options")
    if opts is not None and not isinstance(opts, dict):
        raise ApiError(400, "'stream_options' must be an object", "stream_options")
    include_usage = _flag(opts or {}, "include_usage")
    notices = []
    length = _number(body, "length", int, None, 1)
    max_tokens = _number(body, "max_tokens", int, None if length else 16, 1)
    if max_tokens is not None and max_tokens > cfg.max_tokens:
        notices.append(f"max_tokens {max_tokens} capped to {cfg.max_tokens}")
        max_tokens = cfg.max_tokens
    if length is not None and length > cfg.max_length:
        notices.append(f"length {length} capped to {cfg.max_length}")
        length = cfg.max_length
    stop = body.get("stop")
    if stop is None:
        stop = ()
    elif isinstance(stop, str):
        stop = (_text(stop, "stop"),)
    elif isinstance(stop, list) and len(stop) <= 4 and all(isinstance(x, str) for x in stop):
        stop = tuple(_text(x, "stop") for x in stop)
    else:
        raise ApiError(400, "'stop' must be a string or a list of up to 4 strings", "stop")
    seed = _number(body, "seed", int, None, SEED_RANGE[0], SEED_RANGE[1] - n)
    values = {k.name: body[k.name] for k in SamplingConfig.knobs() if body.get(k.name) is not None}
    if values.get("temperature") == 0 and not isinstance(values["temperature"], bool):  # OpenAI's greedy decoding
        values.update(temperature=1.0, top_k=1)
    try:
        sampling = cfg.sampling.with_knobs(values, length=length or 10 ** 9, num_samples=1, batch_size=1, seed=None)
    except SettingError as e:
        raise ApiError(400, str(e), e.name) from None
    return Completion(prompt, n, stream, include_usage, max_tokens, stop, seed,
                      _string(body, "memory"), _string(body, "authors_note"), sampling, notices, logprobs)


def openai_logprobs(entries: list | None, offset: int) -> dict | None:
    """OpenAI's completion `logprobs` object for the tokens in `entries` (the engine's
    (text, logprob, alternatives)), whose text starts `offset` characters after the prompt's start."""
    if entries is None:
        return None
    out = {"tokens": [], "token_logprobs": [], "top_logprobs": [], "text_offset": []}
    for text, lp, top in entries:
        out["tokens"].append(text)
        out["token_logprobs"].append(round(lp, 6))
        out["top_logprobs"].append({k: round(v, 6) for k, v in top.items()})
        out["text_offset"].append(offset)
        offset += len(text)
    return out


# ----------------------------------------------------------------------------
# The application


class Studio:
    """The engine, its thread, and the FastAPI app in front of them."""

    def __init__(self, cfg: ServeConfig):
        from .engine import Engine

        self.cfg = cfg
        self.engine = Engine(cfg.model, device=cfg.device, slots=cfg.max_batch)
        self.model_id = self._model_id(cfg.model, self.engine.model_dir)
        self.stopping = threading.Event()
        self.on_failure = None    # serve() sets it: the engine failed, so the process should exit
        self.thread = threading.Thread(target=self.engine.serve_forever, args=(self.stopping, self._engine_failed),
                                       name="gpt2zh-engine", daemon=True)
        self.app = self._build()

    @staticmethod
    def _model_id(given: str, model_dir: Path) -> str:
        """The name clients use: a Hub ID as given (its snapshot folder is a commit hash), else
        the run's or model directory's name."""
        from .hub import is_hub_id, split_id

        if is_hub_id(given):
            return split_id(given)[0]
        return model_dir.parent.name if model_dir.name == "best" else model_dir.name

    def start(self) -> None:
        self.thread.start()

    def _engine_failed(self, reason: str) -> None:
        if self.on_failure is not None:
            self.on_failure(reason)

    def problem(self) -> str | None:
        """Why the server cannot write right now (what /health reports with a 503), or None."""
        e = self.engine
        if e.failure is not None:
            return f"the decoding engine failed: {e.failure}"
        if self.thread.ident is not None and not self.thread.is_alive() and not self.stopping.is_set():
            return "the decoding engine's thread is not running"
        age = time.monotonic() - e.heartbeat
        if self.thread.is_alive() and age > self.cfg.stall_after:
            return f"the decoding engine has not turned for {age:.0f} s (stalled)"
        return None

    def stop(self) -> None:
        self.stopping.set()
        with self.engine.lock:
            self.engine.lock.notify_all()
        self.thread.join(timeout=10)

    # -- the requests

    def _submit(self, c: Completion, loop, queue: asyncio.Queue | None):
        from .engine import EngineFailed, Request

        problem = self.problem()
        if problem:
            raise ApiError(503, f"{problem}; the server cannot write", code="engine_failed", kind="server_error")
        waiting = len(self.engine.waiting)
        if waiting + c.n > self.cfg.max_queue:
            raise ApiError(429, f"the server is busy ({waiting} requests waiting for {self.cfg.max_batch} slots); "
                                "try again shortly", code="queue_full", kind="server_busy")
        reqs = []
        for i in range(c.n):
            def on_text(text, logprobs, i=i):
                if queue is not None:
                    loop.call_soon_threadsafe(queue.put_nowait, ("text", i, (text, logprobs)))

            def on_done(i=i):
                if queue is not None:
                    loop.call_soon_threadsafe(queue.put_nowait, ("done", i, None))

            reqs.append(Request(c.prompt, c.cfg, seed=None if c.seed is None else c.seed + i, memory=c.memory,
                                note=c.note, max_tokens=c.max_tokens, stop=c.stop, hold=self.cfg.hold,
                                logprobs=c.logprobs,
                                on_text=on_text if c.stream else None, on_done=on_done, tag=i))
        try:
            for r in reqs:
                self.engine.submit(r)
        except EngineFailed as e:
            self._cancel(reqs)
            raise ApiError(503, f"{e}; the server cannot write", code="engine_failed", kind="server_error") from None
        return reqs

    def _cancel(self, reqs) -> None:
        for r in reqs:
            if not r.done.is_set():
                self.engine.cancel(r)

    @staticmethod
    def _failed(result: dict) -> ApiError:
        """The OpenAI error for a request the engine ended with an error."""
        status = result["error_status"]
        if status == 400:
            return ApiError(400, result["error"], "prompt")
        return ApiError(status, result["error"], code="engine_failed" if status == 503 else "internal_error",
                        kind="server_error")

    @staticmethod
    def _extension(result: dict) -> dict:
        text = result.get("text", "")
        return {"index": result["sample"], "status": result["status"], "report": result.get("report"),
                "measures": result.get("measures"), "flagged_spans": flagged_spans(result.get("measures") or {}),
                "rollbacks_at": result.get("rollbacks_at", []), "repeated_spans": repeated_spans(text),
                "tokens_per_s": result.get("tokens_per_s"), "time_to_first_token_s": result.get("time_to_first_token_s")}

    def _authorized(self, header: str | None) -> bool:
        import hmac

        scheme, _, given = (header or "").partition(" ")
        return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode("utf-8", "replace"),
                                                                    self.cfg.api_key.encode("utf-8"))

    @staticmethod
    def _unauthorized(header: str | None) -> ApiError:
        # OpenAI's wording and shape, so that clients show what they always show; the key given is
        # never repeated (not even masked): it would end up in the client's logs
        if not header:
            message = ("You didn't provide an API key. You need to provide your API key in an Authorization header "
                       "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY).")
        else:
            message = "Incorrect API key provided. The key is the one this server was started with (--api-key)."
        return ApiError(401, message, code="invalid_api_key")

    def _usage(self, results: list[dict]) -> dict:
        prompt = results[0].get("prompt_tokens", 0) if results else 0
        completion = sum(r.get("tokens", 0) for r in results)
        return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}

    def _build(self):
        from fastapi import FastAPI, Request as HttpRequest
        from fastapi.exceptions import RequestValidationError
        from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
        from fastapi.staticfiles import StaticFiles
        from starlette.exceptions import HTTPException as StarletteHTTPException

        app = FastAPI(title="gpt2zh", docs_url=None, redoc_url=None)
        app.mount("/static", StaticFiles(directory=str(WEB)), name="static")
        ids = {self.model_id, "gpt2zh"}

        def error(e: ApiError) -> JSONResponse:
            headers = {"Retry-After": "1"} if e.status in (429, 503) else None
            return JSONResponse(e.body(), status_code=e.status, headers=headers)

        @app.exception_handler(ApiError)
        async def api_error(_, e: ApiError):
            return error(e)

        if self.cfg.api_key is not None:
            @app.middleware("http")
            async def key_required(http: HttpRequest, call_next):
                if http.url.path.startswith("/v1") and not self._authorized(http.headers.get("authorization")):
                    return error(self._unauthorized(http.headers.get("authorization")))
                return await call_next(http)

        @app.exception_handler(StarletteHTTPException)
        async def http_error(_, e: StarletteHTTPException):
            return error(ApiError(e.status_code, str(e.detail), kind="invalid_request_error" if e.status_code < 500
                                  else "server_error"))

        @app.exception_handler(RequestValidationError)
        async def validation_error(_, e):
            return error(ApiError(400, f"invalid request: {e.errors()}"))

        @app.get("/")
        async def index():
            return FileResponse(WEB / "index.html", media_type="text/html; charset=utf-8")

        @app.get("/health")
        async def health():
            problem = self.problem()
            body = {"status": "error" if problem else "ok", "model": self.model_id, "device": str(self.engine.device),
                    "slots": len(self.engine.slots), "busy_slots": self.engine.busy_slots(),
                    "waiting": len(self.engine.waiting), "n_ctx": self.engine.n_ctx,
                    "finished": dict(self.engine.finished),
                    "engine_idle_s": round(time.monotonic() - self.engine.heartbeat, 3)}
            if problem:
                body["reason"] = problem
                return JSONResponse(body, status_code=503)
            return body

        @app.get("/v1/models")
        async def models():
            return {"object": "list", "data": [{"id": self.model_id, "object": "model", "created": 0,
                                                "owned_by": "gpt2zh"}]}

        @app.get("/v1/defaults")
        async def defaults():
            return {"model": self.model_id, "n_ctx": self.engine.n_ctx, "max_tokens": self.cfg.max_tokens,
                    "max_length": self.cfg.max_length, "max_n": self.cfg.max_n,
                    "sampling": {**self.cfg.sampling.knob_values(), "length": 800}}

        @app.post("/v1/chat/completions")
        async def chat():
            raise ApiError(404, "this server runs a pretrained (not instruction-tuned) model: it continues text "
                                "rather than chatting. Use /v1/completions with the opening as the prompt.",
                           code="chat_not_supported")

        @app.post("/v1/completions")
        async def completions(http: HttpRequest):
            c = parse_completion(read_json(await http.body()), self.cfg, ids)
            cid, created = f"cmpl-{uuid.uuid4().hex[:24]}", int(time.time())
            loop = asyncio.get_running_loop()
            queue: asyncio.Queue = asyncio.Queue()
            reqs = self._submit(c, loop, queue)
            headers = {"X-gpt2zh-notice": "; ".join(c.notices)} if c.notices else None
            if c.stream:
                return StreamingResponse(self._stream(http, c, reqs, queue, cid, created), headers=headers,
                                         media_type="text/event-stream")
            try:
                done = 0
                while done < len(reqs):
                    try:
                        kind, _, _ = await asyncio.wait_for(queue.get(), timeout=0.5)
                        done += kind == "done"
                    except asyncio.TimeoutError:
                        if await http.is_disconnected():
                            self._cancel(reqs)
                            return JSONResponse({}, status_code=499)
            except asyncio.CancelledError:
                self._cancel(reqs)
                raise
            results = [r.result for r in reqs]
            for r in results:
                if "error" in r:
                    raise self._failed(r)
            out = {"id": cid, "object": "text_completion", "created": created, "model": self.model_id,
                   "choices": [{"text": r["text"], "index": r["sample"],
                                "logprobs": openai_logprobs(r.get("logprobs"), len(c.prompt)),
                                "finish_reason": r["finish_reason"]} for r in results],
                   "usage": self._usage(results),
                   "gpt2zh": {"choices": [self._extension(r) for r in results], "notices": c.notices}}
            return JSONResponse(out, headers=headers)

        return app

    async def _stream(self, http, c: Completion, reqs, queue: asyncio.Queue, cid: str, created: int):
        def event(choices, extra=None) -> str:
            chunk = {"id": cid, "object": "text_completion", "created": created, "model": self.model_id,
                     "choices": choices}
            if extra:
                chunk.update(extra)
            return f"data: {json.dumps(chunk, ensure_ascii=False)}\n\n"

        finished = 0
        offsets = [len(c.prompt)] * len(reqs)   # where each choice's next piece starts (OpenAI's text_offset)
        try:
            if c.notices:
                yield event([], {"gpt2zh": {"notices": c.notices}})
            while finished < len(reqs):
                try:
                    items = [await asyncio.wait_for(queue.get(), timeout=1.0)]
                except asyncio.TimeoutError:
                    if await http.is_disconnected():
                        return
                    continue
                while not queue.empty():  # a client that reads slower than we write gets bigger pieces
                    items.append(queue.get_nowait())
                pending: dict[int, tuple[str, list | None]] = {}
                for kind, i, piece in items + [("flush", None, None)]:
                    if kind == "text":
                        text, entries = pending.get(i, ("", None if c.logprobs is None else []))
                        pending[i] = (text + piece[0], None if entries is None else entries + piece[1])
                        continue
                    for j in [j for j in pending if kind == "flush" or j == i]:
                        text, entries = pending.pop(j)
                        yield event([{"text": text, "index": j, "logprobs": openai_logprobs(entries, offsets[j]),
                                      "finish_reason": None}])
                        offsets[j] += len(text)
                    if kind == "flush":
                        break
                    finished += 1
                    r = reqs[i].result
                    if "error" in r:
                        yield f"data: {json.dumps(self._failed(r).body(), ensure_ascii=False)}\n\n"
                        continue
                    yield event([{"text": "", "index": i, "logprobs": None, "finish_reason": r["finish_reason"]}],
                                {"gpt2zh": self._extension(r)})
            if c.include_usage:
                yield event([], {"usage": self._usage([r.result for r in reqs])})
            yield "data: [DONE]\n\n"
        finally:
            self._cancel(reqs)  # a client that went away frees its slots


def serve(cfg: ServeConfig) -> int:
    """Load the model, print the URL, serve until Ctrl-C (exit status 0) or until the decoding
    engine fails (1: a supervisor should restart the server)."""
    import sys

    import uvicorn

    studio = Studio(cfg)
    server = uvicorn.Server(uvicorn.Config(studio.app, host=cfg.host, port=cfg.port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    studio.on_failure = lambda reason: setattr(server, "should_exit", True)  # open streams get their error first
    studio.start()
    url = f"http://{cfg.host}:{cfg.port}/"
    key = "an API key (Authorization: Bearer ...)" if cfg.api_key else "no API key"
    print(f"gpt2zh serve: {studio.model_id} on {studio.engine.device}, {cfg.max_batch} slots, n_ctx "
          f"{studio.engine.n_ctx}\n  writing studio: {url}\n  OpenAI API:     {url}v1 (model '{studio.model_id}', "
          f"{key})\n  Ctrl-C to stop", file=sys.stderr, flush=True)
    if not cfg.loopback and not cfg.api_key:
        print(f"warning: {cfg.host} can be reached from other machines and no API key is set: anyone who can "
              "reach it can use the model. Set one with --api-key or GPT2ZH_API_KEY.", file=sys.stderr, flush=True)
    # uvicorn shuts down gracefully on SIGINT/SIGTERM and then raises the signal again for the
    # handlers it found: ours only note it, so the engine stops here and the exit is clean.
    stopped_by = []
    previous = {sig: signal.signal(sig, lambda signum, frame: stopped_by.append(signum))
                for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        studio.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if studio.engine.failure is not None:
        print(f"gpt2zh serve: stopped: the decoding engine failed ({studio.engine.failure})", file=sys.stderr)
        return 1
    print(f"gpt2zh serve: stopped{' by ' + signal.Signals(stopped_by[0]).name if stopped_by else ''}",
          file=sys.stderr)
    return 0
