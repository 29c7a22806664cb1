"""initlab transfer: the stacked per-run optimizer, the sweep, resume, report and command line.

Most tests use a small stand-in for :func:`initlab.parameterize.parametrize` (``_Fake``, the
contract's ``apply_``/``param_groups``): an SP-like one, and a muP-like one with the output
multiplier and the Adam learning rate of hidden and output weights both 1/width_mult (Yang et
al. 2022, Tensor Programs V, Table 3), attached as a forward hook, so that the stacked forward
must carry a model's hooks. One test runs the real ``parametrize``.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import initlab.parameterize
from initlab._checks import ArgumentError
from initlab.cli import transfer as cli_transfer
from initlab.experiments import transfer
from initlab.experiments.core import TensorData
from initlab.experiments.results import read_results
from initlab.experiments.transfer import StackedOptimizer, TransferConfig, run_transfer
from initlab.reports.transfer import format_lr, summarize


class _Fake:
    """The parametrize contract for an MLP (``hidden.0.0`` input layer, ``head`` readout)."""

    def __init__(self, model, name, *, base, optimizer="adam", example_input=None):
        self.model, self.name = model, name
        self.mult = model.head.in_features / base.head.in_features
        self.handle = None

    def apply_(self, *, seed=0):
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for module in self.model.modules():
                if isinstance(module, nn.Linear):
                    module.weight.normal_(0, module.in_features**-0.5, generator=g)
                    module.bias.zero_()
        if self.name == "mup":
            self.handle = self.model.head.register_forward_hook(lambda m, i, out: out / self.mult)
        return self

    def param_groups(self, lr, weight_decay=0.0, eps=1e-8):
        first = list(self.model.hidden[0].parameters())
        rest = [p for p in self.model.parameters() if all(p is not q for q in first)]
        scale = 1 / self.mult if self.name == "mup" else 1.0
        return [
            {"params": first, "lr": lr, "weight_decay": weight_decay, "eps": eps},
            {"params": rest, "lr": lr * scale, "weight_decay": weight_decay, "eps": eps},
        ]


@pytest.fixture(scope="module")
def mnist_slice():
    """2,000 training and 200 validation images of the embedded MNIST, loaded once."""
    data = transfer._load_data(TransferConfig(val_size=200))
    return TensorData(data.train_x[:2000], data.train_y[:2000], data.test_x, data.test_y)


@pytest.fixture(autouse=True)
def _small_data(request, mnist_slice, monkeypatch):
    # Loading the full MNIST takes a second or more per sweep; the sweeps here read the slice
    # (test_a_tiny_sweep... loads it through the real path).
    if not request.node.name.startswith("test_a_tiny_sweep"):
        monkeypatch.setattr(transfer, "_load_data", lambda config: mnist_slice)


def fake(model, name, *, base, optimizer="adam", example_input=None):
    return _Fake(model, name, base=base, optimizer=optimizer)


def tiny(**changes) -> TransferConfig:
    settings = dict(widths=(8, 16), lrs=(2.0**-10, 2.0**-6), seeds=(0, 1), steps=6, val_size=200)
    return TransferConfig(**{**settings, **changes})


# ----------------------------------------------------------------------------- the optimizer


@pytest.mark.parametrize("kind", ["adam", "adamw", "sgd"])
def test_stacked_optimizer_steps_each_run_as_torch_optim_alone(kind):
    # Per-run rate, epsilon and weight decay; the fused kernels run per slice, so each run's
    # slice must equal a torch.optim step of that run alone, bit for bit.
    g = torch.Generator().manual_seed(0)
    shapes = {"w": (3, 4, 5), "b": (3, 5)}
    start = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
    lr, eps, wd = [1e-3, 2e-2, 4e-1], [1e-8, 1e-3, 1e-8], [0.0, 0.1, 0.01]
    params = {n: t.clone().requires_grad_() for n, t in start.items()}
    stacked = StackedOptimizer(
        params,
        {n: lr for n in params},
        kind,
        eps={n: eps for n in params},
        weight_decay={n: wd for n in params},
        momentum=0.9,
    )
    alone = []
    for r in range(3):
        own = [start[n][r].clone().requires_grad_() for n in shapes]
        if kind == "sgd":
            opt = torch.optim.SGD(own, lr=lr[r], momentum=0.9, weight_decay=wd[r], fused=True)
        else:
            cls = torch.optim.Adam if kind == "adam" else torch.optim.AdamW
            opt = cls(own, lr=lr[r], eps=eps[r], weight_decay=wd[r], fused=True)
        alone.append((own, opt))
    for _ in range(3):
        grads = {n: torch.randn(s, generator=g) for n, s in shapes.items()}
        for n, p in params.items():
            p.grad = grads[n].clone()
        stacked.step()
        for r, (own, opt) in enumerate(alone):
            for p, n in zip(own, shapes, strict=True):
                p.grad = grads[n][r].clone()
            opt.step()
    for r, (own, _) in enumerate(alone):
        for p, n in zip(own, shapes, strict=True):
            assert torch.equal(params[n][r].detach(), p.detach()), (kind, r, n)
    assert not torch.equal(params["w"].detach(), start["w"])  # it moved


def test_stacked_optimizer_refuses_an_unknown_optimizer():
    with pytest.raises(ArgumentError, match="adam.*adamw.*sgd"):
        StackedOptimizer({"w": torch.zeros(2, 3)}, {"w": [1.0, 1.0]}, "lion")


# ----------------------------------------------------------------------------- one stack


def _synthetic(n=256, val=64) -> TensorData:
    g = torch.Generator().manual_seed(1)
    x = torch.rand(n + val, 1, 28, 28, generator=g)
    y = torch.randint(0, 10, (n + val,), generator=g)
    return TensorData(x[:n], y[:n], x[n:], y[n:])


def test_a_stack_of_rates_equals_plain_pytorch_training_per_run():
    # Two rates x one seed of the muP-like fake, trained stacked, against a plain loop per
    # rate: model, hook, torch.optim.Adam(fused) over the same param groups and batches. The
    # products differ only in batching (bmm against mm), so within 1e-5 relative, the band
    # the stacked trainer's tests allow (float32 eps 1.2e-7 over 5 steps of 784-term sums).
    config = tiny(widths=(8, 32), lrs=(2.0**-9, 2.0**-5), seeds=(3,), steps=5)
    data = _synthetic()
    runs = [(lr, 3) for lr in config.lrs]
    lines = transfer._train_cell(config, data, fake, "mup", 32, 2, runs)
    order = transfer._batch_order(data, config, 3)
    for (lr, seed), line in zip(runs, lines, strict=True):
        model = transfer.build(config, 32, 2)
        with torch.device("meta"):
            base = transfer.build(config, 8, 2)
        p = fake(model, "mup", base=base).apply_(seed=transfer.run_seeds(seed)[0])
        opt = torch.optim.Adam(p.param_groups(lr=lr), fused=True)
        for index in order:
            loss = F.cross_entropy(model(data.train_x[index]), data.train_y[index])
            opt.zero_grad()
            loss.backward()
            opt.step()
        with torch.no_grad():
            val = F.cross_entropy(model(data.test_x), data.test_y).item()
        assert line["status"] == "finished"
        assert line["val_loss"] == pytest.approx(val, rel=1e-5)
    assert lines[0]["val_loss"] != pytest.approx(lines[1]["val_loss"], rel=1e-3)


# ----------------------------------------------------------------------------- the sweep


def test_a_tiny_sweep_writes_every_run_and_the_optimum_is_the_argmin(tmp_path):
    config = tiny()
    result = run_transfer(config, tmp_path, parametrize=fake, coord_check=False)
    lines = read_results(tmp_path / "results.jsonl")
    assert len(lines) == 2 * 2 * 2 * 2  # parameterizations x widths x rates x seeds
    assert len({line["run"] for line in lines}) == len(lines)
    assert {line["status"] for line in lines} == {"finished"}
    for name in ("config.json", "summary.csv", "report.md", "loss_vs_lr.png", "optimal_lr.png"):
        assert (tmp_path / name).is_file(), name
    for cell in result.summary.cells:  # by hand: the mean over seeds, then the argmin
        means = {}
        for lr in config.lrs:
            values = [
                line["val_loss"]
                for line in lines
                if (line["parameterization"], line["width"], line["lr"])
                == (cell.parameterization, cell.width, lr)
            ]
            means[lr] = sum(values) / len(values)
        assert cell.optimal_lr == min(means, key=means.get)
    report = (tmp_path / "report.md").read_text()
    assert "| parameterization | w8 d2 | w16 d2 | width shift |" in report
    assert json.loads((tmp_path / "config.json").read_text())["widths"] == [8, 16]


def test_a_diverged_run_is_recorded_with_its_step_and_the_others_finish(tmp_path):
    config = tiny(lrs=(1e-3, 1e30), optimizer="sgd", widths=(8, 16), seeds=(0,), steps=8)
    run_transfer(config, tmp_path, parametrize=fake, coord_check=False)
    lines = {(line["parameterization"], line["width"], line["lr"]): line for line in
             read_results(tmp_path / "results.jsonl")}  # fmt: skip
    for (_, _, lr), line in lines.items():
        if lr == 1e30:  # weights of 1e30 after one step: the next logits overflow
            assert line["status"] == "diverged"
            assert 1 <= line["step"] <= 8
            assert "val_loss" not in line
        else:
            assert line["status"] == "finished" and math.isfinite(line["val_loss"])
    csv = (tmp_path / "summary.csv").read_text().splitlines()
    assert any(row.endswith(",0,1,0") for row in csv)  # finished 0, diverged 1, not optimal


def test_resume_skips_finished_runs_and_the_file_is_readable_after_a_stop(tmp_path):
    config = tiny()
    trained = []

    def stop(name, width, depth):
        trained.append((name, width))
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_transfer(config, tmp_path, parametrize=fake, on_cell=stop, coord_check=False)
    first = read_results(tmp_path / "results.jsonl")
    assert [(line["parameterization"], line["width"]) for line in first] == [("sp", 8)] * 4
    trained.clear()
    result = run_transfer(
        None, tmp_path, resume=True, parametrize=fake, on_cell=lambda *cell: trained.append(cell)
    )
    assert trained == [("sp", 16, 2), ("mup", 8, 2), ("mup", 16, 2)]
    lines = read_results(tmp_path / "results.jsonl")
    assert lines[:4] == first and len(lines) == 16
    assert len({line["run"] for line in lines}) == 16
    assert len(result.summary.cells) == 4
    trained.clear()  # resuming a finished sweep trains nothing
    run_transfer(None, tmp_path, resume=True, parametrize=fake, on_cell=trained.append)
    assert trained == []


def test_a_new_sweep_refuses_a_directory_with_results(tmp_path):
    run_transfer(tiny(steps=1), tmp_path, parametrize=fake, coord_check=False)
    with pytest.raises(FileExistsError, match="resume"):
        run_transfer(tiny(steps=1), tmp_path, parametrize=fake, coord_check=False)


def test_a_refused_parameterization_stops_the_sweep_before_anything_is_written(tmp_path):
    def refusing(model, name, *, base, optimizer="adam", example_input=None):
        if model.head.in_features == 16:
            raise ArgumentError(
                "model", "parameter 'hidden.1.0.weight' has shape (16, 16), the base (8, 9)"
            )
        return fake(model, name, base=base)

    with pytest.raises(ArgumentError, match="hidden.1.0.weight.*16, 16.*8, 9"):
        run_transfer(tiny(), tmp_path, parametrize=refusing, coord_check=False)
    assert not (tmp_path / "results.jsonl").exists()
    assert not (tmp_path / "config.json").exists()


@pytest.mark.parametrize(
    ("changes", "argument", "words"),
    [
        ({"parameterizations": ("sp", "mupp")}, "parameterizations", "completep"),
        ({"optimizer": "lion"}, "optimizer", "adamw"),
        ({"model": "resnet"}, "model", "char-gpt"),
        ({"parameterizations": ("completep",)}, "depths", "depth"),
        ({"widths": (64, 64)}, "widths", "two distinct"),
        ({"lrs": (1e-3, -1.0)}, "lrs", "> 0"),
        ({"task": "vit"}, "task", "char-lm"),
    ],
)
def test_bad_config_is_refused_naming_the_argument_and_the_valid_values(changes, argument, words):
    with pytest.raises(ArgumentError, match=words) as raised:
        tiny(**changes)
    assert raised.value.argument == argument


def test_config_round_trips_through_its_dict():
    config = tiny(depths=(2, 4), parameterizations=("sp", "completep"))
    assert TransferConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config
    assert config.cells("sp") == [(8, 2), (16, 2), (8, 4)]


# ----------------------------------------------------------------------------- the report


def _lines(optima: dict, lrs, widths, *, diverge=()):
    """Run lines whose validation loss is |grid index - optimum| + 1 (seed 0 and 1 alike)."""
    out = []
    for (name, width), best in optima.items():
        for i, lr in enumerate(lrs):
            for seed in (0, 1):
                line = {"type": "run", "parameterization": name, "width": width, "depth": 2,
                        "lr": lr, "seed": seed, "status": "finished",
                        "val_loss": abs(i - best) + 1.0 + 0.01 * seed}  # fmt: skip
                if (name, width, lr, seed) in diverge:
                    line = {**line, "status": "diverged", "step": 3}
                    del line["val_loss"]
                out.append(line)
    return out


def test_summary_counts_grid_steps_and_decides_check_b():
    lrs = [2.0**k for k in range(-12, -4)]  # 8 rates
    widths = (64, 256, 1024)
    optima = {("sp", 64): 5, ("sp", 256): 4, ("sp", 1024): 2}
    optima.update({("mup", 64): 4, ("mup", 256): 4, ("mup", 1024): 3})
    summary = summarize(_lines(optima, lrs, widths), lrs, 64, 2)
    sp, mup = summary.shifts
    assert (sp.steps, sp.ratio, sp.as_expected) == (3, 16, True)
    assert (mup.steps, mup.as_expected) == (1, True)
    assert mup.optima == (2.0**-8, 2.0**-8, 2.0**-9)
    assert summary.check_b == (
        "muP against SP (the optimal rate moves by at most one grid step over 16x width under "
        "muP, at least two under SP): holds: muP's optimum moves by 1 step, SP's by 3 steps "
        "over 16x width"
    )
    # muP moving by two grid steps fails the check
    optima[("mup", 1024)] = 2
    assert summarize(_lines(optima, lrs, widths), lrs, 64, 2).check_b.endswith(
        "does not hold: muP's optimum moves by 2 steps, SP's by 3 steps over 16x width"
    )
    # a rate where one seed diverged is excluded: the optimum moves to the next best rate
    lines = _lines(optima, lrs, widths, diverge={("mup", 64, lrs[4], 1)})
    cell = summarize(lines, lrs, 64, 2).cells[3]
    assert (cell.mean_loss[4], cell.optimum) == (math.inf, 3)
    # every rate diverged at one width: no optimum there, so the check is not decided
    everything = {("sp", 256, lr, seed) for lr in lrs for seed in (0, 1)}
    summary = summarize(_lines(optima, lrs, widths, diverge=everything), lrs, 64, 2)
    assert summary.shifts[0].steps is None
    assert summary.check_b.endswith("not decided: a width has no optimum (every rate diverged "
                                    "or is missing)")  # fmt: skip


def test_summary_says_when_the_widths_span_less_than_16x_or_an_optimum_is_at_the_edge():
    lrs = [2.0**k for k in range(-8, -4)]
    optima = {("sp", 64): 0, ("sp", 256): 1, ("mup", 64): 1, ("mup", 256): 1}
    summary = summarize(_lines(optima, lrs, (64, 256)), lrs, 64, 2)
    assert summary.check_b.endswith("under SP): not decided: the widths span 4x, 16x are needed")
    # nor is either shift: "as expected" is stated over 16x width
    assert summary.shifts[1].sentence() == (
        "mup: the optimum moves by 0 grid steps over 4x width (64 -> 256); not decided: at most "
        "1 step expected over 16x width, and this spans 4x"
    )
    assert "grid's edge" in summary.shifts[0].sentence()
    assert "grid's edge" not in summary.shifts[1].sentence()


def test_depth_shift_is_decided_over_2_to_16_blocks():
    # depth transfer is expected over 2 to 16 blocks (8x), not 16x as for width
    lrs = [2.0**k for k in range(-8, -4)]
    lines = [
        {"type": "run", "parameterization": "completep", "width": 32, "depth": d, "lr": lr,
         "seed": 0, "status": "finished", "val_loss": abs(i - 1) + 1.0}  # optimum: index 1
        for d in (2, 4, 8, 16) for i, lr in enumerate(lrs)
    ]  # fmt: skip
    (shift,) = summarize(lines, lrs, 32, 2).shifts
    assert (shift.axis, shift.steps, shift.ratio, shift.as_expected) == ("depth", 0, 8, True)
    assert shift.sentence() == (
        "completep: the optimum moves by 0 grid steps over 8x depth (2 -> 16); as expected "
        "(at most 1 step expected over 8x depth)"
    )
    shorter = [line for line in lines if line["depth"] in (2, 8)]
    assert (
        summarize(shorter, lrs, 32, 2)
        .shifts[0]
        .sentence()
        .endswith("not decided: at most 1 step expected over 8x depth, and this spans 4x")
    )


def test_format_lr_writes_powers_of_two():
    assert [format_lr(2.0**-8), format_lr(3e-4), format_lr(None)] == ["2^-8", "0.0003", "-"]


# ----------------------------------------------------------------------------- command line


def _cli(argv, monkeypatch, parametrize=fake):
    monkeypatch.setattr(initlab.parameterize, "parametrize", parametrize, raising=False)
    parser = argparse.ArgumentParser(prog="initlab")
    cli_transfer.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["transfer", *argv])
    return args.func(args)


TINY_ARGS = ["--widths", "8,16", "--lr-grid", "2^-10,2^-6", "--seeds", "1", "--steps", "3"]


def test_cli_runs_the_coordinate_check_and_the_sweep_and_prints_the_table(
    tmp_path, monkeypatch, capsys
):
    out = tmp_path / "run"
    assert _cli([*TINY_ARGS, "--out", str(out)], monkeypatch) == 0
    printed = capsys.readouterr().out
    assert "parameterization  w8 d2" in printed and "width shift" in printed
    assert "- mup: the optimum moves by" in printed
    assert len(read_results(out / "results.jsonl")) == 2 * 2 * 2
    assert (out / "coord_check_mup.json").is_file() and (out / "coord_check_sp.png").is_file()
    assert "### Coordinate check: mup" in (out / "report.md").read_text()
    # --resume of the finished sweep trains nothing and prints the same table
    assert _cli(["--resume", str(out)], monkeypatch) == 0
    assert capsys.readouterr().out.splitlines()[:3] == printed.splitlines()[:3]


def test_cli_coord_check_only_writes_the_check_and_no_sweep(tmp_path, monkeypatch, capsys):
    out = tmp_path / "cc"
    assert _cli([*TINY_ARGS, "--coord-check-only", "--out", str(out)], monkeypatch) == 0
    assert "slope" in capsys.readouterr().out
    assert (out / "coord_check_sp.json").is_file()
    assert not (out / "results.jsonl").exists()


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--parameterizations", "sp,mupp"], "argument --parameterizations: .*completep"),
        (["--optimizer", "lion"], "argument --optimizer: .*adam.*adamw.*sgd"),
        (["--model", "resnet"], "argument --model: .*char-gpt"),
    ],
)
def test_cli_bad_input_exits_2_naming_the_flag(argv, words, tmp_path, monkeypatch, capsys):
    assert _cli([*argv, "--out", str(tmp_path / "x")], monkeypatch) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab transfer: error: ")
    assert __import__("re").search(words, err), err


def test_cli_refuses_a_bad_rate_through_argparse(monkeypatch):
    with pytest.raises(SystemExit) as raised:
        _cli(["--lr-grid", "2^x"], monkeypatch)
    assert raised.value.code == 2


# ----------------------------------------------------------------------------- the real thing


def test_the_real_parametrize_runs_a_tiny_sweep(tmp_path):
    real = getattr(initlab.parameterize, "parametrize", None)
    if real is None:
        pytest.skip("initlab.parameterize.parametrize has not landed")
    config = tiny(widths=(16, 32), seeds=(0,), steps=4)
    result = run_transfer(config, tmp_path, coord_check=False)
    assert len(result.lines) == 2 * 2 * 2
    assert {line["status"] for line in result.lines} == {"finished"}
    # muP at the base width is SP (Tensor Programs V sec. 4): identical lines there
    by = {(ln["parameterization"], ln["width"], ln["lr"]): ln["val_loss"] for ln in result.lines}
    for lr in config.lrs:
        assert by[("mup", 16, lr)] == pytest.approx(by[("sp", 16, lr)], rel=1e-6)
        assert by[("mup", 32, lr)] != pytest.approx(by[("sp", 32, lr)], rel=1e-4)


def test_char_gpt_sweeps_width_and_depth_under_completep(tmp_path, monkeypatch):
    # The depth cells: every width at the base depth, then the other depths at the base width,
    # each parameterized against the base (two blocks) by the real parametrize.
    if getattr(initlab.parameterize, "parametrize", None) is None:
        pytest.skip("initlab.parameterize.parametrize has not landed")
    g = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, transfer._vocab_size(), (40, 9), generator=g)
    data = TensorData(tokens[:32, :8], tokens[:32, 1:], tokens[32:, :8], tokens[32:, 1:])
    monkeypatch.setattr(transfer, "_load_data", lambda config: data)
    config = TransferConfig(model="char-gpt", parameterizations=("completep",), widths=(16, 32),
                            depths=(2, 3), lrs=(1e-3,), seeds=(0,), steps=2, batch_size=4,
                            seq_len=8)  # fmt: skip
    result = run_transfer(config, tmp_path, coord_check=False)
    cells = [(line["width"], line["depth"]) for line in result.lines]
    assert cells == [(16, 2), (32, 2), (16, 3)]
    assert {line["status"] for line in result.lines} == {"finished"}
    assert [s.axis for s in result.summary.shifts] == ["width", "depth"]


ODD_MODEL = """
import torch
from torch import nn


class Cube(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.head = nn.Linear(784, 10)
        self.cube = nn.Parameter(torch.zeros(width, width, width))

    def forward(self, x):
        return self.head(x.flatten(1)) + 0 * self.cube.sum()


def build(width):
    return Cube(width)
"""


@pytest.mark.filterwarnings("ignore:no rule covers")  # the plan's note on 'cube', beside the point
def test_cli_prints_the_parameterizations_refusal_of_unmatchable_widths(
    tmp_path, monkeypatch, capsys
):
    # A parameter with three width dimensions: no parameterization covers it, and parametrize
    # says so naming the parameter and both shapes; the command prints it and exits 2.
    if getattr(initlab.parameterize, "parametrize", None) is None:
        pytest.skip("initlab.parameterize.parametrize has not landed")
    (tmp_path / "odd_transfer_model.py").write_text(ODD_MODEL)
    monkeypatch.syspath_prepend(str(tmp_path))
    real = initlab.parameterize.parametrize
    argv = [*TINY_ARGS, "--model", "odd_transfer_model:build", "--out", str(tmp_path / "o")]
    assert _cli(argv, monkeypatch, parametrize=real) == 2
    err = capsys.readouterr().err
    assert err.startswith("initlab transfer: error: argument --base-width: parameter 'cube'"), err
    assert "(16, 16, 16)" in err and "(8, 8, 8)" in err
    assert not (tmp_path / "o" / "results.jsonl").exists()


def test_cli_ctrl_c_says_how_to_resume(tmp_path, monkeypatch, capsys):
    def stop(*args, **kwargs):
        (tmp_path / "o").mkdir()
        (tmp_path / "o" / "config.json").write_text("{}")
        raise KeyboardInterrupt

    monkeypatch.setattr(transfer, "run_transfer", stop)
    assert _cli([*TINY_ARGS, "--out", str(tmp_path / "o")], monkeypatch) == 130
    assert f"initlab transfer --resume {tmp_path / 'o'}" in capsys.readouterr().err


def test_cli_help_names_every_flag(capsys):
    parser = argparse.ArgumentParser(prog="initlab")
    cli_transfer.register(parser.add_subparsers(dest="command"))
    with pytest.raises(SystemExit):
        parser.parse_args(["transfer", "--help"])
    text = capsys.readouterr().out
    for flag in ("--model", "--parameterizations", "--widths", "--depths", "--lr-grid",
                 "--steps", "--seeds", "--optimizer", "--out", "--resume", "--coord-check-only",
                 "--task"):  # fmt: skip
        assert flag in text, flag
