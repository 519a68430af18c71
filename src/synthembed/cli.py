"""The `synthembed` command: one subcommand per stage, each a thin call into the library."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from synthembed.config import ConfigError, GenerateConfig, load_config, merge_dicts, parse_overrides
from synthembed.formats.offline import OfflineModelError

app = typer.Typer(help="Turn an open LLM into a text-embedding model with synthetic data.", no_args_is_help=True)
data_app = typer.Typer(help="Work with generated datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")
console = Console(stderr=True)

ConfigOpt = Annotated[Optional[Path], typer.Option("--config", "-c", help="YAML config file.")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="Override a setting: key=value (repeatable).")]


@app.callback()
def main(verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(message)s",
                        handlers=[RichHandler(console=console, show_path=False)])


def _weighted(value: str | None, option: str) -> dict | list | None:
    """'en,de' -> ['en', 'de']; 'en:0.5,de:0.5' -> {'en': 0.5, 'de': 0.5}."""
    if not value:
        return None
    parts = [p.strip() for p in value.split(",") if p.strip()]
    if not any(":" in p for p in parts):
        return parts
    try:
        return {name: float(weight) for name, weight in (p.split(":") for p in parts)}
    except ValueError:
        raise ConfigError(f"{option} {value!r}: expected NAME or NAME:WEIGHT items separated by commas") from None


@app.command()
def generate(
    config: ConfigOpt = None,
    backend: Annotated[Optional[str], typer.Option(help="local | openai")] = None,
    model: Annotated[Optional[str], typer.Option(help="Model name (served model, or a local short name/dir).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server, e.g. http://localhost:8000/v1")] = None,
    num_examples: Annotated[Optional[int], typer.Option("--num-examples", "-n")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory.")] = None,
    families: Annotated[Optional[str], typer.Option(help="e.g. 'short-long,sts' or 'short-long:3,sts:1'")] = None,
    languages: Annotated[Optional[str], typer.Option(help="e.g. 'en,de,fr' or 'English:0.5,German:0.5'")] = None,
    shard: Annotated[Optional[str], typer.Option(help="This machine's part, i/N.")] = None,
    task_pool: Annotated[Optional[Path], typer.Option(help="Reuse a tasks.json instead of brainstorming.")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop before spending more (USD).")] = None,
    max_tokens_total: Annotated[Optional[int], typer.Option(help="Stop before more tokens (in + out).")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight (openai backend).")] = None,
    seed: Annotated[Optional[int], typer.Option()] = None,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Write synthetic training examples with an LLM (brainstorm tasks, then one example per task)."""
    def run() -> None:
        flags = {"backend": backend, "model": model, "base_url": base_url, "num_examples": num_examples,
                 "output_dir": output, "shard": shard, "task_pool": task_pool, "max_cost": max_cost,
                 "max_tokens_total": max_tokens_total, "concurrency": concurrency, "seed": seed}
        overrides = {k: v for k, v in flags.items() if v is not None}
        fam = _weighted(families, "--families")
        if fam is not None:
            overrides["families"] = fam if isinstance(fam, dict) else {f: 1.0 for f in fam}
        langs = _weighted(languages, "--languages")
        if langs is not None:
            overrides["language_weights" if isinstance(langs, dict) else "languages"] = langs
        cfg = load_config(GenerateConfig, config, merge_dicts(overrides, parse_overrides(set_ or [])), section="generate")
        from synthembed.generate.card import summary_table
        from synthembed.generate.run import GenerateStopped, run_generate

        try:
            report = run_generate(cfg, show_progress=not quiet)
        except GenerateStopped as stop:
            _exit_stopped(stop)
        console.print(summary_table(report))
        console.print(f"wrote {cfg.output_dir / 'examples.jsonl'} and {cfg.output_dir / 'data_card.md'}")
        failed = report.failed + report.brainstorm["failed"]
        if failed:  # the output lacks what these requests were for: not a success
            console.print(Text.assemble(("error: ", "red"), f"{failed} requests failed (reasons in "
                                        f"{cfg.output_dir / 'rejected.jsonl'}); rerun the same command to retry them"),
                          soft_wrap=True)
            raise typer.Exit(1)

    _guard(run)


@app.command()
def train(
    config: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="Backbone: gemma-270m | smollm2-135m | minilm | a directory | a hub id.")] = None,
    data: Annotated[Optional[list[str]], typer.Option("--data", "-d", help="PATH[:WEIGHT]: generate output or labeled JSONL (repeatable).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory (checkpoint/, model/).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Contrastive fine-tuning (InfoNCE, in-batch + hard negatives, LoRA) of a decoder LLM or an encoder. Runs on
    one CPU or, under `accelerate launch` / `torchrun`, on many GPUs; resumes from its last checkpoint."""

    def run() -> None:
        from synthembed.train.config import TrainConfig
        from synthembed.train.trainer import train as run_train

        overrides = {k: v for k, v in {"model": model, "output_dir": output, "max_steps": max_steps}.items()
                     if v is not None}
        if data:
            overrides["data"] = [_data_source(d) for d in data]
        cfg = load_config(TrainConfig, config, merge_dicts(overrides, parse_overrides(set_ or [])), section="train")
        console.print(f"wrote {run_train(cfg, show_progress=not quiet)}")

    _guard(run)


def _data_source(spec: str) -> dict:
    path, _, weight = spec.rpartition(":") if spec.rpartition(":")[2].replace(".", "", 1).isdigit() else (spec, "", "")
    return {"path": path, "weight": float(weight)} if weight else {"path": spec}


@app.command()
def pipeline(
    config: ConfigOpt = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Validate the config and print the plan; run nothing.")] = False,
    device: Annotated[Optional[str], typer.Option(help="Evaluation device: auto | cpu | cuda | cuda:N (training: accelerate's).")] = None,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """generate -> train -> evaluate (base and trained) -> one report. Stages whose output exists for the same
    settings are skipped, so an interrupted run restarts where it stopped."""

    def run() -> None:
        from rich.table import Table

        from synthembed.pipeline.plan import plan
        from synthembed.pipeline.run import PipelineConfig, run_pipeline

        overrides = {"output_dir": output} if output else {}
        if device:
            overrides["evaluate"] = {"device": device}
        cfg = load_config(PipelineConfig, config, merge_dicts(overrides, parse_overrides(set_ or [])))
        table = Table("stage", "plan", title=f"pipeline {config or '(defaults)'}", show_lines=True)
        for stage, text in plan(cfg):
            table.add_row(stage, text)
        console.print(table)
        if not dry_run:
            from synthembed.generate.run import GenerateStopped

            try:
                console.print(f"wrote {run_pipeline(cfg, show_progress=not quiet)}")
            except GenerateStopped as stop:
                _exit_stopped(stop)

    _guard(run)


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model: minilm | gemma-270m | smollm2-135m | a directory.")]
DtypeOpt = Annotated[str, typer.Option(help="auto (bf16 on a GPU, fp32 on the CPU) | fp32 | bf16 | fp16")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's).")]


def _embedder(model: str, max_length: int | None, dtype: str, threads: int | None, name: str | None = None,
              device: str = "auto"):
    import torch

    from synthembed.model.load import load_embedder

    if threads:
        torch.set_num_threads(threads)
    return load_embedder(model, max_length=max_length, dtype=dtype, name=name, device=device)


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
        embedder = _embedder(model, max_length, dtype, threads, device=device)
        report = encode_file(embedder, input, output, column=column, role=role, instruction=instruction,
                             batch_size=batch_size, chunk_size=chunk_size, id_column=id_column,
                             show_progress=not quiet)
        console.print(report)

    _guard(run)


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
        embedder = _embedder(model, max_length, dtype, threads, name, device)
        where = f"{embedder.device}, {str(embedder.dtype).removeprefix('torch.')}"
        console.print(f"serving {embedder.name} ({where}) on http://{host}:{port}/v1 "
                      f"(batching {'on' if batching else 'off'})")
        run_server(embedder, host=host, port=port, api_key=api_key, batching=batching, max_batch=max_batch,
                   max_wait_ms=max_wait_ms, max_inputs=max_inputs, max_request_tokens=max_request_tokens,
                   truncate=truncate, model_name=[*([name] if name else []), *(served_model_name or [])] or None,
                   max_body_bytes=max_body_bytes, max_input_chars=max_input_chars, accept_token_ids=accept_token_ids)

    _guard(run)


@app.command()
def evaluate(
    config: ConfigOpt = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="minilm | gemma-270m | smollm2-135m | a directory.")] = None,
    task: Annotated[Optional[list[str]], typer.Option("--task", "-t", help="TYPE:PATH[:NAME[:LANG]], e.g. Retrieval:data/scifact:SciFact (repeatable).")] = None,
    output: Annotated[Optional[Path], typer.Option("--output", "-o", help="Output directory.")] = None,
    compare: Annotated[Optional[list[Path]], typer.Option("--compare", help="Put earlier output directories side by side (repeatable).")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N")] = None,
    set_: SetOpt = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Score a model on retrieval, STS, bitext mining, classification, clustering, pair classification and
    reranking tasks exactly as MTEB does; writes one JSON per task and a report (markdown + PNG)."""

    def run() -> None:
        from synthembed.evaluate.report import load_results, write_report
        from synthembed.evaluate.run import EvaluateConfig, parse_task, run_tasks

        if compare and not (task or config):
            runs = {str(d): load_results(d) for d in compare}
            path = write_report(runs, output or Path("runs/compare"))
            console.print(f"wrote {path}")
            return
        overrides = {k: v for k, v in {"model": model, "output_dir": output, "device": device}.items() if v is not None}
        if task:
            overrides["tasks"] = [t.model_dump() for t in map(parse_task, task)]
        cfg = load_config(EvaluateConfig, config, merge_dicts(overrides, parse_overrides(set_ or [])),
                          section="evaluate")
        results = run_tasks(cfg, show_progress=not quiet)
        runs = {results[0]["model"]: results, **{str(d): load_results(d) for d in compare or []}}
        path = write_report(runs, cfg.output_dir)
        for r in results:
            console.print(f"{r['task_name']:<28} {100 * r['main_score']:6.2f}  ({r['task_type']})")
        console.print(f"wrote {path}")

    _guard(run)


@data_app.command("merge")
def merge(
    output: Annotated[Path, typer.Argument(help="Directory for the merged dataset.")],
    inputs: Annotated[list[Path], typer.Argument(help="Shard output directories or examples.jsonl files.")],
) -> None:
    """Join the shards of a run into one examples.jsonl, dropping duplicates."""
    from synthembed.data.merge import merge_examples

    _guard(lambda: console.print(merge_examples(inputs, output)))


@data_app.command("contamination")
def contamination(
    examples: Annotated[Path, typer.Argument(help="examples.jsonl or a run directory.")],
    against: Annotated[list[Path], typer.Option("--against", help="Evaluation data directory or file (repeatable).")],
    ngram: Annotated[int, typer.Option(help="Word n-gram length that counts as overlap.")] = 13,
    report: Annotated[Optional[Path], typer.Option(help="Write the flagged examples as JSON here.")] = None,
) -> None:
    """Report generated examples whose text overlaps an evaluation set (n-gram overlap)."""
    from synthembed.data.contamination import contamination_report, print_report

    def run() -> None:
        result = contamination_report(examples, against, ngram, report)
        print_report(result, console)

    _guard(run)


RefineInputs = Annotated[list[Path], typer.Argument(help="Generate output directories, examples.jsonl or labeled JSONL files.")]
RefineOut = Annotated[Path, typer.Option("--output", "-o", help="Output directory (examples.jsonl, data_card.md/.json).")]
PoolOpt = Annotated[Optional[Path], typer.Option("--pool", help="Extra pool documents: JSONL with a 'text' field.")]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse the evaluator's on-disk embedding cache.")]
SearchOpt = Annotated[str, typer.Option(help="auto (faiss when installed) | faiss | torch; both exact.")]


def _refine_setup(model: str, max_length: int | None, dtype: str, threads: int | None, device: str, cache: bool):
    from synthembed.formats.offline import cache_dir

    return (_embedder(model, max_length, dtype, threads, device=device),
            cache_dir() / "evaluate" / "embeddings" if cache else None)


@data_app.command("mine")
def mine(
    inputs: RefineInputs, model: ModelOpt, output: RefineOut,
    negatives: Annotated[int, typer.Option("--negatives", "-n", help="Hard negatives per query.")] = 4,
    depth: Annotated[int, typer.Option(help="Candidates retrieved per query.")] = 30,
    max_ratio: Annotated[float, typer.Option(help="Drop candidates scoring above this fraction of the positive's score (likely false negatives).")] = 0.95,
    margin: Annotated[float, typer.Option(help="Also drop candidates within this much of the positive's score.")] = 0.0,
    keep_existing: Annotated[bool, typer.Option(help="Keep each row's own negatives before the mined ones.")] = False,
    pool: PoolOpt = None, cache: CacheOpt = True, search: SearchOpt = "auto", batch_size: Annotated[int, typer.Option()] = 32,
    max_length: Annotated[Optional[int], typer.Option()] = None, dtype: DtypeOpt = "auto", device: DeviceOpt = "auto",
    threads: ThreadsOpt = None, quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Hard negatives for each query from the pool of all documents, ranked by an embedder, positive-aware."""

    def run() -> None:
        from synthembed.refine.mine import MineConfig, run_mine
        from synthembed.refine.source import read_rows

        cfg = MineConfig(negatives, depth, max_ratio, margin, keep_existing, search)
        read_rows(inputs)  # a bad row fails now, not after loading the model
        embedder, cache_root = _refine_setup(model, max_length, dtype, threads, device, cache)
        card = run_mine(inputs, embedder, output, cfg, cache_root, pool, batch_size, not quiet)
        console.print(f"{card['rows']} rows, {card['negatives_written']} negatives "
                      f"({card['candidates_dropped_as_false_negatives']} candidates dropped as likely false "
                      f"negatives); wrote {output / 'examples.jsonl'} and {output / 'data_card.md'}", soft_wrap=True)

    _guard(run)


@data_app.command("filter")
def filter_(
    inputs: RefineInputs, model: ModelOpt, output: RefineOut,
    consistency: Annotated[bool, typer.Option("--consistency", help="Round-trip consistency: keep a row only if its positive is in the top k for its query.")] = False,
    top_k: Annotated[int, typer.Option("--top-k", "-k")] = 3,
    pool: PoolOpt = None, cache: CacheOpt = True, search: SearchOpt = "auto", batch_size: Annotated[int, typer.Option()] = 32,
    max_length: Annotated[Optional[int], typer.Option()] = None, dtype: DtypeOpt = "auto", device: DeviceOpt = "auto",
    threads: ThreadsOpt = None, quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Drop examples an embedder disagrees with; rejected rows and reasons go to rejected.jsonl."""

    def run() -> None:
        from synthembed.refine.consistency import run_filter
        from synthembed.refine.source import read_rows

        if not consistency:
            raise ValueError("choose a filter: --consistency")
        read_rows(inputs)
        embedder, cache_root = _refine_setup(model, max_length, dtype, threads, device, cache)
        card = run_filter(inputs, embedder, output, top_k, cache_root, pool, batch_size, search, not quiet)
        console.print(f"kept {card['kept']} of {card['rows']} rows; wrote {output / 'examples.jsonl'}, "
                      f"{output / 'rejected.jsonl'} and {output / 'data_card.md'}", soft_wrap=True)

    _guard(run)


@data_app.command("relabel")
def relabel(
    inputs: RefineInputs, model: ModelOpt, output: RefineOut, config: ConfigOpt = None,
    backend: Annotated[Optional[str], typer.Option(help="Judge: local | openai (default: the config's).")] = None,
    llm: Annotated[Optional[str], typer.Option(help="Judge model name (served model, or a local short name/dir).")] = None,
    base_url: Annotated[Optional[str], typer.Option(help="OpenAI-compatible server of the judge.")] = None,
    max_cost: Annotated[Optional[float], typer.Option(help="Stop before spending more (USD).")] = None,
    concurrency: Annotated[Optional[int], typer.Option(help="Requests in flight (openai backend).")] = None,
    top_k: Annotated[int, typer.Option("--top-k", "-k", help="Candidates judged per query (plus its positive).")] = 5,
    min_positive_score: Annotated[int, typer.Option(help="Lowest judgment (0-3) a positive may have.")] = 2,
    max_negative_score: Annotated[int, typer.Option(help="Highest judgment (0-3) a hard negative may have.")] = 1,
    pool: PoolOpt = None, cache: CacheOpt = True, search: SearchOpt = "auto", batch_size: Annotated[int, typer.Option()] = 32,
    max_length: Annotated[Optional[int], typer.Option()] = None, dtype: DtypeOpt = "auto", device: DeviceOpt = "auto",
    threads: ThreadsOpt = None, set_: SetOpt = None, quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Gecko-style: an LLM judges the top-k documents per query; the best becomes the positive, a low-judged one
    the hard negative. Judgments go through a ledger (output/ledger.sqlite): a rerun pays nothing twice."""

    def run() -> None:
        from synthembed.refine.relabel import RelabelConfig, run_relabel
        from synthembed.refine.source import read_rows

        flags = {"backend": backend, "model": llm, "base_url": base_url, "max_cost": max_cost,
                 "concurrency": concurrency}
        overrides = merge_dicts({k: v for k, v in flags.items() if v is not None}, parse_overrides(set_ or []))
        gen = load_config(GenerateConfig, config, overrides, section="generate")
        cfg = RelabelConfig(top_k, min_positive_score, max_negative_score, search)
        read_rows(inputs)
        embedder, cache_root = _refine_setup(model, max_length, dtype, threads, device, cache)
        card = run_relabel(inputs, embedder, output, gen, cfg, cache_root, pool, batch_size, show_progress=not quiet)
        console.print(f"kept {card['kept']} of {card['rows']} rows ({card['positive_changed']} with a new positive); "
                      f"{card['requests'].get('sent', 0)} requests sent, cost ${card['cost_usd']:.4f}; "
                      f"wrote {output / 'examples.jsonl'} and {output / 'data_card.md'}", soft_wrap=True)
        if card["stopped"] == "interrupted":
            console.print("interrupted; rerun the same command to resume")
            raise typer.Exit(130)
        if card["pending_rows"]:
            console.print(Text.assemble(("error: ", "red"), f"{card['pending_rows']} rows still lack judgments "
                                        f"({card['stopped'] or 'failed requests'}); rerun the same command"),
                          soft_wrap=True)
            raise typer.Exit(1)

    _guard(run)


def _exit_stopped(stop) -> None:
    """A generate run that ended early: its table, why it stopped, and exit 130 (interrupted) or 1."""
    from synthembed.generate.card import summary_table

    console.print(summary_table(stop.report))
    prefix = () if stop.exit_code == 130 else (("error: ", "red"),)
    console.print(Text.assemble(*prefix, str(stop)), soft_wrap=True)
    raise typer.Exit(stop.exit_code)


def _guard(fn) -> None:
    """Turn the errors a user can fix into one clear line and exit code 2."""
    try:
        fn()
    except (ConfigError, FileNotFoundError, ValueError, OfflineModelError) as err:
        for line in str(err).splitlines() or [""]:  # user text printed as it is: no markup, no emoji codes
            console.print(Text.assemble(("error: ", "red"), line), soft_wrap=True)  # soft_wrap: one line each
        raise typer.Exit(2) from None


if __name__ == "__main__":
    app()
