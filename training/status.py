"""`nmu status`: one look at whether auto-submission is alive and current, and what to do when it is not.

From Numerai (numerapi through training.numerai_api and training.numerai_pickles): the pickle Numerai runs for the
model (its filename, id, image, data version, validation / trigger / diagnostics status), its latest runs with their
statuses and descriptions (and the last log lines of a failed one), Numerai's diagnostics when it computed them, the
current round and when it opened, whether the model has a submission inserted since then, and its latest rounds'
scores (`submission_scores` in numerapi 3.x, `round_model_performances_v2` in 2.x). From the pickle's local manifest:
its sha256, the era its factor-timing history reaches, how long ago that history was last extended, the upload
record `nmu upload` left, and (metrics.json beside it) the local validation figures. One line says what to do when
something is wrong. A model that has not submitted yet is reported, not an error; bad keys and an unknown model name
are one sentence (NmuError). Keys are never printed. Nothing here prints: `status_command` returns what it found and
`status_lines` renders it for the command layer.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import dateutil.parser

from training import numerai_pickles as numerai
from training.numerai_api import call, make_client
from training.numerai_pickles import Diagnostics, NumeraiPickle, duration
from training.upload import load_keys, runs_these_bytes
from validation.artifacts import file_sha256, manifest_path, read_json_object, read_manifest
from validation.errors import NmuError

DEFAULT_PICKLE = Path("artifacts") / "model.pkl"
SCORE_ROUNDS = 4                           # rounds of scores shown
TRIGGERS_SHOWN = 3                         # the assigned pickle's latest runs shown
LOG_LINES = 8                              # last log lines of a failed run shown
STALE_WEEKS = 2                            # a timing history this old is worth a refresh (`nmu refresh`)
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
        The model's id (`numerai_pickles.model_slot`).

    Returns
    -------
    list of datetime
        Insertion times in UTC.
    """
    def read() -> list[datetime]:  # inside `call`: an answer of another shape is one sentence, not a traceback
        submissions = api.submission_ids(model_id)
        # numerapi leaves `insertedAt` as text (its post-processing looks the key up in the list, not in each entry)
        return sorted(t for t in (as_utc(s.get("insertedAt")) for s in submissions or []) if t is not None)

    return call("Reading the model's submissions (submission_ids)", read, auth=True)


def recent_scores(api: Any, model_id: str, rounds: int = SCORE_ROUNDS) -> list[dict[str, Any]]:
    """The model's corr-like scores in its latest `rounds` scored rounds, newest first.

    numerapi 3.x reads them with `submission_scores`; numerapi 2.x (Numerai's runtime pins 2.20.8) has only
    `round_model_performances_v2`, which 3.x deprecates.

    Parameters
    ----------
    api : numerapi.NumerAPI
        A client.
    model_id : str
        The model's id (`numerai_pickles.model_slot`).
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
        "upload_model", "upload_id", "upload_time", "uploaded_sha256", "upload_outcome" (how the last upload ended:
        assigned, failed, timed out, not assigned), "data_version", "docker_image" (None where unknown).
    """
    path = Path(pickle_path)
    now = now or datetime.now(timezone.utc)
    info: dict[str, Any] = dict.fromkeys(
        ("sha256", "as_of_era", "last_extended", "weeks_since_refresh", "upload_model", "upload_id", "upload_time",
         "uploaded_sha256", "upload_outcome", "data_version", "docker_image"))
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
                    upload_time=as_utc(upload.get("time")), uploaded_sha256=upload.get("sha256"),
                    upload_outcome=upload.get("outcome"))
        if upload.get("model") in (None, model_name):
            info.update(data_version=upload.get("data_version"), docker_image=upload.get("docker_image"))
    return info


# ---- the command -----------------------------------------------------------------------------------------------
def local_validation(pickle_path: Path) -> dict[str, Any] | None:
    """The shipped variant's validation figures from metrics.json beside the pickle (None when there is none)."""
    path = Path(pickle_path).parent / "metrics.json"
    if not path.is_file():
        return None
    try:
        metrics = read_json_object(path)
    except NmuError:
        return None
    shipped = (metrics.get("ship") or {}).get("shipped")
    figures = (metrics.get("models") or {}).get(shipped) if shipped else None
    if not isinstance(figures, dict):
        return None
    names = {"corr_mean": "corr mean", "corr_sharpe": "corr sharpe", "bmc_mean": "bmc mean"}
    return {"variant": shipped, "figures": {label: float(figures[key]) for key, label in names.items()
                                            if isinstance(figures.get(key), (int, float))}}


def _numerai_side(api: Any, pickle: NumeraiPickle | None) -> dict[str, Any]:
    """The assigned pickle's latest runs, a failed run's log, and Numerai's diagnostics."""
    side: dict[str, Any] = {"numerai_pickle": pickle, "triggers": [], "trigger_logs": [], "likely_cause": None,
                            "diagnostics": None, "diagnostics_unavailable": None}
    if pickle is None:
        return side
    side["triggers"] = list(pickle.triggers[-TRIGGERS_SHOWN:])
    latest = pickle.triggers[-1] if pickle.triggers else None
    if latest is not None and (latest.failed or pickle.failed):
        _, side["trigger_logs"], side["likely_cause"] = numerai.failure_report(api, pickle, LOG_LINES)
    if pickle.diagnostics_id:
        try:  # diagnostics are a courtesy, like scores
            side["diagnostics"] = numerai.diagnostics(api, pickle.diagnostics_id)
        except NmuError as exc:
            side["diagnostics_unavailable"] = str(exc).rstrip(".")
    return side


def next_step(status: dict[str, Any]) -> str:
    """The one line that says what to do (or that nothing needs doing)."""
    model, path = status["model"], status["pickle"]
    pickle: NumeraiPickle | None = status["numerai_pickle"]
    upload = f"`nmu upload {path} --model {model}`"
    if pickle is None:
        return f"next: no pickle is assigned to {model}, so Numerai runs nothing for it: {upload} uploads and assigns one"
    if pickle.failed:
        return (f"next: Numerai's validation of the assigned pickle failed"
                f"{': ' + status['likely_cause'] if status['likely_cause'] else ''}; fix it, `nmu check`, then {upload}")
    latest = pickle.triggers[-1] if pickle.triggers else None
    if latest is not None and latest.failed:
        reason = latest.descriptions[-1] if latest.descriptions else latest.status
        return (f"next: the latest run of the assigned pickle failed ({reason})"
                f"{'; likely cause: ' + status['likely_cause'] if status['likely_cause'] else ''}; "
                f"`nmu check {path}`, then {upload}")
    outcome = status.get("upload_outcome")
    if status["upload_model"] == model and outcome in ("failed", "timed out", "not assigned", "validating"):
        return (f"next: the last upload of {path} (pickle {status['upload_id']}) ended {outcome}, so {model} still runs "
                f"pickle {pickle.id}: {upload} {'waits and assigns it' if outcome != 'failed' else 'after a fix'}")
    if status["assigned_is_local"] is False:
        return f"next: Numerai runs pickle {pickle.id}, not the local {path}: {upload} if the local one should run"
    if status["round"] is not None and not status["submitted"] and status["round_open_time"] is not None:
        if datetime.now(timezone.utc) - status["round_open_time"] > timedelta(hours=3):
            return (f"next: no submission for round {status['round']} more than 3 h after it opened; the runs above "
                    "say why (or numer.ai → Models → the model's compute logs)")
    weeks = status["weeks_since_refresh"]
    if weeks is not None and weeks >= STALE_WEEKS:
        return (f"next: the timing history is about {weeks} weeks old: `nmu refresh {path} --download --upload "
                f"--model {model}` extends it")
    return "next: nothing to do: Numerai runs this pickle"


def status_command(model_name: str, pickle_path: Path | None = None) -> dict[str, Any]:
    """`nmu status`: what Numerai runs for the model and whether it is alive and current (nothing is printed).

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
        (`recent_scores`), "scores_unavailable" (why, or None); Numerai's side: "numerai_pickle" (the assigned
        `NumeraiPickle`, None when none), "triggers" (its latest runs), "trigger_logs" and "likely_cause" (of a failed
        run), "diagnostics" (`Diagnostics` or None), "assigned_is_local" (the assigned pickle is the local file: True,
        False, or None when unknown), "assigned_is_last_upload"; the local side: the `pickle_status` fields
        ("sha256", "as_of_era", "weeks_since_refresh", "data_version", "docker_image", "upload_outcome", ...) and
        "local_validation"; and "next_step", the one line of what to do. `status_lines` renders it.
    """
    path = Path(pickle_path) if pickle_path is not None else DEFAULT_PICKLE
    now = datetime.now(timezone.utc)
    local = pickle_status(path, model_name, now)  # a broken manifest is reported before any network call
    manifest = read_manifest(path) if local["manifest"] else {}
    public_id, secret_key = load_keys()
    api = make_client(public_id, secret_key)
    slot = numerai.model_slot(api, model_name)
    round_info = current_round(api)
    times = submission_times(api, slot.id)
    scores: list[dict[str, Any]] = []
    scores_unavailable = None
    try:  # scores are a courtesy: an API that no longer serves them must not hide the submission status
        scores = call("Reading the model's scores", lambda: recent_scores(api, slot.id))
    except NmuError as exc:
        scores_unavailable = str(exc).rstrip(".")
    side = _numerai_side(api, slot.pickle)

    this_round = [t for t in times if round_info and t >= round_info["open_time"]]
    assigned = slot.pickle
    status: dict[str, Any] = {
        "model": model_name, "model_id": slot.id,
        "round": round_info["number"] if round_info else None,
        "round_open_time": round_info["open_time"] if round_info else None,
        "round_close_staking_time": round_info["close_staking_time"] if round_info else None,
        "submitted": bool(this_round), "submission_time": this_round[-1] if this_round else None,
        "latest_submission_time": times[-1] if times else None,
        "scores": scores, "scores_unavailable": scores_unavailable, "pickle": str(path), **local, **side,
        "assigned_is_local": (None if assigned is None or not local["sha256"]
                              else runs_these_bytes(assigned, local["sha256"], manifest)),
        "assigned_is_last_upload": (None if assigned is None or not local["upload_id"]
                                    else assigned.id == local["upload_id"]),
        "local_validation": local_validation(path),
    }
    status["next_step"] = next_step(status)
    return status


def status_lines(status: dict[str, Any], now: datetime | None = None) -> list[str]:
    """The lines `nmu status` shows for what `status_command` found."""
    now = now or datetime.now(timezone.utc)
    lines = [f"model {status['model']} (Numerai Classic)"]
    lines.extend(_assigned_lines(status))
    latest = status["latest_submission_time"]
    latest_text = f"latest submission {_when(latest)}" if latest else "this model has no submissions at all"
    if status["round"] is None:
        lines.append(f"no round is open right now; {latest_text}")
    else:
        number, opened = status["round"], status["round_open_time"]
        close = status["round_close_staking_time"]
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
    lines.append(status["next_step"])
    return lines


def _figures(figures: dict[str, float]) -> str:
    return ", ".join(f"{name} {value:+.4f}" for name, value in figures.items()) or "no figures"


def _assigned_lines(status: dict[str, Any]) -> list[str]:
    """Numerai's side: the assigned pickle, its latest runs, a failed run's log, diagnostics beside local figures."""
    pickle: NumeraiPickle | None = status["numerai_pickle"]
    if pickle is None:
        return ["Numerai runs no pickle for this model (none is assigned)"]
    when = _when(as_utc(pickle.inserted_at)) if as_utc(pickle.inserted_at) else "at an unknown time"
    # the name the pickle was uploaded under, without the storage key's folder Numerai's upload auth may put before it
    shown = pickle.filename.rsplit("/", 1)[-1] if pickle.filename else "(no filename)"
    lines = [f"Numerai runs pickle {shown} (id {pickle.id}), image "
             f"{pickle.docker_image or 'unknown'}, data {pickle.data_version or 'unknown'}, uploaded {when}",
             f"  validation {pickle.validation_status or 'unknown'}, latest run {pickle.trigger_status or 'none yet'}, "
             f"diagnostics {pickle.diagnostics_status or 'none'}"]
    if status["assigned_is_local"] is True:
        lines.append(f"  it is the local {status['pickle']}")
    elif status["assigned_is_local"] is False:
        last = status["assigned_is_last_upload"]
        lines.append(f"  it is NOT the local {status['pickle']}"
                     + ("" if last is None else f" ({'but it is' if last else 'nor'} the pickle its manifest last "
                                                f"uploaded, {status['upload_id']})"))
    for trigger in status["triggers"]:
        started = as_utc(trigger.inserted_at)
        note = " (not a failure: the pickle ran, no round was open)" if trigger.no_open_round else ""
        lines.append(f"  run {_when(started) if started else trigger.id}: {' → '.join(trigger.descriptions) or trigger.status}"
                     f"{note}")
    if status["trigger_logs"]:
        lines.append("  last lines of the failed run's log:")
        lines.extend(f"    {line}" for line in status["trigger_logs"])
    diag: Diagnostics | None = status["diagnostics"]
    local = status["local_validation"]
    if diag is not None:
        lines.append(f"  Numerai's diagnostics ({diag.status or 'status unknown'}"
                     f"{f', {diag.eras} eras' if diag.eras else ''}): {_figures(diag.figures)}")
    elif status["diagnostics_unavailable"]:
        lines.append(f"  Numerai's diagnostics: not available ({status['diagnostics_unavailable']})")
    if local is not None and (diag is not None or status["diagnostics_unavailable"] is None):
        lines.append(f"  local validation (metrics.json, {local['variant']}): {_figures(local['figures'])}")
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
    outcome = f", {status['upload_outcome']}" if status["upload_outcome"] else ""
    lines.append(f"uploaded {when} (pickle id {status['upload_id'] or 'unknown'}{outcome}): data "
                 f"{status['data_version'] or 'unknown'}, image {status['docker_image'] or 'unknown'}")
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
    """A duration rounded down to whole minutes ("4 min", "2 h 5 min", "3 d 4 h")."""
    return duration(max(0, int(delta.total_seconds() // 60)) * 60)
