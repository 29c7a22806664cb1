"""One scheme concept: names and aliases, schemes defined with steps, and no names in the runner.

The reference example's scheme is ``xavier-then-he`` (alias ``seed``) and its network
``mlp-784-128-10`` (alias ``initnet``); old names keep working in commands and saved sweeps.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest
import torch

import initlab
from initlab._checks import ArgumentError
from initlab.cli import main
from initlab.experiments.sweep import CompareConfig
from initlab.schemes import SCHEME_ALIASES, SCHEMES, Scheme, Step, initialize, parse_scheme
from initlab.schemes.registry import canonical_scheme, scheme_names
from initlab.schemes.weights import EveryWeight, normal, weight_parameters
from initlab.zoo.models import (
    MODEL_ALIASES,
    MODELS,
    InitNet,
    OneHiddenLayerMLP,
    build_model,
    resolve_model,
)

SRC = Path(initlab.__file__).parent


def _gen(seed=0):
    return torch.Generator().manual_seed(seed)


def _built(name):
    torch.manual_seed(3)  # construction draws from the global RNG: the same for both names
    return build_model(name)


def test_the_old_names_are_aliases_of_the_new():
    assert SCHEME_ALIASES == {"seed": "xavier-then-he", "skipinit": "rezero"}
    assert MODEL_ALIASES == {"initnet": "mlp-784-128-10"}
    assert parse_scheme("seed")[0] is SCHEMES["xavier-then-he"]
    assert canonical_scheme("seed") == "xavier-then-he"
    assert resolve_model("initnet") == "mlp-784-128-10"
    assert InitNet is OneHiddenLayerMLP  # the deprecated class name
    assert "seed" not in SCHEMES and "initnet" not in MODELS  # listed once, under the new name
    assert {"seed", "xavier-then-he"} <= set(scheme_names())


def test_aliases_give_bitwise_equal_weights():
    ids = {}
    for model in ("initnet", "mlp-784-128-10"):
        for scheme in ("seed", "xavier-then-he"):
            net = initialize(_built(model), scheme, generator=_gen(7))
            assert type(net) is OneHiddenLayerMLP
            ids[model, scheme] = [p.detach().clone() for p in net.parameters()]
    first = ids["mlp-784-128-10", "xavier-then-he"]
    assert not torch.equal(first[0], _built("mlp-784-128-10").fc1.weight)  # it did initialize
    for params in ids.values():
        assert all(torch.equal(p, q) for p, q in zip(params, first, strict=True))


def test_schemes_command_lists_each_scheme_once_with_its_aliases(capsys):
    assert main(["schemes"]) == 0
    lines = capsys.readouterr().out.split("\n\n")[0].splitlines()  # then the shared options
    assert [line.split()[0] for line in lines] == list(SCHEMES)
    (line,) = [ln for ln in lines if ln.startswith("xavier-then-he ")]
    assert line.endswith("(alias: seed)")
    (line,) = [ln for ln in lines if ln.startswith("rezero ")]
    assert line.endswith("(alias: skipinit)")
    assert sum("alias" in ln for ln in lines) == 2


def test_an_old_config_json_naming_seed_and_initnet_still_loads():
    saved = json.loads(CompareConfig().to_json())
    assert saved["model"] == "mlp-784-128-10" and saved["schemes"][0] == "xavier-then-he"
    saved.update(model="initnet", schemes=["seed", "zeros"])
    config = CompareConfig.from_json(json.dumps(saved))
    assert config.schemes == ("seed", "zeros") and config.model == "initnet"  # run ids kept
    with pytest.raises(ValueError, match="schemes must not repeat"):
        CompareConfig(schemes=("seed", "xavier-then-he"))  # one scheme under two names


@dataclass(frozen=True)
class _Record(Step):
    """A step that records what it saw: the first weight, the batch, the steps before it."""

    name: ClassVar[str] = "record"
    needs_batch: ClassVar[bool] = True
    seen: list = None  # a shared list: the dataclass is frozen, its contents are not

    def __call__(self, model, *, generator, batch=None, source=None):
        first = next(weight_parameters(model))[2]
        self.seen.append((first.detach().clone(), batch))
        with torch.no_grad():
            first.mul_(2)  # a step changes the model in place
        return len(self.seen)


def test_a_scheme_defined_with_steps_runs_them_after_its_policy_in_order():
    seen = []
    scheme = Scheme(
        "normal-then-record",
        "N(0, 0.1^2), then two recording steps",
        EveryWeight(normal),
        steps=(_Record(seen), _Record(seen)),
        options={"std": 0.1},
    )
    assert scheme.needs_batch and not scheme.needs_source and scheme.takes_options
    batch = torch.rand(4, 784)
    net = OneHiddenLayerMLP()
    reports = scheme.apply(net, generator=_gen(1), batch=batch)
    assert reports == {"record": 2}  # by step name: the last step of a name reports
    reference = initialize(OneHiddenLayerMLP(), "normal:std=0.1", generator=_gen(1))
    (w1, b1), (w2, b2) = seen
    assert torch.equal(w1, reference.fc1.weight)  # the policy ran first, with the options
    assert torch.equal(w2, 2 * reference.fc1.weight)  # then the steps, in order
    assert torch.equal(net.fc1.weight, 4 * reference.fc1.weight)
    assert b1 is batch and b2 is batch
    # initialize() takes a Scheme as it takes a name
    seen.clear()
    initialize(OneHiddenLayerMLP(), scheme, generator=_gen(1), batch=batch)
    assert len(seen) == 2


@pytest.mark.parametrize(("scheme", "argument"), [("lsuv", "batch"), ("pretrained", "source")])
def test_a_missing_batch_or_source_is_refused_before_anything_is_written(scheme, argument):
    net = OneHiddenLayerMLP()
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(ArgumentError, match=f"scheme {scheme!r} needs a ") as raised:
        initialize(net, scheme, generator=_gen(0))
    assert raised.value.argument == argument
    assert all(torch.equal(p, q) for p, q in zip(net.parameters(), before, strict=True))


def test_the_runner_and_the_cli_ask_the_scheme_instead_of_comparing_names():
    """No comparison in experiments/ or cli/ that involves a scheme tests for a scheme's name.

    Fails on the code before the Scheme concept: ``run.scheme == PRETRAINED``,
    ``scheme.split(":")[0] not in (PRETRAINED, "lsuv")``, ``PRETRAINED not in config.schemes``.
    """
    names = set(scheme_names())
    files = sorted((SRC / "experiments").glob("*.py")) + sorted((SRC / "cli").glob("*.py"))
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in files}
    constants = {  # module-level NAME = "<a scheme name>", in any of these modules
        target.id
        for tree in trees.values()
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant)
        if node.value.value in names
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    found = []
    for path, tree in trees.items():
        for node in ast.walk(tree):
            if not isinstance(node, ast.Compare) or "scheme" not in ast.unparse(node):
                continue
            for part in ast.walk(node):
                named = isinstance(part, ast.Constant) and part.value in names
                if named or (isinstance(part, ast.Name) and part.id in constants):
                    found.append(f"{path.relative_to(SRC)}:{node.lineno}: {ast.unparse(node)}")
    assert not found, "\n".join(found)
