"""One executor for every independent fit of `nmu train` (variants, CV folds, the refit, and each member of an
ensemble: the first member of every job at once, then every other member at once, as they reuse their first
member's factor composites and clusters; training.experiment.with_fitted_members).

`InProcess` runs them one after another here, as always (nothing to install). `DaskExecutor` runs them on a Dask
distributed cluster: `--scheduler tcp://HOST:8786` (or `[compute] scheduler = ...`) joins an existing one,
`--scheduler local:N` starts N worker processes on this machine. Each worker reads the data directory by its path
(every worker must see the same file system there), fits with as many LightGBM threads as it has Dask threads (its
share of its machine's cores: `dask worker --nthreads K`; `local:N` gives each worker cores/N), and sends the fitted
model back; the artifacts are written by the client only, after every fit has come back. A failed fit or a lost
worker (after Dask's own retries) fails the run with one line, before any artifact is written.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

from model.params import available_cpus
from validation.errors import NmuError, first_line

_ADDRESS = re.compile(r"^(tcp|tls)://(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+):(\d{1,5})$")  # HOST:PORT, [IPv6]:PORT
_LOCAL = re.compile(r"^local:(\d+)$")


def local_workers(scheduler: str | None) -> int:
    """N for local:N (worker processes started on this machine), else 0."""
    match = _LOCAL.match(scheduler or "")
    return int(match.group(1)) if match else 0


def check_scheduler(scheduler: str | None, setting: str = "--scheduler") -> None:
    """NmuError before any work when `scheduler` is neither a Dask address nor local:N, or Dask is not installed; the
    message names `setting`, where the value came from (`scheduler_setting`)."""
    if scheduler is None:
        return
    address, local = _ADDRESS.match(scheduler), _LOCAL.match(scheduler)
    if not (address or local) or (address and not 0 < int(address.group(3)) < 65536):
        raise NmuError(f"{setting} {scheduler!r} is neither a Dask scheduler address (tcp://HOST:PORT or "
                       "tls://HOST:PORT, a port from 1 to 65535) nor local:N.")
    if local and int(local.group(1)) < 1:
        raise NmuError(f"{setting} {scheduler!r}: local:N needs N >= 1 worker processes.")
    try:
        import distributed  # noqa: F401, PLC0415 - an optional extra, imported only when asked for
    except ImportError:
        raise NmuError(f'{setting} {scheduler!r} needs the Dask extra: pip install -e ".[dask]"') from None


def scheduler_setting(option: str | None, source: str) -> str:
    """Where the scheduler came from, for its errors: the command line's `--scheduler` (`option` given), else the
    config file `source`'s `[compute] scheduler`."""
    return "--scheduler" if option is not None else f"{source}: `compute.scheduler`"


class InProcess:
    """Runs the jobs here, one after another."""

    name = "in-process"

    def map(self, function: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        """function(job) for each job, in order."""
        return [function(job) for job in jobs]

    def close(self) -> None:
        """Nothing to release."""


class DaskExecutor:
    """Runs the jobs on a Dask distributed cluster (see the module docstring).

    Parameters
    ----------
    scheduler : str
        tcp://HOST:PORT of a running scheduler, or local:N to start N worker processes here.
    """

    def __init__(self, scheduler: str):
        check_scheduler(scheduler)
        from distributed import Client, LocalCluster  # noqa: PLC0415 - the optional extra

        self.name = scheduler
        self._cluster = None
        try:
            local = _LOCAL.match(scheduler)
            if local:
                workers = int(local.group(1))
                self._cluster = LocalCluster(n_workers=workers, threads_per_worker=max(1, available_cpus() // workers),
                                             processes=True, dashboard_address=None)
                self.client = Client(self._cluster)
            else:
                self.client = Client(scheduler, timeout="15s")
        except OSError as exc:  # refused or timed out (the address's form was checked above)
            raise NmuError(f"cannot reach the Dask scheduler at {scheduler} ({exc}).") from None

    def map(self, function: Callable[[Any], Any], jobs: Sequence[Any]) -> list[Any]:
        """function(job) for each job on the cluster, results in the jobs' order; NmuError naming the job that
        failed or the worker that was lost."""
        from distributed import KilledWorker  # noqa: PLC0415 - the optional extra

        futures = [self.client.submit(function, job, pure=False, key=f"nmu-{_slug(job)}") for job in jobs]
        results = []
        for job, future in zip(jobs, futures):
            try:
                results.append(future.result())
            except KilledWorker:
                self._cancel(futures)
                raise NmuError(f"the Dask cluster at {self.name} lost the worker fitting {_slug(job)} (Dask retried it "
                               "and gave up); nothing was written.") from None
            except NmuError:
                self._cancel(futures)
                raise
            except Exception as exc:  # noqa: BLE001 - any error of a remote fit is reported in one line
                self._cancel(futures)
                message = first_line(exc)
                raise NmuError(f"fitting {_slug(job)} on the Dask cluster at {self.name} failed: "
                               f"{type(exc).__name__}: {message}; nothing was written.") from None
        return results

    def _cancel(self, futures: list[Any]) -> None:
        try:
            self.client.cancel(futures)
        except Exception:  # noqa: BLE001 - the run fails anyway; cancelling is a courtesy
            pass

    def close(self) -> None:
        """Disconnect (and stop a local cluster)."""
        self.client.close()
        if self._cluster is not None:
            self._cluster.close()


def _slug(job: Any) -> str:
    return str(getattr(job, "title", job)).replace(" ", "-").replace("/", "-")


def make_executor(scheduler: str | None) -> InProcess | DaskExecutor:
    """The executor for a `--scheduler` value (None: in-process)."""
    return InProcess() if scheduler is None else DaskExecutor(scheduler)


def worker_threads() -> int | None:
    """The Dask threads of the worker this runs on (its share of the cores), or None outside a worker."""
    try:
        from distributed import get_worker  # noqa: PLC0415 - the optional extra

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None
