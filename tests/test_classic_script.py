"""examples/classic_results.py: the band table it prints after an ``initlab compare``."""

import argparse
import importlib.util
import json
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "examples" / "classic_results.py"


@pytest.fixture(scope="module")
def script():
    spec = importlib.util.spec_from_file_location("classic_results", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_band_table_has_hand_values_and_stays_aligned_with_long_names(
    script, tmp_path, capsys, monkeypatch
):
    long = "orthogonal:gain=1.4142135623730951"  # 34 characters, past the 28 of the column
    lines = []
    for scheme, accuracies in (("he", (0.5, 0.7, 0.6)), (long, (0.1, 0.2, 0.3))):
        for seed, accuracy in enumerate(accuracies):
            for epoch, steps in ((1, 100), (2, 100)):
                run = f"{scheme}/{seed}"
                line = {"type": "epoch", "run": run, "epoch": epoch, "steps": steps}
                lines.append({**line, "test_accuracy": accuracy + (epoch - 1) * 0.05})
    lines.append({"type": "status", "run": f"{long}/2", "status": "diverged"})
    for seed in range(3):  # diverged before its first evaluation: no epoch line at all
        lines.append({"type": "init", "run": f"dead/{seed}"})
        lines.append({"type": "status", "run": f"dead/{seed}", "status": "diverged"})
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "results.jsonl").write_text("\n".join(map(json.dumps, lines)) + "\n")
    monkeypatch.setattr(script, "_run", lambda command, args: 0)  # the results are there
    args = argparse.Namespace(out=str(tmp_path), seeds=3, first_seed=0, dry_run=False)
    script.compare("x", "title", "", args)
    out = capsys.readouterr().out.splitlines()
    header = next(i for i, text in enumerate(out) if text.lstrip().startswith("scheme"))
    rows = out[header : header + 4]
    # after 100 and 200 steps: mean [min, max] over the 3 seeds, by hand
    assert "60.0% [50.0%, 70.0%]" in rows[1] and "65.0% [55.0%, 75.0%]" in rows[1]
    assert "20.0% [10.0%, 30.0%]" in rows[2] and "25.0% [15.0%, 35.0%]" in rows[2]
    assert rows[1].endswith("0/3") and rows[2].endswith("1/3")
    assert rows[2].startswith(f"  {long} ")
    assert rows[3].split() == ["dead", "-", "-", "3/3"]  # a row, not left out
    # the columns line up: every row's step columns end where the header's do
    assert len({len(row.rsplit("  ", 1)[0]) for row in rows}) == 1
    assert rows[0].index("100") == rows[1].index("60.0%") + len("60.0% [50.0%, 70.0%]") - 3


def test_a_failing_command_is_recorded_and_the_script_exits_1(script, monkeypatch, capsys):
    args = argparse.Namespace(out="unused", seeds=1, first_seed=0, dry_run=False)
    monkeypatch.setattr(script, "FAILED", [])
    assert script._run("deeplinear --depths 0 --seeds 1", args) == 2  # refused by argparse
    assert script.FAILED == ["initlab deeplinear --depths 0 --seeds 1 (exit status 2)"]
    monkeypatch.setattr(script, "EXPERIMENTS", {"saxe": lambda args: script._run("x", args)})
    monkeypatch.setattr(script, "_run", lambda command, args: script.FAILED.append(command))
    monkeypatch.setattr("sys.argv", ["classic_results.py", "saxe"])
    with pytest.raises(SystemExit) as stopped:
        script.main()
    assert stopped.value.code == 1
    assert "failed:\n  initlab deeplinear --depths 0 --seeds 1 (exit status 2)\n  x" in (
        capsys.readouterr().err
    )
