"""The embeddings server under bad and hostile input: 4xx in OpenAI's shape with the connection kept usable, body
and input limits, model names, an empty API key, token ids, and a large request that does not stall /health."""

from __future__ import annotations

import contextlib
import copy
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
import openai
import pytest
from typer.testing import CliRunner

from synthembed.cli import app as cli
from synthembed.encode.server import create_app
from synthembed.model.embedder import HFEmbedder
from synthembed.testing.tiny import tiny_decoder, tiny_encoder
from tests.test_serve import running, vectors

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    return HFEmbedder(tiny_decoder(tmp_path_factory.mktemp("dec")), max_length=128, name="tiny")


@pytest.fixture(scope="module")
def url(emb):
    with running(create_app(emb, ["tiny", "tiny-alias"], max_inputs=16, max_body_bytes=250_000)) as address:
        yield address


def _client_port(response: httpx.Response) -> int:
    return response.extensions["network_stream"].get_extra_info("client_addr")[1]


def _assert_openai_error(response: httpx.Response, status: int, param=None, code=None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    assert error["param"] == param and error["code"] == code
    assert "Traceback" not in error["message"] and "Error" not in error["message"]  # no internal exception text
    return error


@pytest.mark.parametrize("raw, param", [
    (b'{"input": "a", "input_type": ["q"]}', "input_type"),
    (b'{"input": "a \\ud800", "model": "tiny"}', "input"),  # a lone surrogate, sent as JSON's own escape
    (b'{"input": "a", "input_type": "query", "instruction": "\\udfff x"}', "instruction"),
    (b'{"input": "a", "model": ["tiny"]}', "model"),
    (b'{"input": ["a", [1, 2]]}', "input"),
    (b"[" * 100_000 + b"]" * 100_000, None),  # nested 100,000 deep
    (b'{"input": "a"', None),
])
def test_malformed_bodies_get_400_and_the_connection_stays_usable(url, raw, param):
    with httpx.Client(base_url=url, timeout=30) as client:
        bad = client.post("/v1/embeddings", content=raw, headers={"content-type": "application/json"})
        _assert_openai_error(bad, 400, param)
        good = client.post("/v1/embeddings", json={"input": "a", "model": "tiny"})
        assert good.status_code == 200 and len(good.json()["data"]) == 1
        assert _client_port(good) == _client_port(bad)  # the same keep-alive connection


def test_bodies_over_the_limit_get_413_before_parsing(url):
    body = b'{"input": "' + b"x" * 250_000 + b'"}'
    with httpx.Client(base_url=url, timeout=30) as client:
        by_length = client.post("/v1/embeddings", content=body, headers={"content-type": "application/json"})
        assert "250000 bytes" in _assert_openai_error(by_length, 413, None, "request_too_large")["message"]
        chunked = client.post("/v1/embeddings", content=iter([body[:1000], body[1000:]]))  # no Content-Length
        assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
        assert client.post("/v1/embeddings", json={"input": "a", "model": "tiny"}).status_code == 200


def test_an_input_over_the_character_limit_is_refused_before_tokenising(url):
    r = httpx.post(url + "/v1/embeddings", json={"input": ["ok", "y" * 4097], "model": "tiny"})
    error = _assert_openai_error(r, 400, "input", "context_length_exceeded")
    assert "input[1] has 4097 characters" in error["message"]  # 32 characters per token of the 128-token model


class _GatedTokenizer:
    """The model's tokenizer, held at a gate for long texts: the test sees a request mid-tokenisation."""

    def __init__(self, tokenizer, entered: threading.Event, gate: threading.Event):
        self._tokenizer, self._entered, self._gate = tokenizer, entered, gate

    def __call__(self, texts, *args, **kwargs):
        if any(len(t) > 300 for t in ([texts] if isinstance(texts, str) else texts)):
            self._entered.set()
            self._gate.wait(60)
        return self._tokenizer(texts, *args, **kwargs)

    def __len__(self):
        return len(self._tokenizer)

    def __getattr__(self, name):
        return getattr(self._tokenizer, name)

    def __deepcopy__(self, memo):  # the server's copy shares the gate
        return _GatedTokenizer(copy.deepcopy(self._tokenizer, memo), self._entered, self._gate)


def test_health_answers_while_a_large_request_is_tokenised(emb):
    entered, gate = threading.Event(), threading.Event()
    gated = HFEmbedder(emb.path, max_length=128, name="tiny", tokenizer=_GatedTokenizer(emb.tokenizer, entered,
                                                                                       gate))
    replies = {}
    with running(create_app(gated, "tiny", truncate=True)) as address:
        large = threading.Thread(target=lambda: replies.update(large=httpx.post(
            address + "/v1/embeddings", json={"input": ["long text " * 50] * 64, "model": "tiny"}, timeout=60)))
        large.start()
        try:
            assert entered.wait(30), "the large request never reached the tokenizer"
            health = httpx.get(address + "/health", timeout=20)  # before: blocked until the tokenizer returned
            assert health.status_code == 200 and "large" not in replies  # answered while the large one runs
        finally:
            gate.set()
            large.join(60)
    assert replies["large"].status_code == 200 and len(replies["large"].json()["data"]) == 64


def test_unknown_model_gets_404_and_aliases_are_served_and_listed(url):
    r = httpx.post(url + "/v1/embeddings", json={"input": "a", "model": "text-embedding-3-small"})
    _assert_openai_error(r, 404, "model", "model_not_found")
    client = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(input="a", model="nope")
    alias = client.embeddings.create(input="a", model="tiny-alias", encoding_format="float")
    plain = client.embeddings.create(input="a", model="tiny", encoding_format="float")
    assert alias.model == "tiny-alias" and np.array_equal(vectors(alias), vectors(plain))
    assert [m.id for m in client.models.list().data] == ["tiny", "tiny-alias"]
    assert client.models.retrieve("tiny-alias").id == "tiny-alias"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("nope")


def test_an_empty_api_key_refuses_to_start(emb, tmp_path):
    with pytest.raises(ValueError, match="API key is empty"):
        create_app(emb, "tiny", api_key="")
    for args, env in ((["--api-key", ""], {}), ([], {"SYNTHEMBED_API_KEY": ""}), (["--api-key", " "], {})):
        result = CliRunner().invoke(cli, ["serve", "-m", str(tmp_path / "no-such-model"), *args], env=env)
        assert result.exit_code == 2 and "API key is empty" in result.output, result.output  # before any loading


@pytest.mark.parametrize("tokens", [[5, 6, 7], [[5, 6, 7]], [[5, 6], [7]]])
def test_token_ids_are_refused_by_default_with_what_to_set(url, tokens):
    r = httpx.post(url + "/v1/embeddings", json={"input": tokens, "model": "tiny"})
    message = _assert_openai_error(r, 400, "input", "token_ids_not_accepted")["message"]
    assert "check_embedding_ctx_length=False" in message and "--accept-token-ids" in message


@pytest.mark.parametrize("kind", ["decoder", "encoder"])
def test_accepted_token_ids_embed_as_their_text(emb, tmp_path, kind):
    model = emb if kind == "decoder" else HFEmbedder(tiny_encoder(tmp_path / "enc"), name="tiny")
    texts = ["a short one", "mid length text about retrieval"]
    ids = [model.tokenizer(t, add_special_tokens=False)["input_ids"] for t in texts]
    with running(create_app(model, "tiny", accept_token_ids=True)) as address:
        client = openai.OpenAI(base_url=address + "/v1", api_key="x", max_retries=0)
        from_ids = client.embeddings.create(input=ids, model="tiny", encoding_format="float")
        one = client.embeddings.create(input=ids[1], model="tiny", encoding_format="float")
        from_text = client.embeddings.create(input=texts, model="tiny", encoding_format="float")
        out_of_vocab = httpx.post(address + "/v1/embeddings", json={"input": [[5, 10**6]], "model": "tiny"})
    np.testing.assert_allclose(vectors(from_ids), vectors(from_text), atol=1e-5)
    np.testing.assert_allclose(vectors(one)[0], vectors(from_text)[1], atol=1e-5)
    assert from_ids.usage.prompt_tokens == from_text.usage.prompt_tokens
    assert "outside this model's vocabulary" in _assert_openai_error(out_of_vocab, 400, "input")["message"]


def test_serve_command_passes_names_limits_and_token_ids(tmp_path):
    """`synthembed serve` as a user runs it: the options reach the server."""
    model = tiny_decoder(tmp_path / "dec")
    with socket.socket() as probe:  # a free port for the child to bind
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    args = ["serve", "-m", str(model), "--port", str(port), "--served-model-name", "a,b", "--served-model-name",
            "c", "--max-body-bytes", "2000", "--accept-token-ids", "--threads", "1"]
    child = subprocess.Popen([sys.executable, "-m", "synthembed.cli", *args], stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):  # up to a minute to import torch and load the model
            assert child.poll() is None, child.stderr.read().decode()
            with contextlib.suppress(httpx.TransportError):
                if httpx.get(url + "/health").status_code == 200:
                    break
            time.sleep(0.1)
        assert [m["id"] for m in httpx.get(url + "/v1/models").json()["data"]] == ["a", "b", "c"]
        assert httpx.post(url + "/v1/embeddings", json={"input": "x" * 3000, "model": "b"}).status_code == 413
        ids = httpx.post(url + "/v1/embeddings", json={"input": [[40, 41]], "model": "c"})
        assert ids.status_code == 200 and ids.json()["model"] == "c"
    finally:
        child.terminate()
        child.wait(30)


class _FailingModel:
    """A model whose forward pass fails, as on an out-of-memory error."""

    name, dim, max_length, tokenizer = "failing", 4, 16, None

    def embed_batch(self, texts, normalize=True):
        raise RuntimeError("CUDA out of memory at 0xdeadbeef")


def test_a_failing_model_gets_500_without_internal_text_and_the_connection_survives():
    with running(create_app(_FailingModel())) as address, httpx.Client(base_url=address, timeout=30) as client:
        first = client.post("/v1/embeddings", json={"input": "a", "model": "failing"})
        error = _assert_openai_error(first, 500)
        assert error["type"] == "server_error" and "deadbeef" not in error["message"]
        second = client.post("/v1/embeddings", json={"input": "b", "model": "failing"})
        assert second.status_code == 500 and _client_port(second) == _client_port(first)
        assert client.get("/health").status_code == 200
