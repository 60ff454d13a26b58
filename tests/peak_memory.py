"""Source snippets for measuring a load's peak memory in a fresh child process (shared by the loading test and
the benchmarks; the /proc helpers are the runtime runner's). Peak RSS comes from VmHWM after a reset, not
ru_maxrss, which also counts pages a forked child held of its parent before exec."""

PRELUDE = '''
import json, sys, time
import numpy as np, pandas as pd, psutil, pyarrow

from validation.runtime.runner import reset_peak as _clear_peak, status_bytes as _status

def _reset_peak():
    # restart the peak-RSS mark (the runtime runner's own helper); the current RSS is the baseline
    _clear_peak()
    return _status("VmRSS")
'''

FRAME_SIZE = '''
numeric = sum(frame[c].nbytes for c in frame.columns if frame[c].dtype != object)
objects = 8 * len(frame) * int((frame.dtypes == object).sum())  # references to shared era/data_type strings
size = int(numeric + objects + frame.index.memory_usage(deep=True))
'''
"""Sets `size`: the bytes of `frame` (numeric blocks, object references and the index)."""


DATASET_TIMER = r"""
import lightgbm as lgb
construct, dataset_seconds = lgb.Dataset.construct, [0.0]
def timed_construct(self):
    start = time.perf_counter()
    try:
        return construct(self)
    finally:
        dataset_seconds[0] += time.perf_counter() - start
lgb.Dataset.construct = timed_construct
"""
"""A child's source lines that time LightGBM's Dataset construction into `dataset_seconds[0]` (after PRELUDE)."""
