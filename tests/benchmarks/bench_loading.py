"""Benchmark 1 (issue 6): peak memory of loading the medium feature set from a >= 1 GB train file.

Run it by hand (pytest does not collect tests/benchmarks/):

    python tests/benchmarks/bench_loading.py [--data DIR] [--eras 260 --stocks 6700 --features 2748]

It makes the synthetic world with `nmu data synthetic` (or reuses DIR if its train.parquet exists), then in
two fresh processes loads the medium feature set plus `target` with `training.data.load_frame` and with
`pandas.read_parquet(columns=...)`, prints each one's peak RSS above its baseline, the frame's size and the
ratio, and fails unless the lean loader peaks at <= 1.3 x the frame.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # the repository, for tests.peak_memory
from tests.peak_memory import FRAME_SIZE, PRELUDE  # noqa: E402

CHILD = PRELUDE + r"""
from training.data import load_feature_metadata, load_frame, resolve_feature_set
data, how = sys.argv[1], sys.argv[2]
features = resolve_feature_set(load_feature_metadata(data), "medium")
baseline = _reset_peak()
start = time.perf_counter()
if how == "load_frame":
    frame = load_frame(f"{data}/train.parquet", features, targets=("target",))
else:
    frame = pd.read_parquet(f"{data}/train.parquet", columns=["era", "data_type", *features, "target"])
seconds = time.perf_counter() - start
peak = _status('VmHWM') - baseline
""" + FRAME_SIZE + r"""
dtypes = {str(k): int(v) for k, v in frame.dtypes.astype(str).value_counts().items()}
print(json.dumps({"peak": peak, "size": int(size), "rows": len(frame), "columns": frame.shape[1],
                  "seconds": seconds, "dtypes": dtypes}))
"""


def _measure(data: Path, how: str) -> dict:
    done = subprocess.run([sys.executable, "-c", CHILD, str(data), how], capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr)
        raise SystemExit(f"{how} failed with exit code {done.returncode}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/nmu-bench-loading"))
    parser.add_argument("--eras", type=int, default=260)
    parser.add_argument("--stocks", type=int, default=6700)
    parser.add_argument("--features", type=int, default=2748)
    parser.add_argument("--min-gb", type=float, default=1.0, help="Smallest train.parquet to accept.")
    parser.add_argument("--no-assert", action="store_true", help="report only; exit 0 whatever the figures")
    args = parser.parse_args()

    train = args.data / "train.parquet"
    if not train.is_file():
        start = time.perf_counter()
        subprocess.run(
            ["nmu", "data", "synthetic", "--out", str(args.data), "--eras", str(args.eras),
             "--stocks", str(args.stocks), "--features", str(args.features)],
            check=True,
        )
        print(f"made {args.data} in {time.perf_counter() - start:.0f} s")
    file_gb = train.stat().st_size / 1e9
    print(f"train.parquet: {file_gb:.2f} GB on disk")
    if file_gb < args.min_gb:
        print(f"warning: train.parquet is smaller than {args.min_gb} GB; raise --eras for the real benchmark")

    results = {how: _measure(args.data, how) for how in ("load_frame", "pandas.read_parquet")}
    for how, r in results.items():
        print(
            f"{how:20s} rows {r['rows']:>9,} cols {r['columns']:>5} frame {r['size'] / 1e9:6.2f} GB  "
            f"peak RSS {r['peak'] / 1e9:6.2f} GB  ratio {r['peak'] / r['size']:5.2f}  {r['seconds']:6.1f} s  {r['dtypes']}"
        )
    lean = results["load_frame"]
    ratio = lean["peak"] / lean["size"]
    if ratio > 1.3:
        print(f"FAIL: load_frame peaked at {ratio:.2f} x the frame's size (bound 1.3)")
        return 0 if args.no_assert else 1
    print(f"OK: load_frame peak / frame = {ratio:.2f} <= 1.3")
    return 0


if __name__ == "__main__":
    sys.exit(main())
