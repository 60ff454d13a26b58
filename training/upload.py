"""`nmu upload`: send a checked model.pkl to Numerai for daily auto-submission, failing loudly.

numerapi's `model_upload` PUTs the pickle to the pre-signed URL without looking at the HTTP status and then
registers the upload anyway, so a failed PUT ends in a "successful" upload of nothing. Here the three steps
run one by one through numerapi's `raw_query` with the same GraphQL documents — `computePickleUploadAuth`,
the PUT (status checked, transient 5xx/connection errors retried with backoff), `createComputePickleUpload`
— and success means Numerai returned an upload id. Keys come from the environment or `./.env` and are never
printed. Honours env `NUMERAI_API_URL` (see training.numerai_api).
"""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

import requests

from training.numerai_api import call, host_of, make_client, raw, resolve_model, scrub
from validation.artifacts import file_sha256, manifest_path, read_manifest, update_manifest
from validation.errors import NmuError
from validation.runtime.replica import RUNTIME_PYTHONS

PUBLIC_ENV = "NUMERAI_PUBLIC_ID"
SECRET_ENV = "NUMERAI_SECRET_KEY"
PUT_RETRIES = 3             # retries after the first attempt, for 5xx and connection errors
PUT_BACKOFF_SECONDS = 2.0   # first wait; doubles each retry
PUT_TIMEOUT = (10, 600)

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
        print(f"warning: `nmu check` passed with a caveat: {check['warning']}.")
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
    """PUT `data` to the pre-signed `url`; retries 5xx and connection errors; returns the final 2xx status."""
    delay = PUT_BACKOFF_SECONDS
    attempts = PUT_RETRIES + 1
    last = ""
    for attempt in range(1, attempts + 1):
        try:
            resp = requests.put(url, data=data, timeout=PUT_TIMEOUT)
        except requests.RequestException as exc:
            last = scrub(f"{type(exc).__name__}: {exc}")
        else:
            if 200 <= resp.status_code < 300:
                return resp.status_code
            last = f"HTTP {resp.status_code}"
            if resp.status_code < 500:
                break
        if attempt < attempts:
            time.sleep(delay)
            delay *= 2
    raise NmuError(
        f"Upload step 2/3 (PUT of the pickle to {host_of(url)}) failed with {last} after {attempt} attempt(s); "
        "nothing was registered with Numerai, try again later."
    )


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


def upload_command(model_path: str | Path, model_name: str, data_version: str | None = None,
                   docker_image: str = "auto", skip_check: bool = False) -> str:
    """Upload a checked pickle to the user's Numerai model with the docker image of its Python and the data
    version it was trained on (both from its manifest unless given); returns the upload id."""
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
    if wanted_image != built_image:
        raise NmuError(
            f"{model_path.name} was built with Python {python} and can run only in the image {built_image!r}, "
            f"not {wanted_image!r}: code pickled by value loads only in the Python minor version that built it."
        )
    if data_version is None:
        data_version = manifest_data_version(model_path, manifest)
    public_id, secret_key = load_keys()

    api = make_client(public_id, secret_key)
    model_id = resolve_model(api, model_name)
    images = call("Listing runtime images (model_upload_docker_images)", api.model_upload_docker_images, auth=True)
    image_name, image_id = _pick("model-upload docker image", wanted_image, images)
    if data_version and _UUID.match(data_version):
        version_name, version_id = data_version, data_version
    else:
        versions = call("Listing data versions (model_upload_data_versions)", api.model_upload_data_versions, auth=True)
        version_name, version_id = _pick("model-upload data version", data_version, versions)
    auth = raw(api, "Upload step 1/3 (computePickleUploadAuth)", UPLOAD_AUTH_QUERY,
               {"filename": model_path.name, "modelId": model_id}, auth=True, field="computePickleUploadAuth")
    if not isinstance(auth, dict) or not auth.get("url") or not auth.get("filename"):
        raise NmuError("Upload step 1/3 (computePickleUploadAuth) returned no upload URL; nothing was uploaded.")
    data = model_path.read_bytes()
    put_pickle(auth["url"], data)
    created = raw(api, "Upload step 3/3 (createComputePickleUpload)", CREATE_UPLOAD_MUTATION,
                  {"filename": auth["filename"], "tournament": api.tournament_id, "modelId": model_id,
                   "dataVersionId": version_id, "dockerImageId": image_id},
                  auth=True, field="createComputePickleUpload")
    upload_id = created.get("id") if isinstance(created, dict) else None
    if not upload_id:
        raise NmuError("Upload step 3/3 (createComputePickleUpload) returned no upload id; the upload is not registered.")

    update_manifest(model_path, upload={
        "id": upload_id, "model": model_name, "model_id": model_id, "time": datetime.now(timezone.utc).isoformat(),
        "docker_image": image_name, "data_version": version_name, "sha256": sha, "size_bytes": len(data),
    })
    print(f"Uploaded {model_path.name} ({len(data):,} bytes) to model {model_name} "
          f"({image_name}, data {version_name}): upload id {upload_id}")
    return upload_id
