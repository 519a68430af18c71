"""Using a model: encode a file, serve the embeddings API, evaluate."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from synthembed.cli.common import (ConfigOpt, DeviceOpt, DtypeOpt, ModelOpt, SetOpt, ThreadsOpt, app, comma_list,
                                   console, embedder_from_flags, guard)
from synthembed.config import load_config, merge_dicts, parse_overrides


@app.command()
def encode(
    input: Annotated[Path, typer.Argument(help="JSONL, CSV or Parquet file.")],
    model: ModelOpt,
    output: Annotated[Path, typer.Option("--output", "-o", help=".npy (rows in input order) or .parquet (id, embedding).")],
    column: Annotated[str, typer.Option(help="Field holding the text.")] = "text",
    id_column: Annotated[Optional[str], typer.Option(help="Field copied to the Parquet output's id.")] = None,
    role: Annotated[str, typer.Option(help="document | query")] = "document",
    instruction: Annotated[Optional[str], typer.Option(help="Task instruction (queries only).")] = None,
    batch_size: Annotated[int, typer.Option()] = 32,
    chunk_size: Annotated[int, typer.Option(help="Rows per resumable part.")] = 10_000,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per text (default: the model's).")] = None,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Embed a column of a file; resumable, and split across processes under torchrun / accelerate launch."""

    def run() -> None:
        if role not in ("document", "query"):
            raise ValueError(f"--role must be 'document' or 'query', not {role!r}")
        from synthembed.encode.encode import encode_file, read_column

        read_column(input, column, id_column)  # a bad row fails now, not after loading a large model
        embedder = embedder_from_flags(model, max_length, dtype, threads, device=device)
        report = encode_file(embedder, input, output, column=column, role=role, instruction=instruction,
                             batch_size=batch_size, chunk_size=chunk_size, id_column=id_column,
                             show_progress=not quiet)
        console.print(report)

    guard(run)


@app.command()
def serve(
    model: ModelOpt,
    host: Annotated[str, typer.Option(help="Interface to bind; 0.0.0.0 exposes the server to the network.")] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
    name: Annotated[Optional[str], typer.Option(help="Model name in replies.")] = None,
    served_model_name: Annotated[Optional[list[str]], typer.Option(help="Name(s) requests may ask for, e.g. 'text-embedding-3-small' (repeatable or a comma list; the first is the default; others get 404).")] = None,
    api_key: Annotated[Optional[str], typer.Option(envvar="SYNTHEMBED_API_KEY", help="Require 'Authorization: Bearer KEY'.")] = None,
    batching: Annotated[bool, typer.Option("--batching/--no-batching", help="Share forward passes across requests.")] = True,
    max_batch: Annotated[int, typer.Option(help="Texts per forward pass.")] = 32,
    max_wait_ms: Annotated[float, typer.Option(help="Longest wait for more texts under load.")] = 2.0,
    max_inputs: Annotated[int, typer.Option(help="Inputs per request.")] = 2048,
    max_request_tokens: Annotated[int, typer.Option(help="Tokens per request.")] = 300_000,
    truncate: Annotated[bool, typer.Option(help="Cut inputs longer than the model's length instead of a 400.")] = False,
    max_length: Annotated[Optional[int], typer.Option(help="Tokens per input (default: the model's).")] = None,
    max_body_bytes: Annotated[int, typer.Option(help="Larger request bodies get 413 before they are read.")] = 8 * 1024 * 1024,
    max_input_chars: Annotated[Optional[int], typer.Option(help="Longer inputs get 400 before tokenising (default: 32 per token of the model's length).")] = None,
    accept_token_ids: Annotated[bool, typer.Option(help="Accept lists of this model's own token ids as inputs (refused by default: clients send another tokenizer's).")] = False,
    dtype: DtypeOpt = "auto",
    device: DeviceOpt = "auto",
    threads: ThreadsOpt = None,
) -> None:
    """Serve the model as an OpenAI-compatible embeddings API (POST /v1/embeddings)."""

    def run() -> None:
        from synthembed.encode.server import serve as run_server

        key = api_key if api_key is not None else os.environ.get("SYNTHEMBED_API_KEY")
        if key is not None and not key.strip():  # a bare "Bearer" would pass an empty key
            raise ValueError("the API key is empty (--api-key or SYNTHEMBED_API_KEY): give a non-empty key, or "
                             "none to serve without authentication")
        embedder = embedder_from_flags(model, max_length, dtype, threads, name, device)
        where = f"{embedder.device}, {str(embedder.dtype).removeprefix('torch.')}"
        console.print(f"serving {embedder.name} ({where}) on http://{host}:{port}/v1 "
                      f"(batching {'on' if batching else 'off'})")
        run_server(embedder, host=host, port=port, api_key=api_key, batching=batching, max_batch=max_batch,
                   max_wait_ms=max_wait_ms, max_inputs=max_inputs, max_request_tokens=max_request_tokens,
                   truncate=truncate, model_name=[*([name] if name else []), *(served_model_name or [])] or None,
                   max_body_bytes=max_body_bytes, max_input_chars=max_input_chars, accept_token_ids=accept_token_ids)

    guard(run)


@app.command()
def evaluate(
    config: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="minilm | gemma-270m | smollm2-135m | a directory.")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="TYPE:PATH[:NAME[:LANG]], e.g. Retrieval:data/scifact:SciFact, or Passkey[:LENGTHS[:NAME]], e.g. Passkey:256,512,1024 (repeatable).")] = None,
    mteb: Annotated[Optional[list[str]], typer.Option("--mteb", help="mteb's own tasks, e.g. STSBenchmark,SciFact (repeatable; needs mteb and the data in the HF datasets cache).")] = None,
    rope_theta: Annotated[Optional[float], typer.Option("--rope-theta", help="Load the model with this RoPE base (the paper's long-context passkey runs).")] = None,
    dims: Annotated[Optional[str], typer.Option("--dims", help="Also score every task at these Matryoshka sizes, e.g. 64,128,256 (vectors cut and re-normalised; each text encoded once).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory.")] = None,
    compare: Annotated[Optional[list[Path]], typer.Option("--compare", help="Put earlier output directories side by side (repeatable).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N")] = None,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Score a model on retrieval, STS, bitext mining, classification, clustering, pair classification,
    reranking and passkey tasks exactly as MTEB does, or on mteb's own tasks; writes one JSON per task and a
    report (markdown + PNG)."""

    def run() -> None:
        from synthembed.evaluate.report import load_results, write_report
        from synthembed.evaluate.run import EvaluateConfig, parse_task, run_tasks

        if compare and not (task or mteb or config):
            runs = {str(d): load_results(d) for d in compare}
            path = write_report(runs, output or Path("runs/compare"))
            console.print(f"wrote {path}")
            return
        overrides = {k: v for k, v in {"model": model, "output_dir": output, "device": device,
                                       "rope_theta": rope_theta}.items() if v is not None}
        if task:
            overrides["tasks"] = [t.model_dump() for t in map(parse_task, task)]
        if dims:
            overrides["dims"] = comma_list(dims)
        if mteb:
            overrides["mteb_tasks"] = comma_list(*mteb)
        cfg = load_config(EvaluateConfig, config, merge_dicts(overrides, parse_overrides(set_ or [])),
                          section="evaluate")
        results = run_tasks(cfg, show_progress=not quiet)
        runs = {results[0]["model"]: results, **{str(d): load_results(d) for d in compare or []}}
        path = write_report(runs, cfg.output_dir)
        for r in results:
            console.print(f"{r['task_name']:<28} {100 * r['main_score']:6.2f}  ({r['task_type']})")
        console.print(f"wrote {path}")

    guard(run)
