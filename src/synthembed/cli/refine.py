"""`synthembed data ...`: merge shards, check contamination, and refine data with an embedder (mine, filter,
relabel)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from synthembed.cli.common import (ConfigOpt, DeviceOpt, DtypeOpt, ModelOpt, SetOpt, ThreadsOpt, console, data_app,
                                   embedder_from_flags, guard)
from synthembed.config import GenerateConfig, load_config, merge_dicts, parse_overrides


@data_app.command("merge")
def merge(
    output: Annotated[Path, typer.Argument(help="Directory for the merged dataset.")],
    inputs: Annotated[list[Path], typer.Argument(help="Shard output directories or examples.jsonl files.")],
) -> None:
    """Join the shards of a run into one examples.jsonl, dropping duplicates."""
    from synthembed.data.merge import merge_examples

    guard(lambda: console.print(merge_examples(inputs, output)))


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

    guard(run)


RefineInputs = Annotated[list[Path], typer.Argument(help="Generate output directories, examples.jsonl or labeled JSONL files.")]
RefineOut = Annotated[Path, typer.Option("--output", "-o", help="Output directory (examples.jsonl, data_card.md/.json).")]
PoolOpt = Annotated[Optional[Path], typer.Option("--pool", help="Extra pool documents: JSONL with a 'text' field.")]
CacheOpt = Annotated[bool, typer.Option("--cache/--no-cache", help="Reuse the evaluator's on-disk embedding cache.")]
SearchOpt = Annotated[str, typer.Option(help="auto (faiss when installed) | faiss | torch; both exact.")]


def _refine_setup(model: str, max_length: int | None, dtype: str, threads: int | None, device: str, cache: bool):
    from synthembed.formats.offline import cache_dir

    return (embedder_from_flags(model, max_length, dtype, threads, device=device),
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

    guard(run)


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

    guard(run)


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

    guard(run)
