"""A second family of synthetic worlds, written from another description than the built-in one
(training.synthetic), so that a default chosen on one family can be judged on the other (a gain counts only if it
holds on worlds unlike the ones that chose it).

Description (era t = 1..T; in brackets where the built-in world differs):

* Stocks persist [built-in: fresh every era]. A universe of U stocks; a stock is listed or not by a two-state Markov
  chain (about 80 % listed), so each era holds a changing subset. Ids are fresh per (stock, era), as a model cannot
  follow a stock across eras either.
* Styles drift [built-in: drawn anew each era]. K styles per stock, x_{i,k,t} = m_{ind(i),k} + d_{i,k,t} with
  d_t = rho d_{t-1} + sqrt(1 - rho^2) eta_t, rho = 0.97, and eta correlated across styles (pairwise about
  `style_correlation`) [built-in: independent styles]. Industries (`industries`, fixed per stock) shift the styles'
  means (m ~ N(0, industry_style_sd^2)) and leave a fingerprint on every feature.
* Feature groups are not styles one to one [built-in: one group per style]. The first K groups are noisy views of one
  style each; further groups mix two styles (0.7 / 0.3). A feature is a_j x + fingerprint_{ind, j} + noise
  (sd `feature_noise`), binned per era into five equal bins 0..4.
* Only some styles pay [built-in: most]. The first `paying` styles have a mean payoff mu_k; the others none.
* The target's noise has fat tails [built-in: normal]: Student t with `tail_df` degrees of freedom, scaled to unit
  variance; the raw target is ranked per era into Numerai's five values (5/20/50/20/5 %).
* Planted effects (none when `planted=False`: then the payoffs are the constants mu_k and nothing else):
  - factor momentum: each paying style's payoff varies around mu_k as an AR(1) (phi `momentum`, sd `momentum_sd`);
  - a regime that appears part-way: a slow state (a bounded random walk over eras) is high half the time; in that
    state styles 0 and K-1 move together (cross-sectional correlation about 0.6, visible in the binned features),
    and from era `regime_start` * T on it also flips the sign of style 1's payoff;
  - an interaction that fades: c_t x_a x_b with c falling linearly from `interaction_strength` to a third of it;
  - a within-industry factor: style 2 pays on its industry-relative part only (x minus its industry's mean).
* Benchmarks `v53_*`: a static linear view (the mean payoffs) plus noise, ranked per era.
* Files as Numerai's layout (and the built-in world's): train, validation (the newest `unresolved_eras` without
  targets), live, the benchmark files, features.json (small, medium, all and one set per group), nmu-data.json,
  and with `future_eras` future.parquet and future_benchmark_models.parquet: eras after validation, resolved.

Generated eras at once in memory (an era at a time would do, but the family's sizes stay under a few hundred MB).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from training.data import write_data_info
from training.synthetic import BENCHMARKS, DATA_VERSION, TARGET_CUMULATIVE, TARGET_VALUES, era_name, feature_names
from validation.artifacts import atomic_path, atomic_write_json
from validation.errors import NmuError

TARGETS = ("target", "target_ender_20", "target_jasper_20")
GROUP_NAMES = ("intelligence", "charisma", "strength", "dexterity", "constitution", "wisdom", "agility", "serenity",
               "sunshine", "rain", "midnight", "dusk")


@dataclass(frozen=True)
class DriftingWorldConfig:
    """Size, seed and effect sizes of a drifting world (effects in units of the target noise's sd)."""

    eras: int = 352            # train + validation eras
    train_eras: int = 260
    stocks: int = 1500         # listed stocks per era, about
    styles: int = 6
    paying: int = 4
    groups: int = 8
    features_per_group: int = 25
    industries: int = 12
    seed: int = 0
    planted: bool = True
    future_eras: int = 0
    unresolved_eras: int = 4
    style_drift: float = 0.97
    style_correlation: float = 0.3
    industry_style_sd: float = 0.6
    fingerprint_sd: float = 0.4
    feature_noise: float = 1.2
    static_strength: float = 0.03   # norm of the paying styles' mean payoffs
    momentum: float = 0.85
    momentum_sd: float = 0.02
    regime_start: float = 1 / 3
    regime_strength: float = 0.02
    interaction_strength: float = 0.04
    relative_strength: float = 0.025
    tail_df: float = 4.0
    benchmark_noise: float = 0.7

    def check(self) -> None:
        """NmuError when the sizes cannot make a world."""
        if not 3 <= self.paying <= self.styles:
            raise NmuError(f"paying = {self.paying}: need 3 <= paying <= styles ({self.styles}).")
        if self.groups < self.styles:
            raise NmuError(f"groups = {self.groups}: need at least one group per style ({self.styles}).")
        if self.groups > len(GROUP_NAMES):
            raise NmuError(f"groups = {self.groups}: at most {len(GROUP_NAMES)}.")
        if not 12 <= self.train_eras < self.eras - self.unresolved_eras:
            raise NmuError(f"train_eras = {self.train_eras} must leave resolved validation eras of {self.eras}.")
        if self.stocks < 50 or self.features_per_group < 2:
            raise NmuError("a drifting world needs at least 50 stocks and 2 features per group.")


def _rank(values: np.ndarray) -> np.ndarray:
    order = np.argsort(np.argsort(values, kind="stable"), kind="stable")
    return (order + 1) / len(values)


def _bins(z: np.ndarray) -> np.ndarray:
    """Per column of z (stocks x features), five equal bins 0..4 as int8."""
    ranks = np.argsort(np.argsort(z, axis=0, kind="stable"), axis=0, kind="stable")
    return (ranks * 5 // len(z)).astype(np.int8)


def _target_values(raw: np.ndarray) -> np.ndarray:
    """Ranked into Numerai's five target values with frequencies 5/20/50/20/5 %."""
    q = _rank(raw)
    return TARGET_VALUES[np.searchsorted(TARGET_CUMULATIVE, q, side="left")].astype(np.float32)


def write_drifting_world(out: str | Path, config: DriftingWorldConfig) -> Path:
    """Write a drifting world in Numerai's layout into `out` (deterministic by seed); returns `out`."""
    config.check()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, 7919])
    K, G, F = config.styles, config.groups, config.features_per_group
    total = config.eras + config.future_eras + 1  # + live
    universe = int(config.stocks / 0.8)

    # the fixed structure: industries, style means, style correlation, group loadings, fingerprints
    industry = rng.integers(0, config.industries, universe)
    industry_means = rng.normal(0, config.industry_style_sd, (config.industries, K))
    corr = np.full((K, K), config.style_correlation) + (1 - config.style_correlation) * np.eye(K)
    chol = np.linalg.cholesky(corr)
    mix = np.zeros((G, K))
    for g in range(G):
        if g < K:
            mix[g, g] = 1.0
        else:
            a, b = rng.choice(K, 2, replace=False)
            mix[g, a], mix[g, b] = 0.7, 0.3
    loadings = rng.uniform(0.4, 1.0, G * F)
    fingerprint = rng.normal(0, config.fingerprint_sd, (config.industries, G * F))
    names = feature_names(G * F)
    groups = {GROUP_NAMES[g]: names[g * F:(g + 1) * F] for g in range(G)}
    mu = np.zeros(K)
    mu[:config.paying] = rng.normal(0, 1, config.paying)
    mu *= config.static_strength / np.linalg.norm(mu)
    mu[1] = np.sign(mu[1] or 1.0) * max(abs(mu[1]), config.regime_strength)  # a flip of style 1 is worth something

    # the paths over eras: listing, drifting styles, payoffs, the regime, the interaction
    listed = rng.random(universe) < 0.8
    drift = rng.standard_normal((universe, K)) @ chol.T
    dev = np.zeros(K)
    state = np.cumsum(rng.normal(0, 0.15, total))
    regime = state > np.median(state)  # high half of the time, in long spells
    regime_on = np.arange(total) >= int(config.regime_start * total)
    interaction = config.interaction_strength * np.linspace(1.0, 1 / 3, total)
    a_style, b_style = 3 % K, 4 % K
    rho = config.style_drift
    student = config.tail_df
    noise_scale = np.sqrt((student - 2) / student) if student > 2 else 1.0

    frames, benches = [], []
    row = 0
    for t in range(total):
        stay = rng.random(universe)
        listed = np.where(listed, stay < 0.97, stay < 0.12)
        drift = rho * drift + np.sqrt(1 - rho ** 2) * (rng.standard_normal((universe, K)) @ chol.T)
        idx = np.flatnonzero(listed)
        n = len(idx)
        ind = industry[idx]
        styles = industry_means[ind] + drift[idx]
        if config.planted and regime[t]:  # the regime's footprint: styles 0 and K-1 move together
            styles[:, 0] = industry_means[ind, 0] + 0.6 * drift[idx, K - 1] + 0.8 * drift[idx, 0]
        z = (styles @ mix.T).repeat(F, axis=1) * loadings + fingerprint[ind] + \
            rng.normal(0, config.feature_noise, (n, G * F))
        features = _bins(z)

        payoff = mu.copy()
        raw = np.zeros(n)
        if config.planted:
            dev = config.momentum * dev + np.sqrt(1 - config.momentum ** 2) * rng.normal(0, config.momentum_sd, K)
            payoff[:config.paying] += dev[:config.paying]
            if regime_on[t] and regime[t]:
                payoff[1] = -payoff[1]
            raw += config.relative_strength * (styles[:, 2] - industry_means[ind, 2])
            payoff[2] = 0.0  # style 2 pays on its within-industry part only
            raw += interaction[t] * styles[:, a_style] * styles[:, b_style]
        raw += styles @ payoff
        specific = rng.standard_t(student, n) * noise_scale if student > 2 else rng.standard_normal(n)
        era = era_name(t + 1)
        data_type = ("train" if t < config.train_eras else "validation" if t < config.eras
                     else "future" if t < config.eras + config.future_eras else "live")
        target = _target_values(raw + specific)
        jasper = _target_values(raw + rng.standard_normal(n))
        if data_type == "live" or (data_type == "validation" and t >= config.eras - config.unresolved_eras):
            target = np.full(n, np.nan, np.float32)
            jasper = target
        ids = [f"n{(config.seed * 1_000_003 + row + i) * 2654435761 % (1 << 60):015x}" for i in range(n)]
        row += n
        frame = pd.DataFrame(features, columns=names)
        frame.insert(0, "data_type", data_type)
        frame.insert(0, "era", era)
        frame["target"], frame["target_ender_20"], frame["target_jasper_20"] = target, target, jasper
        frame.index = pd.Index(ids, name="id")
        static = styles @ mu
        bench = pd.DataFrame({"era": era, **{b: _rank(static + config.benchmark_noise * static.std() *
                                                           rng.standard_normal(n)).astype(np.float32)
                                             for b in BENCHMARKS}}, index=frame.index)
        frames.append(frame)
        benches.append(bench)

    def write(name: str, parts: list[pd.DataFrame]) -> None:
        with atomic_path(out / name) as tmp:
            pd.concat(parts).to_parquet(tmp)

    splits = {"train": range(0, config.train_eras), "validation": range(config.train_eras, config.eras),
              "future": range(config.eras, config.eras + config.future_eras), "live": range(total - 1, total)}
    for split, eras in splits.items():
        if len(eras):
            write(f"{split}.parquet", [frames[t] for t in eras])
            write(f"{split}_benchmark_models.parquet", [benches[t] for t in eras])
    small = [f for names_ in groups.values() for f in names_[:max(1, F // 3)]]
    medium = [f for names_ in groups.values() for f in names_[:max(1, 2 * F // 3)]]
    atomic_write_json(out / "features.json", {"feature_sets": {"small": small, "medium": medium, "all": names,
                                                               **groups}, "targets": list(TARGETS)})
    truth = {"family": "drifting", "config": dataclasses.asdict(config), "paying_styles": config.paying,
             "mean_payoffs": mu.tolist(), "regime_from_era": era_name(int(config.regime_start * total) + 1),
             "regime": {era_name(t + 1): bool(regime[t]) for t in range(total)} if config.planted else {},
             "interaction_styles": [a_style, b_style], "relative_style": 2,
             "group_mix": {GROUP_NAMES[g]: mix[g].tolist() for g in range(G)}}
    (out / "drifting_truth.json").write_text(json.dumps(truth, indent=1))
    write_data_info(out, DATA_VERSION, source="synthetic")
    return out
