"""Numerai's side of a model upload: the runtime images, the pickles Numerai holds, their validation runs and
triggers, and which pickle each model runs.

Numerai's model-upload lifecycle (2026): upload auth → PUT → `createComputePickleUpload`, which starts Numerai's
own validation run of the pickle in its image → the pickle's `validationStatus` becomes validated (or failed) →
`assignPickleToModel(modelId, pickleId)` makes it the pickle Numerai runs for that model every round. numerapi
wraps only the first steps, so the rest are GraphQL documents sent through `training.numerai_api.raw` (same
client, same one-sentence errors). Each document selects only fields of Numerai's published schema
(`ComputePickleUpload`, `ComputePickleTrigger`, `InvocationLog`, `V2Diagnostics`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from training.numerai_api import GraphQLError, KeysRejected, call, raw
from validation.errors import NmuError

_log = logging.getLogger(__name__)

TOURNAMENT_CLASSIC = 8

_PICKLE_FIELDS = """
        id
        filename
        modelId
        assignedModelSlots
        validationStatus
        triggerStatus
        diagnosticsStatus
        diagnosticsId
        dockerImageName
        dataVersion
        insertedAt
        updatedAt
        triggers {
          id
          status
          insertedAt
          statuses {
            status
            description
            insertedAt
          }
        }
"""
RUNTIME_IMAGES_QUERY = """
    query {
      computePickleDockerImages {
        id
        name
        image
        tag
        default
        experimental
      }
    }
"""
PICKLE_QUERY = """
    query($id: ID) {
      computePickles(id: $id, unassigned: false) {""" + _PICKLE_FIELDS + """      }
    }
"""
ACCOUNT_MODELS_QUERY = """
    query {
      account {
        models {
          id
          name
          tournament
          computePickleUpload {""" + _PICKLE_FIELDS + """          }
        }
      }
    }
"""
ASSIGN_MUTATION = """
    mutation($modelId: String, $pickleId: ID) {
      assignPickleToModel(modelId: $modelId, pickleId: $pickleId)
    }
"""
ADD_MODEL_MUTATION = """
    mutation($name: String!, $tournament: Int!) {
      addModel(name: $name, tournament: $tournament) {
        id
        name
        tournament
      }
    }
"""
TRIGGER_LOGS_QUERY = """
    query($triggerId: ID!) {
      triggerLogs(triggerId: $triggerId) {
        timestamp
        message
      }
    }
"""
DIAGNOSTICS_QUERY = """
    query($id: ID) {
      diagnostics(id: $id) {
        id
        status
        erasAcceptedCount
        validationCorrMean
        validationCorrSharpe
        validationMmcMean
        validationBmcMean
        validationMaxDrawdown
      }
    }
"""

VALIDATED = ("validated", "succeeded", "success", "passed")
FAILED = ("failed", "failure", "error", "errored")
NO_OPEN_ROUND = "no currently open rounds"
"""The trigger description Numerai writes when a validated pickle found no round to submit to: not a failure."""

# What Numerai's trigger logs say, and what it usually means for a pickle built by this project.
LIKELY_CAUSES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("segmentation fault", "unknown opcode", "bad marshal data", "numpy.core.multiarray failed to import",
      "numpy.dtype size changed"),
     "the pickle's Python or numpy does not match the image: rebuild it with that image's pins "
     "(pip install -c validation/runtime/pins/py3.X.txt -e .) and run `nmu check` before uploading"),
    (("modulenotfounderror", "no module named"),
     "the pickle needs a module that the image lacks: `nmu check` runs it without this project installed and "
     "names the module"),
    (("memoryerror", "out of memory", "killed"),
     "the pickle ran out of the runtime's 4 GB: `nmu check` measures its peak memory"),
    (("timed out", "timeout", "time limit"),
     "the pickle ran past the runtime's 10 minutes: `nmu check` measures the live era's time on one CPU"),
)


# ---- what Numerai answers ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RuntimeImage:
    """One of Numerai's model-upload images (`computePickleDockerImages`)."""

    id: str
    name: str
    image: str | None = None
    tag: str | None = None
    default: bool = False
    experimental: bool = False


@dataclass(frozen=True)
class TriggerStatus:
    """One status a trigger went through, with Numerai's description of it."""

    status: str
    description: str | None
    inserted_at: str | None


@dataclass(frozen=True)
class Trigger:
    """One run of a pickle in Numerai's image (the validation run, or a round's run)."""

    id: str
    status: str | None
    inserted_at: str | None
    statuses: tuple[TriggerStatus, ...] = ()

    @property
    def failed(self) -> bool:
        """The trigger ended in failure (a validated pickle that found no open round did not fail)."""
        return is_failed(self.status) and not self.no_open_round

    @property
    def no_open_round(self) -> bool:
        """Numerai said "No currently open rounds!": the pickle ran; there was nothing to submit to."""
        return any(NO_OPEN_ROUND in (s.description or "").lower() for s in self.statuses)

    @property
    def descriptions(self) -> list[str]:
        """The statuses' descriptions, oldest first, as "status: description"."""
        return [f"{s.status}: {s.description}" if s.description else s.status for s in self.statuses]


@dataclass(frozen=True)
class NumeraiPickle:
    """A pickle as Numerai holds it (`ComputePickleUpload`)."""

    id: str
    filename: str | None = None
    model_id: str | None = None
    assigned_model_ids: tuple[str, ...] = ()
    validation_status: str | None = None
    trigger_status: str | None = None
    diagnostics_status: str | None = None
    diagnostics_id: str | None = None
    docker_image: str | None = None
    data_version: str | None = None
    inserted_at: str | None = None
    updated_at: str | None = None
    triggers: tuple[Trigger, ...] = ()

    @property
    def validated(self) -> bool:
        """Numerai's validation run of this pickle passed."""
        return is_validated(self.validation_status)

    @property
    def failed(self) -> bool:
        """Numerai's validation run of this pickle failed."""
        return is_failed(self.validation_status)

    def failing_trigger(self) -> Trigger | None:
        """The newest trigger that failed (not counting "no open round"), else None."""
        failed = [t for t in self.triggers if t.failed]
        return failed[-1] if failed else None


@dataclass(frozen=True)
class ModelSlot:
    """One of the account's Numerai Classic models and the pickle it runs (None: no pickle assigned)."""

    id: str
    name: str
    pickle: NumeraiPickle | None = None


@dataclass(frozen=True)
class Diagnostics:
    """Numerai's diagnostics of a pickle: the figures it computed on the validation eras."""

    id: str
    status: str | None
    eras: int | None = None
    figures: dict[str, float] = field(default_factory=dict)


def is_validated(status: str | None) -> bool:
    """A validation status that means passed."""
    return (status or "").strip().lower() in VALIDATED


def is_failed(status: str | None) -> bool:
    """A validation or trigger status that means failed."""
    return (status or "").strip().lower() in FAILED


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _pickle(entry: dict[str, Any]) -> NumeraiPickle:
    triggers = tuple(
        Trigger(id=str(t.get("id")), status=_text(t.get("status")), inserted_at=_text(t.get("insertedAt")),
                statuses=tuple(TriggerStatus(status=str(s.get("status")), description=_text(s.get("description")),
                                             inserted_at=_text(s.get("insertedAt")))
                               for s in sorted(t.get("statuses") or [], key=lambda s: str(s.get("insertedAt") or ""))))
        for t in sorted(entry.get("triggers") or [], key=lambda t: str(t.get("insertedAt") or "")))
    return NumeraiPickle(
        id=str(entry["id"]), filename=_text(entry.get("filename")), model_id=_text(entry.get("modelId")),
        assigned_model_ids=tuple(str(m) for m in entry.get("assignedModelSlots") or []),
        validation_status=_text(entry.get("validationStatus")), trigger_status=_text(entry.get("triggerStatus")),
        diagnostics_status=_text(entry.get("diagnosticsStatus")), diagnostics_id=_text(entry.get("diagnosticsId")),
        docker_image=_text(entry.get("dockerImageName")), data_version=_text(entry.get("dataVersion")),
        inserted_at=_text(entry.get("insertedAt")), updated_at=_text(entry.get("updatedAt")), triggers=triggers)


# ---- reading Numerai --------------------------------------------------------------------------------------------
def runtime_images(api: Any) -> list[RuntimeImage]:
    """The images Numerai serves for model uploads, with which is its default and which are experimental."""
    entries = raw(api, "Listing runtime images (computePickleDockerImages)", RUNTIME_IMAGES_QUERY, auth=True,
                  field="computePickleDockerImages")
    return [RuntimeImage(id=str(e["id"]), name=str(e["name"]), image=_text(e.get("image")), tag=_text(e.get("tag")),
                         default=bool(e.get("default")), experimental=bool(e.get("experimental")))
            for e in entries or [] if e and e.get("id") and e.get("name")]


def account_models(api: Any) -> dict[str, ModelSlot]:
    """The account's Numerai Classic models by name, each with the pickle Numerai runs for it.

    This is the first call made with the user's keys, so any error of it means the keys (`KeysRejected`).
    """
    def run() -> dict[str, ModelSlot]:
        result = api.raw_query(ACCOUNT_MODELS_QUERY, authorization=True, retries=3, delay=1, backoff=2)
        models = result["data"]["account"]["models"]
        return {str(m["name"]): ModelSlot(id=str(m["id"]), name=str(m["name"]),
                                          pickle=_pickle(m["computePickleUpload"]) if m.get("computePickleUpload") else None)
                for m in models or [] if m and m.get("tournament") in (None, TOURNAMENT_CLASSIC)}

    return call("Reading your models (account)", run, auth=True, first_auth=True)


def model_slot(api: Any, model_name: str) -> ModelSlot:
    """The user's model `model_name`; NmuError listing the user's models when there is none of that name."""
    models = account_models(api)
    if model_name not in models:
        raise NmuError(f"You have no Numerai Classic model named {model_name!r}; your models: "
                       f"{', '.join(sorted(models)) or 'none'} (`nmu upload --create-model` makes one).")
    return models[model_name]


def pickle_by_id(api: Any, pickle_id: str) -> NumeraiPickle:
    """Numerai's record of the pickle `pickle_id` (its validation status and triggers)."""
    entries = raw(api, "Reading the pickle's validation (computePickles)", PICKLE_QUERY, {"id": pickle_id},
                  auth=True, field="computePickles")
    try:
        for entry in entries or []:
            if entry and str(entry.get("id")) == str(pickle_id):
                return _pickle(entry)
    except (AttributeError, TypeError, KeyError) as exc:
        raise NmuError(f"Reading the pickle's validation (computePickles) gave an answer of another shape than "
                       f"Numerai's ({type(exc).__name__}: {exc}); try again later.") from None
    raise NmuError(f"Numerai has no pickle with id {pickle_id}: it may have been deleted on numer.ai.")


def trigger_logs(api: Any, trigger_id: str, last: int = 20) -> list[str]:
    """The last `last` log lines of a trigger's run in Numerai's image (empty when Numerai keeps none)."""
    entries = raw(api, "Reading the run's log (triggerLogs)", TRIGGER_LOGS_QUERY, {"triggerId": trigger_id},
                  auth=True, field="triggerLogs")
    ordered = sorted((e for e in entries or [] if e), key=lambda e: e.get("timestamp") or 0)
    return [str(e.get("message") or "").rstrip() for e in ordered][-last:]


def diagnostics(api: Any, diagnostics_id: str) -> Diagnostics | None:
    """Numerai's diagnostics `diagnostics_id` (None when it has none under that id)."""
    entries = raw(api, "Reading Numerai's diagnostics (diagnostics)", DIAGNOSTICS_QUERY, {"id": diagnostics_id},
                  auth=True, field="diagnostics")
    entry = entries[0] if isinstance(entries, list) and entries else entries
    if not isinstance(entry, dict):
        return None
    names = {"validationCorrMean": "corr mean", "validationCorrSharpe": "corr sharpe", "validationMmcMean": "mmc mean",
             "validationBmcMean": "bmc mean", "validationMaxDrawdown": "max drawdown"}
    figures = {label: float(entry[key]) for key, label in names.items() if entry.get(key) is not None}
    eras = entry.get("erasAcceptedCount")
    return Diagnostics(id=str(entry.get("id") or diagnostics_id), status=_text(entry.get("status")),
                       eras=int(eras) if eras is not None else None, figures=figures)


# ---- changing Numerai -------------------------------------------------------------------------------------------
class AssignedUnverified(NmuError):
    """Numerai accepted the assignment of a pickle, but reading the models back to verify it failed: the model most
    likely runs the new pickle, so its local copy must be kept. Exits 1, as an upload Numerai did not assign: the
    input was fine."""

    exit_code = 1


class AssignmentRefused(NmuError):
    """Numerai did not make the pickle the model's: it answered the assignment with an error, or the answer was lost
    and the model, read back, still runs the pickle it ran before. Nothing changed."""


def assign(api: Any, model: ModelSlot, pickle_id: str) -> None:
    """Make `pickle_id` the pickle Numerai runs for `model`, then verify it by reading the account's models.

    AssignmentRefused when Numerai refused the assignment (a GraphQL error), or its answer was lost and the model
    still runs its earlier pickle; a lost answer is no failure when the model runs `pickle_id` after all.
    AssignedUnverified when the models cannot be read back after an assignment that may have been made; NmuError
    when the model runs some other pickle."""
    lost = None
    try:
        raw(api, "Assigning the pickle to the model (assignPickleToModel)", ASSIGN_MUTATION,
            {"modelId": model.id, "pickleId": pickle_id}, auth=True, field="assignPickleToModel")
    except GraphQLError as exc:  # read and refused
        raise AssignmentRefused(str(exc)) from None
    except KeysRejected:
        raise
    except NmuError as exc:  # no answer (a 5xx, a reset, a timeout): it may have been made
        lost = str(exc).rstrip(".")
    sent = (f"The answer to the assignment of pickle {pickle_id} to {model.name} was lost ({lost})" if lost else
            f"Numerai accepted the assignment of pickle {pickle_id} to {model.name}")
    try:
        now = account_models(api).get(model.name)
    except NmuError as exc:
        raise AssignedUnverified(
            f"{sent}, but reading the models back to verify it failed ({str(exc).rstrip('.')}): "
            f"the model {'may run' if lost else 'most likely runs'} the new pickle; `nmu status --model "
            f"{model.name}` shows which it runs.") from None
    running = now.pickle.id if now is not None and now.pickle is not None else None
    if running == pickle_id:
        return
    before = model.pickle.id if model.pickle is not None else None
    if lost and running == before:
        raise AssignmentRefused(f"{sent}, and the model, read back, runs "
                                f"{'pickle ' + running if running else 'no pickle'} as before")
    raise NmuError(f"{sent}, but the model runs "
                   f"{'pickle ' + running if running else 'no pickle'}: assign it on numer.ai (Models → "
                   f"{model.name} → upload) or run `nmu upload` again.")


def add_model(api: Any, name: str) -> ModelSlot:
    """Create a Numerai Classic model slot named `name` (`addModel`)."""
    created = raw(api, f"Creating the model {name!r} (addModel)", ADD_MODEL_MUTATION,
                  {"name": name, "tournament": TOURNAMENT_CLASSIC}, auth=True, field="addModel")
    if not isinstance(created, dict) or not created.get("id"):
        raise NmuError(f"Creating the model {name!r} (addModel) returned no model id.")
    return ModelSlot(id=str(created["id"]), name=str(created.get("name") or name))


# ---- waiting for the validation ---------------------------------------------------------------------------------
def wait_for_validation(api: Any, pickle_id: str, timeout: float, poll_interval: float,
                        clock: Callable[[], float] = time.monotonic) -> NumeraiPickle:
    """Poll the pickle until Numerai's validation ends or `timeout` seconds pass; returns the last record seen.

    A progress line is logged (INFO) at each poll whose status changed, and at least once a minute.
    """
    start = clock()
    last_status: str | None = None
    last_said = start
    while True:
        state = pickle_by_id(api, pickle_id)
        elapsed = clock() - start
        if state.validated or state.failed:
            _log.info("Numerai's validation of pickle %s: %s (%s)", pickle_id, state.validation_status,
                      duration(elapsed))
            return state
        if state.validation_status != last_status or clock() - last_said >= 60:
            _log.info("waiting for Numerai's validation of pickle %s: %s (%s of at most %s)", pickle_id,
                      state.validation_status or "not started", duration(elapsed), duration(timeout))
            last_status, last_said = state.validation_status, clock()
        if elapsed >= timeout:
            return state
        time.sleep(max(0.0, min(poll_interval, timeout - elapsed)))


def likely_cause(lines: list[str]) -> str | None:
    """What a failing run's status descriptions and log lines usually mean, when a known pattern is in them."""
    text = "\n".join(lines).lower()
    for patterns, cause in LIKELY_CAUSES:
        if any(p in text for p in patterns):
            return cause
    return None


def failure_report(api: Any, state: NumeraiPickle, log_lines: int = 12) -> tuple[list[str], list[str], str | None]:
    """(status descriptions, last log lines, likely cause) of a pickle's failing trigger."""
    trigger = state.failing_trigger() or (state.triggers[-1] if state.triggers else None)
    if trigger is None:
        return [], [], None
    try:
        logs = trigger_logs(api, trigger.id, log_lines)
    except NmuError as exc:  # the reason must still be shown when the logs cannot be read
        logs = [f"(the run's log could not be read: {exc})"]
    return trigger.descriptions, logs, likely_cause([*trigger.descriptions, *logs])


def duration(seconds: float) -> str:
    """A short rounded duration: "45 s", "4 min", "4 min 5 s", "2 h 5 min", "3 d 4 h"."""
    seconds = max(0, int(round(seconds)))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    return f"{secs} s"
