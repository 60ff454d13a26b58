"""Source snippets for measuring a load's peak memory in a fresh child process (shared by the loading test and
benchmark 1). Peak RSS comes from VmHWM after a reset, not ru_maxrss, which also counts pages a forked child
held of its parent before exec."""

PRELUDE = '''
import json, sys, time
import numpy as np, pandas as pd, psutil, pyarrow

def _status(key):
    # a memory figure from /proc/self/status in bytes (VmHWM: peak RSS since exec or reset)
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

def _reset_peak():
    # reset the peak-RSS mark (clear_refs 5) where allowed; the current RSS is the baseline
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status("VmRSS")
'''

FRAME_SIZE = '''
numeric = sum(frame[c].nbytes for c in frame.columns if frame[c].dtype != object)
objects = 8 * len(frame) * int((frame.dtypes == object).sum())  # references to shared era/data_type strings
size = int(numeric + objects + frame.index.memory_usage(deep=True))
'''
"""Sets `size`: the bytes of `frame` (numeric blocks, object references and the index)."""
