"""Smoke test of scripts/bench_simulate.py's n-body suite (tiny sizes: plumbing, not speed)."""

from __future__ import annotations

import re

from _scripts import load_script


def test_nbody_suite_prints_both_tables(capsys):
    bench = load_script("bench_simulate")
    bench.main(
        ["--suite", "nbody", "--cases", "three-body", "--scale", "0.01", "--pool-sizes", "2x11"]
    )
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| three-body |")]
    labels = [r.split("|")[3].strip() for r in rows]
    assert labels == ["scipy DOP853 (old default)", "REBOUND IAS15, 1 process"]
    for row in rows:  # 4 trajectories; energy errors are numbers or '-' (no such trajectory)
        cells = [c.strip() for c in row.split("|")[1:-1]]
        assert cells[1] == "4" and float(cells[3]) > 0 and cells[4].endswith("x")
        assert all(re.fullmatch(r"\d\.\d\de[-+]\d\d|-", c) for c in cells[6:8]), cells
    assert re.search(r"\| 2 trajectories x 11 samples \| 22 \| \d+\.\d{3} \| \d+\.\d{3} \|", out)
