"""`nmu data download`: fetch a Numerai data version's files into a directory in Numerai's layout.

numerapi answers which files exist (`list_datasets`) and where each one is (the `dataset` query that its
`download_dataset` sends); the bytes are streamed here with requests so that the download is atomic and
loud: each file goes to a temporary file in the output directory, and all are renamed over their targets together
only when every byte announced by each Content-Length has arrived. numerapi's own `download_dataset` would skip an existing
file of the same size, resume from a stale `.temp`, and leave partial files behind on failure.
Public data needs no API keys. Honours env `NUMERAI_API_URL` (see training.numerai_api).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests

from training.data import OPTIONAL_FILES, REQUIRED_FILES, version_key, write_data_info
from training.numerai_api import TransientError, call, host_of, make_client, raw, retried, scrub, transient
from validation.artifacts import replace_together, temporary_beside
from validation.errors import NmuError

_log = logging.getLogger(__name__)

Progress = Callable[[str, int, "int | None"], None]
"""A progress callback: (what, units just done, total units or None). The command layer renders it
(training.console.progress_bars); library code only calls it."""
FileProgress = Callable[[int, "int | None"], None]
"""One file's progress: (bytes just done, negative when a failed attempt's are taken back; total bytes or None)."""

# The query numerapi 2.20.8's `download_dataset` sends to learn a file's (pre-signed) URL.
DATASET_QUERY = """
        query ($filename: String!
               $round: Int
               $tournament: Int) {
            dataset(filename: $filename
                    round: $round
                    tournament: $tournament)
        }
        """

CHUNK = 1 << 20
TIMEOUT = (10, 300)  # connect, read (seconds)


def available_versions(names: list[str]) -> list[str]:
    """Data versions present in a `list_datasets` answer ("v5.2/train.parquet" → "v5.2"), oldest first."""
    return sorted({name.split("/", 1)[0] for name in names if "/" in name}, key=version_key)


def newest_complete_version(names: list[str]) -> str | None:
    """The newest data version in a `list_datasets` answer that has every file a data directory needs."""
    listed = set(names)
    complete = [v for v in available_versions(names) if all(f"{v}/{f}" in listed for f in REQUIRED_FILES)]
    return complete[-1] if complete else None


def _stream_to(url: str, target: Path, name: str, advance: FileProgress) -> int:
    """Stream `url` into `target` (a temporary path); returns bytes written. An HTTP 5xx, a refused, broken or timed
    out connection and a short body raise TransientError (`retried` tries again); any other HTTP status, and a request
    that cannot pass however often it is tried (`transient`), NmuError. The progress of a failed attempt is taken
    back."""
    written, total, in_body = 0, None, False
    try:
        with requests.get(url, stream=True, timeout=TIMEOUT) as resp:
            if resp.status_code != 200:
                cause = f"HTTP {resp.status_code} from {host_of(url)}"
                if resp.status_code >= 500:
                    raise TransientError(cause)
                raise NmuError(f"Downloading {name} failed: {cause}")
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            advance(0, total)
            in_body = True
            with open(target, "wb") as fh:
                for chunk in resp.iter_content(CHUNK):
                    fh.write(chunk)
                    written += len(chunk)
                    advance(len(chunk), total)
            if total is not None and written != total:
                raise TransientError(f"a connection that ended after {written} of {total} bytes")
    except (requests.RequestException, TransientError) as exc:
        advance(-written, None)
        if isinstance(exc, TransientError):
            raise
        if in_body:  # the body broke off
            of_total = f" of {total}" if total is not None else ""
            cause = f"a connection that broke after {written}{of_total} bytes ({type(exc).__name__})"
        else:  # refused, timed out or reset before the body; or a bad address
            cause = scrub(f"{type(exc).__name__}: {exc}".replace(url, host_of(url)))
        if transient(exc):
            raise TransientError(cause) from None
        raise NmuError(f"Downloading {name} failed: {cause}") from None
    return written


def _check_content(path: Path, name: str) -> None:
    """NmuError unless the downloaded bytes look like the file they are named for: a parquet file begins and ends
    with its magic `PAR1`, features.json parses as JSON. A proxy's or a login page's HTML answered with HTTP 200
    would otherwise be renamed into place and fail later, in `nmu train` or the weekly refresh, as "a corrupt file"."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        head = fh.read(64)
        if name.endswith(".parquet"):
            fh.seek(max(0, size - 4))
            if size >= 12 and head[:4] == b"PAR1" and fh.read(4) == b"PAR1":
                return
            expected = "a parquet file (PAR1 at both ends)"
        else:
            try:
                json.loads(head + fh.read())
                return
            except ValueError:
                expected = "JSON"
    shown = head[:40].decode("utf-8", "replace").replace("\n", " ")
    raise NmuError(f"Downloading {name} failed: the {size:,} bytes received are not {expected}; they begin {shown!r}")


def download_data(out: str | Path, version: str | None = None, progress: Progress | None = None,
                  files: Sequence[str] | None = None) -> list[Path]:
    """Download a data version's files (features.json, train/validation/live and benchmark parquet files) into
    `out`: `version`, or (None) the newest version Numerai offers complete, saying which it took. `files` limits
    the download to those names (e.g. `nmu refresh` skips the multi-gigabyte train.parquet it does not read).

    Checks the version exists (NmuError listing the available ones), stages every file beside its target and renames
    them into place together with the version's record (`out`/nmu-data.json) once all have arrived; on any failure
    leaves every file in `out` as it was and raises NmuError naming file and cause. `progress(dataset, bytes, total)`
    follows each file's bytes; the version taken and the summary go to the `training.download` logger.
    """
    started = time.perf_counter()
    out = Path(out)
    api = make_client()
    listed: list[str] = call("Listing Numerai's data sets (list_datasets)", api.list_datasets)
    versions = available_versions(listed)
    if version is None:
        version = newest_complete_version(listed)
        if version is None:
            raise NmuError(f"Numerai offers no complete data version (needs {', '.join(REQUIRED_FILES)}); "
                           f"listed versions: {', '.join(versions) or 'none'}.")
        _log.info("Data version %s: the newest Numerai offers (of %s); pin one with --version.", version,
                  ", ".join(versions))
    if version not in versions:
        raise NmuError(
            f"Data version {version!r} is not offered by Numerai; available versions: {', '.join(versions) or 'none'}."
        )
    missing = [f"{version}/{name}" for name in REQUIRED_FILES if f"{version}/{name}" not in listed]
    if missing:
        raise NmuError(f"Numerai's data version {version} lacks {', '.join(missing)}; cannot build a data directory from it.")
    names = list(REQUIRED_FILES) + [name for name in OPTIONAL_FILES if f"{version}/{name}" in listed]
    if files is not None:
        unknown = sorted(set(files) - set(REQUIRED_FILES) - set(OPTIONAL_FILES))
        if unknown:
            raise ValueError(f"download_data: unknown data file(s) {unknown}; known: {REQUIRED_FILES + OPTIONAL_FILES}")
        names = [name for name in names if name in files]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NmuError(f"Cannot create the output directory {out}: {exc.strerror or exc}.") from exc

    # every file is staged beside its target first and all are renamed into place together with nmu-data.json only
    # when the last one has arrived: a download that fails part-way leaves the directory as it was, never a mix of
    # two downloads (it needs the new files' space beside the old ones until then)
    staged: list[tuple[Path, Path]] = []
    try:
        for name in names:
            dataset = f"{version}/{name}"

            def advance(n: int, total: int | None, dataset: str = dataset) -> None:
                if progress is not None:
                    progress(dataset, n, total)

            target = out / name
            tmp = temporary_beside(target)
            staged.append((tmp, target))

            def fetch(dataset: str = dataset, tmp: Path = tmp, advance: FileProgress = advance) -> int:
                # asked again each attempt: a pre-signed URL may have expired while the last one failed
                url: str = raw(api, f"Asking Numerai where {dataset} is (dataset query)", DATASET_QUERY,
                               {"filename": dataset, "round": None, "tournament": api.tournament_id}, field="dataset")
                return _stream_to(url, tmp, dataset, advance)

            left = f"every file in {out} was left as it was."
            try:
                retried(fetch, f"Downloading {dataset}", left)
                _check_content(tmp, dataset)
            except NmuError as exc:
                message = str(exc)
                raise NmuError(message if message.endswith(left) else f"{message}; {left}") from None
            except OSError as exc:  # the disk: full, read-only, gone
                raise NmuError(f"Downloading {dataset} to {target} failed ({type(exc).__name__}: {exc}); {left}") \
                    from None
            _log.info("  %s: %s MB", dataset, f"{tmp.stat().st_size / 1e6:,.1f}")
        with replace_together(staged):
            write_data_info(out, version, source="numerai")
    finally:
        for tmp, _ in staged:
            tmp.unlink(missing_ok=True)
    written = [target for _, target in staged]
    size = sum(p.stat().st_size for p in written)
    _log.info("Downloaded %d files of %s (%s MB) into %s in %.1f s.", len(written), version, f"{size / 1e6:,.1f}", out,
              time.perf_counter() - started)
    return written
