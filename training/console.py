"""What `nmu train` (and its kin) print while they work, kept apart from the work itself.

`Reporter` prints a line per stage with its time and follows LightGBM's boosting rounds: a progress bar on a
terminal; in a log (output that is not a terminal, e.g. CI or cron) a plain line at least every
PROGRESS_SECONDS, so a log shows where the time goes. `Silent` is the same interface printing nothing (the
Python API, the tests).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

PROGRESS_SECONDS = 20.0
"""In a log, a boosting progress line at least this often (the issue asks for one at least every 30 s)."""

_progress_log = logging.getLogger("training.progress")

LIBRARY_LOGGERS = ("training", "validation")
"""The loggers the library's progress lines go to; the command layer shows them (`show_progress_lines`)."""


class _ConsoleHandler(logging.Handler):
    """Log records as plain lines on a rich Console (which finds sys.stderr when it prints, so a test runner's
    captured stream gets them too)."""

    def __init__(self, console: Console):
        super().__init__(logging.INFO)
        self.console = console

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.console.print(self.format(record), highlight=False, markup=False, soft_wrap=True)
        except Exception:  # noqa: BLE001 - a log line must never break the command
            self.handleError(record)


@contextlib.contextmanager
def progress_bars(console: Console | None) -> Iterator[Callable[[str, int, int | None], None]]:
    """A progress callback `(what, done, total)` for library code (a download's bytes, the synthetic world's eras),
    drawn as one rich bar per `what` on `console`; with no console, or one that is not a terminal, nothing is drawn."""
    if console is None or not console.is_terminal:
        yield lambda what, done, total: None
        return
    from rich.progress import DownloadColumn

    bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console)
    byte_bars = Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TimeRemainingColumn(),
                         console=console)
    tasks: dict[str, tuple[Progress, Any]] = {}

    def advance(what: str, done: int, total: int | None) -> None:
        if what not in tasks:
            bar = byte_bars if "/" in what else bars  # a data file ("v5.3/train.parquet") counts bytes
            bar.start()
            tasks[what] = (bar, bar.add_task(what, total=total))
        bar, task = tasks[what]
        bar.update(task, advance=done, total=total)

    try:
        yield advance
    finally:
        bars.stop()
        byte_bars.stop()


@contextlib.contextmanager
def show_progress_lines(console: Console) -> Iterator[None]:
    """For the duration of a command, show the library's INFO lines (progress of an upload, a check, a download, ...)
    on `console`, and only there (numerapi's client configures the root logger, which would print them twice);
    everything is put back afterwards."""
    handler = _ConsoleHandler(console)
    saved = []
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        saved.append((logger, logger.level, logger.propagate))
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False
    try:
        yield
    finally:
        for logger, level, propagate in saved:
            logger.removeHandler(handler)
            logger.setLevel(level)
            logger.propagate = propagate


@contextlib.contextmanager
def quiet(logger_name: str) -> Iterator[None]:
    """Silence a logger's warnings for the duration of the block (e.g. the model's staleness line while scoring)."""
    logger = logging.getLogger(logger_name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def ordinal(n: int) -> str:
    """1st, 2nd, 3rd, 4th, ..."""
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def fmt_score(value: float | None) -> str:
    """A score for the screen: signed, four decimals, a dash when missing."""
    return "–" if value is None else f"{value:+.4f}"


class Reporter:
    """Stages on screen with their time, and a LightGBM callback that follows the boosting rounds.

    The command layer gives it its console; without one (library code called from Python) every line goes to the
    `training.progress` logger instead, plain, and nothing is drawn.

    Parameters
    ----------
    console : rich Console, optional
        Where to draw; None: log through `logging` (logger training.progress).

    Attributes
    ----------
    timings : dict of str to float
        Seconds per finished stage, by title.
    """

    def __init__(self, console: Console | None = None):
        self.console = console
        self.timings: dict[str, float] = {}

    def _print(self, rich_text: str, plain: str) -> None:
        if self.console is None:
            _progress_log.info("%s", plain)
        else:
            self.console.print(rich_text, highlight=False)

    def say(self, text: str) -> None:
        """One plain line (no markup)."""
        if self.console is None:
            _progress_log.info("%s", text)
        else:
            self.console.print(text, highlight=False, markup=False, soft_wrap=True)

    def scores_table(self, models: dict[str, dict[str, Any]]) -> None:
        """The variants' headline scores (metrics.json's "models") as a table."""
        from rich.table import Table

        table = Table(title="validation scores (after the embargo)")
        keys = ("corr_mean", "corr_sharpe", "max_drawdown", "bmc_mean", "feature_exposure_max", "n_eras")
        table.add_column("variant")
        for key in keys:
            table.add_column(key, justify="right")
        for name, scores in models.items():
            table.add_row(name, *(str(scores[k]) if k == "n_eras" else fmt_score(scores[k]) for k in keys))
        if self.console is None:
            for name, scores in models.items():
                self.say(f"  {name}: " + ", ".join(f"{k} {scores[k] if k == 'n_eras' else fmt_score(scores[k])}"
                                                   for k in keys))
        else:
            self.console.print(table)

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        """Print a stage, run it, print its time (or that it failed)."""
        self._print(f"[bold cyan]→[/bold cyan] {title} …", f"→ {title} …")
        start = time.perf_counter()
        try:
            yield
        except BaseException:
            failed = f"{title} failed after {time.perf_counter() - start:.1f} s"
            self._print(f"[bold red]✗[/bold red] {failed}", f"✗ {failed}")
            raise
        elapsed = time.perf_counter() - start
        self.timings[title] = round(elapsed, 2)
        self._print(f"[bold green]✓[/bold green] {title} [dim]({elapsed:.1f} s)[/dim]", f"✓ {title} ({elapsed:.1f} s)")

    @contextlib.contextmanager
    def boosting(self, title: str) -> Iterator[Callable[[Any], None]]:
        """A LightGBM callback that follows the rounds: a bar on a terminal, else a line every PROGRESS_SECONDS."""
        if self.console is None or not self.console.is_terminal:
            yield _LogProgress(self, title)
            return
        progress = Progress(
            TextColumn("  {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
            TimeRemainingColumn(), console=self.console, transient=True,
        )
        task = progress.add_task(title, total=None)

        def callback(env: Any) -> None:
            total = env.end_iteration - env.begin_iteration
            done = env.iteration - env.begin_iteration + 1
            progress.update(task, total=total, completed=done)

        callback.order = 100  # type: ignore[attr-defined]  # after LightGBM's own callbacks
        with progress:
            yield callback


class _LogProgress:
    """LightGBM callback printing `title: round k/n (p %, s elapsed)` at most every PROGRESS_SECONDS."""

    order = 100  # after LightGBM's own callbacks

    def __init__(self, reporter: Reporter, title: str):
        self.reporter = reporter
        self.title = title
        self.start = self.last = time.perf_counter()

    def __call__(self, env: Any) -> None:
        now = time.perf_counter()
        total = env.end_iteration - env.begin_iteration
        done = env.iteration - env.begin_iteration + 1
        if now - self.last >= PROGRESS_SECONDS or done == total:
            self.last = now
            self.reporter.say(f"  {self.title}: round {done}/{total} ({100 * done / max(total, 1):.0f} %, "
                              f"{now - self.start:.0f} s)")


class Silent(Reporter):
    """A Reporter that prints nothing (still records the timings)."""

    def __init__(self) -> None:
        super().__init__(Console(quiet=True))

    @contextlib.contextmanager
    def boosting(self, title: str) -> Iterator[Callable[[Any], None] | None]:
        """No callback: nothing follows the rounds."""
        yield None
