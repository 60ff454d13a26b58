"""Test helpers for the pickle tests: a tiny fitted stand-in with the estimator's live contract
(`predict(X, benchmark=None)` ranked per era in (0, 1], `feature_names_in_`), small Numerai-shaped frames,
and broken predict functions for the runtime-replica failure tests."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def python_of_its_own(*args: str, timeout: float = 600, env: dict[str, str] | None = None,
                      **kwargs) -> subprocess.CompletedProcess:
    """`python ARGS` in a process of its own (this checkout first on its path, `env` added to the environment):
    what a command does when nothing of this test process is loaded, e.g. a pickle built here loaded there."""
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})}, **kwargs)


def rank_per_era(values: np.ndarray, eras: np.ndarray) -> np.ndarray:
    """Average ranks within each era scaled to (0, 1]."""
    s = pd.Series(values)
    return s.groupby(np.asarray(eras)).rank(method="average", pct=True).to_numpy()


class StandInModel:
    """A fitted LightGBM booster with the live contract of model.NumeraiModel (used until/besides it)."""

    def __init__(self, n_estimators: int = 20, benchmark_weight: float = 0.0, random_state: int = 0):
        self.n_estimators = n_estimators
        self.benchmark_weight = benchmark_weight
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y, benchmark: pd.DataFrame | None = None) -> StandInModel:
        """Fit on the feature columns of X (everything but `era`/`data_type`)."""
        self.feature_names_in_ = [c for c in X.columns if c not in ("era", "data_type")]
        data = lgb.Dataset(X[self.feature_names_in_].to_numpy(np.float32), label=np.asarray(y, dtype=np.float64))
        params = {"objective": "regression", "num_leaves": 8, "learning_rate": 0.1, "verbose": -1,
                  "seed": self.random_state, "num_threads": 1, "deterministic": True}
        self.booster_ = lgb.train(params, data, num_boost_round=self.n_estimators)
        if self.benchmark_weight:
            self.benchmark_columns_ = ["v52_lgbm_ender20"]
        return self

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        """Booster output (plus a share of the benchmark when given and weighted), ranked per era."""
        raw = self.booster_.predict(X[self.feature_names_in_].to_numpy(np.float32))
        if benchmark is not None and self.benchmark_weight:
            raw = raw + self.benchmark_weight * benchmark[self.benchmark_columns_[0]].to_numpy(np.float64)
        return rank_per_era(raw, X["era"].to_numpy() if "era" in X else np.zeros(len(X)))


def make_ids(n: int, rng: np.random.Generator) -> np.ndarray:
    """Numerai-style ids: "n" + 15 hex digits, unique."""
    raw = rng.choice(16 ** 12, size=n, replace=False)
    return np.array([f"n{x:015x}" for x in raw], dtype=object)


def make_frame(eras: int = 6, stocks: int = 200, features: int = 12, seed: int = 0,
               first_era: int = 1, nan_share: float = 0.0) -> pd.DataFrame:
    """A Numerai-shaped frame: index id, era, data_type, int8 features 0..4 (float32 with NaN), target."""
    rng = np.random.default_rng(seed)
    n = eras * stocks
    X = rng.integers(0, 5, size=(n, features)).astype(np.int8)
    names = [f"feature_{i:03d}" for i in range(features)]
    frame = pd.DataFrame(X, columns=names, index=pd.Index(make_ids(n, rng), name="id"))
    if nan_share:
        for c in names[: max(1, features // 3)]:
            col = frame[c].astype(np.float32)
            col[rng.random(n) < nan_share] = np.nan
            frame[c] = col
    frame.insert(0, "era", np.repeat([f"{first_era + e:04d}" for e in range(eras)], stocks))
    frame.insert(1, "data_type", "train")
    signal = X[:, 0].astype(float) - X[:, 1] + rng.normal(0, 2, n)
    target = pd.Series(signal).groupby(frame["era"].to_numpy()).rank(pct=True).to_numpy()
    frame["target"] = (np.round(target * 4) / 4).astype(np.float32)
    return frame


def make_benchmark(frame: pd.DataFrame, seed: int = 0) -> pd.DataFrame:
    """A benchmark frame for `frame`: index id, era, float32 v52_lgbm_ender20/60 ranked per era."""
    rng = np.random.default_rng(seed)
    out = pd.DataFrame(index=frame.index)
    out["era"] = frame["era"].to_numpy()
    for col in ("v52_lgbm_ender20", "v52_lgbm_ender60"):
        out[col] = rank_per_era(rng.random(len(frame)), out["era"].to_numpy()).astype(np.float32)
    return out


def write_data_dir(out: Path, train_eras: int = 8, stocks: int = 200, features: int = 12, seed: int = 0,
                   validation_eras: int = 4) -> Path:
    """A small data dir in Numerai's layout (live, benchmarks, validation, features.json) for the pickle tests."""
    import json

    out.mkdir(parents=True, exist_ok=True)
    train = make_frame(train_eras, stocks, features, seed)
    validation = make_frame(validation_eras, stocks, features, seed + 1, first_era=train_eras + 1)
    validation["data_type"] = "validation"
    live = make_frame(1, stocks, features, seed + 2, first_era=train_eras + validation_eras + 1, nan_share=0.02)
    live["data_type"] = "live"
    live = live.drop(columns="target")
    train.to_parquet(out / "train.parquet")
    validation.to_parquet(out / "validation.parquet")
    live.to_parquet(out / "live.parquet")
    make_benchmark(live, seed).to_parquet(out / "live_benchmark_models.parquet")
    make_benchmark(validation, seed + 1).to_parquet(out / "validation_benchmark_models.parquet")
    names = [c for c in train.columns if c.startswith("feature_")]
    (out / "features.json").write_text(json.dumps({"feature_sets": {"small": names[:4], "medium": names, "all": names},
                                                    "targets": ["target"]}))
    return out


def fit_stand_in(data_dir: Path, n_estimators: int = 20, benchmark_weight: float = 0.0) -> StandInModel:
    """Fit the stand-in on a data dir's train.parquet (its feature_* columns)."""
    train = pd.read_parquet(data_dir / "train.parquet")
    features = [c for c in train.columns if c.startswith("feature_")]
    return StandInModel(n_estimators, benchmark_weight).fit(train[["era", *features]], train["target"])


class ConstantModel(StandInModel):
    """A fitted model whose output is constant (to test the live path's tie-breaking)."""

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        return np.full(len(X), 0.5)


class LazyImportModel(StandInModel):
    """Imports a project module inside predict: works here, fails where the project is not installed."""

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        from tests.stand_in import rank_per_era as rank  # noqa: F401  (deliberately at call time)

        return super().predict(X, benchmark)


class UnshippableImportModel(StandInModel):
    """Imports, at call time, a project module that does not exist (so it cannot be shipped)."""

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        from tests import no_such_module  # noqa: F401

        return super().predict(X, benchmark)


class TrainingReachingModel(StandInModel):
    """Reaches the `validation` package on the live path (which must not be pickled)."""

    def predict(self, X: pd.DataFrame, benchmark: pd.DataFrame | None = None) -> np.ndarray:
        from validation import artifacts

        self.writer = artifacts.atomic_write_text
        return super().predict(X, benchmark)


_FITTED: dict = {}


def fit_baseline(data_dir: Path, n_estimators: int = 20):
    """The real model.NumeraiModel baseline with few trees, fitted on a data dir's train.parquet (cached)."""
    import json

    from model import NumeraiModel

    key = ("baseline", str(data_dir), n_estimators)
    if key not in _FITTED:
        features = json.loads((data_dir / "features.json").read_text())["feature_sets"]["all"]
        train = pd.read_parquet(data_dir / "train.parquet", columns=["era", *features, "target"])
        model = NumeraiModel(lgbm_params={"n_estimators": n_estimators}, n_jobs=1).variant("baseline")
        _FITTED[key] = model.fit(train[["era", *features]], train["target"])
    return _FITTED[key]


def fit_stand_in_cached(data_dir: Path, cls: type = StandInModel, **kwargs):
    """A stand-in of class `cls` fitted on a data dir's train.parquet (cached per session)."""
    key = (cls.__name__, str(data_dir), tuple(sorted(kwargs.items())))
    if key not in _FITTED:
        train = pd.read_parquet(data_dir / "train.parquet")
        features = [c for c in train.columns if c.startswith("feature_")]
        _FITTED[key] = cls(**kwargs).fit(train[["era", *features]], train["target"])
    return _FITTED[key]


def replica_python() -> Path:
    """The runtime replica's Python (built once into the user cache dir, or $NMU_RUNTIME_DIR)."""
    from validation.runtime.replica import ensure_runtime

    return ensure_runtime(log=lambda _msg: None)


def fit_full(data_dir: Path, n_estimators: int = 10):
    """The real model.NumeraiModel with every component (groups from features.json), few trees (cached)."""
    import json

    from model import NumeraiModel

    key = ("full", str(data_dir), n_estimators)
    if key not in _FITTED:
        meta = json.loads((data_dir / "features.json").read_text())
        features = meta["feature_sets"]["all"]
        groups = {k: v for k, v in meta["feature_sets"].items() if k not in ("small", "medium", "all")}
        train = pd.read_parquet(data_dir / "train.parquet", columns=["era", *features, "target"])
        bench = pd.read_parquet(data_dir / "train_benchmark_models.parquet").reindex(train.index)
        model = NumeraiModel(feature_groups=groups, lgbm_params={"n_estimators": n_estimators}, n_jobs=1, n_clusters=4,
                             residualize_benchmark=True)
        _FITTED[key] = model.fit(train[["era", *features]], train["target"], benchmark=bench)
    return _FITTED[key]
