"""Benchmark 2 (issue 6): peak memory of building LightGBM's training Dataset from int8 features.

Run it by hand (pytest does not collect tests/benchmarks/):

    python tests/benchmarks/bench_lgbm_dataset.py [--rows 500000 --features 780 --trees 10]

Each side runs in its own fresh process on the same matrix: `--rows` x `--features` int8 features in 0..4
(plus `--engineered` float32 columns, default none) and a target in {0, .25, .5, .75, 1}, both made before the
baseline. Ours is `model.booster.training_dataset`, the function `NumeraiModel.fit` builds its Dataset with
(at this size it takes the float32-batch `lightgbm.Sequence` path; the estimator builds one float32 matrix only
below 40M cells); the reference is `lgb.Dataset(X.astype("float32"))`. Both get the same parameters
(`model.booster.dataset_params` of the estimator's LightGBM defaults: max_bin 15, the project's bin sample
rows, data_random_seed), so they find the same bins.

Counted: peak RSS (VmHWM, reset through /proc/self/clear_refs) above the process's RSS once the int8 matrix and
the target exist, until the Dataset is constructed: everything construction allocates, in Python and in
LightGBM's C++ (the reference's float32 copy; the bin sample LightGBM holds as float64; the float32 batches;
the Dataset's 4-bit bins). Fails unless ours / reference <= --bound (0.5).

Then both train --trees trees with the estimator's LightGBM parameters, and the tree sections of
`model_to_string()` and the predictions on the first 10,000 rows must be identical. Ours also saves its Dataset
as LightGBM binary (`save_binary`); a third fresh process reloads it (time and peak, counted the same way) and
must grow the same trees: the cache a second training run on the same data could reuse instead of constructing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.peak_memory
from tests.peak_memory import PRELUDE  # noqa: E402

CHILD = PRELUDE + r"""
import ctypes, hashlib
import lightgbm as lgb
from model.booster import DEFAULT_LGBM_PARAMS
from model.booster import dataset_params, training_dataset

args = json.loads(sys.argv[1])
rows, features, engineered_cols = args["rows"], args["features"], args["engineered"]
rng = np.random.default_rng(args["seed"])
X = rng.integers(0, 5, size=(rows, features), dtype=np.int8)
E = rng.standard_normal(size=(rows, engineered_cols), dtype=np.float32)
signal = X[:, :8].sum(axis=1, dtype=np.float32) + E[:, :2].sum(axis=1) + rng.standard_normal(rows, dtype=np.float32) * 4
y = (np.searchsorted(np.quantile(signal, [0.05, 0.25, 0.75, 0.95]), signal) / 4).astype(np.float32)
del signal
params = dict(DEFAULT_LGBM_PARAMS, seed=0, deterministic=True, force_col_wise=True, num_threads=args["threads"])
params.pop("num_iterations")
if args["bin_sample_rows"]:
    params["bin_construct_sample_cnt"] = args["bin_sample_rows"]
ctypes.CDLL("libc.so.6").malloc_trim(0)  # freed temporaries of the set-up would otherwise be reused unseen

baseline = _reset_peak()
reset_ok = _status("VmHWM") - baseline < 64 << 20
start = time.perf_counter()
if args["how"] == "reference":
    matrix = np.concatenate([X, E], axis=1, dtype="float32") if engineered_cols else X.astype("float32")
    data = lgb.Dataset(matrix, label=y, params=dataset_params(params), free_raw_data=True).construct()
    del matrix
elif args["how"] == "ours":
    data = training_dataset(X, E, y, params).construct()
else:  # reload the binary cache
    data = lgb.Dataset(args["binary"], params=dataset_params(params)).construct()
seconds = time.perf_counter() - start
peak = _status("VmHWM") - baseline

out = {"peak": peak, "seconds": seconds, "reset_ok": reset_ok, "num_data": data.num_data(),
       "num_feature": data.num_feature(), "sample_rows": dataset_params(params)["bin_construct_sample_cnt"],
       "max_bin": params["max_bin"]}
if args["how"] == "ours":
    start = time.perf_counter()
    data.save_binary(args["binary"])
    out["save_seconds"] = time.perf_counter() - start
booster = lgb.train(params, data, num_boost_round=args["trees"])
text = booster.model_to_string()
out["trees"] = text[text.index("Tree=0"):text.index("end of trees")]
head = np.hstack([X[:10_000], E[:10_000]]).astype(np.float32)
out["predictions"] = hashlib.sha256(booster.predict(head, num_threads=args["threads"]).tobytes()).hexdigest()
print(json.dumps(out))
"""


def _measure(how: str, args: argparse.Namespace, binary: Path) -> dict:
    spec = {"how": how, "rows": args.rows, "features": args.features, "engineered": args.engineered,
            "seed": args.seed, "threads": args.threads, "trees": args.trees,
            "bin_sample_rows": args.bin_sample_rows, "binary": str(binary)}
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(spec)], capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{how} failed with exit code {done.returncode}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    if not result["reset_ok"]:
        print(f"warning ({how}): the peak-RSS mark could not be reset; the peak includes the set-up")
    return result


def _gb(n: float) -> str:
    return f"{n / 1e9:5.2f} GB" if n >= 1e9 else f"{n / 1e6:5.0f} MB"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=500_000)
    parser.add_argument("--features", type=int, default=780, help="int8 feature columns (values 0..4)")
    parser.add_argument("--engineered", type=int, default=0, help="extra float32 columns (the estimator's engineered ones)")
    parser.add_argument("--trees", type=int, default=10, help="trees grown on each Dataset to compare")
    parser.add_argument("--bin-sample-rows", type=int, default=0,
                        help="bin_construct_sample_cnt for both sides (default: the project's BIN_SAMPLE_ROWS)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bound", type=float, default=0.5, help="largest ours / reference peak ratio accepted")
    parser.add_argument("--no-assert", action="store_true", help="report only; exit 0 whatever the figures")
    parser.add_argument("--cache", type=Path, default=None, help="directory to keep the binary Dataset in (default: a temporary one)")
    args = parser.parse_args()

    width = args.features + args.engineered
    print(f"{args.rows:,} rows x {args.features} int8 features" + (f" + {args.engineered} float32" if args.engineered else "")
          + f": int8 {_gb(args.rows * args.features)}, a float32 copy {_gb(args.rows * width * 4)}; {args.threads} threads",
          flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        cache = args.cache or Path(tmp)
        cache.mkdir(parents=True, exist_ok=True)
        binary = cache / "train.lgbm.bin"
        ref = _measure("reference", args, binary)
        ours = _measure("ours", args, binary)
        size = binary.stat().st_size
        reload = _measure("reload", args, binary)

    print(f"max_bin {ours['max_bin']}, bin_construct_sample_cnt {ours['sample_rows']:,} (both sides); peak RSS above "
          "the baseline (once the int8 matrix exists) while building the Dataset:")
    print(f"  reference  lgb.Dataset(X.astype('float32'))             {_gb(ref['peak'])}  {ref['seconds']:6.1f} s")
    print(f"  ours       model.booster.training_dataset (Sequence)   {_gb(ours['peak'])}  {ours['seconds']:6.1f} s")
    ratio = ours["peak"] / ref["peak"]
    print(f"  ratio ours / reference: {ratio:.2f} (bound {args.bound})")
    print(f"LightGBM binary cache: save_binary {size / 1e6:.0f} MB in {ours['save_seconds']:.1f} s; reload in a fresh "
          f"process {reload['seconds']:.1f} s, peak {_gb(reload['peak'])} "
          f"({reload['seconds'] / ours['seconds']:.2f} x the construction's time)")

    same = {name: r["trees"] == ref["trees"] and r["predictions"] == ref["predictions"] for name, r in
            (("ours", ours), ("reload", reload))}
    shapes = {(r["num_data"], r["num_feature"]) for r in (ref, ours, reload)}
    print(f"{args.trees} trees (estimator's LightGBM parameters) from each Dataset: ours identical to the reference: "
          f"{same['ours']}; from the reloaded binary: {same['reload']}")
    failures = []
    if shapes != {(args.rows, width)}:
        failures.append(f"Dataset shapes {sorted(shapes)} differ from ({args.rows}, {width})")
    if not same["ours"]:
        failures.append("the trees grown on our Dataset differ from the reference's")
    if not same["reload"]:
        failures.append("the trees grown on the reloaded binary Dataset differ from the reference's")
    if ratio > args.bound:
        failures.append(f"ours peaked at {ratio:.2f} x the reference (bound {args.bound})")
    if failures:
        print("FAIL: " + "; ".join(failures))
        return 0 if args.no_assert else 1
    print(f"OK: peak ratio {ratio:.2f} <= {args.bound}, same trees")
    return 0


if __name__ == "__main__":
    sys.exit(main())
