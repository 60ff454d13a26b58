"""The built-in synthetic world: data in Numerai's layout with known, documented effects.

`nmu train` uses it when no data is given, and the tests use it because its ground truth is known. The world
looks like Numerai's data in every way the code can see (ids, eras, ``data_type``, int8 features 0..4 in five
equal per-era bins, five-valued targets with 5/20/50/20/5 % frequencies, unresolved newest eras, a live era
with a few NaN, per-era ranked benchmark predictions) and it is generated and written ERA BY ERA, so even
Numerai's shape (``--eras 600 --stocks 6700 --features 2748``) holds only a few eras in memory.

Generative model (era t; stocks are fresh every era; i = stock, g = feature group, j = feature):

* Groups (styles). G >= 8 groups named like Numerai's (intelligence, charisma, strength, dexterity,
  constitution, wisdom, agility, serenity, and sunshine, rain, midnight when there are >= 44 features). Each
  stock has a latent style per group, s_ig = (iota_{k(i),g} + xi_ig) / sqrt(1 + sd_iota_g^2): a part
  iota driven by its latent industry k(i) and a within-industry part xi ~ N(0, 1).
* Features are noisy views of a group's style: z_ij = lambda_j * s_ig + delta_{k(i),j} + e_ij with
  lambda_j ~ U(0.4, 1), e ~ N(0, 1), then binned PER ERA into five equal quintile bins (int8 0..4).
* Latent industries: K = 8 industries with unequal sizes. delta_{k,j} ~ N(0, 0.5^2) is a fixed industry
  signature in every feature, so PCA of per-era standardised features + k-means recovers the industries
  (``synthetic_industries.parquet`` holds k(i) for every row).
* Factor returns with momentum (planted): per group an AR(1) f_{g,t} = mu_g + phi (f_{g,t-1} - mu_g) + eps,
  phi = 0.9. Several groups have mu_g = 0: they pay only through timing. The effective return of era u is
  r_{g,u} = f_{g,u}, except for `regime_group` in regime 1, where it is -f_{g,u}.
* Horizon overlap: era t's target pays payoff_{g,t} = sum_{h<H} r_{g,t+h} (H = 4), so neighbouring eras
  overlap and era t's payoff is known only H eras later. ``synthetic_truth.json`` stores r_{g,u}
  ("factor_returns") and payoff_{g,t} ("payoff") per era.
* Regime (planted): r_t in {0, 1}, a Markov chain with stay probability 0.95, visible only in the
  cross-section: in regime 1 the two groups of `regime_pair` have style correlation about 0.6 (about 0 in
  regime 0). The regime flips the sign of `regime_group`'s payoff (mu of that group is large, so a model that
  ignores the regime learns about nothing from it).
* Interaction (planted): + c * s_ia * s_ib every era with the same sign, (a, b) = `interaction`.
* Within-industry factor (planted): `relative_group` pays on xi only (its style minus the industry part), so
  restricting the comparison to stocks of the same industry lifts that factor.
* Industry returns (planted): each era a random return per industry, noise that neutralising industry
  exposure removes.
* Target: raw = sum_g payoff_{g,t} * s_ig (xi for the relative group) + interaction + industry return +
  idiosyncratic noise N(0, 1), ranked per era into {0, .25, .5, .75, 1} with frequencies 5/20/50/20/5 %.
  ``target`` and ``target_ender_20`` are equal (as in v5.2), ``target_jasper_20`` shares the factors with
  independent noise, ``target_teager_60`` uses a horizon of 12 eras. The newest 4 validation eras have no
  targets (NaN); ``target_teager_60`` is NaN for the newest 12. Live targets are NaN.
* Benchmarks (``*_benchmark_models.parquet``), named as in data v5.3: ``v53_lgbm_ender20``, ``v53_lgbm_ender60``,
  ``v53_lgbm_teager2b20``, noisy static-factor predictions (what a plain model knows: the mean payoffs, with
  the regime group weighted by its average sign over the train eras), ranked per era into (0, 1].

With ``planted=False`` (``nmu data synthetic --no-effects``) the world is the control: factor returns are the
constants mu_g (no AR variation, no regime, no interaction, no within-industry factor, no industry returns),
only static linear signal that a plain LightGBM can learn and the components cannot improve on.

Calibration (mean per-era validation numerai_corr, seed 0, default size): a plain LightGBM (1000 trees,
lr 0.02, 31 leaves, colsample 0.3) on the train eras scores 0.034 (sharpe 1.3) in the planted world and 0.040
(sharpe 1.7) in the control; a linear predictor given the truth (payoffs known H eras later, the regime, the
interaction, industry-relative styles) scores 0.054 in the planted world and 0.042 in the control. At the
test size (120 eras x 600 stocks x 60 features, seeds 1-6) a small plain LightGBM scores 0.015-0.037.

Two ceilings (validation eras with a target, seed 0, default size): `oracle_predictions`, the true expected target
given each stock's true styles and the factor returns up to the era before, scores 0.064; `reachable_predictions`,
the same construction from only what a model can know at each era (styles, industries and the regime estimated from
the features, factor returns from resolved targets), scores 0.049.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import shutil
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from model.clusters import kmeans
from training.data import write_data_info
from validation.artifacts import make_directory, remove_empty, replace_together, temporary_beside
from validation.errors import NmuError
from validation.schemas import TARGET_VALUES as SCHEMA_TARGET_VALUES

_log = logging.getLogger(__name__)

GROUP_NAMES = (
    "intelligence", "charisma", "strength", "dexterity", "constitution", "wisdom", "agility", "serenity",
    "sunshine", "rain", "midnight",
)
TARGETS = ("target", "target_ender_20", "target_jasper_20", "target_teager_60")
DATA_VERSION = "v5.3"
"""The Numerai data version whose layout and names the world follows (benchmark columns `v53_*`)."""
BENCHMARKS = ("v53_lgbm_ender20", "v53_lgbm_ender60", "v53_lgbm_teager2b20")
TARGET_VALUES = np.array(SCHEMA_TARGET_VALUES, dtype=np.float32)  # Numerai's five target values
TARGET_CUMULATIVE = np.array([0.05, 0.25, 0.75, 0.95])  # 5/20/50/20/5 %

_ADJECTIVES = (
    "honoured observational unsmiling jingoistic antiphonal zincy ulcerous chaotic brawny frilly ochre tame "
    "vulpine sultry wintry gusty muddled placid rugged sleek tawny hollow brisk mellow dusky lucid sombre "
    "gilded feral nimble prim stark verdant woolly zesty arid bland coy dapper eerie"
).split()
_MODIFIERS = (
    "unscripted lofty serrated sunken tidal bristly flinty glassy hazy inky jagged knotty leafy marbled "
    "notched oaken pitted quilted rusted silken thorny umber veiled waxen yeasty zonal ashen blighted corded "
    "dented etched fluted gnarled hewn ironclad jaunty kilned lanky misty nubby"
).split()
_NOUNS = (
    "balaamite oaf mantis ferret gazelle heron ibex jackal kestrel lemur marmot newt ocelot puffin quokka "
    "raven stoat tapir urchin vole walrus yak zebu badger condor dingo egret finch gecko hare iguana "
    "jerboa koala loris mongoose narwhal otter pangolin quail"
).split()


@dataclass(frozen=True)
class SyntheticConfig:
    """Size, seed and effect sizes of a synthetic world; effect sizes are in units of the target's noise sd."""

    eras: int = 400  # train + validation eras; live is one more era after them
    stocks: int = 2000  # stocks per era (train/validation eras hold 0-4 % fewer)
    features: int = 120
    seed: int = 0
    planted: bool = True
    industries: int = 8
    horizon: int = 4  # eras the main target looks ahead
    long_horizon: int = 12  # eras target_teager_60 looks ahead
    train_fraction: float = 0.6
    unresolved_eras: int = 4
    momentum: float = 0.9  # phi of the AR(1) factor returns
    regime_stay: float = 0.95
    regime_correlation: float = 0.6
    static_strength: float = 0.038  # norm of the mean payoffs of the ordinary groups
    regime_strength: float = 0.03  # |mean payoff| of regime_group
    relative_strength: float = 0.022  # |mean payoff| of relative_group (on its within-industry part)
    timing_strength: float = 0.014  # sd of a group's payoff around its mean (planted only)
    interaction_strength: float = 0.03  # c of c * s_a * s_b (planted only)
    industry_return_sd: float = 0.1  # sd of the per-era industry returns (planted only)
    industry_signature_sd: float = 0.5
    industry_style_sd: float = 0.5
    relative_industry_style_sd: float = 1.0
    benchmark_noise: float = 0.6
    live_nan_fraction: float = 0.005
    future_eras: int = 0  # eras after validation, fully resolved, in future.parquet (the benchmarks' "field" eras)

    @classmethod
    def default(
        cls,
        eras: int | None = None,
        stocks: int | None = None,
        features: int | None = None,
        seed: int = 0,
        planted: bool = True,
    ) -> SyntheticConfig:
        """The default world (about 400 eras x 2000 stocks x 120 features); None keeps a default size."""
        base = cls()
        config = cls(
            eras=base.eras if eras is None else int(eras),
            stocks=base.stocks if stocks is None else int(stocks),
            features=base.features if features is None else int(features),
            seed=int(seed),
            planted=bool(planted),
        )
        config.check()
        return config

    @property
    def train_eras(self) -> int:
        """Number of train eras (the rest of `eras` is validation)."""
        return int(round(self.eras * self.train_fraction))

    @property
    def groups(self) -> tuple[str, ...]:
        """Group names used for this many features."""
        return GROUP_NAMES if self.features >= 44 else GROUP_NAMES[:8]

    def check(self) -> None:
        """Raise NmuError if the sizes cannot make a world with train, validation and every effect."""
        if self.features < 8:
            raise NmuError(f"--features {self.features} is too few: the world needs at least 8 (one per group).")
        if self.stocks < 50:
            raise NmuError(f"--stocks {self.stocks} is too few: the world needs at least 50 stocks per era.")
        if self.eras < 12:
            raise NmuError(f"--eras {self.eras} is too few: the world needs at least 12 eras (train and validation).")
        validation = self.eras - self.train_eras
        if validation <= self.unresolved_eras:
            raise NmuError(
                f"--eras {self.eras} leaves {validation} validation eras; need more than {self.unresolved_eras}."
            )
        if self.features > _max_features():
            raise NmuError(f"--features {self.features} is more than the {_max_features()} names the synthetic world "
                           "can make.")


def era_name(number: int) -> str:
    """Era label as Numerai writes it: zero-padded to four digits ("0001")."""
    return f"{number:04d}"


def _max_features() -> int:
    """How many distinct feature names the word lists make."""
    return len(_ADJECTIVES) * len(_MODIFIERS) * len(_NOUNS)


def feature_names(count: int) -> list[str]:
    """Numerai-like feature names (feature_<adjective>_<modifier>_<noun>), the same for every seed."""
    total = _max_features()
    if count > total:
        raise NmuError(f"--features {count} is more than the {total} names the synthetic world can make.")
    codes = np.random.default_rng(20_240_531).permutation(total)[:count]
    names = []
    for code in codes.tolist():
        a, rest = divmod(code, len(_MODIFIERS) * len(_NOUNS))
        m, n = divmod(rest, len(_NOUNS))
        names.append(f"feature_{_ADJECTIVES[a]}_{_MODIFIERS[m]}_{_NOUNS[n]}")
    return names


_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_MASK60 = np.uint64((1 << 60) - 1)


def _ids(start: int, count: int, key: int) -> np.ndarray:
    """Unique ids "n" + 15 hex digits: a keyed bijection of the global row number on 60 bits."""
    x = (np.arange(start, start + count, dtype=np.uint64) ^ np.uint64(key)) & _MASK60
    with np.errstate(over="ignore"):
        for mult, shift in ((0x9E3779B97F4A7C15, 29), (0xBF58476D1CE4E5B9, 27), (0x94D049BB133111EB, 31)):
            x = (x * np.uint64(mult | 1)) & _MASK60
            x ^= x >> np.uint64(shift)
    shifts = np.arange(56, -1, -4, dtype=np.uint64)
    digits = ((x[:, None] >> shifts[None, :]) & np.uint64(15)).astype(np.intp)
    chars = np.empty((count, 16), dtype=np.uint8)
    chars[:, 0] = ord("n")
    chars[:, 1:] = _HEX[digits]
    return chars.view("S16").ravel().astype(str).astype(object)


def _rank01(values: np.ndarray) -> np.ndarray:
    """Per-era ordinal rank into (0, 1] as float32."""
    n = len(values)
    ranks = np.empty(n, dtype=np.float32)
    ranks[np.argsort(values, kind="stable")] = (np.arange(1, n + 1, dtype=np.float64) / n).astype(np.float32)
    return ranks


def _to_target(raw: np.ndarray) -> np.ndarray:
    """Rank a per-era raw return into the five target values with frequencies 5/20/50/20/5 %."""
    n = len(raw)
    positions = (np.arange(n) + 0.5) / n
    levels = TARGET_VALUES[np.searchsorted(TARGET_CUMULATIVE, positions, side="right")]
    out = np.empty(n, dtype=np.float32)
    out[np.argsort(raw, kind="stable")] = levels
    return out


def _quintiles(z: np.ndarray) -> np.ndarray:
    """Bin each row of z (features x stocks) into five equal per-era bins, int8 0..4 (rank * 5 // n)."""
    f, n = z.shape
    cuts = [-(-b * n // 5) for b in range(1, 5)]  # first rank of bins 1..4
    edges = np.partition(z, cuts, axis=1)[:, cuts]
    bins = np.zeros((f, n), dtype=np.int8)
    for b in range(4):
        bins += z >= edges[:, b : b + 1]
    return bins


@dataclass
class _World:
    """The fixed parameters of a world, drawn once from the seed."""

    config: SyntheticConfig
    groups: list[str]
    features: list[str]
    group_of_feature: np.ndarray  # (F,) index of the feature's group
    loadings: np.ndarray  # (F,) lambda_j
    signatures: np.ndarray  # (F, K) delta_{k,j}
    industry_styles: np.ndarray  # (K, G) iota_{k,g}
    style_scale: np.ndarray  # (G,) sqrt(1 + sd_iota^2)
    industry_weights: np.ndarray  # (K,)
    interaction: tuple[int, int]
    regime_pair: tuple[int, int]
    regime_group: int
    relative_group: int
    mu: np.ndarray  # (G,) mean payoff per era of the H-horizon target, divided by H
    regimes: np.ndarray  # (T_all,) regime of every era (0 for eras past the data)
    returns: np.ndarray  # (T_all + long_horizon, G) effective factor returns r_{g,u}
    industry_returns: np.ndarray  # (T_all, K)
    benchmark_weights: np.ndarray  # (G,)
    id_key: int

    def payoff(self, t: int, horizon: int) -> np.ndarray:
        """Payoff per group of era index t (0-based) for a target looking `horizon` eras ahead."""
        return self.returns[t : t + horizon].sum(axis=0)


def _make_world(config: SyntheticConfig) -> _World:
    """Draw the world's fixed parameters, factor returns and regimes from the seed."""
    rng = np.random.default_rng([config.seed, 0])
    groups = list(config.groups)
    g_count, k_count, f_count = len(groups), config.industries, config.features
    names = feature_names(f_count)
    group_of_feature = rng.permutation(np.arange(f_count) % g_count)
    loadings = rng.uniform(0.4, 1.0, f_count)
    signatures = rng.normal(0.0, config.industry_signature_sd, (f_count, k_count))
    roles = rng.permutation(g_count)
    interaction = (int(roles[0]), int(roles[1]))
    regime_pair = (int(roles[2]), int(roles[3]))
    regime_group = int(roles[4])
    relative_group = int(roles[5])
    zero_groups = [int(g) for g in roles[6:9]]  # pay only through timing
    style_sd = np.full(g_count, config.industry_style_sd)
    style_sd[relative_group] = config.relative_industry_style_sd
    industry_styles = rng.normal(0.0, 1.0, (k_count, g_count)) * style_sd
    style_scale = np.sqrt(1.0 + style_sd**2)
    industry_weights = rng.dirichlet(np.full(k_count, 6.0))

    horizon = config.horizon
    mean_payoff = np.zeros(g_count)
    ordinary = [g for g in range(g_count) if g not in (regime_group, relative_group, *zero_groups)]
    raw = rng.uniform(0.5, 1.0, len(ordinary)) * rng.choice([-1.0, 1.0], len(ordinary))
    mean_payoff[ordinary] = raw / np.linalg.norm(raw) * config.static_strength
    mean_payoff[regime_group] = config.regime_strength * rng.choice([-1.0, 1.0])
    mean_payoff[relative_group] = config.relative_strength * rng.choice([-1.0, 1.0])
    mu = mean_payoff / horizon

    total = config.eras + config.future_eras + 1  # train + validation (+ future) + live
    length = total + config.long_horizon
    phi = config.momentum
    regimes = np.zeros(length, dtype=np.int8)
    raw_f = np.tile(mu, (length, 1))
    industry_returns = np.zeros((total, k_count))
    if config.planted:
        # sd of one era's return so that the H-era payoff has sd timing_strength around its mean
        lags = np.arange(1, horizon)
        var_sum = horizon + 2.0 * np.sum((horizon - lags) * phi**lags)
        tau = config.timing_strength / math.sqrt(var_sum)
        x = np.empty((length, g_count))
        x[0] = rng.standard_normal(g_count)
        shocks = rng.standard_normal((length, g_count)) * math.sqrt(1.0 - phi**2)
        for u in range(1, length):
            x[u] = phi * x[u - 1] + shocks[u]
        raw_f = mu + tau * x
        state = int(rng.integers(0, 2))
        flips = rng.random(length)
        for u in range(length):
            if u and flips[u] > config.regime_stay:
                state = 1 - state
            regimes[u] = state
        industry_returns = rng.normal(0.0, config.industry_return_sd, (total, k_count))
    returns = raw_f.copy()
    returns[regimes == 1, regime_group] *= -1.0

    # what a plain model knows: the mean payoffs, the regime group at its average sign over the train eras
    benchmark_weights = mean_payoff.copy()
    sign = 1.0 - 2.0 * regimes[: config.train_eras].mean()
    benchmark_weights[regime_group] *= sign
    return _World(
        config=config, groups=groups, features=names, group_of_feature=group_of_feature, loadings=loadings,
        signatures=signatures, industry_styles=industry_styles, style_scale=style_scale,
        industry_weights=industry_weights, interaction=interaction, regime_pair=regime_pair,
        regime_group=regime_group, relative_group=relative_group, mu=mu, regimes=regimes[:total],
        returns=returns, industry_returns=industry_returns, benchmark_weights=benchmark_weights,
        id_key=int(rng.integers(0, 1 << 60)),
    )


@dataclass
class _Era:
    """One generated era: ids, binned features (F x N), targets, benchmarks and industries."""

    ids: np.ndarray
    features: np.ndarray
    targets: dict[str, np.ndarray]
    benchmarks: dict[str, np.ndarray]
    industry: np.ndarray


def _era_latents(world: _World, t: int, n: int) -> tuple[np.random.Generator, np.ndarray, np.ndarray, np.ndarray]:
    """Era t's random stream (after the latents) and its stocks' industries, styles and paying styles."""
    config = world.config
    rng = np.random.default_rng([config.seed, 1, t])
    g_count = len(world.groups)
    k = rng.choice(config.industries, size=n, p=world.industry_weights)
    xi = rng.standard_normal((n, g_count))
    if config.planted and world.regimes[t] == 1:
        a, b = world.regime_pair
        rho = min(0.99, config.regime_correlation * world.style_scale[a] * world.style_scale[b])
        xi[:, b] = rho * xi[:, a] + math.sqrt(1.0 - rho**2) * xi[:, b]
    styles = (world.industry_styles[k] + xi) / world.style_scale
    paying = styles.copy()
    if config.planted:
        paying[:, world.relative_group] = xi[:, world.relative_group]
    return rng, k, styles, paying


def _era_size(config: SyntheticConfig, t: int, data_type: str) -> int:
    """Stocks in era t: all of them live, 0-4 % fewer in the other eras."""
    size_rng = np.random.default_rng([config.seed, 2, t])
    return config.stocks if data_type == "live" else config.stocks - int(size_rng.integers(0, config.stocks // 25 + 1))


def _data_type(config: SyntheticConfig, t: int) -> str:
    if t < config.train_eras:
        return "train"
    if t < config.eras:
        return "validation"
    return "future" if t < config.eras + config.future_eras else "live"


def _make_era(world: _World, t: int, n: int, row_start: int, data_type: str) -> _Era:
    """Generate era index t (0-based) with n fresh stocks."""
    config = world.config
    rng, k, styles, paying = _era_latents(world, t, n)

    # features: noisy views of the styles plus the industry signature, binned per era
    z = rng.standard_normal((config.features, n), dtype=np.float32)
    z += (styles.T.astype(np.float32)[world.group_of_feature] * world.loadings.astype(np.float32)[:, None])
    z += world.signatures.astype(np.float32)[:, k]
    features = _quintiles(z)
    del z

    targets: dict[str, np.ndarray] = {}
    unresolved = config.eras - t if data_type == "validation" else config.long_horizon + 1  # future eras: resolved
    if data_type != "live":
        common = np.zeros(n)
        if config.planted:
            a, b = world.interaction
            common += config.interaction_strength * styles[:, a] * styles[:, b]
            common += world.industry_returns[t, k]
        raw20 = paying @ world.payoff(t, config.horizon) + common
        raw60 = paying @ world.payoff(t, config.long_horizon) + math.sqrt(3.0) * common
        main = _to_target(raw20 + rng.standard_normal(n))
        jasper = _to_target(raw20 + rng.standard_normal(n))
        teager = _to_target(raw60 + math.sqrt(3.0) * rng.standard_normal(n))
        if unresolved <= config.unresolved_eras:
            main = np.full(n, np.nan, np.float32)
            jasper = main
        if unresolved <= config.long_horizon:
            teager = np.full(n, np.nan, np.float32)
        targets = {"target": main, "target_ender_20": main, "target_jasper_20": jasper, "target_teager_60": teager}
    else:
        nan = np.full(n, np.nan, np.float32)
        targets = {name: nan for name in TARGETS}

    static = styles @ world.benchmark_weights
    static = static / (np.std(static) + 1e-12)
    benchmarks = {
        BENCHMARKS[0]: _rank01(static + config.benchmark_noise * rng.standard_normal(n)),
        BENCHMARKS[1]: _rank01(static + config.benchmark_noise * rng.standard_normal(n)),
        BENCHMARKS[2]: _rank01(static + 1.3 * config.benchmark_noise * rng.standard_normal(n)),
    }
    return _Era(
        ids=_ids(row_start, n, world.id_key), features=features, targets=targets, benchmarks=benchmarks,
        industry=k.astype(np.int16),
    )


def _schema(fields: list[tuple[str, Any]], index: str = "id") -> pa.Schema:
    """Arrow schema with pandas metadata that makes `index` the frame's index, as Numerai's files do."""
    template = pd.DataFrame({name: pd.Series([value], dtype=dtype) for name, (value, dtype) in fields})
    template.index = pd.Index(["n000000000000000"], name=index)
    return pa.Schema.from_pandas(template, preserve_index=True)


class _EraWriter:
    """Buffers a few eras and writes them as one row group of a parquet file staged beside `path` (`staged`); the
    world's files are put in place together once all are written (`write_synthetic_world`)."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_group: int):
        self.path = path
        self.staged = temporary_beside(path)
        self._schema = schema
        self._writer = pq.ParquetWriter(self.staged, schema, compression="snappy")
        self._rows_per_group = rows_per_group
        self._buffer: list[pa.Table] = []
        self._rows = 0

    def add(self, columns: dict[str, np.ndarray]) -> None:
        """Add one era's columns (by name; every field of the schema)."""
        arrays = [pa.array(columns[field.name], type=field.type) for field in self._schema]
        self._buffer.append(pa.Table.from_arrays(arrays, schema=self._schema))
        self._rows += self._buffer[-1].num_rows
        if self._rows >= self._rows_per_group:
            self._flush()

    def _flush(self) -> None:
        if self._buffer:
            table = pa.concat_tables(self._buffer)
            self._writer.write_table(table, row_group_size=table.num_rows)
            self._buffer, self._rows = [], 0

    def close(self, ok: bool = True) -> None:
        """Write what is buffered and close the staged file; delete it when not ok, or when the last write fails (a
        full disk had put a truncated validation.parquet in place under its own name)."""
        try:
            if ok:
                self._flush()
            self._writer.close()
        except BaseException:
            with contextlib.suppress(Exception):
                self._writer.close()
            self.staged.unlink(missing_ok=True)
            raise
        if not ok:
            self.staged.unlink(missing_ok=True)


def _feature_sets(world: _World) -> dict[str, list[str]]:
    """Small (~1/3 of each group), medium (~2/3), all, and one set per group, in file order."""
    by_group = {g: [] for g in range(len(world.groups))}
    for name, g in zip(world.features, world.group_of_feature.tolist()):
        by_group[g].append(name)
    small, medium = set(), set()
    for names in by_group.values():
        small.update(names[: max(1, round(len(names) / 3))])
        medium.update(names[: max(1, round(2 * len(names) / 3))])
    sets = {
        "small": [f for f in world.features if f in small],
        "medium": [f for f in world.features if f in medium],
        "all": list(world.features),
    }
    for g, name in enumerate(world.groups):
        sets[name] = by_group[g]
    return sets


def _truth(world: _World) -> dict[str, Any]:
    """The ground truth as stored in synthetic_truth.json (the contract's structure plus a few extras)."""
    config = world.config
    groups = world.groups
    eras: dict[str, Any] = {}
    for t in range(config.eras + 1):
        eras[era_name(t + 1)] = {
            "regime": int(world.regimes[t]),
            "factor_returns": {g: float(world.returns[t, i]) for i, g in enumerate(groups)},
            "payoff": {g: float(v) for g, v in zip(groups, world.payoff(t, config.horizon))},
            "industry_returns": [float(v) for v in world.industry_returns[t]],
        }
    return {
        "groups": groups,
        "interaction": [groups[world.interaction[0]], groups[world.interaction[1]]],
        "regime_group": groups[world.regime_group],
        "regime_pair": [groups[world.regime_pair[0]], groups[world.regime_pair[1]]],
        "relative_group": groups[world.relative_group],
        "horizon": config.horizon,
        "long_horizon": config.long_horizon,
        "industries": config.industries,
        "mean_payoff": {g: float(v * config.horizon) for g, v in zip(groups, world.mu)},
        "timing_only_groups": [g for g, v in zip(groups, world.mu) if v == 0.0],
        "planted": config.planted,
        "config": dataclasses.asdict(config),
        "train_eras": [era_name(t + 1) for t in range(config.train_eras)],
        "validation_eras": [era_name(t + 1) for t in range(config.train_eras, config.eras)],
        "live_era": era_name(config.eras + 1),
        "eras": eras,
        "description": (
            "Ground truth of the synthetic world (see training/synthetic.py). factor_returns[g] of era u is the "
            "effective return r_{g,u} (sign already flipped for regime_group in regime 1); era t's main target "
            "pays payoff[g] = sum of factor_returns over eras t..t+horizon-1 on the style of group g (on its "
            "within-industry part for relative_group), plus interaction and industry returns when planted."
        ),
    }


# Measured with /usr/bin/time on `nmu data synthetic` (Python 3.11, 2-core machine): peak RSS 265 MB at 20 eras x 2000
# stocks x 120 features, then 17 to 31 bytes more per stock x feature of one era (2000 to 100000 stocks, 120 to 1000
# features: an era is drawn whole, in float64), and about 1,100 bytes per stock besides (ids, industries, targets,
# benchmarks: 439, 597 and 911 MB at 150,000, 300,000 and 600,000 stocks x 8 features; 2.2 GB at 2,000,000 x 24); on
# disk 0.41 to 0.93 bytes per feature value plus about 40 per row (snappy parquet, five-valued int8 features compress
# with width). The memory bound is taken high, the disk bound low: each refuses only a world that cannot be written,
# before any file is.
_PROCESS_BYTES = 300 * 2**20
_ERA_BYTES_PER_VALUE = 32
_ERA_BYTES_PER_STOCK = 1200
_DISK_BYTES_PER_VALUE = 0.4
_DISK_BYTES_PER_ROW = 30


def check_room(out: Path, config: SyntheticConfig) -> None:
    """NmuError before anything is written when drawing one era would not fit in the memory available now, or the
    world's files would not fit on the disk under `out` (a MemoryError after minutes, or hours of writes until the
    disk is full, otherwise)."""
    from training.plan import available_memory, gb  # noqa: PLC0415 - the plan's reading of memory (env, cgroup, psutil)

    era_values = config.stocks * config.features
    memory = _PROCESS_BYTES + _ERA_BYTES_PER_VALUE * era_values + _ERA_BYTES_PER_STOCK * config.stocks
    available, where = available_memory()
    if memory > available:
        raise NmuError(f"--stocks {config.stocks} x --features {config.features}: drawing one era of the synthetic "
                       f"world needs about {gb(memory)} of memory and {gb(available)} are {where}; use "
                       "fewer stocks or features.")
    rows = (config.eras + config.future_eras + 1) * config.stocks
    disk = rows * (_DISK_BYTES_PER_ROW + _DISK_BYTES_PER_VALUE * config.features)
    existing = next((p for p in (out, *out.absolute().parents) if p.exists()), None)
    free = shutil.disk_usage(existing).free if existing is not None else None
    if free is not None and disk > free:
        raise NmuError(f"--eras {config.eras} x --stocks {config.stocks} x --features {config.features}: the synthetic "
                       f"world needs at least {gb(disk)} on disk and {gb(free)} are free under "
                       f"{existing}; use fewer eras, stocks or features, or another --out.")


def write_synthetic_world(out: Path, config: SyntheticConfig,
                          progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Write the synthetic world in Numerai's layout to `out` era by era (deterministic by seed); return `out`.
    `progress("synthetic world", 1, eras)` is called after each era (the command layer renders it)."""
    config.check()
    started = time.perf_counter()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NmuError(f"--out {out} is a file; give a directory for the synthetic world.")
    check_room(out, config)
    world = _make_world(config)
    names = world.features
    rows_per_group = max(config.stocks, (30_000 // config.stocks) * config.stocks)
    small_rows = max(rows_per_group, 250_000)  # narrow files: bigger row groups, still bounded buffers

    feature_fields = [(f, (0, "int8")) for f in names]
    target_fields = [(t, (0.5, "float32")) for t in TARGETS]
    head = [("era", ("0001", object)), ("data_type", ("train", object))]
    frame_schema = _schema(head + feature_fields + target_fields)
    bench_schema = _schema([("era", ("0001", object))] + [(b, (0.5, "float32")) for b in BENCHMARKS])
    industry_schema = _schema([("industry", (0, "int16"))])

    try:
        created = make_directory(out)
    except OSError as exc:
        raise NmuError(f"cannot create the output directory {out}: {exc.strerror or exc}.") from None
    writers: dict[str, _EraWriter] = {}
    staged_json: list[tuple[Path, Path]] = []
    total = config.eras + config.future_eras + 1
    ok = placed = False
    try:
        try:
            writers["train"] = _EraWriter(out / "train.parquet", frame_schema, rows_per_group)
            writers["validation"] = _EraWriter(out / "validation.parquet", frame_schema, rows_per_group)
            writers["train_bench"] = _EraWriter(out / "train_benchmark_models.parquet", bench_schema, small_rows)
            writers["validation_bench"] = _EraWriter(out / "validation_benchmark_models.parquet", bench_schema,
                                                     small_rows)
            writers["industries"] = _EraWriter(out / "synthetic_industries.parquet", industry_schema, small_rows)
            if config.future_eras:
                writers["future"] = _EraWriter(out / "future.parquet", frame_schema, rows_per_group)
                writers["future_bench"] = _EraWriter(out / "future_benchmark_models.parquet", bench_schema, small_rows)
            row = 0
            for t in range(total):
                data_type = _data_type(config, t)
                n = _era_size(config, t, data_type)
                era = _make_era(world, t, n, row, data_type)
                row += n
                era_col = np.full(n, era_name(t + 1), dtype=object)
                columns: dict[str, np.ndarray] = {"id": era.ids, "era": era_col,
                                                  "data_type": np.full(n, data_type, dtype=object)}
                columns.update(zip(names, era.features))
                columns.update(era.targets)
                bench = {"id": era.ids, "era": era_col, **era.benchmarks}
                writers["industries"].add({"id": era.ids, "industry": era.industry})
                if data_type == "live":
                    _write_live(out, world, era, columns, bench, writers)
                else:
                    writers[data_type].add(columns)
                    writers[f"{data_type}_bench"].add(bench)
                if progress is not None:
                    progress("synthetic world", 1, total)
            ok = True
        finally:
            failure = None
            for writer in writers.values():  # every one is closed, and none is kept after one failed
                try:
                    writer.close(ok and failure is None)
                except Exception as exc:  # noqa: BLE001 - the first is raised below, once the others are closed
                    failure = failure or exc
            if ok and failure is not None:
                raise failure
        metadata = {"feature_sets": _feature_sets(world), "targets": list(TARGETS)}
        for name, content in (("features.json", metadata), ("synthetic_truth.json", _truth(world))):
            staged_json.append((temporary_beside(out / name), out / name))
            staged_json[-1][0].write_text(json.dumps(content, indent=2, default=str) + "\n")
        staged = [(writer.staged, writer.path) for writer in writers.values()] + staged_json
        # every file of the world in place at once, or none: a world half old and half new would train silently
        with replace_together(staged):
            write_data_info(out, DATA_VERSION, source="synthetic")
        placed = True
    finally:  # what was not put in place (all of it after a failure; nothing after success) is deleted
        for tmp in [writer.staged for writer in writers.values()] + [tmp for tmp, _ in staged_json]:
            tmp.unlink(missing_ok=True)
        if not placed:
            remove_empty(created)
    kinds = [_data_type(config, t) for t in range(total)]
    future = f", {kinds.count('future')} future" if config.future_eras else ""
    _log.info("Wrote the synthetic world into %s in %.1f s: %d train, %d validation%s and 1 live era of about %d "
              "stocks, %d features, seed %d, %s.", out, time.perf_counter() - started, kinds.count("train"),
              kinds.count("validation"), future, config.stocks, config.features, config.seed,
              "planted effects" if config.planted else "a control world (nothing planted)")
    return out


def _write_live(out: Path, world: _World, era: _Era, columns: dict[str, np.ndarray],
                bench: dict[str, np.ndarray], writers: dict[str, _EraWriter]) -> None:
    """Stage live.parquet (a few NaN in features; those columns float32) and live_benchmark_models.parquet: their
    writers join `writers`, before their first write, so the world's writer closes (or discards) them with the rest."""
    config = world.config
    n = len(era.ids)
    rng = np.random.default_rng([config.seed, 3])
    holes = rng.random((config.features, n)) < config.live_nan_fraction
    fields: list[tuple[str, Any]] = [("era", ("0001", object)), ("data_type", ("live", object))]
    for j, name in enumerate(world.features):
        if holes[j].any():
            values = era.features[j].astype(np.float32)
            values[holes[j]] = np.nan
            columns[name] = values
            fields.append((name, (0.5, "float32")))
        else:
            fields.append((name, (0, "int8")))
    fields += [(t, (0.5, "float32")) for t in TARGETS]
    writers["live"] = _EraWriter(out / "live.parquet", _schema(fields), 10**9)
    writers["live"].add(columns)
    bench_schema = _schema([("era", ("0001", object))] + [(b, (0.5, "float32")) for b in BENCHMARKS])
    writers["live_bench"] = _EraWriter(out / "live_benchmark_models.parquet", bench_schema, 10**9)
    writers["live_bench"].add(bench)


# ---- the oracle: the true expected target given everything knowable at the era --------------------------------------
ORACLE_EFFECTS = ("momentum", "regime", "relative", "interaction")
"""What the oracle can be told about a planted world (all by default): the factor returns' momentum (the AR(1) from
the last resolved era: knowable only with each era's target fed back, so never to a model left alone), the regime,
the within-industry factor and the interaction. Leaving one out measures what that effect is worth."""


def expected_payoff(world: _World, t: int, effects: Collection[str] = ORACLE_EFFECTS) -> np.ndarray:
    """Per group, the expected payoff of era t's main target given what is knowable at era t: the factor returns of
    the eras before t (resolved by then), the AR(1) that drives them, and era t's regime (visible in the
    cross-section), taken to persist over the target's horizon. Without "momentum" in `effects`, the mean payoffs;
    without "regime", the regime group's payoff carries its average sign over the world's eras."""
    config = world.config
    if not config.planted:
        return world.mu * config.horizon
    sign = np.ones(len(world.groups))
    if "regime" in effects:
        if world.regimes[t] == 1:
            sign[world.regime_group] = -1.0
    else:
        sign[world.regime_group] = 1.0 - 2.0 * float(world.regimes[: config.eras].mean())
    if "momentum" not in effects:
        return world.mu * config.horizon * sign
    last = world.mu
    if t >= 1:
        last = world.returns[t - 1].copy()
        if world.regimes[t - 1] == 1:  # back to the AR(1) process: the regime flips only the return paid
            last[world.regime_group] *= -1.0
    steps = np.arange(1, config.horizon + 1)[:, None]
    raw = world.mu + config.momentum ** steps * (last - world.mu)  # E[f_{t+h} | f_{t-1}], h = 0..H-1
    return (raw * sign).sum(axis=0)


def oracle_predictions(config: SyntheticConfig, era_numbers: list[int],
                       effects: Collection[str] = ORACLE_EFFECTS) -> pd.DataFrame:
    """The oracle's predictions (index id, columns era and prediction) for the given era numbers (1-based): each
    stock's true paying styles times the expected payoff, plus the planted interaction; what no model can reach,
    the ceiling of a world. `effects` (of ORACLE_EFFECTS) says what the oracle is told: without "relative" it sees
    the relative group's whole style, not its within-industry part; without "interaction", no interaction."""
    unknown = set(effects) - set(ORACLE_EFFECTS)
    if unknown:
        raise ValueError(f"oracle_predictions: unknown effect(s) {sorted(unknown)}; known: {ORACLE_EFFECTS}")
    world = _make_world(config)
    frames = []
    row = sum(_era_size(config, u, _data_type(config, u)) for u in range(min(era_numbers) - 1))
    for t in range(min(era_numbers) - 1, max(era_numbers)):
        data_type = _data_type(config, t)
        n = _era_size(config, t, data_type)
        if t + 1 in era_numbers:
            _, _, styles, paying = _era_latents(world, t, n)
            prediction = (paying if "relative" in effects else styles) @ expected_payoff(world, t, effects)
            if config.planted and "interaction" in effects:
                a, b = world.interaction
                prediction = prediction + config.interaction_strength * styles[:, a] * styles[:, b]
            frames.append(pd.DataFrame({"era": era_name(t + 1), "prediction": prediction},
                                       index=pd.Index(_ids(row, n, world.id_key), name="id")))
        row += n
    return pd.concat(frames)


# ---- the reachable oracle: the same construction from what a model can know at each era ----------------------------
def _kmeans(x: np.ndarray, k: int, seed: int, starts: int = 3, iters: int = 100) -> np.ndarray:
    """Centroids (k, d) of the best of `starts` runs of model.clusters' k-means (k-means++ starts) by inertia."""
    rng = np.random.default_rng(seed)
    runs = [kmeans(np.asarray(x, dtype=np.float64), k, iters, 0.0, rng) for _ in range(starts)]
    return min(runs, key=lambda run: run[1])[0]


def _adjusted_rand(a: np.ndarray, b: np.ndarray) -> float:
    """Adjusted Rand index of two labelings (1: the same partition, about 0: unrelated)."""
    _, a = np.unique(a, return_inverse=True)
    _, b = np.unique(b, return_inverse=True)
    table = np.zeros((a.max() + 1, b.max() + 1))
    np.add.at(table, (a, b), 1.0)

    def pairs(v: np.ndarray) -> float:
        return float((v * (v - 1.0) / 2.0).sum())

    both, rows, cols, total = pairs(table), pairs(table.sum(axis=1)), pairs(table.sum(axis=0)), pairs(np.array([a.size]))
    expected = rows * cols / total
    top = (rows + cols) / 2.0
    return (both - expected) / (top - expected) if top != expected else 1.0


def _within(values: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """Subtract from each value the mean of its label's members (one era's cross-section)."""
    counts = np.maximum(np.bincount(labels, minlength=k), 1)
    return values - (np.bincount(labels, weights=values, minlength=k) / counts)[labels]


@dataclass
class _Reachable:
    """What a model can know of a world's eras: estimated styles, clusters, the estimated regime and the targets."""

    config: SyntheticConfig
    world: _World
    train: int  # eras (from the first) whose true latents fit the estimators
    lag: int  # era t sees the targets of eras <= t - lag
    rows: np.ndarray  # (T,) first global row of each era (for the ids)
    sizes: np.ndarray  # (T,)
    styles: list[np.ndarray]  # per era (n, G) float32: the estimated styles
    clusters: list[np.ndarray]  # per era (n,) int8
    targets: list[np.ndarray]  # per era (n,) float32, NaN where the world has none (the live era)
    regime: np.ndarray  # (T,) int8 estimated regime
    style_corr: np.ndarray  # (T, G) per-era corr of estimated and true styles
    relative_corr: np.ndarray  # (T,) per-era corr of the within-cluster estimate and the true within-industry part
    industry_ari: np.ndarray  # (T,) adjusted Rand index of clusters and true industries
    true_regime: np.ndarray  # (T,)


_REACHABLE_CACHE: dict[tuple[SyntheticConfig, int], _Reachable] = {}


def _reachable_state(config: SyntheticConfig, train: int, targets: dict[int, np.ndarray] | None) -> _Reachable:
    """Generate every era of the world (train, validation, future, live), fit the estimators on the first `train`
    eras and estimate each era's styles, clusters and regime. The latest world without replaced targets is cached
    (the battery asks for several effect sets and for the future eras of one world in turn)."""
    key = (config, train)
    if targets is None and key in _REACHABLE_CACHE:
        return _REACHABLE_CACHE[key]
    world = _make_world(config)
    total = config.eras + config.future_eras + 1
    g_count, f_count, k_count = len(world.groups), config.features, config.industries
    member = np.zeros((f_count, g_count))
    member[np.arange(f_count), world.group_of_feature] = 1.0
    # each feature minus its group's mean: removes most of the styles and keeps the industry signatures, on which
    # k-means finds the industries (adjusted Rand 0.99 on a validation era of the default world, against 0.77 on
    # the plain features and 0.94 on their first 20 principal components). k-means runs on the unstyled features'
    # first K principal components (K industries: the default world's sample shows 7 eigenvalues of 2.5 to 7.1
    # above a flat 1.7): on all 120 dimensions 3 k-means++ starts stopped at a split industry (adjusted Rand 0.84)
    # for one seed in two; on the components every seed and start found 0.99, in a tenth of a second.
    unstyle = np.eye(f_count) - member @ (member / member.sum(axis=0)).T
    a, b = world.regime_pair
    rows, sizes = np.zeros(total, dtype=np.int64), np.zeros(total, dtype=np.int64)
    state = _Reachable(
        config=config, world=world, train=train, lag=config.unresolved_eras + 1, rows=rows, sizes=sizes, styles=[],
        clusters=[], targets=[], regime=np.zeros(total, dtype=np.int8), style_corr=np.full((total, g_count), np.nan),
        relative_corr=np.full(total, np.nan), industry_ari=np.full(total, np.nan),
        true_regime=world.regimes[:total].astype(np.int8),
    )
    held: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []  # train eras (int8 bins) until the fit
    xtx, xts = np.zeros((f_count, f_count)), np.zeros((f_count, g_count))
    sum_x, sum_s, count = np.zeros(f_count), np.zeros(g_count), 0
    weights = intercept = centroids = project = offset = None
    statistic = np.zeros(total)
    row = 0
    for t in range(total):
        data_type = _data_type(config, t)
        n = _era_size(config, t, data_type)
        rows[t], sizes[t] = row, n
        row += n
        # validation eras as resolved ones: era t uses them only once resolved (the lag below)
        era = _make_era(world, t, n, row - n, "future" if data_type == "validation" else data_type)
        _, industry, true_styles, paying = _era_latents(world, t, n)
        target = era.targets["target"] if targets is None or t + 1 not in targets else targets[t + 1]
        state.targets.append(np.asarray(target, dtype=np.float32))
        if t < train:
            x = era.features.T.astype(np.float64) - 2.0  # bins 0..4 in five equal per-era bins: mean 2 every era
            xtx += x.T @ x
            xts += x.T @ true_styles
            sum_x += x.sum(axis=0)
            sum_s += true_styles.sum(axis=0)
            count += n
            held.append((era.features, true_styles, industry, paying))
            if t < train - 1:
                continue
            # per group, least squares of the true style on the group's features (and an intercept), train eras
            weights, intercept = np.zeros((f_count, g_count)), np.zeros(g_count)
            for g in range(g_count):
                cols = np.flatnonzero(member[:, g])
                mean_x = sum_x[cols] / count
                cov = xtx[np.ix_(cols, cols)] / count - np.outer(mean_x, mean_x)
                cross = xts[cols, g] / count - mean_x * sum_s[g] / count
                weights[cols, g] = np.linalg.solve(cov, cross)
                intercept[g] = sum_s[g] / count - mean_x @ weights[cols, g]
            # k-means on the unstyled features of up to 12,000 train rows spread over the train eras
            sample_rng = np.random.default_rng([config.seed, 4])
            per_era = max(1, 12_000 // len(held))
            sample = np.concatenate(
                [h[0].T[sample_rng.permutation(h[0].shape[1])[:per_era]] for h in held]).astype(np.float64) - 2.0
            sample = sample @ unstyle
            center = sample.mean(axis=0)
            components = np.linalg.svd(sample - center, full_matrices=False)[2][:k_count].T
            project = unstyle @ components  # raw centred bins -> the unstyled features' first K components
            offset = center @ components
            centroids = _kmeans(sample @ components - offset, k_count, seed=config.seed, starts=5)
            batch = held
        else:
            batch = [(era.features, true_styles, industry, paying)]
        assert weights is not None and intercept is not None and centroids is not None and project is not None
        for bins, s_u, k_u, pay_u in batch:
            u = len(state.styles)
            x_u = bins.T.astype(np.float64) - 2.0
            estimated = (x_u @ weights + intercept).astype(np.float32)
            projected = x_u @ project - offset
            distances = -2.0 * projected @ centroids.T + (centroids * centroids).sum(axis=1)[None, :]
            labels = distances.argmin(axis=1).astype(np.int8)
            state.styles.append(estimated)
            state.clusters.append(labels)
            # the regime shows as a correlation of the regime pair's styles within industries
            ea, eb = _within(estimated[:, a].astype(np.float64), labels, k_count), _within(
                estimated[:, b].astype(np.float64), labels, k_count)
            statistic[u] = float(np.corrcoef(ea, eb)[0, 1])
            state.style_corr[u] = [np.corrcoef(estimated[:, g], s_u[:, g])[0, 1] for g in range(g_count)]
            relative = _within(estimated[:, world.relative_group].astype(np.float64), labels, k_count)
            state.relative_corr[u] = float(np.corrcoef(relative, pay_u[:, world.relative_group])[0, 1])
            state.industry_ari[u] = _adjusted_rand(labels, k_u)
        held = []
    # the regime: the era's statistic against the midpoint of its means in the two regimes over the train eras
    fit = statistic[:train]
    regimes = state.true_regime[:train]
    if (regimes == 0).any() and (regimes == 1).any():
        low, high = fit[regimes == 0].mean(), fit[regimes == 1].mean()
        state.regime = ((statistic - (low + high) / 2.0) * np.sign(high - low) > 0).astype(np.int8)
    else:  # one regime in the train eras: nothing to tell them apart by
        state.regime = np.full(total, regimes[0] if len(regimes) else 0, dtype=np.int8)
    if targets is None:
        _REACHABLE_CACHE.clear()
        _REACHABLE_CACHE[key] = state
    return state


# windows measured on the validation eras (reachable corr in built-in / planted-default / planted-wide; without
# momentum 0.0449 / 0.0440 / 0.0349): (1,) 0.0462 / 0.0450 / 0.0357, (12,) 0.0484 / 0.0457 / 0.0364, (1, 4, 12)
# 0.0489 / 0.0462 / 0.0364, (1, 4, 12, 24) 0.0487 / 0.0462 / 0.0343: one era's slopes are noisy, a year of them stale
MOMENTUM_WINDOWS = (1, 4, 12)
"""The reachable oracle's momentum: the mean slopes of the newest 1, 4 and 12 resolved eras, each with a weight fitted
on the train eras."""


def _reachable_coefficients(state: _Reachable, effects: Collection[str]) -> tuple[list[np.ndarray], np.ndarray]:
    """Per era, the design (centred columns: estimated styles, the relative group's within its cluster when told
    "relative", the interaction's product when told "interaction") and its coefficients from resolved targets."""
    config, world = state.config, state.world
    total, g_count, k_count = len(state.styles), len(world.groups), config.industries
    designs = []
    for styles, labels in zip(state.styles, state.clusters):
        design = styles.astype(np.float64)
        if "relative" in effects:
            design[:, world.relative_group] = _within(design[:, world.relative_group], labels, k_count)
        if "interaction" in effects:
            a, b = world.interaction
            design = np.column_stack([design, design[:, a] * design[:, b]])
        designs.append(design - design.mean(axis=0))
    p = designs[0].shape[1]
    # per era with a target, the cross-sectional least squares slopes of the target on the design
    slopes = np.full((total, p), np.nan)
    for u, (design, target) in enumerate(zip(designs, state.targets)):
        if np.isfinite(target).all():
            slopes[u] = np.linalg.lstsq(design, target - target.mean(), rcond=None)[0]
    sign = np.ones((total, p))
    if "regime" in effects:  # the regime group's return flips in regime 1: momentum runs on the unflipped return
        sign[state.regime == 1, world.regime_group] = -1.0
    unflipped = slopes * sign
    # targets fit only eras resolved by the first era after the train eras (an embargo of lag - 1 train eras)
    fit_end = max(1, state.train - state.lag + 1)
    mean = np.nanmean(unflipped[:fit_end], axis=0)
    coefficients = np.tile(mean, (total, 1))
    if "momentum" in effects:
        deviation = np.nan_to_num(unflipped - mean)
        known = np.isfinite(unflipped[:, 0]).astype(float)
        cumulative = np.vstack([np.zeros((1, p)), np.cumsum(deviation, axis=0)])
        counts = np.concatenate([[0.0], np.cumsum(known)])
        # for era t, the mean deviation over the window of resolved eras (t - lag - w, t - lag]
        cut = np.arange(total) - state.lag + 1  # eras < cut are resolved
        lagged = np.zeros((len(MOMENTUM_WINDOWS), total, p))
        for i, w in enumerate(MOMENTUM_WINDOWS):
            hi, lo = np.clip(cut, 0, total), np.clip(cut - w, 0, total)
            n = np.maximum(counts[hi] - counts[lo], 1.0)
            lagged[i] = (cumulative[hi] - cumulative[lo]) / n[:, None]
        styles = slice(0, g_count)  # the interaction's coefficient is constant: no momentum
        first = state.lag + max(MOMENTUM_WINDOWS) - 1  # eras with full windows
        if fit_end > first + 1:
            x = lagged[:, first:fit_end, styles].reshape(len(MOMENTUM_WINDOWS), -1).T
            y = deviation[first:fit_end, styles].ravel()
            beta = np.linalg.lstsq(x, y, rcond=None)[0]
            coefficients[:, styles] += np.tensordot(beta, lagged[:, :, styles], axes=1)
    return designs, coefficients * sign


def reachable_predictions(config: SyntheticConfig, era_numbers: list[int],
                          effects: Collection[str] = ORACLE_EFFECTS, train_eras: int | None = None,
                          targets: dict[int, np.ndarray] | None = None) -> pd.DataFrame:
    """The reachable oracle's predictions (index id, columns era and prediction) for the given era numbers (1-based):
    the oracle's construction (paying styles times expected payoffs, plus the interaction) from only what a model can
    know at each era, so a ceiling that a model could reach, where `oracle_predictions` knows each stock's true styles.
    The world's structure (which group plays which role, the number of industries) is known; its latent values are
    estimated. The estimators are fitted on the first `train_eras` eras (default: the world's train eras):

    * styles: per group, the least squares fit of the true style on the group's binned features (train eras), applied
      to every era's features;
    * industries: k-means (K = the world's industries) on the features minus their group's mean (which removes most
      of the styles and keeps the industries' signatures), fitted on a sample of train rows; the relative group's
      within-industry part is its estimated style minus its cluster's mean in the era;
    * regime: the era's correlation of the regime pair's estimated styles within clusters, regime 1 above the
      midpoint of its means in the two regimes over the train eras;
    * payoffs: per era with a target, the cross-sectional least squares slopes of the target on the estimated styles
      (and the interaction's product). Era t sees only the targets of eras <= t - lag, lag = unresolved_eras + 1 (as
      the data: the newest `unresolved_eras` eras before the live era lack targets). Without "momentum" a group's
      coefficient is its mean slope; with it, plus the deviations of the mean slopes over the newest 1, 4 and 12
      resolved eras, weighted by a least squares fit on the train eras. With "regime" the regime group's slopes are
      unflipped by the estimated regime of their era before averaging, and flipped by era t's;
    * the mean slopes and momentum weights use only train eras resolved by the first era after them (its targets),
      so no era after the train eras depends on a target unresolved at that era.

    `effects` (of ORACLE_EFFECTS) says what it is told, as for the oracle; a control world ignores them. `targets`
    replaces the world's main target of the given era numbers (a test that the lag holds)."""
    unknown = set(effects) - set(ORACLE_EFFECTS)
    if unknown:
        raise ValueError(f"reachable_predictions: unknown effect(s) {sorted(unknown)}; known: {ORACLE_EFFECTS}")
    train = config.train_eras if train_eras is None else int(train_eras)
    total = config.eras + config.future_eras + 1
    if not 1 <= train < total:
        raise ValueError(f"reachable_predictions: train_eras {train} must be between 1 and {total - 1}")
    bad = [e for e in era_numbers if not 1 <= e <= total]
    if bad:
        raise ValueError(f"reachable_predictions: era numbers {bad[:5]} outside the world's 1..{total}")
    state = _reachable_state(config, train, targets)
    designs, coefficients = _reachable_coefficients(state, effects if config.planted else ())
    frames = []
    for number in sorted(set(era_numbers)):
        t = number - 1
        frames.append(pd.DataFrame(
            {"era": era_name(number), "prediction": designs[t] @ coefficients[t]},
            index=pd.Index(_ids(int(state.rows[t]), int(state.sizes[t]), state.world.id_key), name="id")))
    return pd.concat(frames)


def reachable_diagnostics(config: SyntheticConfig, train_eras: int | None = None) -> dict[str, Any]:
    """How well the reachable oracle's estimates match the truth, as means over the eras after the train eras:
    per group the corr of estimated and true styles ("style_corr"), the corr of the relative group's within-cluster
    estimate and its true within-industry part ("relative_corr"), the clusters' adjusted Rand index against the true
    industries ("industry_ari") and the share of eras whose regime is estimated right ("regime_accuracy")."""
    train = config.train_eras if train_eras is None else int(train_eras)
    state = _reachable_state(config, train, None)
    later = slice(train, config.eras + config.future_eras + 1)
    return {
        "style_corr": dict(zip(state.world.groups, np.nanmean(state.style_corr[later], axis=0).tolist())),
        "relative_corr": float(np.nanmean(state.relative_corr[later])),
        "industry_ari": float(np.nanmean(state.industry_ari[later])),
        "regime_accuracy": float((state.regime[later] == state.true_regime[later]).mean()),
    }
