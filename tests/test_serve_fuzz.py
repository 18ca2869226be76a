"""`gpt2zh serve` under hostile input and injected faults: no request body, however malformed,
stops or wedges the server for other clients, and `/health` tells the truth.

The fuzz test throws a few hundred seeded random bodies at a fresh server (every field of the
completion request with values of every JSON type, lone surrogates, invalid UTF-8, duplicate
keys, truncated JSON, NaN, deep nesting, streams left mid-way) from several clients at once.
The fault tests inject exceptions into the engine: one slot's failure ends only its request;
the engine's own failure fails every request at once, turns /health to 503, and (in the real
command) exits non-zero so that a supervisor restarts it. `bench/fuzz_serve.py` is the long run.
"""
from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from test_serve import ROOT, Server, free_port

sys.path.insert(0, str(ROOT / "bench"))
from fuzz_serve import cases, fire, idle, reference  # noqa: E402  (the generators of bench/fuzz_serve.py's long run)


def test_fuzzed_requests_never_stop_or_wedge_the_server(tiny_run):
    srv = Server(tiny_run, "--max-tokens", "24", "--max-length", "48", "--max-batch", "4", "--max-queue", "256")
    try:
        model_id = httpx.get(srv.url + "/v1/models").json()["data"][0]["id"]
        before = reference(srv.url, model_id)   # on the fresh server
        with ThreadPoolExecutor(4) as pool:   # several clients at once, so that slots share steps
            for f in [pool.submit(fire, srv.url, *c) for c in cases(20261201, 300, model_id)]:
                f.result()
        health = idle(srv.url)
        assert health["status"] == "ok" and (health["busy_slots"], health["waiting"]) == (0, 0), health
        assert reference(srv.url, model_id) == before   # the same text as on the fresh server
    finally:
        rc, out = srv.stop()
    assert rc == 0, out
    assert "Traceback" not in out, out[-3000:]


# ----------------------------------------------------------------------------
# Faults injected into the engine (in-process, with the real engine thread)


@pytest.fixture()
def studio(tiny_run):
    from gpt2zh.serve import ServeConfig, Studio

    st = Studio(ServeConfig(model=str(tiny_run), max_batch=2, max_tokens=400))
    st.start()
    yield st
    st.stop()


def sse(text: str) -> list:
    return [json.loads(e) if e != "[DONE]" else e for e in
            (line[6:] for line in text.splitlines() if line.startswith("data: "))]


def test_a_failing_slot_ends_only_its_own_request(studio, monkeypatch):
    from fastapi.testclient import TestClient

    import gpt2zh.engine as engine_mod

    eng = studio.engine
    client = TestClient(studio.app)
    normal = {"prompt": "话说天下大势，", "max_tokens": 120, "seed": 4}
    expected = client.post("/v1/completions", json=normal).json()["choices"][0]["text"]

    sample, open_, report = eng._sample, eng._open, engine_mod.repetition_report

    def bad_sample(s, logits):
        if s.req.prompt.startswith("FAULT-STEP") and len(s.tokens) == 5:
            raise RuntimeError("injected fault while sampling")
        return sample(s, logits)

    def bad_open(req):
        if req.prompt.startswith("FAULT-OPEN"):
            raise RuntimeError("injected fault while opening")
        return open_(req)

    def bad_report(text, events=None):
        if text.startswith("__"):
            raise RuntimeError("injected fault while closing")
        return report(text, events)

    monkeypatch.setattr(eng, "_sample", bad_sample)
    monkeypatch.setattr(eng, "_open", bad_open)
    monkeypatch.setattr(engine_mod, "repetition_report", bad_report)
    answers = {}

    def post(name, body):
        answers[name] = client.post("/v1/completions", json=body)

    threads = [threading.Thread(target=post, args=a) for a in [
        ("normal", normal),
        ("step-stream", {"prompt": "FAULT-STEP", "max_tokens": 300, "stream": True}),
        ("step", {"prompt": "FAULT-STEP", "max_tokens": 300}),
        ("open", {"prompt": "FAULT-OPEN", "max_tokens": 5}),
    ]]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert answers["normal"].status_code == 200
    assert answers["normal"].json()["choices"][0]["text"] == expected   # the other slot went on, undisturbed
    for name in ("step", "open"):
        r = answers[name]
        assert r.status_code == 500, r.text
        err = r.json()["error"]
        assert err["type"] == "server_error" and "injected fault" in err["message"]
    events = sse(answers["step-stream"].text)
    assert events[-1] == "[DONE]"
    errors = [e["error"] for e in events[:-1] if "error" in e]
    assert len(errors) == 1 and "injected fault while sampling" in errors[0]["message"]
    # a failure while closing (the report) ends that request too
    monkeypatch.setattr(engine_mod, "repetition_report", lambda text, events=None: bad_report("__", events))
    r = client.post("/v1/completions", json={"prompt": "x", "max_tokens": 3})
    assert r.status_code == 500 and "while closing" in r.json()["error"]["message"]
    monkeypatch.setattr(engine_mod, "repetition_report", report)
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    assert health.json()["busy_slots"] == 0 and health.json()["finished"]["error"] == 4
    assert client.post("/v1/completions", json=normal).json()["choices"][0]["text"] == expected


def test_an_engine_failure_fails_every_request_and_health_says_so(studio, monkeypatch):
    from fastapi.testclient import TestClient

    eng = studio.engine
    told = []
    studio.on_failure = told.append
    client = TestClient(studio.app)
    boom = threading.Event()
    step = eng.dec.step

    def failing_step(ids, pos):
        if boom.is_set():
            raise RuntimeError("injected fault in the decoder")
        return step(ids, pos)

    monkeypatch.setattr(eng.dec, "step", failing_step)
    answers = {}

    def post(name, body):
        answers[name] = client.post("/v1/completions", json=body)

    running = [threading.Thread(target=post, args=(f"run{i}", {"prompt": "话说", "max_tokens": 5000,
                                                               "stream": i == 0})) for i in range(2)]
    for t in running:
        t.start()
    deadline = time.time() + 30
    while eng.busy_slots() < 2 and time.time() < deadline:
        time.sleep(0.02)
    waiting = threading.Thread(target=post, args=("waiting", {"prompt": "话说", "max_tokens": 5}))
    waiting.start()
    while not eng.waiting and time.time() < deadline:
        time.sleep(0.02)
    assert eng.busy_slots() == 2 and len(eng.waiting) == 1
    t0 = time.time()
    boom.set()
    for t in running + [waiting]:
        t.join(timeout=30)
    assert time.time() - t0 < 10   # they fail at once, none hangs
    assert told and "injected fault in the decoder" in told[0]
    r = answers["waiting"]
    assert r.status_code == 503 and r.json()["error"]["code"] == "engine_failed"
    assert answers["run1"].status_code == 503
    events = sse(answers["run0"].text)
    assert events[-1] == "[DONE]" and "injected fault" in events[-2]["error"]["message"]
    health = client.get("/health")
    assert health.status_code == 503 and "injected fault in the decoder" in health.json()["reason"]
    r = client.post("/v1/completions", json={"prompt": "话说", "max_tokens": 5})   # refused at once
    assert r.status_code == 503 and "engine failed" in r.json()["error"]["message"]


def test_a_stalled_engine_turns_health_to_503(studio, monkeypatch):
    from fastapi.testclient import TestClient

    client = TestClient(studio.app)
    monkeypatch.setattr(studio.cfg, "stall_after", 1.0)
    step, wedged = studio.engine.step, threading.Event()

    def slow_step():   # one step that hangs for 4 s (a wedged kernel, a swapping machine)
        if not wedged.is_set():
            wedged.set()
            time.sleep(4)
        return step()

    monkeypatch.setattr(studio.engine, "step", slow_step)
    answer = {}
    t = threading.Thread(target=lambda: answer.update(r=client.post("/v1/completions", json={"prompt": "话说",
                                                                                              "max_tokens": 5})))
    t.start()
    wedged.wait(10)
    time.sleep(2)
    h = client.get("/health")
    assert h.status_code == 503 and "stalled" in h.json()["reason"], h.text
    t.join(timeout=30)
    assert answer["r"].status_code == 200   # it came back: so does /health
    assert client.get("/health").status_code == 200


FAULTY_SERVER = """
import sys
import gpt2zh.engine as E
step = E.Engine.step
def faulty(self):
    if any(r.prompt == "BOOM" for r in self.waiting):
        raise RuntimeError("injected engine fault")
    return step(self)
E.Engine.step = faulty
from gpt2zh.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_the_server_exits_non_zero_when_its_engine_dies(tiny_run, tmp_path):
    script = tmp_path / "faulty_server.py"
    script.write_text(FAULTY_SERVER)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen([sys.executable, str(script), "serve", "--model", str(tiny_run), "--port", str(port)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while True:
            assert proc.poll() is None and time.time() < deadline, "the server did not come up"
            try:
                if httpx.get(url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        ok = httpx.post(url + "/v1/completions", json={"prompt": "话说", "max_tokens": 4}, timeout=30)
        assert ok.status_code == 200
        r = httpx.post(url + "/v1/completions", json={"prompt": "BOOM", "max_tokens": 4}, timeout=30)
        assert r.status_code == 503 and "injected engine fault" in r.json()["error"]["message"]
        rc = proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = proc.stdout.read()
    assert rc == 1, out
    assert "stopped: the decoding engine failed (RuntimeError: injected engine fault)" in out
