"""training.compute: a fit takes the cores other programs leave free, and nmu fits on one machine take turns."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from model.params import available_cpus
from training.compute import fit_slot, free_cores


def test_free_cores_leaves_out_a_core_another_program_keeps_busy():
    if available_cpus() < 2:
        pytest.skip("needs two CPUs to tell a busy one from a free one")
    idle = free_cores(0.5)
    assert 1 <= idle <= available_cpus()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        time.sleep(0.3)
        assert free_cores(0.5) <= available_cpus() - 1
    finally:
        hog.kill()
        hog.wait()


def test_a_second_fit_waits_for_the_slot_and_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("NMU_RUNTIME_DIR", str(tmp_path / "runtime"))
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent("""
        import sys, time
        from training.compute import fit_slot
        with fit_slot(1):
            print("held", flush=True)
            time.sleep(1.5)
    """)], stdout=subprocess.PIPE, text=True, env={**__import__("os").environ})
    assert holder.stdout.readline().strip() == "held"
    said: list[str] = []
    start = time.perf_counter()
    with fit_slot(2, say=said.append) as threads:
        waited = time.perf_counter() - start
    holder.wait()
    assert threads == 2 and waited > 1.0 and any("waiting for another nmu fit" in s for s in said)
    start = time.perf_counter()
    with fit_slot(1, say=said.append, exclusive=False):
        assert time.perf_counter() - start < 0.5
