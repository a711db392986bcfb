"""The benchmark scripts stand on their own: no imports from tests/, no paths outside the repo."""

from __future__ import annotations

import re

import pytest
from _scripts import SCRIPTS, load_script

SCRIPT_FILES = sorted(SCRIPTS.glob("*.py"))

#: ``import tests...``, ``from _fields import ...``, and the ``sys.path`` insertion that a
#: script needs to reach a test helper.
TEST_IMPORT = re.compile(
    r"^\s*(from|import)\s+(tests|_fields|_scripts|conftest)\b|[\"']tests[\"']", re.MULTILINE
)
OUTSIDE = ("/work/", "../shared")


def test_there_are_scripts_to_check():
    assert {"_bench.py", "bench_hamiltonian.py", "bench_integrators.py"} <= {
        p.name for p in SCRIPT_FILES
    }


@pytest.mark.parametrize("path", SCRIPT_FILES, ids=lambda p: p.name)
def test_script_imports_nothing_from_tests_and_points_nowhere_outside(path):
    text = path.read_text()
    found = [m.group(0).strip() for m in TEST_IMPORT.finditer(text)]
    assert not found, f"{path.name} reaches into tests/: {found}"
    for pointer in OUTSIDE:
        assert pointer not in text, f"{path.name} points outside the repository: {pointer!r}"


@pytest.mark.parametrize(
    "line",
    [
        "from _fields import Pendulum",
        "import tests._fields",
        "sys.path.insert(0, str(Path(__file__).resolve().parents[1] / 'tests'))",
    ],
)
def test_the_pattern_catches_a_test_import(line):
    assert TEST_IMPORT.search(f"import torch\n{line}\n")


def test_train_step_tables_cover_every_variant(capsys, tmp_path):
    ts = load_script("bench_train_step")
    dirs = ["--data-dir", str(tmp_path / "data"), "--work-dir", str(tmp_path / "runs")]
    ts.main(["--smoke", *dirs])
    out = capsys.readouterr().out
    cost, tta = out.split("### Time to the HNN")
    cost = cost.split("### Kernels alone")[0]
    rows = [line.split("|")[1:-1] for line in cost.splitlines() if line.startswith("| 8 ")]
    assert [r[2].strip() for r in rows] == list(ts.VARIANTS)
    assert all(int(r[4]) <= 600 and int(r[7]) > 0 for r in rows)  # params, kernels
    assert [r[6].strip() for r in rows if r[2].strip() == "hnn"] == ["1.00"]
    reached = [line for line in tta.splitlines() if line.startswith("| hnn ")]
    assert len(reached) == 1 and reached[0].split("|")[6].strip() == "1.00"


def test_integrators_count_force_evaluations():
    bi = load_script("bench_integrators")
    rows = {name: evals for _, name, _, evals, _, _ in bi.throughput([2], {2: 16}, dt=0.01)}
    assert rows["torchdiffeq rk4 (odeint)"] == 4.0
    assert rows["symplectic-euler"] == 1.0
    assert 3.0 <= rows["yoshida4"] < 3.1  # FSAL: 3 per step after the first
    assert rows["rk4"] == 4.0


def test_time_to_accuracy_ratio_uses_one_median_for_every_row():
    # Three HNN seeds, one of which never reaches the target: the HNN row and the reference
    # it is divided by are the same statistic, so its ratio is 1.00 (it read 1.2 before).
    ts = load_script("bench_train_step")

    def run(model, losses):
        return {
            "system": "s",
            "model": model,
            "budget": 4000,
            "params": 10,
            "seed": 0,
            "val_loss": losses,
            "time_s": [1.0] * len(losses),
        }

    runs = [run("hnn", [1.0, 0.2, 0.2]), run("hnn", [1.0, 0.3, 0.25]), run("hnn", [1.0, 0.9, 0.8])]
    runs.append(run("gradnet-c", [0.2, 0.1, 0.1]))
    table = ts.format_tta({"runs": runs}, 4000)
    rows = {
        r.split("|")[1].strip(): r.split("|")[1:-1]
        for r in table.splitlines()
        if r.startswith("| ")
    }
    assert rows["hnn"][5].strip() == "1.00" and rows["hnn"][6].strip() == "2/3"
    assert rows["gradnet-c"][5].strip() == "0.33"


def test_adjoint_bench_runs_and_its_agreement_table_covers_every_adjoint_method(capsys):
    # Tiny settings (seconds): the memory/time table prints a row per K, and the agreement
    # table a row per method with an adjoint, every gap at round-off.
    from hamgrad.integrators import INTEGRATORS

    bench = load_script("bench_adjoint")
    bench.main(["--steps", "10", "20", "--repeats", "1", "--batch", "4", "--hidden", "4"])
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines() if line.strip()[:2] in ("10", "20")] == [
        "10",
        "20",
    ]
    bench.main(["--agreement", "--agreement-steps", "10"])
    rows = [line.split() for line in capsys.readouterr().out.splitlines()[2:] if line.strip()]
    adjoint = {name for name, cls in INTEGRATORS.items() if cls.supports_adjoint}
    assert {row[0] for row in rows} == adjoint
    assert all(float(x) < 1e-12 for row in rows for x in row[1:] if x != "-")
