"""A rich progress bar that shows kept and rejected examples and output tokens per second."""

from __future__ import annotations

import time

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn


class RunProgress:
    def __init__(self, total: int, completed: int, enabled: bool = True):
        self.kept = self.rejected = self.failed = self.tokens = 0
        self.started = time.perf_counter()
        self.progress = Progress(
            TextColumn("[bold]generate"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("kept [green]{task.fields[kept]}[/] rejected [yellow]{task.fields[rejected]}[/]"
                       " failed [red]{task.fields[failed]}[/] {task.fields[rate]:.0f} tok/s"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            disable=not enabled,
        )
        self.task = self.progress.add_task("generate", total=total, completed=completed,
                                           kept=0, rejected=0, failed=0, rate=0.0)

    def __enter__(self) -> RunProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.stop()

    def update(self, kept: bool = False, rejected: bool = False, failed: int = 0, tokens: int = 0) -> None:
        self.kept += kept
        self.rejected += rejected
        self.failed += failed
        self.tokens += tokens
        rate = self.tokens / max(time.perf_counter() - self.started, 1e-9)
        self.progress.update(self.task, advance=1, kept=self.kept, rejected=self.rejected,
                             failed=self.failed, rate=rate)
