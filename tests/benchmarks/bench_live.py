"""Benchmark 4 (issue 6): the live pickle in the replica of Numerai's runtime (1 CPU, 4 GB watched, 10 minutes).

Run it by hand (pytest does not collect tests/benchmarks/), under the shared CPU lock:

    flock /tmp/nmu-cpu.lock python tests/benchmarks/bench_live.py [--scenario live deep diagnostics] [--no-assert]

Three scenarios on the synthetic world at Numerai's shape (`nmu data synthetic --eras 250 --stocks 6700
--features 2748`, made in --data once and reused), each fitted on a row sample of the train eras, exported with
training/export.py and run in the replica by validation/runtime.py:
  live         every component ("full"), all 2,748 features, 2,000 trees, the 6,700-row live era:
               predict < 60 s and peak < 2 GB;
  deep         the same with a deep booster (30,000 trees, depth 10, Numerai's deep recipe; fitted on few rows
               with a small min_data_in_leaf so the trees really reach depth 10): load + predict < 5 minutes;
  diagnostics  the live scenario's pickle on the newest 100 validation eras in one call: peak < 4 GB.
  ensemble     a TargetEnsemble of 4 members x 2,000 trees x 2,748 features (the live scenario's full model as each
               member, its residualizer once on the combination: members of other targets cost the same to run):
               the live era < 60 s; 100 validation eras in one call < 4 GB and < 10 minutes.
--refresh weekly fits the model `nmu train` builds for `refresh = "weekly"` (training.experiment.WEEKLY_TIMING: momentum
also kept on the pooled test, a window of 4 eras), which carries more momentum columns.
Each prints predict seconds, peak RSS, the frames' own in-memory size (the runner loads them lean), the
resident size before predict and what the predict added on top, beside the bound; exit 1 if a bound fails.
Fitted estimators are cached in --data/bench-live-models (keyed by the fit settings and the model sources
except the live path), so a rerun only exports and runs; --refit ignores the cache.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import pickle
import re
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from model import NumeraiModel, TargetEnsemble  # noqa: E402
from training.data import feature_groups, load_benchmark, load_feature_metadata, resolve_feature_set  # noqa: E402
from training.experiment import WEEKLY_TIMING  # noqa: E402
from training.export import export_pickle  # noqa: E402
from training.synthetic import SyntheticConfig, write_synthetic_world  # noqa: E402
from validation.artifacts import atomic_write_bytes  # noqa: E402
from validation.runtime.replica import ensure_runtime, run_pickle  # noqa: E402

MB = 2**20
SCENARIOS = ("live", "deep", "diagnostics", "ensemble")
ENSEMBLE_MEMBERS = 4
ENSEMBLE_SECONDS, ENSEMBLE_DIAGNOSTICS_SECONDS = 60.0, 600.0
LIVE_SECONDS, LIVE_PEAK_MB = 60.0, 2048.0
DEEP_SECONDS = 300.0
DIAGNOSTICS_PEAK_MB = 4096.0
# Numerai's deep LightGBM recipe (30k trees, lr 0.001, depth 10, 2**10 leaves, colsample 0.1). Numerai grows it
# on ~2.75M rows with min_data_in_leaf 10,000 (<= 275 leaves a tree); the cheap fit keeps that leaf budget with
# ~rows / min_data_in_leaf leaves (default 150 train eras x 27 rows / 16 = 253).
DEEP_PARAMS = {"learning_rate": 0.001, "max_depth": 10, "num_leaves": 1024, "colsample_bytree": 0.1}
MODEL_SOURCES_SKIPPED = ("live.py",)  # the live path is exported fresh each run: editing it needs no refit


# ------------------------------------------------------------------------------------------- the data
def ensure_world(data: Path, eras: int, stocks: int, features: int) -> None:
    """Make the synthetic world in `data` unless its files are already there (same generator as `nmu data synthetic`)."""
    needed = ("train.parquet", "validation.parquet", "live.parquet", "live_benchmark_models.parquet",
              "validation_benchmark_models.parquet", "train_benchmark_models.parquet", "features.json")
    if all((data / n).is_file() for n in needed):
        return
    start = time.perf_counter()
    print(f"making the synthetic world ({eras} eras x {stocks} stocks x {features} features) in {data} ...", flush=True)
    write_synthetic_world(data, SyntheticConfig.default(eras=eras, stocks=stocks, features=features))
    print(f"world made in {time.perf_counter() - start:.0f} s", flush=True)


def train_sample(data: Path, features: list[str], per_era: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The first `per_era` rows of every train era (stocks are in random order) and their benchmark rows."""
    pf = pq.ParquetFile(data / "train.parquet")
    parts = []
    for group in range(pf.num_row_groups):
        table = pf.read_row_group(group, columns=["id", "era", *features, "target"])
        era = pd.Series(table.column("era").to_numpy(zero_copy_only=False))
        keep = np.flatnonzero(era.groupby(era, sort=False).cumcount().to_numpy() < per_era)
        parts.append(table.take(keep).to_pandas())
    frame = pd.concat(parts)
    bench = load_benchmark(data / "train_benchmark_models.parquet").reindex(frame.index)
    return frame, bench


def validation_slice(data: Path, eras: int, work: Path) -> tuple[Path, Path, int]:
    """Files holding the newest `eras` validation eras (the data's own files when they hold exactly those)."""
    features, bench = data / "validation.parquet", data / "validation_benchmark_models.parquet"
    all_eras = sorted(pq.read_table(features, columns=["era"]).column("era").unique().to_pylist())
    chosen = all_eras[-eras:]
    if len(chosen) == len(all_eras):
        return features, bench, len(chosen)
    for src, dst in ((features, work / "validation_slice.parquet"), (bench, work / "validation_slice_bench.parquet")):
        pq.write_table(pq.read_table(src, filters=[("era", "in", chosen)]), dst)
    return work / "validation_slice.parquet", work / "validation_slice_bench.parquet", len(chosen)


# ------------------------------------------------------------------------------------------- the models
def _sources_digest() -> str:
    digest = hashlib.sha256()
    for path in sorted((ROOT / "model").glob("*.py")):
        if path.name not in MODEL_SOURCES_SKIPPED:
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()[:16]


def fitted_model(data: Path, name: str, settings: dict[str, Any], refit: bool) -> tuple[NumeraiModel, float]:
    """The "full" NumeraiModel fitted with `settings` on a train sample (from the cache when it matches)."""
    key = hashlib.sha256(json.dumps({**settings, "sources": _sources_digest()}, sort_keys=True).encode()).hexdigest()[:16]
    cache = data / "bench-live-models" / f"{name}-{key}.pkl"
    if cache.is_file() and not refit:
        return pickle.loads(cache.read_bytes()), 0.0
    metadata = load_feature_metadata(data)
    features = resolve_feature_set(metadata, "all")
    start = time.perf_counter()
    frame, bench = train_sample(data, features, settings["per_era"])
    model = NumeraiModel(feature_groups=feature_groups(metadata, features), lgbm_params=settings["lgbm_params"],
                         **settings.get("components", {}))
    model = model.variant("full")
    print(f"{name}: fitting on {len(frame):,} rows ({frame['era'].nunique()} train eras x {settings['per_era']}) "
          f"x {len(features)} features, {settings['lgbm_params']} ...", flush=True)
    model.fit(frame[["era", *features]], frame["target"].to_numpy(), benchmark=bench)
    seconds = time.perf_counter() - start
    cache.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(cache, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    return model, seconds


def describe(model: NumeraiModel) -> str:
    """What the fitted model kept of each component and the shape of its trees."""
    booster = model.booster_
    leaves = [int(x) for x in re.findall(r"^num_leaves=(\d+)$", booster.model_to_string(), re.M)]
    depth = _max_depth(booster, sample=50)
    pairs = 0 if model.interactions_ is None else len(model.interactions_.names_)
    timing = 0 if model.timing_ is None else len(model.timing_.feature_names_)
    momentum = 0 if model.timing_ is None else len(model.timing_.momentum_factors_)
    cluster_id = model.clusters_ is not None and model.clusters_.cluster_id_used_  # the components own their state
    parts = () if model.residualizer_ is None else model.residualizer_.parts_
    return (f"{booster.num_trees():,} trees, {np.mean(leaves):.0f} leaves a tree, depth up to {depth} (of 50 "
            f"sampled trees); engineered columns {len(model.engineered_names_)} (interactions {pairs}, timing "
            f"{timing} with {momentum} factors' momentum, cluster id {'on' if cluster_id else 'gated off'}); residualized on "
            f"{', '.join(parts) or 'nothing (gated off)'}")


def _max_depth(booster: Any, sample: int) -> int:
    """The deepest leaf among `sample` trees spread over the booster (0: a tree that is one leaf)."""
    trees = np.unique(np.linspace(0, booster.num_trees() - 1, sample).astype(int))
    return max(_depth(booster.dump_model(start_iteration=int(t), num_iteration=1)["tree_info"][0]["tree_structure"])
               for t in trees)


def _depth(node: dict) -> int:
    if "left_child" not in node:
        return 0
    return 1 + max(_depth(node["left_child"]), _depth(node["right_child"]))


# ------------------------------------------------------------------------------------------- the runs
def ensemble_of(model: Any, members: int) -> TargetEnsemble:
    """A fitted TargetEnsemble whose members are copies of `model` (its residualizer moved to the combination), the
    later ones sharing the first one's factor composites and cluster structure as `TargetEnsemble.fit` makes them:
    the predict cost of an ensemble of that many such members."""
    import copy

    template = model.get_params()
    ensemble = TargetEnsemble(NumeraiModel(**template), [f"target_{i}" for i in range(members)])
    ensemble.members_ = []
    for _ in range(members):
        member = copy.deepcopy(model)
        member.residualizer_ = None
        if ensemble.members_:  # the target-free work (factors, cluster structure) is the first member's, shared
            first = ensemble.members_[0]
            member.target_free_ = first.target_free_
            member.factors_ = first.factors_
        ensemble.members_.append(member)
    ensemble.target_free_ = ensemble.members_[0].target_free_
    ensemble.weights_ = np.full(members, 1.0 / members)
    ensemble.member_names_ = list(ensemble.targets)
    ensemble.residualizer_ = model.residualizer_
    ensemble.feature_names_in_ = model.feature_names_in_
    ensemble.n_features_in_ = model.n_features_in_
    ensemble.benchmark_columns_ = model.benchmark_columns_
    ensemble.as_of_era_ = model.as_of_era_
    return ensemble


def report(name: str, r: dict[str, Any], bounds: list[tuple[str, float, float]]) -> bool:
    """Print one run's figures beside its bounds; True when it passed and met every bound."""
    frame = (r.get("frame_bytes") or 0) / MB
    before = (r.get("rss_before_predict_bytes") or 0) / MB
    during = (r.get("predict_peak_bytes") or 0) / MB
    print(f"{name}: {r['status'].upper()} {r.get('reason') or ''}| {r.get('rows')} rows, {r.get('eras')} era(s) | "
          f"load pickle {r.get('load_seconds')} s | predict {r.get('predict_seconds')} s | peak {r['peak_rss_mb']:.0f} MB")
    print(f"  memory: frames {frame:.0f} MB (loaded lean; Numerai's, not ours); resident after pickle "
          f"{(r.get('rss_after_pickle_bytes') or 0) / MB:.0f} MB, before predict {before:.0f} MB, peak during "
          f"predict {during:.0f} MB -> the predict adds {max(0.0, during - before):.0f} MB")
    ok = r["status"] == "pass"
    for what, value, bound in bounds:
        met = value < bound
        ok &= met
        print(f"  {what}: {value:.1f} (bound < {bound:g}) {'met' if met else 'NOT MET'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", nargs="+", choices=SCENARIOS, default=list(SCENARIOS))
    parser.add_argument("--data", type=Path, default=Path("/tmp/nmu-bench-live"))
    parser.add_argument("--eras", type=int, default=250, help="World size when --data must be made (60 %% train).")
    parser.add_argument("--stocks", type=int, default=6700)
    parser.add_argument("--features", type=int, default=2748)
    parser.add_argument("--trees", type=int, default=2000)
    parser.add_argument("--fit-per-era", type=int, default=1500,
                        help="Train rows per era for the 2,000-tree fit (at 400 the interaction and timing gates stay shut).")
    parser.add_argument("--deep-trees", type=int, default=30_000)
    parser.add_argument("--deep-per-era", type=int, default=27, help="Train rows per era for the deep fit.")
    parser.add_argument("--deep-min-leaf", type=int, default=16)
    parser.add_argument("--validation-eras", type=int, default=100)
    parser.add_argument("--refresh", choices=("never", "weekly"), default="never",
                        help="The model `nmu train` builds for this refresh setting (weekly: more momentum columns).")
    parser.add_argument("--refit", action="store_true")
    parser.add_argument("--no-assert", action="store_true")
    args = parser.parse_args()
    components = WEEKLY_TIMING if args.refresh == "weekly" else {}

    ensure_world(args.data, args.eras, args.stocks, args.features)
    python = ensure_runtime()
    ok = True
    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        work = Path(tmp)
        live, live_bench = args.data / "live.parquet", args.data / "live_benchmark_models.parquet"
        if {"live", "diagnostics", "ensemble"} & set(args.scenario):
            settings = {"per_era": args.fit_per_era, "lgbm_params": {"n_estimators": args.trees}}
            model, seconds = fitted_model(args.data, "full", {**settings, **({"components": components} if components
                                                                             else {})}, args.refit)
            info = export_pickle(model, work / "full.pkl")
            print(f"full model ({f'fitted in {seconds:.0f} s' if seconds else 'cached fit'}): {describe(model)}; "
                  f"pickle {info['size_bytes'] / MB:.1f} MB", flush=True)
            if "ensemble" in args.scenario:
                info = export_pickle(ensemble_of(model, ENSEMBLE_MEMBERS), work / "ensemble.pkl")
                print(f"ensemble: {ENSEMBLE_MEMBERS} members; pickle {info['size_bytes'] / MB:.1f} MB", flush=True)
            del model
        if "live" in args.scenario:
            r = run_pickle(python, work / "full.pkl", live, live_bench)
            ok &= report("live (full model, 2,000 trees, one era)", r, [
                ("predict seconds", r.get("predict_seconds") or float("inf"), LIVE_SECONDS),
                ("peak MB", r["peak_rss_mb"], LIVE_PEAK_MB)])
        if "deep" in args.scenario:
            params = {"n_estimators": args.deep_trees, **DEEP_PARAMS, "min_data_in_leaf": args.deep_min_leaf}
            model, seconds = fitted_model(args.data, "deep", {"per_era": args.deep_per_era, "lgbm_params": params},
                                          args.refit)
            info = export_pickle(model, work / "deep.pkl")
            print(f"deep model ({f'fitted in {seconds:.0f} s' if seconds else 'cached fit'}): {describe(model)}; "
                  f"pickle {info['size_bytes'] / MB:.1f} MB", flush=True)
            del model
            r = run_pickle(python, work / "deep.pkl", live, live_bench)
            total = (r.get("load_seconds") or float("inf")) + (r.get("predict_seconds") or float("inf"))
            ok &= report(f"deep (full model, {args.deep_trees:,} trees of depth 10, one era)", r, [
                ("load + predict seconds", total, DEEP_SECONDS)])
        if "diagnostics" in args.scenario:
            frame, bench, n_eras = validation_slice(args.data, args.validation_eras, work)
            r = run_pickle(python, work / "full.pkl", frame, bench, all_eras_at_once=True)
            ok &= report(f"diagnostics (full model, {n_eras} validation eras in one call)", r, [
                ("peak MB", r["peak_rss_mb"], DIAGNOSTICS_PEAK_MB)])
            if n_eras < args.validation_eras:
                print(f"  only {n_eras} validation eras in {args.data}: fewer than the {args.validation_eras} asked")
                ok = False
        if "ensemble" in args.scenario:
            r = run_pickle(python, work / "ensemble.pkl", live, live_bench)
            ok &= report(f"ensemble ({ENSEMBLE_MEMBERS} members x {args.trees:,} trees, one era)", r, [
                ("predict seconds", r.get("predict_seconds") or float("inf"), ENSEMBLE_SECONDS)])
            shares = [rec["message"] for rec in r.get("model_log") or [] if rec["logger"] == "model.ensemble"]
            print(f"  {shares[-1] if shares else 'no member shares logged'}")
            frame, bench, n_eras = validation_slice(args.data, args.validation_eras, work)
            r = run_pickle(python, work / "ensemble.pkl", frame, bench, all_eras_at_once=True)
            ok &= report(f"ensemble diagnostics ({n_eras} validation eras in one call)", r, [
                ("peak MB", r["peak_rss_mb"], DIAGNOSTICS_PEAK_MB),
                ("predict seconds", r.get("predict_seconds") or float("inf"), ENSEMBLE_DIAGNOSTICS_SECONDS)])
    if args.no_assert:
        return 0
    print("OK" if ok else "FAILED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
