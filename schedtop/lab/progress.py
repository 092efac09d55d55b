"""Rich progress on stderr: byte bars for downloads, spinners for long steps.

stdout stays clean for the guest command's own output.
"""

from __future__ import annotations

import contextlib
import time
from typing import Iterator

from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TransferSpeedColumn,
)

console = Console(stderr=True, highlight=False)


def download_bar() -> Progress:
    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=False,
    )


@contextlib.contextmanager
def step(text: str) -> Iterator[None]:
    """A spinner while a long step runs, then one line with its duration."""
    start = time.monotonic()
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=True) as progress:
        progress.add_task(text, total=None)
        yield
    console.print(f"[green]✓[/] {text} [dim]({time.monotonic() - start:.1f} s)[/]")


def info(text: str) -> None:
    console.print(text)
