"""`nmu refresh`: keep an uploaded model current while it auto-submits.

Every week Numerai's validation file gains the eras whose targets resolved. `nmu refresh MODEL.pkl` feeds the ones
after the pickle's as-of era to its factor-timing history (`NumeraiModel.update_factor_returns`: nothing else is
refitted, the trees stay byte for byte), writes the new pickle and its manifest (new as-of era, the parent pickle's
sha256), runs the runtime check, and with `--upload` takes it through Numerai's whole upload lifecycle (upload, Numerai's
validation, assignment, verified: training.upload). When nothing new has resolved it writes nothing and says so. Any
failure leaves both the local files and the uploaded model as they were: the new files replace the old ones only
together, after the check passed, and are put back if the upload fails or Numerai's validation of the new pickle
fails or times out (nothing is assigned then, so the model keeps running the previous pickle). One failure keeps the
new files: Numerai accepted the assignment but reading the models back failed (AssignedUnverified), since the model
most likely runs the new pickle then.

`--refit` retrains the shipped variant with the config recorded at training on the newest data, scores it against
the current model on the eras the current model never saw (REFIT_RULE), and replaces the current one only when the
new one is not worse and passes the check.
"""

from __future__ import annotations

import math
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from model.eras import era_key, era_number, sort_eras
from training.check import check_command
from training.config import config_from_dict
from training.console import Reporter, Silent, quiet
from training.data import REQUIRED_FILES, load_frame, read_data_info
from training.download import download_data
from training.experiment import (
    benchmark_for,
    build_model,
    fit_model,
    load_dataset,
    make_variant,
    refit_rows,
    resolved_rows,
    uses_benchmark,
)
from training.export import closed_over_model, export_pickle
from training.numerai_pickles import AssignedUnverified
from training.predict import load_pickle
from training.upload import NotAssigned, describe, upload_command
from validation.artifacts import (
    file_sha256,
    manifest_path,
    read_manifest,
    replace_together,
    update_manifest,
    why_not_there,
)
from validation.errors import NmuError
from validation.evaluation.scoring import era_corrs
from validation.evaluation.selection import paired_difference

DEFAULT_DOWNLOAD_DIR = Path("data") / "numerai"
MIN_REFIT_ERAS = 8
REFIT_RULE = ("replace the current model by the refit one when its mean per-era corr on the eras the current model "
              "never saw is not below the current model's by more than one standard error of their paired difference")


def pickled_model(model_path: Path) -> tuple[Callable[..., Any], Any]:
    """The live function in a pickle that `nmu train` (or `export_pickle`) wrote, and the NumeraiModel it closes over.

    Both carry the code the pickle was built with (the project is pickled by value): loaded in another process than
    the one that built the pickle, the model's classes are the pickle's own, not this installation's. So the model is
    run through its own live function, never through this installation's `make_predict`: that one's `EraIndex` is
    another class than the model's, and a model whose residualizer has exposures fails on it (a TypeError in
    `residualize_predictions`)."""
    predict = load_pickle(model_path)
    fitted = closed_over_model(predict)
    if fitted is None or not hasattr(fitted, "update_factor_returns"):
        raise NmuError(f"{model_path} holds no NumeraiModel (a pickle of another estimator): there is no timing "
                       "history to refresh; retrain it instead.")
    return predict, fitted


def fitted_model(model_path: Path) -> Any:
    """The NumeraiModel inside a pickle that `nmu train` (or `export_pickle`) wrote (see `pickled_model`)."""
    return pickled_model(model_path)[1]


def _manifest_of(model_path: Path) -> dict[str, Any]:
    manifest = read_manifest(model_path)
    missing = [k for k in ("pickle", "features", "target") if not manifest.get(k)]
    if not model_path.is_file():
        raise NmuError(f"{model_path} {why_not_there(model_path)}: build a pickle with `nmu train` first.")
    if missing:
        raise NmuError(f"{manifest_path(model_path)} lacks {', '.join(missing)}: refresh needs the manifest that "
                       "`nmu train` writes beside the pickle.")
    if manifest["pickle"].get("sha256") != file_sha256(model_path):
        raise NmuError(f"{model_path} is not the pickle its manifest describes (sha256 differs): rebuild it with "
                       "`nmu train`.")
    return manifest


# What a refresh reads (the new eras, and the check's live and validation files); a refit also reads train.
REFRESH_FILES = tuple(name for name in REQUIRED_FILES if name != "train.parquet")


def _data_dir(data: Path | None, download: bool, refit: bool, say: Any, version: str | None = None) -> Path:
    if download:
        out = data or DEFAULT_DOWNLOAD_DIR
        # the data version the pickle was trained on: its features and its eras' numbering are that version's (a
        # newer version is a new `nmu train`), and a directory keeps one version in every file
        download_data(out, version=version, files=None if refit else REFRESH_FILES)
        say(f"  downloaded the newest eras of data {version or '(the newest version)'}"
            f"{'' if refit else ' (all but train.parquet)'} into {out}")
        return out
    if data is None:
        raise NmuError("give the data to refresh from: --data DIR (with the newest validation.parquet) or --download.")
    if not (data / "validation.parquet").is_file():
        raise NmuError(f"{data / 'validation.parquet'} does not exist: download it with `nmu data download --out {data}` "
                       "or pass --download.")
    return data


def _targets(manifest: dict[str, Any]) -> list[str]:
    """The targets the pickle learnt: an ensemble's (main first), else the one."""
    return list(manifest.get("targets") or [manifest["target"]])


def _new_eras(data: Path, manifest: dict[str, Any], as_of: str | None) -> pd.DataFrame:
    """The resolved rows (of the main target) of the validation file in eras after the as-of era."""
    frame = load_frame(data / "validation.parquet", manifest["features"], targets=_targets(manifest))
    frame = resolved_rows(frame, manifest["target"])
    if as_of is not None:
        frame = frame.loc[np.array([era_key(e) > era_key(as_of) for e in frame["era"]], dtype=bool)]
    return frame


def refresh_command(model_path: str | Path, data: str | Path | None = None, download: bool = False,
                    upload: bool = False, model_name: str | None = None, refit: bool = False,
                    validation_eras: int = 50, reporter: Reporter | None = None,
                    upload_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Refresh (or, with `refit`, retrain) the pickle at `model_path` from the newest resolved eras; returns what was
    done ({"changed": bool, "as_of_era", "eras_added", "upload_id", "upload": UploadResult, ...}).

    `upload_options` are passed to `training.upload.upload_command` (`timeout`, `poll_interval`, ...)."""
    reporter = reporter or Reporter()
    say = reporter.say
    model_path = Path(model_path)
    if upload and not model_name:
        raise NmuError("--upload needs --model NAME (the Numerai model to upload to).")
    send = (lambda path: upload_command(path, model_name, **(upload_options or {}))) if upload else None
    manifest = _manifest_of(model_path)
    trained_on = (manifest.get("data") or {})
    version = trained_on.get("version") if trained_on.get("source") == "numerai" else None
    data_dir = _data_dir(Path(data) if data is not None else None, download, refit, say, version)
    if refit:
        return _refit(model_path, manifest, data_dir, send, validation_eras, reporter)

    predict, fitted = pickled_model(model_path)
    as_of = fitted.as_of_era_
    new = _new_eras(data_dir, manifest, as_of)
    if new.empty:
        newest = sort_eras(resolved_rows(load_frame(data_dir / "validation.parquet", [], targets=(manifest["target"],)),
                                         manifest["target"])["era"].unique())
        say(f"nothing new: {model_path.name} is current as of era {as_of} (newest resolved era in {data_dir}: "
            f"{newest[-1] if newest else 'none'}); nothing written, nothing uploaded.")
        return {"changed": False, "as_of_era": as_of, "eras_added": []}
    skipped = _skipped_eras(as_of, sort_eras(new["era"].unique()))
    if skipped:
        span = f"{skipped[0]}-{skipped[-1]}" if len(skipped) > 1 else f"{skipped[0]}"
        say(f"  note: {data_dir / 'validation.parquet'} has no resolved rows of {len(skipped)} era(s) ({span}) "
            f"between the pickle's as-of era {as_of} and the newer ones: the factor-timing history skips them for good "
            "(a validation file that has them, `nmu data download`, would fill them)")
    trees = fitted.booster_.model_to_string()
    targets = _targets(manifest)
    fitted.update_factor_returns(new[["era", *manifest["features"]]],
                                 new[targets] if len(targets) > 1 else new[targets[0]].to_numpy())
    if fitted.booster_.model_to_string() != trees:  # cannot happen: the booster is not touched
        raise NmuError("refreshing changed the trees; nothing was written.")
    added = sort_eras(new["era"].unique())
    record = {"parent_sha256": manifest["pickle"]["sha256"], "from_as_of_era": as_of, "to_as_of_era": fitted.as_of_era_,
              "eras_added": added, "eras_skipped": skipped, "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "data": {"dir": str(data_dir.resolve()), "version": read_data_info(data_dir)["version"]}}
    result = _replace(model_path, manifest, fitted, data_dir, record, send, validation_eras, predict)
    say(f"refreshed {model_path.name}: as of era {as_of} -> {fitted.as_of_era_} ({len(added)} new era(s): "
        f"{added[0]}-{added[-1]}); same trees; runtime check PASS"
        + _uploaded(result))
    return {"changed": True, "as_of_era": fitted.as_of_era_, "eras_added": added, **result}


def _skipped_eras(as_of: str | None, eras: list[str]) -> list[int]:
    """The era numbers missing between the pickle's as-of era and the newest resolved one: the history only moves
    forward, so eras left out now are never fed later (labels that are not numbers are not checked). The synthetic
    worlds leave such a gap by construction: their newest validation eras never get a target."""
    numbers = [era_number(e) for e in ([as_of] if as_of is not None else []) + list(eras)]
    if not numbers or not all(math.isfinite(n) for n in numbers):
        return []
    present = {int(n) for n in numbers}
    return [n for n in range(int(numbers[0]), int(numbers[-1]) + 1) if n not in present]


def _uploaded(result: dict[str, Any]) -> str:
    """The end of a refresh's line: what the upload did."""
    sent = result.get("upload")
    return "" if sent is None else f"; {describe(sent)}"


def _replace(model_path: Path, manifest: dict[str, Any], fitted: Any, data_dir: Path, record: dict[str, Any],
             send: Any, validation_eras: int, predict: Callable[..., Any] | None = None) -> dict[str, Any]:
    """Write the new pickle and manifest beside the old ones, check them, swap them in together, upload (`send`);
    put the old ones back if the upload or Numerai's validation of it fails. `predict`: the live function to write,
    the pickle's own around a refreshed model (its code is the pickle's), else a new one around `fitted`."""
    with tempfile.TemporaryDirectory(prefix=f".{model_path.stem}.refresh-", dir=model_path.parent) as tmp:
        staged = Path(tmp) / model_path.name
        export_pickle(fitted, staged, predict=predict)
        fresh = ("pickle", "check", "upload", "python", "packages", "exported", "written_by", "model", "as_of_era",
                 "refreshed", "refreshes", "code_from")  # what the new pickle's own record replaces
        kept = {k: v for k, v in manifest.items() if k not in fresh}
        history = [*manifest.get("refreshes", []), record]
        # the code the pickle runs: that of the pickle `nmu train` wrote, whatever version refreshes it (a refit's is
        # this installation's)
        code = {} if predict is None else {"code_from": manifest.get("code_from") or manifest["pickle"]["sha256"]}
        update_manifest(staged, **kept, **code, as_of_era=fitted.as_of_era_, refreshed=record, refreshes=history)
        with quiet("training.check"), quiet("validation.runtime"):  # the line below says how the check went
            checked = check_command(staged, data_dir, validation_eras=validation_eras)
        if not checked.passed:
            reason = read_manifest(staged)["check"]["reason"]
            raise NmuError(f"the refreshed pickle failed the runtime check ({reason}); {model_path} was left as it was.")
        result: dict[str, Any] = {"sha256": file_sha256(staged)}
        unverified = None
        try:
            with replace_together([(staged, model_path), (manifest_path(staged), manifest_path(model_path))]):
                if send is not None:
                    try:
                        result["upload"] = send(model_path)
                        result["upload_id"] = result["upload"].pickle_id
                    except AssignedUnverified as exc:  # the model most likely runs it now: keep it, then say so
                        unverified = exc
        except NotAssigned as exc:  # the earlier pickle is back in place: `nmu upload` would not find the new one
            raise NotAssigned(exc.what, f"{model_path} is the earlier pickle again, the one the model keeps; the "
                                        "refreshed one was not kept. Run the same `nmu refresh` again to refresh and "
                                        "upload anew.") from None
    if unverified is not None:
        raise AssignedUnverified(f"{unverified} The refreshed pickle is kept as {model_path}, with its manifest.")
    return result


def _refit(model_path: Path, manifest: dict[str, Any], data_dir: Path, send: Any, validation_eras: int,
           reporter: Reporter) -> dict[str, Any]:
    """Retrain with the recorded config on the newest data; replace the current model only if not worse."""
    say = reporter.say
    config = config_from_dict({k: v for k, v in (manifest.get("config") or {}).items() if v is not None},
                              source=f"{manifest_path(model_path)} (config)")
    current = fitted_model(model_path)
    ds = load_dataset(data_dir, read_data_info(data_dir)["source"], config, Silent())
    # judged on every resolved era the current model never saw; learnt from eras downsampled as `nmu train` does
    judgeable = pd.concat([ds.train, resolved_rows(ds.validation, ds.target)])
    everything = refit_rows(ds, config.era_step)
    seen = set(manifest.get("eras", {}).get("refit") or [])
    unseen = [e for e in sort_eras(judgeable["era"].unique()) if e not in seen and
              (current.as_of_era_ is None or era_key(e) > era_key(current.as_of_era_))]
    if len(unseen) < MIN_REFIT_ERAS:
        say(f"not refitted: only {len(unseen)} resolved era(s) after the current model's data (need "
            f"{MIN_REFIT_ERAS} to judge a refit); nothing written, nothing uploaded.")
        return {"changed": False, "as_of_era": current.as_of_era_, "eras_added": []}
    judge = judgeable.loc[judgeable["era"].isin(unseen).to_numpy()]
    earlier = [e for e in sort_eras(judgeable["era"].unique()) if era_key(e) < era_key(unseen[0])]
    before = earlier[: max(0, len(earlier) - config.resolved_embargo)]
    variant = manifest.get("shipped_variant", "full")
    base = build_model(config, ds.groups)
    train = everything.loc[everything["era"].isin(before).to_numpy()]
    with_benchmark = uses_benchmark(ds)  # as `nmu train` decided for the current model
    candidate = fit_model(make_variant(base, variant, config), train, ds, reporter, "refit candidate",
                          benchmark_for(train, ds.train_benchmark, ds.validation_benchmark) if with_benchmark else None,
                          config.compute)
    judge_bench = benchmark_for(judge, ds.train_benchmark, ds.validation_benchmark) if with_benchmark else None
    scores = {}
    for name, model in (("current", current), ("refit", candidate)):
        scores[name] = era_corrs(model.predict(ds.X(judge), benchmark=judge_bench), ds.y(judge), judge["era"])
    judged = paired_difference(scores["refit"], scores["current"])
    # an unmeasurable difference (too few eras, zero spread) counts as not worse: the refit saw more data
    se = judged["se"] if np.isfinite(judged["se"]) else float("inf")
    gain = judged["gain"] if np.isfinite(judged["gain"]) else 0.0
    not_worse = gain >= -se
    say(f"refit judged on {len(unseen)} era(s) {unseen[0]}-{unseen[-1]} the current model never saw: refit "
        f"{scores['refit'].mean():+.4f} vs current {scores['current'].mean():+.4f} (difference {gain:+.4f} "
        f"+- {se:.4f}); rule: {REFIT_RULE}")
    if not not_worse:
        say("kept the current model: the refit one is worse; nothing written, nothing uploaded.")
        return {"changed": False, "as_of_era": current.as_of_era_, "eras_added": [], "refit": "worse"}
    bench_all = benchmark_for(everything, ds.train_benchmark, ds.validation_benchmark) if with_benchmark else None
    final = fit_model(make_variant(base, variant, config), everything, ds, reporter, "refit", bench_all, config.compute)
    record = {"parent_sha256": manifest["pickle"]["sha256"], "from_as_of_era": current.as_of_era_,
              "to_as_of_era": final.as_of_era_, "refit": True, "judged_on": [unseen[0], unseen[-1]],
              "time": datetime.now(timezone.utc).isoformat(timespec="seconds"),
              "data": {"dir": str(data_dir.resolve()), "version": read_data_info(data_dir)["version"]}}
    manifest = {**manifest, "eras": {**manifest.get("eras", {}), "refit": sort_eras(everything["era"].unique())}}
    result = _replace(model_path, manifest, final, data_dir, record, send, validation_eras)
    say(f"refitted {model_path.name} on {everything['era'].nunique()} eras (as of era {final.as_of_era_}); runtime "
        "check PASS" + _uploaded(result))
    return {"changed": True, "as_of_era": final.as_of_era_, "eras_added": unseen, "refit": "replaced", **result}
