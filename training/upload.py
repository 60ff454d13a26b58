"""`nmu upload`: send a checked model.pkl to Numerai and see it through to the pickle the model runs.

The whole lifecycle, each step checked:
1. upload: `computePickleUploadAuth`, the PUT (status checked, transient 5xx/connection errors retried with backoff;
   numerapi's `model_upload` ignores the PUT's status), `createComputePickleUpload`, which starts Numerai's own
   validation run of the pickle in its image;
2. wait: poll the pickle until Numerai's validation passes or fails, for at most `timeout` seconds;
3. assign: `assignPickleToModel`, then read the account's models to verify the model now runs the new pickle.
Success means validated, assigned and verified. A failed or timed-out validation assigns nothing (the model keeps
its earlier pickle), shows Numerai's reason, and exits non-zero. The manifest records every attempt and its
outcome. Keys come from the environment or `./.env` and are never printed. Honours env `NUMERAI_API_URL` (see
training.numerai_api). Nothing here prints: progress goes to the `training.upload` logger and the result is
returned (`UploadResult`) for the command layer to show.
"""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import requests

from training import numerai_pickles as numerai
from training.numerai_api import TransientError, call, host_of, make_client, raw, retried, scrub, transient
from training.numerai_pickles import ModelSlot, NumeraiPickle, RuntimeImage
from validation.artifacts import file_sha256, manifest_path, read_manifest, update_manifest
from validation.errors import NmuError
from validation.runtime.replica import RUNTIME_PYTHONS

_log = logging.getLogger(__name__)

PUBLIC_ENV = "NUMERAI_PUBLIC_ID"
SECRET_ENV = "NUMERAI_SECRET_KEY"
PUT_TIMEOUT = (10, 600)
VALIDATION_TIMEOUT = 45 * 60  # Numerai's validation run may take the runtime's 10 minutes, after a queue
POLL_INTERVAL = 15.0          # seconds between two reads of the pickle's validation status

# The GraphQL documents numerapi 2.20.8's `model_upload` sends.
UPLOAD_AUTH_QUERY = """
    query($filename: String! $modelId: String) {
        computePickleUploadAuth(filename: $filename
                                modelId: $modelId) {
            filename
            url
        }
    }
"""
CREATE_UPLOAD_MUTATION = """
    mutation($filename: String!
             $tournament: Int!
             $modelId: String
             $dataVersionId: String
             $dockerImageId: String) {
        createComputePickleUpload(filename: $filename
                                  tournament: $tournament
                                  modelId: $modelId
                                  dataVersionId: $dataVersionId
                                  dockerImageId: $dockerImageId) {
            id
        }
    }
"""

_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def read_dotenv(path: str | Path) -> dict[str, str]:
    """KEY=VALUE pairs of a .env file (comments, blank lines and `export ` prefixes allowed; quotes stripped)."""
    values: dict[str, str] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return values
    except (OSError, UnicodeDecodeError) as exc:
        raise NmuError(f"Cannot read {path}: {exc}.") from None
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        if line.startswith("export "):
            line = line[len("export "):].lstrip()
        key, value = line.split("=", 1)
        key, value = key.strip(), value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[key] = value
    return values


def load_keys(dotenv: str | Path = ".env") -> tuple[str, str]:
    """(public id, secret key) from env NUMERAI_PUBLIC_ID / NUMERAI_SECRET_KEY, else from `dotenv`."""
    public_id = os.environ.get(PUBLIC_ENV, "").strip()
    secret_key = os.environ.get(SECRET_ENV, "").strip()
    if not (public_id and secret_key):
        file_values = read_dotenv(dotenv)
        public_id = public_id or file_values.get(PUBLIC_ENV, "").strip()
        secret_key = secret_key or file_values.get(SECRET_ENV, "").strip()
    missing = [name for name, value in ((PUBLIC_ENV, public_id), (SECRET_ENV, secret_key)) if not value]
    if missing:
        raise NmuError(
            f"Numerai API keys are missing: set {' and '.join(missing)} in the environment or in ./.env "
            "(create a key with the upload scope at numer.ai under Account → API keys)."
        )
    return public_id, secret_key


def docker_image_name(python_version: str) -> str:
    """Numerai's image name for a Python version: "3.11.7" → "Python 3.11"."""
    parts = str(python_version).strip().split(".")
    if len(parts) < 2 or not parts[0].isdigit() or not parts[1].isdigit():
        raise NmuError(f"The manifest's python field {python_version!r} is not a version like 3.11.7.")
    return f"Python {parts[0]}.{parts[1]}"


def check_pickle(model_path: Path, manifest: dict, skip_check: bool) -> str:
    """The pickle's sha256, after refusing one that has not passed `nmu check` in this exact form."""
    if not model_path.is_file():
        raise NmuError(f"{model_path} does not exist; build it with `nmu train`.")
    if model_path.suffix != ".pkl":
        raise NmuError(f"{model_path} does not end in .pkl, which Numerai's model upload requires.")
    sha = file_sha256(model_path)
    if skip_check:
        return sha
    check = manifest.get("check") or {}
    if not check:
        raise NmuError(
            f"{model_path} has no runtime check in {manifest_path(model_path)}: run `nmu check {model_path}` "
            "first (or pass --skip-check to upload anyway)."
        )
    if check.get("passed") is not True:
        raise NmuError(
            f"{model_path} failed `nmu check` ({check.get('reason') or 'see its output'}): fix it and run the check "
            "again (or pass --skip-check to upload anyway)."
        )
    if check.get("sha256") != sha:
        raise NmuError(
            f"{model_path} changed since it passed `nmu check` (sha256 {sha[:12]}… vs checked "
            f"{str(check.get('sha256'))[:12]}…): run `nmu check {model_path}` again (or pass --skip-check)."
        )
    if check.get("warning"):
        _log.warning("warning: `nmu check` passed with a caveat: %s.", check["warning"])
    return sha


def _pick(kind: str, wanted: str, options: dict[str, str]) -> tuple[str, str]:
    """(name, id) of `wanted` (a name or an id) among `options` {name: id}; NmuError listing the names."""
    if wanted in options:
        return wanted, options[wanted]
    for name, oid in options.items():
        if _UUID.match(wanted) and oid == wanted:
            return name, oid
    raise NmuError(f"Numerai offers no {kind} {wanted!r}; available: {', '.join(sorted(options)) or 'none'}.")


def put_pickle(url: str, data: bytes) -> int:
    """PUT `data` to the pre-signed `url`; retries 5xx and connection errors (`retried`); returns the 2xx status."""
    step = f"Upload step 2/3 (PUT of the pickle to {host_of(url)})"
    advice = "nothing was registered with Numerai, try again later."

    def attempt() -> int:
        try:
            resp = requests.put(url, data=data, timeout=PUT_TIMEOUT)
        except requests.RequestException as exc:
            cause = scrub(f"{type(exc).__name__}: {exc}")
            if transient(exc):
                raise TransientError(cause) from None
            raise NmuError(f"{step} failed with {cause}; {advice}") from None
        if 200 <= resp.status_code < 300:
            return resp.status_code
        if resp.status_code >= 500:
            raise TransientError(f"HTTP {resp.status_code}")
        raise NmuError(f"{step} failed with HTTP {resp.status_code}; {advice}")

    return retried(attempt, step, advice)


def runtime_image_for(python: str) -> str:
    """The model-upload image that can run a pickle built with `python` ("3.11.7" → "Python 3.11"); NmuError when
    no image serves that Python (code pickled by value runs only on the Python minor version that built it)."""
    image = docker_image_name(python)
    if image.split()[-1] not in RUNTIME_PYTHONS:
        raise NmuError(
            f"this pickle was built with Python {python}, which no Numerai model-upload image runs (they serve "
            f"Python {', '.join(RUNTIME_PYTHONS)}): rebuild it with one of those."
        )
    return image


def manifest_data_version(model_path: Path, manifest: dict) -> str:
    """The Numerai data version the pickle was trained on, as `nmu train` recorded it in the manifest."""
    version = str((manifest.get("data") or {}).get("version") or "")
    if not version or version == "unknown":
        raise NmuError(
            f"{manifest_path(model_path)} does not record the data version {model_path.name} was trained on: pass "
            "--data-version (e.g. v5.3)."
        )
    return version


# ---- the lifecycle -----------------------------------------------------------------------------------------------
class NotAssigned(NmuError):
    """Numerai did not validate the uploaded pickle (it failed, or the wait ran out), or validated it but did not make
    it the model's (numerai_pickles.AssignmentRefused): nothing was assigned, the model keeps its earlier pickle.
    Exits 1: the input was fine, Numerai's handling of it was not. `what` says what happened,
    `advice` what to run next (`nmu refresh` gives its own: it puts the earlier pickle back)."""

    exit_code = 1

    def __init__(self, what: str, advice: str = "") -> None:
        separator = "\n" if "\n" in what else " "  # after a run's log lines, the advice on a line of its own
        super().__init__(f"{what}{separator}{advice}".strip())
        self.what, self.advice = what, advice


@dataclass(frozen=True)
class UploadResult:
    """What `upload_command` did.

    Attributes
    ----------
    outcome : str
        "assigned" (validated by Numerai, assigned to the model and verified), "not assigned" (uploaded with
        `wait=False`: Numerai is still validating it) or "already assigned" (the model runs these bytes already;
        nothing was uploaded).
    pickle_id : str
        Numerai's id of the pickle (the upload id).
    """

    outcome: str
    model: str
    model_id: str
    pickle_id: str
    filename: str
    sha256: str
    size_bytes: int
    docker_image: str
    data_version: str
    validation_status: str | None = None
    created_model: bool = False
    resumed: bool = False
    previous_pickle_id: str | None = None


def upload_filename(model_path: Path, sha: str) -> str:
    """The name the pickle gets on Numerai: its own name with the first 12 hex digits of its sha256, so that
    numer.ai and `nmu status` show which local file a model runs ("model.pkl" → "model-3f2a9c1b7d4e.pkl")."""
    return f"{model_path.stem}-{sha[:12]}{model_path.suffix}"


def runs_these_bytes(pickle: NumeraiPickle | None, sha: str, manifest: dict[str, Any]) -> bool:
    """Whether Numerai's pickle is the one with this sha256: by the sha tag in its filename, or because the manifest
    recorded these bytes as uploaded under its id."""
    if pickle is None:
        return False
    if sha[:12] in (pickle.filename or ""):
        return True
    record = manifest.get("upload") if isinstance(manifest.get("upload"), dict) else {}
    return record.get("id") == pickle.id and record.get("sha256") == sha


def choose_image(images: list[RuntimeImage], wanted: str) -> RuntimeImage:
    """The image named (or with the id) `wanted` among the ones Numerai serves; warns when it is experimental."""
    served = [image for image in images if wanted in (image.name, image.id)]
    default = next((image.name for image in images if image.default), None)
    if not served:
        raise NmuError(
            f"Numerai does not serve the image {wanted!r} for model uploads (it serves: "
            f"{', '.join(sorted(image.name for image in images)) or 'none'}"
            f"{f'; its default is {default}' if default else ''}): build the pickle with one of those Pythons.")
    image = served[0]
    if image.experimental:
        _log.warning("warning: Numerai marks the image %s as experimental%s.", image.name,
                     f"; its default is {default}" if default else "")
    elif default and default != image.name:
        _log.info("image %s (Numerai's default is %s; a pickle runs only in the Python that built it)", image.name,
                  default)
    return image


def _model_for_upload(api: Any, model_name: str, create: bool) -> tuple[ModelSlot, bool]:
    """The user's model, created first with `create` when the account has no model of that name."""
    models = numerai.account_models(api)
    if model_name in models:
        if create:
            _log.info("model %s exists already; uploading to it", model_name)
        return models[model_name], False
    if not create:
        raise NmuError(f"You have no Numerai Classic model named {model_name!r}; your models: "
                       f"{', '.join(sorted(models)) or 'none'} (pass --create-model to make it).")
    slot = numerai.add_model(api, model_name)
    _log.info("created the Numerai Classic model %s (id %s)", model_name, slot.id)
    return slot, True


def _resumable(api: Any, manifest: dict[str, Any], sha: str, model_name: str) -> NumeraiPickle | None:
    """An earlier upload of these very bytes to this model that Numerai is still validating or has validated but
    that was never assigned (`--no-wait`, a wait that ran out): picked up instead of uploading again."""
    record = manifest.get("upload") if isinstance(manifest.get("upload"), dict) else {}
    if not record.get("id") or record.get("sha256") != sha or record.get("model") != model_name:
        return None
    if record.get("outcome") not in ("not assigned", "timed out", "validating", "assigned, not verified"):
        return None
    try:
        state = numerai.pickle_by_id(api, record["id"])
    except NmuError:
        return None
    return None if state.failed else state


def _record(model_path: Path, manifest: dict[str, Any], **upload: Any) -> None:
    """The latest attempt as the manifest's `upload`, and every attempt in `uploads`."""
    attempts = [a for a in manifest.get("uploads") or [] if isinstance(a, dict) and a.get("id") != upload["id"]]
    manifest["upload"] = upload
    manifest["uploads"] = [*attempts, upload]
    update_manifest(model_path, upload=upload, uploads=manifest["uploads"])


def upload_command(model_path: str | Path, model_name: str, data_version: str | None = None,
                   docker_image: str = "auto", skip_check: bool = False, *, wait: bool = True,
                   timeout: float | None = None, poll_interval: float | None = None, force: bool = False,
                   create_model: bool = False) -> UploadResult:
    """Upload a checked pickle to the user's Numerai model, wait for Numerai's validation, assign and verify it.

    Parameters
    ----------
    model_path : str or Path
        The pickle; its manifest says which Python built it (so which image runs it) and the data version.
    model_name : str
        The Numerai Classic model to run it.
    data_version : str, optional
        The data version the pickle expects (default: the one its manifest records).
    docker_image : str, default="auto"
        The runtime image: "auto" is the image of the Python that built the pickle, the only one that can load it.
    skip_check : bool, default=False
        Upload even if the pickle has not passed `nmu check` in this exact form.
    wait : bool, default=True
        Wait for Numerai's validation and assign the pickle; False stops after the upload (nothing assigned).
    timeout : float, optional
        Seconds to wait for Numerai's validation (default: VALIDATION_TIMEOUT, 45 minutes).
    poll_interval : float, optional
        Seconds between two reads of the validation status (default: POLL_INTERVAL, 15 s).
    force : bool, default=False
        Upload even when the model already runs these bytes.
    create_model : bool, default=False
        Create the model slot first when the account has none of that name.

    Returns
    -------
    UploadResult
        Raises `NotAssigned` (exit 1) when Numerai's validation failed or did not end within `timeout`, with
        Numerai's reason, or Numerai refused the assignment; `AssignedUnverified` (exit 1) when the assignment may
        have been made but the models could not be read back; NmuError for anything the user can fix before
        uploading.
    """
    model_path = Path(model_path)
    manifest = read_manifest(model_path) if model_path.is_file() else {}
    sha = check_pickle(model_path, manifest, skip_check)
    python = manifest.get("python")
    if not python:
        raise NmuError(
            f"{manifest_path(model_path)} does not say which Python built {model_path.name} (field 'python'), "
            "so the runtime image cannot be chosen: rebuild it with `nmu train`."
        )
    built_image = runtime_image_for(python)
    wanted_image = built_image if docker_image == "auto" else docker_image
    if wanted_image != built_image and not _UUID.match(wanted_image):
        raise NmuError(
            f"{model_path.name} was built with Python {python} and can run only in the image {built_image!r}, "
            f"not {wanted_image!r}: code pickled by value loads only in the Python minor version that built it."
        )
    if data_version is None:
        data_version = manifest_data_version(model_path, manifest)
    public_id, secret_key = load_keys()

    api = make_client(public_id, secret_key)
    slot, created_model = _model_for_upload(api, model_name, create_model)
    previous = slot.pickle
    size = model_path.stat().st_size
    if not force and runs_these_bytes(previous, sha, manifest):
        return UploadResult(outcome="already assigned", model=model_name, model_id=slot.id, pickle_id=previous.id,
                            filename=upload_filename(model_path, sha), sha256=sha, size_bytes=size,
                            docker_image=previous.docker_image or built_image,
                            data_version=previous.data_version or data_version,
                            validation_status=previous.validation_status, previous_pickle_id=previous.id)
    image = choose_image(numerai.runtime_images(api), wanted_image)
    if image.name != built_image:
        raise NmuError(
            f"{model_path.name} was built with Python {python} and can run only in the image {built_image!r}, "
            f"not {image.name!r}: code pickled by value loads only in the Python minor version that built it."
        )
    if _UUID.match(data_version):
        version_name, version_id = data_version, data_version
    else:
        versions = call("Listing data versions (model_upload_data_versions)", api.model_upload_data_versions, auth=True)
        version_name, version_id = _pick("model-upload data version", data_version, versions)

    resumed = _resumable(api, manifest, sha, model_name) if wait and not force else None
    record = {"model": model_name, "model_id": slot.id, "docker_image": image.name, "data_version": version_name,
              "sha256": sha, "size_bytes": size, "previous_pickle_id": previous.id if previous else None}
    if resumed is not None:
        pickle_id, filename = resumed.id, upload_filename(model_path, sha)
        record.update((manifest.get("upload") or {}) | record)
        _log.info("resuming the earlier upload of these bytes: pickle %s (validation %s)", pickle_id,
                  resumed.validation_status or "not started")
    else:
        filename = upload_filename(model_path, sha)
        _log.info("uploading %s (%s bytes) as %s to model %s: image %s, data %s", model_path.name, f"{size:,}",
                  filename, model_name, image.name, version_name)
        auth = raw(api, "Upload step 1/3 (computePickleUploadAuth)", UPLOAD_AUTH_QUERY,
                   {"filename": filename, "modelId": slot.id}, auth=True, field="computePickleUploadAuth")
        if not isinstance(auth, dict) or not auth.get("url") or not auth.get("filename"):
            raise NmuError("Upload step 1/3 (computePickleUploadAuth) returned no upload URL; nothing was uploaded.")
        put_pickle(auth["url"], model_path.read_bytes())
        created = raw(api, "Upload step 3/3 (createComputePickleUpload)", CREATE_UPLOAD_MUTATION,
                      {"filename": auth["filename"], "tournament": api.tournament_id, "modelId": slot.id,
                       "dataVersionId": version_id, "dockerImageId": image.id},
                      auth=True, field="createComputePickleUpload")
        pickle_id = created.get("id") if isinstance(created, dict) else None
        if not pickle_id:
            raise NmuError("Upload step 3/3 (createComputePickleUpload) returned no upload id; the upload is not "
                           "registered.")
        record.update(id=pickle_id, filename=filename, time=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    record.update(id=pickle_id, outcome="validating" if wait else "not assigned", validation_status=None)
    _record(model_path, manifest, **record)

    def result(outcome: str, status: str | None) -> UploadResult:
        return UploadResult(outcome=outcome, model=model_name, model_id=slot.id, pickle_id=pickle_id, filename=filename,
                            sha256=sha, size_bytes=size, docker_image=image.name, data_version=version_name,
                            validation_status=status, created_model=created_model, resumed=resumed is not None,
                            previous_pickle_id=previous.id if previous else None)

    if not wait:
        _log.info("pickle %s is uploaded but NOT assigned: Numerai is validating it; `nmu upload %s --model %s` again "
                  "waits for the validation and assigns it", pickle_id, model_path, model_name)
        return result("not assigned", None)

    timeout = VALIDATION_TIMEOUT if timeout is None else timeout
    state = numerai.wait_for_validation(api, pickle_id, timeout, POLL_INTERVAL if poll_interval is None else poll_interval)
    kept = (f"model {model_name} keeps {'pickle ' + previous.id if previous else 'no pickle (none was assigned)'}")
    if state.failed:
        descriptions, logs, cause = numerai.failure_report(api, state)
        _record(model_path, manifest, **{**record, "outcome": "failed", "validation_status": state.validation_status,
                                         "reason": descriptions[-1] if descriptions else None, "likely_cause": cause})
        lines = [f"Numerai's validation of pickle {pickle_id} ({model_path.name}, {image.name}) failed; nothing was "
                 f"assigned: {kept}."]
        if descriptions:
            lines.append("Numerai's statuses: " + " → ".join(descriptions))
        if logs:
            lines.append("last lines of the run's log:")
            lines.extend(f"  {line}" for line in logs)
        if cause:
            lines.append(f"likely cause: {cause}.")
        raise NotAssigned("\n".join(lines))
    if not state.validated:
        _record(model_path, manifest, **{**record, "outcome": "timed out", "validation_status": state.validation_status})
        raise NotAssigned(
            f"Numerai had not validated pickle {pickle_id} after {numerai.duration(timeout)} (status "
            f"{state.validation_status or 'not started'}); nothing was assigned: {kept}.",
            f"Run `nmu upload {model_path} --model {model_name}` again to go on waiting (nothing is uploaded twice), or "
            f"`nmu status --model {model_name}`.")
    try:
        numerai.assign(api, slot, pickle_id)
    except numerai.AssignedUnverified:
        _record(model_path, manifest, **{**record, "outcome": "assigned, not verified",
                                         "validation_status": state.validation_status,
                                         "assigned_time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
        raise
    except numerai.AssignmentRefused as exc:  # validated, but Numerai would not make it the model's pickle
        _record(model_path, manifest, **{**record, "outcome": "not assigned", "validation_status": state.validation_status,
                                         "reason": str(exc)})
        raise NotAssigned(
            f"{str(exc).rstrip('.')}; pickle {pickle_id} is uploaded and validated but not assigned: {kept}.",
            f"Run `nmu upload {model_path} --model {model_name}` again to assign it (nothing is uploaded twice), or "
            "assign it on numer.ai.") from None
    _record(model_path, manifest, **{**record, "outcome": "assigned", "validation_status": state.validation_status,
                                     "assigned_time": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    return result("assigned", state.validation_status)


def describe(result: UploadResult) -> str:
    """The one line the command layer shows for an upload."""
    if result.outcome == "already assigned":
        return (f"model {result.model} already runs these bytes (pickle {result.pickle_id}, {result.docker_image}, "
                f"data {result.data_version}): nothing uploaded (--force uploads again)")
    if result.outcome == "not assigned":
        return (f"uploaded as pickle {result.pickle_id} ({result.docker_image}, data {result.data_version}), NOT "
                f"assigned: Numerai is validating it and model {result.model} still runs "
                f"{'pickle ' + result.previous_pickle_id if result.previous_pickle_id else 'no pickle'}; run the same "
                "`nmu upload` again to wait for the validation and assign it")
    return (f"model {result.model} now runs pickle {result.pickle_id} ({result.filename}, {result.size_bytes:,} bytes): "
            f"validated by Numerai, assigned and verified; image {result.docker_image}, data {result.data_version}")
