"""The scripted OpenAI-compatible replay server on its built-in reply set: deterministic replies and each
scripted fault."""

from __future__ import annotations

import hashlib
import json

import httpx
import pytest

from synthembed.testing.replay_data import TASK_POOLS, replay_rows
from synthembed.testing.replay_server import NOT_JSON_BODY, ReplayServer

SHORT_LONG = (
    "You have been assigned a retrieval task: Given a question about a recipe, retrieve cooking guides.\n\n"
    'The JSON object must contain the following keys:\n - "user_query": a string\n'
    ' - "positive_document": a string\n - "hard_negative_document": a string\n'
    " - Both the query and documents should be in German.\n"
    "Your output must always be a JSON object only."
)
BITEXT = (
    "Write a sentence triple with one sentence in English and two sentences in French with varying "
    'translation qualities in JSON format. The triple is denotes as ("S1", "S2", "S3").'
)
BRAINSTORM = "Brainstorm a list of potentially useful text retrieval tasks. Output a python list of strings."
SL_KEYS = {"user_query", "positive_document", "hard_negative_document"}


def rows(family: str) -> list[dict]:
    return replay_rows()[family]


def chat(base: str, prompt: str, timeout: float = 5, **extra) -> httpx.Response:
    body = {"model": "m", "messages": [{"role": "user", "content": prompt}], "temperature": 1.0, **extra}
    return httpx.post(f"{base}/chat/completions", json=body, timeout=timeout)


def content(r: httpx.Response) -> str:
    return r.json()["choices"][0]["message"]["content"]


@pytest.fixture(scope="module")
def server():
    with ReplayServer() as s:
        yield s


def test_example_reply_is_deterministic_and_in_the_asked_language(server):
    r1, r2 = chat(server.base_url, SHORT_LONG), chat(server.base_url, SHORT_LONG)
    assert r1.status_code == 200
    body = r1.json()
    assert body["object"] == "chat.completion" and body["choices"][0]["finish_reason"] == "stop"
    assert body["choices"][0]["message"]["role"] == "assistant"
    usage = body["usage"]
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"] > 0
    out = json.loads(content(r1))
    assert set(out) == SL_KEYS
    german = [r["output"] for r in rows("short-long") if r["language"] == "German"]
    assert german and out in german
    assert content(r2) == content(r1)


def test_families_and_bitext_direction(server):
    out = json.loads(content(chat(server.base_url, BITEXT)))
    assert out in [r["output"] for r in rows("bitext")
                   if (r["params"]["source_language"], r["params"]["target_language"]) == ("English", "French")]
    sts = json.loads(content(chat(server.base_url, 'Write a sentence triple. Keys "S1", "S2", "S3" in Spanish.')))
    assert set(sts) == {"S1", "S2", "S3"}
    cls = json.loads(content(chat(server.base_url, 'Keys: "input_text", "label", "misleading_label".')))
    assert set(cls) == {"input_text", "label", "misleading_label"}
    ss = json.loads(content(chat(server.base_url, 'Keys "input" and "positive_document"; long documents.')))
    assert set(ss) == {"input", "positive_document"}
    assert chat(server.base_url, "Tell me a joke.").status_code == 400


def test_brainstorm_returns_a_task_list(server):
    tasks = json.loads(content(chat(server.base_url, BRAINSTORM)))
    assert isinstance(tasks, list) and len(tasks) >= 10 and all(isinstance(t, str) for t in tasks)
    assert set(tasks) <= set(TASK_POOLS["short-long"])
    cls = json.loads(content(chat(server.base_url, "Brainstorm a list of text classification tasks.")))
    assert set(cls) <= set(TASK_POOLS["long-short"])
    assert httpx.get(f"{server.base_url}/models").json()["object"] == "list"


def test_scripted_faults_and_request_log(tmp_path):
    script = {1: "429", 2: "500", 3: "hang", 4: "truncated", 5: "prose", 6: "wrong_keys",
              7: "wrong_language", 8: "empty", 9: "no_usage", 10: "no_json_mode", 11: "no_json_mode",
              14: "not_json", 15: "bad_retry_after"}
    log = tmp_path / "requests.jsonl"
    with ReplayServer(script=script, every={"500": 13}, log_path=log, retry_after=2, hang_s=2) as s:
        base = s.base_url
        r = chat(base, SHORT_LONG)
        assert r.status_code == 429 and r.headers["Retry-After"] == "2" and "error" in r.json()
        r = chat(base, SHORT_LONG)
        assert r.status_code == 500 and r.json()["error"]["type"] == "server_error"
        with pytest.raises(httpx.TimeoutException):
            chat(base, SHORT_LONG, timeout=0.5)
        r = chat(base, SHORT_LONG)
        assert r.json()["choices"][0]["finish_reason"] == "length"
        with pytest.raises(json.JSONDecodeError):
            json.loads(content(r))
        prose = content(chat(base, SHORT_LONG))
        assert "```json" in prose and json.loads(prose.split("```json")[1].split("```")[0]) is not None
        wrong = json.loads(content(chat(base, SHORT_LONG)))
        assert set(wrong).isdisjoint(SL_KEYS) and len(wrong) == 3
        other = json.loads(content(chat(base, SHORT_LONG)))
        lang = {json.dumps(r["output"], ensure_ascii=False): r["language"] for r in rows("short-long")}
        assert lang[json.dumps(other, ensure_ascii=False)] != "German"
        assert content(chat(base, SHORT_LONG)) == ""
        r = chat(base, SHORT_LONG)
        assert r.status_code == 200 and "usage" not in r.json()
        r = chat(base, SHORT_LONG, response_format={"type": "json_object"})
        assert r.status_code == 400 and "response_format" in r.json()["error"]["message"]
        r = chat(base, SHORT_LONG)  # no_json_mode without response_format: answered normally
        assert r.status_code == 200 and set(json.loads(content(r))) == SL_KEYS
        assert chat(base, SHORT_LONG).status_code == 200  # 12
        assert chat(base, SHORT_LONG).status_code == 500  # 13: every 13th
        r = chat(base, SHORT_LONG)
        assert r.status_code == 200 and r.text == NOT_JSON_BODY and r.headers["content-type"].startswith("text/html")
        r = chat(base, SHORT_LONG)
        assert r.status_code == 429 and r.headers["Retry-After"] == "soon"
        entries = s.log()
    assert [e["n"] for e in entries] == list(range(1, 16))
    assert [e["fault"] for e in entries] == [script.get(n, "500" if n == 13 else None) for n in range(1, 16)]
    assert all(e["sha"] == hashlib.sha256(SHORT_LONG.encode()).hexdigest() for e in entries)
