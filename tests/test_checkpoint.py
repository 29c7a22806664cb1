"""Checkpoint files: round trip, weights-only loading, atomic replacement."""

import pickle
import re

import pytest
import torch

from initlab.experiments import checkpoint
from initlab.experiments.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from initlab.experiments.trainer import TrainState


def _state(epoch=2):
    return TrainState(
        epoch,
        32,
        {"fc.weight": torch.arange(6.0).view(2, 3), "fc.bias": torch.zeros(2)},
        {"fc.weight": {"step": torch.tensor(32.0), "exp_avg": torch.ones(2, 3)}},
        torch.Generator().manual_seed(1).get_state(),
        {"cpu": torch.Generator().manual_seed(2).get_state()},
    )


def _equal(a: TrainState, b: TrainState) -> bool:
    def same(x, y):
        if isinstance(x, dict):
            return x.keys() == y.keys() and all(same(x[k], y[k]) for k in x)
        return torch.equal(x, y) if torch.is_tensor(x) else x == y

    return all(same(getattr(a, f), getattr(b, f)) for f in a.to_dict())


def test_round_trip_and_plain_torch_load_with_weights_only(tmp_path):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"seed/0": _state()})
    (run, state), *more = load_checkpoint(path).items()
    assert (run, more) == ("seed/0", []) and _equal(state, _state())
    raw = torch.load(path, weights_only=True)
    assert raw["format"] == FORMAT and raw["runs"]["seed/0"]["epoch"] == 2
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]  # no temporary file left


def test_a_slice_is_saved_without_the_rest_of_its_storage(tmp_path):
    # the stacked trainer's states are rows of (R, ...) tensors; cpu_copy keeps only the row
    from initlab.experiments.trainer import cpu_copy

    stack = torch.zeros(100, 1000)
    save_checkpoint(tmp_path / "a.pt", {"r": _state()})
    small = (tmp_path / "a.pt").stat().st_size
    state = _state()
    state.model["fc.bias"] = cpu_copy(stack[3])
    save_checkpoint(tmp_path / "b.pt", {"r": state})
    assert (tmp_path / "b.pt").stat().st_size < small + 2 * 4000  # one row, not 400 kB


class _Payload:
    def __reduce__(self):
        return (print, ("unpickled!",))


def test_arbitrary_objects_are_refused_and_other_files_named(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "runs": {"x": _Payload()}}, path)
    with pytest.raises(pickle.UnpicklingError):
        load_checkpoint(path)
    torch.save({"format": "other/9", "runs": {}}, path)
    with pytest.raises(ValueError, match=r"is not an initlab checkpoint .*found 'other/9'"):
        load_checkpoint(path)


@pytest.mark.parametrize(
    "payload, message",
    [
        ({"format": FORMAT}, r"'runs' must be a dict of run id -> train state; found no 'runs'"),
        ({"format": FORMAT, "runs": ["seed/0"]}, r"'runs' must be a dict .*; found a list"),
        ({"format": FORMAT, "runs": {3: {}}}, r"run ids must be strings; found 3"),
        ({"format": FORMAT, "runs": {"seed/0": 7}}, r"run 'seed/0': a train state has the keys"),
        (
            {"format": FORMAT, "runs": {"seed/0": {"epoch": 2}}},
            r"run 'seed/0': a train state has the keys \['epoch', .*got \['epoch'\]",
        ),
        (
            {"format": FORMAT, "runs": {"seed/0": {**_state().to_dict(), "epoch": 2.0}}},
            r"run 'seed/0': epoch must be an int; got epoch=2.0",
        ),
        (
            {"format": FORMAT, "runs": {"seed/0": {**_state().to_dict(), "steps": -1}}},
            r"run 'seed/0': steps must be >= 0; got steps=-1",
        ),
    ],
)
def test_a_malformed_runs_entry_is_a_value_error_naming_the_file(tmp_path, payload, message):
    path = tmp_path / "bad.pt"
    torch.save(payload, path)
    with pytest.raises(ValueError, match=re.escape(str(path)) + r"(: |, )" + message):
        load_checkpoint(path)


def test_a_failed_write_keeps_the_previous_version(tmp_path, monkeypatch):
    path = tmp_path / "run.pt"
    save_checkpoint(path, {"seed/0": _state(1)})

    def torn(payload, f):
        f.write(b"half a file")
        raise KeyboardInterrupt

    monkeypatch.setattr(checkpoint.torch, "save", torn)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(path, {"seed/0": _state(2)})
    monkeypatch.undo()
    assert load_checkpoint(path)["seed/0"].epoch == 1
    assert [p.name for p in tmp_path.iterdir()] == ["run.pt"]
