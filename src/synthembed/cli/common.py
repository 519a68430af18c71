"""What every command shares: the Typer apps, the common options, model loading from flags, and turning errors a
user can fix into one clear line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler
from rich.text import Text

from synthembed.config import ConfigError
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


ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Model: minilm | gemma-270m | smollm2-135m | a directory.")]
DtypeOpt = Annotated[str, typer.Option(help="auto (bf16 on a GPU, fp32 on the CPU) | fp32 | bf16 | fp16")]
DeviceOpt = Annotated[str, typer.Option(help="auto (CUDA when present) | cpu | cuda | cuda:N")]
ThreadsOpt = Annotated[Optional[int], typer.Option(help="torch CPU threads (default: torch's).")]


def comma_list(*values: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']; several values (a repeated option) are joined."""
    return [item.strip() for value in values for item in value.split(",") if item.strip()]


def embedder_from_flags(model: str, max_length: int | None, dtype: str, threads: int | None,
                        name: str | None = None, device: str = "auto"):
    import torch

    from synthembed.model.load import load_embedder

    if threads:
        torch.set_num_threads(threads)
    return load_embedder(model, max_length=max_length, dtype=dtype, name=name, device=device)


def exit_stopped(stop) -> None:
    """A generate run that ended early: its table, why it stopped, and exit 130 (interrupted) or 1."""
    from synthembed.generate.card import summary_table

    console.print(summary_table(stop.report))
    prefix = () if stop.exit_code == 130 else (("error: ", "red"),)
    console.print(Text.assemble(*prefix, str(stop)), soft_wrap=True)
    raise typer.Exit(stop.exit_code)


def guard(fn) -> None:
    """Turn the errors a user can fix into one clear line and exit code 2."""
    try:
        fn()
    except (ConfigError, FileNotFoundError, ValueError, OfflineModelError) as err:
        for line in str(err).splitlines() or [""]:  # user text printed as it is: no markup, no emoji codes
            console.print(Text.assemble(("error: ", "red"), line), soft_wrap=True)  # soft_wrap: one line each
        raise typer.Exit(2) from None
