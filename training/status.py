"""`nmu status`: one look at whether auto-submission is alive and current.

From Numerai (numerapi through training.numerai_api): the current round and when it opened, whether the model has
a submission inserted since then, and its latest rounds' scores (`submission_scores` in numerapi 3.x,
`round_model_performances_v2` in 2.x). From the pickle's local manifest: its sha256, the era its factor-timing
history reaches, how long ago that history was last extended, and the upload record `nmu upload` left (data
version, docker image, the sha256 that was sent). A model that has not submitted yet is reported, not an error;
bad keys and an unknown model name are one sentence (NmuError). Keys are never printed.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dateutil.parser

from training.numerai_api import call, make_client, resolve_model
from training.upload import load_keys
from validation.artifacts import file_sha256, manifest_path, read_manifest
from validation.errors import NmuError

DEFAULT_PICKLE = Path("artifacts") / "model.pkl"
SCORE_ROUNDS = 4                           # rounds of scores shown
SCORE_NAME_HINTS = ("corr", "mmc", "bmc")  # the corr-like metrics shown (all metrics when none of a round's match)
NO_ROUND_HINT = "not open"                 # Numerai's error between rounds: "Current round not open for submissions"

# The document numerapi's `check_round_open` sends (number 0 is the current round): number and times in one request.
CURRENT_ROUND_QUERY = """
    query($tournament: Int!) {
      rounds(tournament: $tournament
      number: 0) {
        number
        openTime
        closeStakingTime
      }
    }
"""


# ---- reading Numerai -------------------------------------------------------------------------------------------
def current_round(api: Any) -> dict[str, Any] | None:
    """The current round of Numerai Classic, or None when no round is open.

    Parameters
    ----------
    api : numerapi.NumerAPI
        A client (no keys needed).

    Returns
    -------
    dict or None
        {"number": int, "open_time": datetime, "close_staking_time": datetime or None}, times in UTC.
    """

    def run() -> dict[str, Any] | None:
        try:
            result = api.raw_query(CURRENT_ROUND_QUERY, {"tournament": api.tournament_id})
        except ValueError as exc:  # between rounds Numerai answers "number: 0" with an error
            if NO_ROUND_HINT in str(exc).lower():
                return None
            raise
        rounds = result["data"]["rounds"]
        if not rounds or rounds[0] is None:
            return None
        number, open_time = rounds[0]["number"], as_utc(rounds[0]["openTime"])
        if number is None or open_time is None:
            raise KeyError("openTime")
        return {"number": int(number), "open_time": open_time,
                "close_staking_time": as_utc(rounds[0].get("closeStakingTime"))}

    return call("Reading the current round (rounds)", run)


def submission_times(api: Any, model_id: str) -> list[datetime]:
    """When each of the model's submissions arrived, oldest first (numerapi's `submission_ids`).

    Parameters
    ----------
    api : numerapi.NumerAPI
        A client with the user's keys.
    model_id : str
        The model's id (`resolve_model`).

    Returns
    -------
    list of datetime
        Insertion times in UTC.
    """
    submissions = call("Reading the model's submissions (submission_ids)", lambda: api.submission_ids(model_id),
                       auth=True)
    # numerapi leaves `insertedAt` as text (its post-processing looks the key up in the list, not in each entry)
    return sorted(t for t in (as_utc(s.get("insertedAt")) for s in submissions or []) if t is not None)


def recent_scores(api: Any, model_id: str, rounds: int = SCORE_ROUNDS) -> list[dict[str, Any]]:
    """The model's corr-like scores in its latest `rounds` scored rounds, newest first.

    numerapi 3.x reads them with `submission_scores`; numerapi 2.x (Numerai's runtime pins 2.20.8) has only
    `round_model_performances_v2`, which 3.x deprecates.

    Parameters
    ----------
    api : numerapi.NumerAPI
        A client.
    model_id : str
        The model's id (`resolve_model`).
    rounds : int, default=SCORE_ROUNDS
        How many rounds to show.

    Returns
    -------
    list of dict
        One {"round": int, "resolved": bool or None, "scores": {displayName: value}} per round; a metric scored on
        several days shows its latest day.
    """
    rows: list[dict[str, Any]] = []
    if hasattr(api, "submission_scores"):
        for entry in api.submission_scores(model_id, last_n_rounds=rounds) or []:
            rows.append({"round": entry.get("roundNumber"), "name": entry.get("displayName"), "value": entry.get("value"),
                         "day": entry.get("day"), "date": entry.get("date"), "resolved": entry.get("resolved")})
    else:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            performances = api.round_model_performances_v2(model_id)
        for perf in performances or []:
            for entry in perf.get("submissionScores") or []:
                rows.append({"round": perf.get("roundNumber"), "name": entry.get("displayName"),
                             "value": entry.get("value"), "day": entry.get("day"), "date": entry.get("date"),
                             "resolved": perf.get("roundResolved")})
    return _latest_rounds(rows, rounds)


def _latest_rounds(rows: Iterable[dict[str, Any]], rounds: int) -> list[dict[str, Any]]:
    """Rows of (round, metric, day) grouped by round, the latest day of each metric, newest `rounds` rounds."""
    by_round: dict[int, dict[str, dict[str, Any]]] = {}
    for row in rows:
        if row["round"] is None or not row["name"]:
            continue
        metrics = by_round.setdefault(int(row["round"]), {})
        kept = metrics.get(row["name"])
        if kept is None or _day_key(row) >= _day_key(kept):
            metrics[row["name"]] = row
    result = []
    for number in sorted(by_round, reverse=True)[:rounds]:
        metrics = by_round[number]
        shown = [name for name in metrics if any(hint in name.lower() for hint in SCORE_NAME_HINTS)] or list(metrics)
        flags = [row["resolved"] for row in metrics.values() if row["resolved"] is not None]
        result.append({
            "round": number, "resolved": all(flags) if flags else None,
            "scores": {name: None if metrics[name]["value"] is None else float(metrics[name]["value"])
                       for name in sorted(shown)},
        })
    return result


def _day_key(row: dict[str, Any]) -> tuple[int, datetime]:
    return (row["day"] if row["day"] is not None else -1,
            as_utc(row["date"]) or datetime.min.replace(tzinfo=timezone.utc))


# ---- reading the local manifest --------------------------------------------------------------------------------
def pickle_status(pickle_path: str | Path, model_name: str, now: datetime | None = None) -> dict[str, Any]:
    """What the pickle's local manifest says about the pickle and its upload.

    Parameters
    ----------
    pickle_path : str or Path
        The pickle whose manifest to read (`validation.artifacts.manifest_path`); the file itself need not exist.
    model_name : str
        The model asked about: an upload record for another model does not describe this one.
    now : datetime, optional
        The time to measure staleness against (default: now).

    Returns
    -------
    dict
        "manifest" (bool: found), "uploaded" (bool: it holds an upload record), "sha256" (of the file if present,
        else as recorded), "as_of_era",
        "last_extended" (newest of the manifest's "refreshed" and "exported" times), "weeks_since_refresh",
        "upload_model", "upload_id", "upload_time", "uploaded_sha256", "data_version", "docker_image"
        (None where unknown).
    """
    path = Path(pickle_path)
    now = now or datetime.now(timezone.utc)
    info: dict[str, Any] = dict.fromkeys(
        ("sha256", "as_of_era", "last_extended", "weeks_since_refresh", "upload_model", "upload_id", "upload_time",
         "uploaded_sha256", "data_version", "docker_image"))
    info["manifest"] = manifest_path(path).is_file()
    info["uploaded"] = False
    if not info["manifest"]:
        return info
    manifest = read_manifest(path)
    recorded = manifest["pickle"].get("sha256") if isinstance(manifest.get("pickle"), dict) else None
    info["sha256"] = file_sha256(path) if path.is_file() else recorded
    info["as_of_era"] = manifest.get("as_of_era")
    refreshed = manifest.get("refreshed")
    refreshed_time = refreshed.get("time") if isinstance(refreshed, dict) else refreshed
    times = [t for t in (as_utc(refreshed_time), as_utc(manifest.get("exported"))) if t is not None]
    if times:
        info["last_extended"] = max(times)
        info["weeks_since_refresh"] = max(0, (now - info["last_extended"]) // timedelta(weeks=1))
    upload = manifest.get("upload")
    if isinstance(upload, dict):
        info.update(uploaded=True, upload_model=upload.get("model"), upload_id=upload.get("id"),
                    upload_time=as_utc(upload.get("time")), uploaded_sha256=upload.get("sha256"))
        if upload.get("model") in (None, model_name):
            info.update(data_version=upload.get("data_version"), docker_image=upload.get("docker_image"))
    return info


# ---- the command -----------------------------------------------------------------------------------------------
def status_command(model_name: str, pickle_path: Path | None = None) -> dict[str, Any]:
    """`nmu status`: print whether the model's auto-submission is alive and current, and return what was found.

    Parameters
    ----------
    model_name : str
        The user's Numerai Classic model.
    pickle_path : Path, optional
        The uploaded pickle's local path, for its manifest (default: artifacts/model.pkl).

    Returns
    -------
    dict
        "model", "model_id", "round" (None when no round is open), "round_open_time", "submitted",
        "submission_time" (this round's latest submission), "latest_submission_time", "scores"
        (`recent_scores`), "scores_unavailable" (why, or None), and the `pickle_status` fields ("sha256",
        "as_of_era", "weeks_since_refresh", "data_version", "docker_image", ...).
    """
    path = Path(pickle_path) if pickle_path is not None else DEFAULT_PICKLE
    now = datetime.now(timezone.utc)
    local = pickle_status(path, model_name, now)  # a broken manifest is reported before any network call
    public_id, secret_key = load_keys()
    api = make_client(public_id, secret_key)
    model_id = resolve_model(api, model_name)
    round_info = current_round(api)
    times = submission_times(api, model_id)
    scores: list[dict[str, Any]] = []
    scores_unavailable = None
    try:  # scores are a courtesy: an API that no longer serves them must not hide the submission status
        scores = call("Reading the model's scores", lambda: recent_scores(api, model_id))
    except NmuError as exc:
        scores_unavailable = str(exc).rstrip(".")

    this_round = [t for t in times if round_info and t >= round_info["open_time"]]
    status: dict[str, Any] = {
        "model": model_name, "model_id": model_id,
        "round": round_info["number"] if round_info else None,
        "round_open_time": round_info["open_time"] if round_info else None,
        "submitted": bool(this_round), "submission_time": this_round[-1] if this_round else None,
        "latest_submission_time": times[-1] if times else None,
        "scores": scores, "scores_unavailable": scores_unavailable, "pickle": str(path), **local,
    }
    for line in _summary(status, round_info, now):
        print(line)
    return status


def _summary(status: dict[str, Any], round_info: dict[str, Any] | None, now: datetime) -> list[str]:
    """The printed lines of `status_command`."""
    lines = [f"model {status['model']} (Numerai Classic)"]
    latest = status["latest_submission_time"]
    latest_text = f"latest submission {_when(latest)}" if latest else "this model has no submissions at all"
    if round_info is None:
        lines.append(f"no round is open right now; {latest_text}")
    else:
        number, opened = round_info["number"], round_info["open_time"]
        close = round_info["close_staking_time"]
        closing = ("" if close is None else
                   f", staking {'closes' if close > now else 'closed'} {_when(close)}")
        lines.append(f"round {number}: opened {_when(opened)} ({_duration(now - opened)} ago){closing}")
        if status["submitted"]:
            arrived = status["submission_time"]
            lines.append(f"submitted for round {number} at {_when(arrived)} ({_duration(arrived - opened)} after it opened)")
        else:
            lines.append(f"NOT submitted for round {number} yet; {latest_text}")
    if status["scores_unavailable"]:
        lines.append(f"scores: not available ({status['scores_unavailable']})")
    elif not status["scores"]:
        lines.append("scores: none yet")
    else:
        lines.append(f"scores, latest {len(status['scores'])} round{'' if len(status['scores']) == 1 else 's'}:")
        for entry in status["scores"]:
            values = "  ".join(f"{name} {'-' if value is None else f'{value:+.4f}'}"
                               for name, value in entry["scores"].items())
            state = {True: "  resolved", False: "  pending", None: ""}[entry["resolved"]]
            lines.append(f"  round {entry['round']}  {values}{state}")
    lines.extend(_pickle_lines(status))
    return lines


def _pickle_lines(status: dict[str, Any]) -> list[str]:
    """The manifest part of the summary."""
    path = status["pickle"]
    if not status["manifest"]:
        return [f"no manifest for {path} ({manifest_path(path)}): its sha256, as-of era, data version and image are "
                "unknown here (pass --pickle PATH for another pickle)"]
    sha = status["sha256"]
    parts = [f"pickle {path}: sha256 {sha[:12] + '…' if sha else 'unknown'}",
             f"factor timing as of era {status['as_of_era'] or 'unknown'}"]
    weeks = status["weeks_since_refresh"]
    if weeks is not None:
        parts.append(f"about {weeks} week{'' if weeks == 1 else 's'} since its timing history was last extended")
    lines = [", ".join(parts)]
    if not status["uploaded"]:
        lines.append(f"no upload record in {manifest_path(path)}: data version and docker image unknown here")
        return lines
    if status["upload_model"] not in (None, status["model"]):
        lines.append(f"the upload record of {path} is for model {status['upload_model']}, not {status['model']}: "
                     "this model's data version and docker image are unknown here")
        return lines
    when = _when(status["upload_time"]) if status["upload_time"] else "at an unrecorded time"
    lines.append(f"uploaded {when} (upload id {status['upload_id'] or 'unknown'}): data {status['data_version'] or 'unknown'}, "
                 f"image {status['docker_image'] or 'unknown'}")
    uploaded = status["uploaded_sha256"]
    if uploaded and sha and uploaded != sha:
        lines.append(f"warning: the uploaded pickle (sha256 {uploaded[:12]}…) is not the local {path} (sha256 {sha[:12]}…): "
                     "the local file is not what runs on Numerai")
    return lines


# ---- times -----------------------------------------------------------------------------------------------------
def as_utc(value: Any) -> datetime | None:
    """A time from the API or a manifest (datetime or ISO text such as "2026-11-28T13:00:00Z") in UTC; None if absent
    or unreadable (a naive time is taken as UTC)."""
    if value is None or value == "":
        return None
    if not isinstance(value, datetime):
        try:
            value = dateutil.parser.isoparse(str(value))
        except (ValueError, OverflowError):
            return None
    return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")


def _duration(delta: timedelta) -> str:
    """A short rounded duration: "4 min", "2 h 5 min", "3 d 4 h"."""
    minutes = max(0, int(delta.total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} d {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"
