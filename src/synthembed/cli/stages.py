"""The recipe's stages: generate, train, and the whole pipeline."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.text import Text

from synthembed.cli.common import ConfigOpt, SetOpt, app, comma_list, console, exit_stopped, guard
from synthembed.config import ConfigError, GenerateConfig, load_config, merge_dicts, parse_overrides


def _weighted(value: str | None, option: str) -> dict | list | None:
    """'en,de' -> ['en', 'de']; 'en:0.5,de:0.5' -> {'en': 0.5, 'de': 0.5}."""
    if not value:
        return None
    parts = comma_list(value)
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
            exit_stopped(stop)
        console.print(summary_table(report))
        console.print(f"wrote {cfg.output_dir / 'examples.jsonl'} and {cfg.output_dir / 'data_card.md'}")
        failed = report.failed + report.brainstorm["failed"]
        if failed:  # the output lacks what these requests were for: not a success
            console.print(Text.assemble(("error: ", "red"), f"{failed} requests failed (reasons in "
                                        f"{cfg.output_dir / 'rejected.jsonl'}); rerun the same command to retry them"),
                          soft_wrap=True)
            raise typer.Exit(1)

    guard(run)


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

    guard(run)


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
                exit_stopped(stop)

    guard(run)
