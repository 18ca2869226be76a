"""`gpt2zh serve`: a live server (the real command, in its own process) with the tiny model,
the real `openai` client, concurrent streams, bad input, and the writing page in a real
headless Chromium."""
from __future__ import annotations

import json
import math
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

ROOT = Path(__file__).resolve().parent.parent
ARTIFACTS = Path(os.environ.get("GPT2ZH_ARTIFACTS", ROOT / "tests" / "artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, model: Path, *flags: str):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "gpt2zh", "serve", "--model", str(model), "--port", str(self.port), *flags],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
        deadline = time.time() + 120
        while time.time() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gpt2zh serve exited: {self.proc.stdout.read()}")
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.2)
        raise RuntimeError("gpt2zh serve did not come up in 120 s")

    def stop(self) -> tuple[int, str]:
        self.proc.send_signal(signal.SIGINT)  # Ctrl-C
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
            return -9, out
        return self.proc.returncode, out


@pytest.fixture(scope="module")
def server(tiny_run):
    srv = Server(tiny_run, "--max-tokens", "512", "--max-batch", "8")
    yield srv
    rc, out = srv.stop()
    assert rc == 0, out
    assert "writing studio: http://127.0.0.1" in out  # it printed the URL
    assert "stopped by SIGINT" in out           # and shut down cleanly


@pytest.fixture(scope="module")
def client(server):
    from openai import OpenAI

    return OpenAI(base_url=server.url + "/v1", api_key="not-needed", max_retries=0, timeout=120)


@pytest.fixture(scope="module")
def model_id(client) -> str:
    models = client.models.list().data
    assert len(models) == 1
    return models[0].id


def complete(client, model_id, **kw):
    return client.completions.create(model=model_id, prompt=kw.pop("prompt", "话说天下大势，"), **kw)


def stream_text(client, model_id, **kw) -> tuple[str, list]:
    chunks = list(complete(client, model_id, stream=True, **kw))
    return "".join(c.choices[0].text for c in chunks if c.choices), chunks


def solo(client, model_id, seed: int, max_tokens: int) -> str:
    return complete(client, model_id, seed=seed, max_tokens=max_tokens).choices[0].text


# ----------------------------------------------------------------------------
# The openai client


def test_openai_client_plain_and_streaming(client, model_id):
    r = complete(client, model_id, max_tokens=40, seed=7)
    assert r.object == "text_completion" and len(r.choices) == 1
    text = r.choices[0].text
    assert text and r.choices[0].finish_reason == "length"
    assert r.usage.completion_tokens == 40 and r.usage.prompt_tokens == len("话说天下大势，")
    assert r.usage.total_tokens == 47
    ext = r.model_extra["gpt2zh"]["choices"][0]
    assert ext["report"]["chars"] == len(text) and ext["status"] == "ok"

    streamed, chunks = stream_text(client, model_id, max_tokens=40, seed=7)
    assert streamed == text  # the same seed writes the same text, streamed or not
    assert len(chunks) > 3   # it arrived in pieces
    last = chunks[-1]
    assert last.choices[0].finish_reason == "length"
    assert last.model_extra["gpt2zh"]["report"]["chars"] == len(text)


def test_stream_ends_with_done_and_usage(server, model_id):
    body = {"model": model_id, "prompt": "第一回", "max_tokens": 10, "stream": True, "seed": 1,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    usage = json.loads(events[-2])["usage"]
    assert usage["completion_tokens"] == 10 and usage["prompt_tokens"] == 3


def test_n_choices_and_seed(client, model_id):
    r = complete(client, model_id, max_tokens=30, n=2, seed=11)
    a, b = sorted(r.choices, key=lambda c: c.index)
    assert (a.index, b.index) == (0, 1) and a.text != b.text
    assert r.usage.completion_tokens == 60
    again = complete(client, model_id, max_tokens=30, n=2, seed=11)
    assert [c.text for c in sorted(again.choices, key=lambda c: c.index)] == [a.text, b.text]
    assert complete(client, model_id, max_tokens=30, seed=12).choices[0].text == b.text  # choice i: seed + i
    streamed = list(complete(client, model_id, max_tokens=30, n=2, seed=11, stream=True))
    texts = {0: "", 1: ""}
    for c in streamed:
        for ch in c.choices:
            texts[ch.index] += ch.text
    assert texts == {0: a.text, 1: b.text}


def test_stop_sequence(client, model_id):
    full = solo(client, model_id, seed=3, max_tokens=80)
    stop = full[30:32]
    first = full.find(stop)
    r = complete(client, model_id, seed=3, max_tokens=80, stop=[stop, "不会出现的停止串"])
    assert r.choices[0].finish_reason == "stop"
    assert r.choices[0].text == full[:first]
    streamed, _ = stream_text(client, model_id, seed=3, max_tokens=80, stop=stop)
    assert streamed == full[:first]  # a stop sequence is never streamed, even in part


def test_far_past_the_context(client, model_id, server):
    n_ctx = httpx.get(server.url + "/health").json()["n_ctx"]
    r = complete(client, model_id, seed=5, max_tokens=8 * n_ctx,
                 extra_body={"top_k": 20, "repetition": "rollback", "memory": "孙悟空"})
    assert r.usage.completion_tokens == 8 * n_ctx
    assert len(r.choices[0].text) >= 8 * n_ctx * 0.9
    report = r.model_extra["gpt2zh"]["choices"][0]["report"]
    assert report["chars"] == len(r.choices[0].text)
    assert report["longest_repeat"] <= 64


def test_openai_penalties_are_honoured_and_chapters_measured(client, model_id):
    from collections import Counter

    base = complete(client, model_id, seed=5, max_tokens=300)
    pen = complete(client, model_id, seed=5, max_tokens=300, presence_penalty=2.0, frequency_penalty=2.0)
    a, b = base.choices[0].text, pen.choices[0].text
    assert a != b   # OpenAI's fields change the text (they were once accepted and ignored)
    assert len(set(b)) > len(set(a)) and Counter(b).most_common(1)[0][1] <= Counter(a).most_common(1)[0][1]
    ext = pen.model_extra["gpt2zh"]["choices"][0]
    windows = ext["measures"]["windows"]
    assert windows["collapse"]["band"][1] < 0.2 and len(windows["collapse"]["values"]) >= 1   # the human band
    assert isinstance(ext["flagged_spans"], list)


# ----------------------------------------------------------------------------
# Concurrency


def test_eight_concurrent_streams_equal_their_solo_runs(client, model_id, server):
    n_ctx = httpx.get(server.url + "/health").json()["n_ctx"]
    tokens = 2 * n_ctx   # past the context, so that the slots re-prefill among the others
    results: dict[int, str] = {}
    errors = []

    def one(seed):
        try:
            results[seed] = stream_text(client, model_id, seed=seed, max_tokens=tokens + 7 * seed)[0]
        except Exception as e:  # noqa: BLE001  (reported below)
            errors.append(e)

    threads = [threading.Thread(target=one, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
    assert not errors and len(results) == 8
    for seed in range(8):
        assert results[seed] == solo(client, model_id, seed, tokens + 7 * seed), f"seed {seed}"


# ----------------------------------------------------------------------------
# Bad input: clear errors, and the server lives on


def post(server, body=None, content=None, path="/v1/completions"):
    return httpx.post(server.url + path, json=body, content=content, timeout=60,
                      headers={"Content-Type": "application/json"})


def assert_error(r, status, param=None):
    assert r.status_code == status, r.text
    err = r.json()["error"]
    assert err["message"] and err["type"]
    if param:
        assert err["param"] == param
    return err


def test_bad_requests_get_openai_error_objects(server, model_id):
    assert_error(post(server, content=b'{"prompt": "x", '), 400)
    assert_error(post(server, content=b"\xff\xfe not json"), 400)
    assert_error(post(server, content=b"[1, 2]"), 400)
    assert_error(post(server, {"prompt": "x", "max_tokens": "ten"}), 400, "max_tokens")
    assert_error(post(server, {"prompt": "x", "temperature": "hot"}), 400, "temperature")
    assert_error(post(server, {"prompt": 12}), 400, "prompt")
    assert_error(post(server, {"prompt": "x", "stop": [1]}), 400, "stop")
    assert_error(post(server, {"prompt": "x", "stream": "yes"}), 400, "stream")
    assert_error(post(server, {"prompt": "x", "top_p": 0}), 400, "top_p")
    assert_error(post(server, {"prompt": "x", "n": 1000}), 400, "n")
    assert_error(post(server, {"prompt": "x", "max_tokens": 0}), 400, "max_tokens")
    assert_error(post(server, {"prompt": "x", "repetition": "sometimes"}), 400, "repetition")
    err = assert_error(post(server, {"model": "gpt-4", "prompt": "x"}), 404, "model")
    assert err["code"] == "model_not_found"
    assert_error(post(server, {"prompt": "好" * (1 << 20)}), 413, "prompt")
    # issue 14: a lone surrogate (a legal \\u escape) once killed the engine; a dict as model was a bare 500
    assert_error(post(server, content=b'{"prompt": "\\ud800\xe8\xaf\x9d\xe8\xaf\xb4", "max_tokens": 3}'), 400, "prompt")
    assert_error(post(server, {"model": {"a": 1}, "prompt": "x"}), 400, "model")
    assert_error(post(server, content=b'{"prompt": "x", "memory": "\\udc00"}'), 400, "memory")
    assert_error(post(server, content=b'{"prompt": "x", "temperature": NaN}'), 400)
    assert_error(post(server, {"prompt": "x", "seed": 2 ** 64}), 400, "seed")
    assert_error(post(server, {"prompt": "x", "presence_penalty": 2.5}), 400, "presence_penalty")
    assert_error(post(server, {"prompt": "x", "frequency_penalty": "much"}), 400, "frequency_penalty")
    assert_error(post(server, {"prompt": "x", "density_penalty": -1}), 400, "density_penalty")
    err = assert_error(post(server, {"model": model_id, "messages": [{"role": "user", "content": "你好"}]},
                            path="/v1/chat/completions"), 404)
    assert "/v1/completions" in err["message"]
    assert httpx.get(server.url + "/health").json()["status"] == "ok"


GREEDY = {"temperature": 0, "extra_body": {"repetition": "off", "repetition_penalty": 1.0, "focus_penalty": 0}}


def test_logprobs_plain_and_streaming(client, model_id):
    """issue 17: OpenAI's logprobs object, under the model itself: with nothing but greedy decoding
    the chosen token is the likeliest; the tokens make up the text; streaming gives the same."""
    prompt = "话说天下大势，"
    r = complete(client, model_id, prompt=prompt, max_tokens=40, logprobs=5, seed=3, **GREEDY)
    choice = r.choices[0]
    lp = choice.logprobs
    assert "".join(lp.tokens) == choice.text and len(lp.tokens) == r.usage.completion_tokens == 40
    assert lp.text_offset[0] == len(prompt)
    assert all(b - a == len(t) for a, b, t in zip(lp.text_offset, lp.text_offset[1:], lp.tokens))
    for token, chosen, top in zip(lp.tokens, lp.token_logprobs, lp.top_logprobs):
        assert len(top) == 5 and all(v <= 0 for v in top.values())
        assert sum(math.exp(v) for v in top.values()) <= 1 + 1e-6
        assert chosen == pytest.approx(max(top.values()), abs=1e-5) and top[token] == pytest.approx(chosen, abs=1e-5)
    text, chunks = stream_text(client, model_id, prompt=prompt, max_tokens=40, logprobs=5, seed=3, **GREEDY)
    streamed = [c.choices[0].logprobs for c in chunks if c.choices and c.choices[0].text]
    assert text == choice.text
    assert sum((x.tokens for x in streamed), []) == lp.tokens
    assert sum((x.text_offset for x in streamed), []) == lp.text_offset
    assert sum((x.token_logprobs for x in streamed), []) == pytest.approx(lp.token_logprobs, abs=1e-6)
    # logprobs 0: the chosen tokens' only; sampled text (penalties on) still carries the model's numbers
    r = complete(client, model_id, prompt=prompt, max_tokens=20, logprobs=0, seed=4)
    lp = r.choices[0].logprobs
    assert "".join(lp.tokens) == r.choices[0].text and all(t == {} for t in lp.top_logprobs)
    assert all(v < 0 for v in lp.token_logprobs)
    assert complete(client, model_id, max_tokens=5).choices[0].logprobs is None


def test_fields_we_do_not_take_are_refused_by_name(server, client, model_id):
    """issue 17: every field an OpenAI completions client can send is honoured or refused by name."""
    import openai

    with pytest.raises(openai.BadRequestError) as e:   # as the openai client meets it
        complete(client, model_id, max_tokens=2, extra_body={"temprature": 0.5})
    assert "'temprature'" in str(e.value) and e.value.body["param"] == "temprature"
    with pytest.raises(openai.BadRequestError, match="logprobs"):
        complete(client, model_id, max_tokens=2, logprobs=6)
    err = assert_error(post(server, {"prompt": "x", "min_p": 0.1, "typical_p": 0.9}), 400, "min_p")
    assert "'min_p', 'typical_p'" in err["message"] and err["code"] == "unsupported_field"
    assert_error(post(server, {"prompt": "x", "top_logprobs": 2}), 400, "top_logprobs")
    assert_error(post(server, {"prompt": "x", "logprobs": 6}), 400, "logprobs")
    assert_error(post(server, {"prompt": "x", "logprobs": -1}), 400, "logprobs")
    assert_error(post(server, {"prompt": "x", "logprobs": True}), 400, "logprobs")
    assert_error(post(server, {"prompt": "x", "echo": True}), 400, "echo")
    assert_error(post(server, {"prompt": "x", "suffix": "。"}), 400, "suffix")
    assert_error(post(server, {"prompt": "x", "best_of": 3}), 400, "best_of")
    assert_error(post(server, {"prompt": "x", "logit_bias": {"50256": -100}}), 400, "logit_bias")
    assert_error(post(server, {"prompt": "x", "stream": True, "stream_options": {"include_obfuscation": True}}),
                 400, "stream_options")
    # what OpenAI's client sends by default, and the neutral values of what we cannot honour, pass
    ok = post(server, {"model": model_id, "prompt": "x", "max_tokens": 2, "echo": False, "suffix": None,
                       "best_of": 1, "logit_bias": {}, "logprobs": None, "user": "u-1", "n": 1,
                       "presence_penalty": 0, "frequency_penalty": 0, "top_p": 1, "stop": None})
    assert ok.status_code == 200, ok.text


def test_huge_max_tokens_is_capped_with_a_notice(client, model_id):
    r = complete(client, model_id, max_tokens=10 ** 9, seed=1, stop="。")
    assert r.model_extra["gpt2zh"]["notices"] == ["max_tokens 1000000000 capped to 512"]
    assert r.usage.completion_tokens <= 512


def test_a_client_that_disconnects_frees_its_slot(client, model_id, server):
    other = {}
    t = threading.Thread(target=lambda: other.update(text=stream_text(client, model_id, seed=2, max_tokens=300)[0]))
    t.start()
    cancelled = httpx.get(server.url + "/health").json()["finished"].get("cancelled", 0)
    body = {"model": model_id, "prompt": "话说", "max_tokens": 512, "stream": True, "seed": 9}
    with httpx.stream("POST", server.url + "/v1/completions", json=body, timeout=60) as r:
        for i, _ in enumerate(r.iter_lines()):
            if i >= 6:
                break   # leave mid-stream
    deadline = time.time() + 30
    while time.time() < deadline:
        h = httpx.get(server.url + "/health").json()
        if h["busy_slots"] <= 1:
            break
        time.sleep(0.1)
    t.join(timeout=120)
    assert other["text"] == solo(client, model_id, 2, 300)   # the other stream went on, undisturbed
    health = httpx.get(server.url + "/health").json()
    assert health["busy_slots"] == 0
    assert health["finished"]["cancelled"] == cancelled + 1   # it was stopped, not written to the end


def test_memory_stays_flat_over_200_requests(client, model_id, server):
    import psutil

    proc = psutil.Process(server.proc.pid)

    def burst(n):
        for i in range(n):
            if i % 2:
                stream_text(client, model_id, seed=i, max_tokens=24)
            else:
                complete(client, model_id, seed=i, max_tokens=24, n=2)

    burst(40)
    before = proc.memory_info().rss
    burst(200)
    after = proc.memory_info().rss
    assert after - before < 40 * 2 ** 20, f"RSS grew {(after - before) / 2 ** 20:.1f} MiB over 200 requests"


def page_asks_for_the_key_once(srv, key: str, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    drv = open_browser(tmp_path)
    wait = WebDriverWait(drv, 60, poll_frequency=0.05)
    status = lambda: drv.find_element(By.ID, "status").text  # noqa: E731
    try:
        drv.get(srv.url + "/")
        wait.until(lambda d: d.find_element(By.ID, "key-form").is_displayed())
        field = drv.find_element(By.ID, "api-key")
        field.send_keys("not-the-key\n")
        wait.until(lambda d: "not accepted" in d.find_element(By.ID, "key-message").text)
        field.send_keys(key + "\n")
        wait.until(lambda d: "context" in status())          # the defaults came with the key
        assert not drv.find_element(By.ID, "key-form").is_displayed()
        drv.refresh()                                          # kept: not asked again
        wait.until(lambda d: "context" in status())
        assert not drv.find_element(By.ID, "key-form").is_displayed()
    finally:
        drv.quit()


def test_a_key_guards_the_api_and_never_reaches_the_log(tiny_run, tmp_path):
    """issue 17: --api-key (or GPT2ZH_API_KEY): /v1 without the key is OpenAI's 401, the openai
    client's api_key just works, / and /health stay open, and the key is never printed."""
    import openai
    from openai import OpenAI

    key = "gpt2zh-test-key-7f3a"
    srv = Server(tiny_run, "--host", "0.0.0.0", "--api-key", key)
    try:
        for given in (None, "wrong"):
            r = httpx.get(srv.url + "/v1/models", headers={"Authorization": f"Bearer {given}"} if given else {})
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
            assert key not in r.text
        bad = OpenAI(base_url=srv.url + "/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            bad.completions.create(model="tiny", prompt="话说", max_tokens=2)
        good = OpenAI(base_url=srv.url + "/v1", api_key=key, max_retries=0, timeout=60)
        assert good.completions.create(model=good.models.list().data[0].id, prompt="话说", max_tokens=3).choices[0].text
        assert httpx.get(srv.url + "/health").status_code == 200 and httpx.get(srv.url + "/").status_code == 200
        page_asks_for_the_key_once(srv, key, tmp_path)
    finally:
        rc, out = srv.stop()
    assert rc == 0 and key not in out and "warning" not in out   # 0.0.0.0 with a key: no warning


def test_an_open_address_without_a_key_warns(tiny_run):
    srv = Server(tiny_run, "--host", "0.0.0.0")
    rc, out = srv.stop()
    assert rc == 0 and "no API key is set: anyone who can reach it can use the model" in out


def test_full_queue_answers_429(tiny_run):
    from gpt2zh.serve import ApiError, ServeConfig, Studio, parse_completion

    studio = Studio(ServeConfig(model=str(tiny_run), max_batch=1, max_queue=2))  # engine thread not started
    c = parse_completion({"prompt": "话说", "max_tokens": 5}, studio.cfg, {"gpt2zh"})
    studio._submit(c, None, None)
    studio._submit(c, None, None)
    with pytest.raises(ApiError) as e:
        studio._submit(c, None, None)
    assert e.value.status == 429 and e.value.body()["error"]["code"] == "queue_full"


# ----------------------------------------------------------------------------
# The writing page in a real browser


def chromium() -> tuple[str, str]:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (browser and driver):
        pytest.fail("the browser test needs Debian's chromium and chromium-driver (.ci/run installs them)")
    return browser, driver


def open_browser(tmp_path: Path, downloads: Path | None = None):
    """Headless Chromium driven by selenium, with its own profile under tmp_path."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    browser, driver_path = chromium()
    opts = webdriver.ChromeOptions()
    opts.binary_location = browser
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,900",
                 "--no-first-run", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"):
        opts.add_argument(flag)
    if downloads is not None:
        opts.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                               "download.prompt_for_download": False})
    return webdriver.Chrome(service=Service(driver_path), options=opts)


def test_writing_page_in_a_browser(server, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.common.exceptions import TimeoutException
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    downloads = tmp_path / "downloads"
    downloads.mkdir()
    drv = open_browser(tmp_path, downloads)
    wait = WebDriverWait(drv, 60, poll_frequency=0.05)
    try:
        drv.get(server.url + "/")
        wait.until(lambda d: "context" in d.find_element(By.ID, "status").text)  # the defaults arrived
        assert drv.find_element(By.ID, "temperature").get_attribute("value") == "0.9"
        length = drv.find_element(By.ID, "length")
        length.clear()
        length.send_keys("20000")   # long enough that the stop below always comes before the end
        opening = "第一回　灵根育孕源流出　心性修持大道生\n诗曰：混沌未分天地乱，茫茫渺渺无人见。"
        drv.find_element(By.ID, "opening").send_keys(opening)
        drv.find_element(By.ID, "memory").send_keys("孙悟空　花果山")
        chapter = drv.find_element(By.ID, "chapter")
        drv.find_element(By.ID, "write").click()
        wait.until(lambda d: len(chapter.text.replace("\n", "")) >= len(opening) + 200)
        drv.find_element(By.ID, "stop").click()
        try:
            wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("stopped"))
        except TimeoutException:
            pytest.fail(f"after Stop the status reads {drv.find_element(By.ID, 'status').text!r}")
        stored = drv.execute_script("return JSON.parse(localStorage.getItem('gpt2zh-studio')).chapter")
        assert stored.startswith(opening) and len(stored) >= len(opening) + 200
        # the text reads as paragraphs indented 2em in a CJK serif
        p = chapter.find_element(By.TAG_NAME, "p")
        assert p.value_of_css_property("text-indent") == f"{2 * float(p.value_of_css_property('font-size')[:-2]):g}px"
        assert "Serif CJK" in p.value_of_css_property("font-family")

        drv.find_element(By.ID, "undo").click()
        after_undo = drv.execute_script("return JSON.parse(localStorage.getItem('gpt2zh-studio')).chapter")
        assert len(after_undo) < len(stored) and stored.startswith(after_undo)

        length.clear()
        length.send_keys("150")
        drv.find_element(By.ID, "continue").click()
        wait.until(lambda d: d.find_element(By.ID, "status").text.startswith("wrote"))
        continued = drv.execute_script("return JSON.parse(localStorage.getItem('gpt2zh-studio')).chapter")
        assert continued.startswith(after_undo) and len(continued) >= len(after_undo) + 140
        assert drv.find_element(By.ID, "report-list").text.count("repetition") >= 2   # the report is shown

        drv.refresh()   # a reload loses nothing
        wait.until(lambda d: "context" in d.find_element(By.ID, "status").text)
        chapter = drv.find_element(By.ID, "chapter")
        assert chapter.text.replace("\n", "") == continued.replace("\n", "")
        assert drv.find_element(By.ID, "memory").get_attribute("value") == "孙悟空　花果山"

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        drv.save_screenshot(str(ARTIFACTS / "serve_page.png"))

        chapter.send_keys(Keys.CONTROL, "s")   # keyboard: Ctrl+S saves
        deadline = time.time() + 20
        while time.time() < deadline and not list(downloads.glob("*.txt")):
            time.sleep(0.1)
        saved = list(downloads.glob("*.txt"))
        assert len(saved) == 1, list(downloads.iterdir())
        assert saved[0].read_text(encoding="utf-8") == continued + "\n"

        # a part the server flagged as collapsed and fixated is marked as a repeated one is
        drv.execute_script("""const s = JSON.parse(localStorage.getItem('gpt2zh-studio'));
            s.parts = [{start: 0, repeats: [], rollbacks: [], flagged: [[4, 10, 'collapse'], [12, 18, 'fixation']]}];
            localStorage.setItem('gpt2zh-studio', JSON.stringify(s));""")
        drv.refresh()
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "mark.collapse"))
        marked = drv.find_element(By.CSS_SELECTOR, "mark.collapse")
        assert marked.text == opening[4:10] and marked.get_attribute("title") == "collapsed onto one character"
        assert drv.find_element(By.CSS_SELECTOR, "mark.fixation").text == opening[12:18]
    finally:
        drv.quit()
    assert httpx.get(server.url + "/health").json()["busy_slots"] == 0
