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
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from training.data import write_data_info
from validation.artifacts import atomic_path, atomic_write_json
from validation.errors import NmuError
from validation.schemas import TARGET_VALUES as SCHEMA_TARGET_VALUES

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


def era_name(number: int) -> str:
    """Era label as Numerai writes it: zero-padded to four digits ("0001")."""
    return f"{number:04d}"


def feature_names(count: int) -> list[str]:
    """Numerai-like feature names (feature_<adjective>_<modifier>_<noun>), the same for every seed."""
    total = len(_ADJECTIVES) * len(_MODIFIERS) * len(_NOUNS)
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
    """Buffers a few eras and writes them as one row group of a parquet file (atomic on close)."""

    def __init__(self, path: Path, schema: pa.Schema, rows_per_group: int):
        self._atomic = atomic_path(path)
        self._tmp = self._atomic.__enter__()
        self._schema = schema
        self._writer = pq.ParquetWriter(self._tmp, schema, compression="snappy")
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
        """Write what is buffered and move the file into place (or drop it when not ok)."""
        try:
            if ok:
                self._flush()
            self._writer.close()
        finally:
            if ok:
                self._atomic.__exit__(None, None, None)
            else:
                self._atomic.__exit__(RuntimeError, RuntimeError("aborted"), None)


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


def write_synthetic_world(out: Path, config: SyntheticConfig,
                          progress: Callable[[str, int, int | None], None] | None = None) -> Path:
    """Write the synthetic world in Numerai's layout to `out` era by era (deterministic by seed); return `out`.
    `progress("synthetic world", 1, eras)` is called after each era (the command layer renders it)."""
    config.check()
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise NmuError(f"--out {out} is a file; give a directory for the synthetic world.")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NmuError(f"cannot create the output directory {out}: {exc.strerror or exc}.") from None
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

    writers: dict[str, _EraWriter] = {}
    total = config.eras + config.future_eras + 1
    ok = False
    try:
        writers["train"] = _EraWriter(out / "train.parquet", frame_schema, rows_per_group)
        writers["validation"] = _EraWriter(out / "validation.parquet", frame_schema, rows_per_group)
        writers["train_bench"] = _EraWriter(out / "train_benchmark_models.parquet", bench_schema, small_rows)
        writers["validation_bench"] = _EraWriter(out / "validation_benchmark_models.parquet", bench_schema, small_rows)
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
            columns: dict[str, np.ndarray] = {"id": era.ids, "era": era_col, "data_type": np.full(n, data_type, dtype=object)}
            columns.update(zip(names, era.features))
            columns.update(era.targets)
            bench = {"id": era.ids, "era": era_col, **era.benchmarks}
            writers["industries"].add({"id": era.ids, "industry": era.industry})
            if data_type == "live":
                _write_live(out, world, era, columns, bench)
            else:
                writers[data_type].add(columns)
                writers[f"{data_type}_bench"].add(bench)
            if progress is not None:
                progress("synthetic world", 1, total)
        ok = True
    finally:
        for writer in writers.values():
            writer.close(ok)
    metadata = {"feature_sets": _feature_sets(world), "targets": list(TARGETS)}
    atomic_write_json(out / "features.json", metadata)
    atomic_write_json(out / "synthetic_truth.json", _truth(world))
    write_data_info(out, DATA_VERSION, source="synthetic")
    return out


def _write_live(out: Path, world: _World, era: _Era, columns: dict[str, np.ndarray], bench: dict[str, np.ndarray]) -> None:
    """Write live.parquet (a few NaN in features; those columns float32) and live_benchmark_models.parquet."""
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
    live = _EraWriter(out / "live.parquet", _schema(fields), 10**9)
    ok = False
    try:
        live.add(columns)
        ok = True
    finally:
        live.close(ok)
    bench_writer = _EraWriter(
        out / "live_benchmark_models.parquet",
        _schema([("era", ("0001", object))] + [(b, (0.5, "float32")) for b in BENCHMARKS]),
        10**9,
    )
    ok = False
    try:
        bench_writer.add(bench)
        ok = True
    finally:
        bench_writer.close(ok)


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
