"""Errors the user can act on: the CLI prints them as a sentence (and a table) and exits 2."""

from __future__ import annotations

import pandas as pd


def first_line(exc: BaseException, default: str | None = None, limit: int | None = None) -> str:
    """The first line of an exception's message, for one-sentence errors: `default` (the exception's class name unless
    given) when it has none, or when its own __str__ fails (a foreign class); cut to `limit` characters with "…"."""
    try:
        text = str(exc)
    except KeyboardInterrupt:
        raise
    except BaseException:  # noqa: BLE001 - any failure of a foreign __str__ (an exit in it too) is the same "cannot say"
        text = ""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else (type(exc).__name__ if default is None else default)
    return first if limit is None or len(first) <= limit else first[: limit - 1] + "…"


class NmuError(Exception):
    """A problem with the user's input or environment, stated in one sentence; the CLI exits 2."""

    exit_code = 2


class DataValidationError(NmuError):
    """A frame failed its schema. `failures` has one row per problem: column, check, count, examples."""

    def __init__(self, source: str, failures: pd.DataFrame):
        self.source = source
        self.failures = failures
        n = int(failures["count"].sum()) if "count" in failures else len(failures)
        columns = ", ".join(dict.fromkeys(str(c) for c in failures["column"]))
        super().__init__(f"{source} failed validation: {n} problem(s) in column(s) {columns}.")

    def table(self) -> str:
        """The failures as a short plain-text table (column, check, count, first offending ids/eras)."""
        return self.failures.to_string(index=False, max_colwidth=60)
