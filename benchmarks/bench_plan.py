"""Apply a plan to GPT-2 small: time against a plain normal_ fill, and peak memory from meta.

Model: ``transformers.GPT2Model(GPT2Config())`` (12 layers, 768 wide, 50257-token vocabulary,
124,439,808 parameters, 498 MB in float32), built from its config, nothing downloaded.

1. Time. The model is built on the meta device, allocated with ``to_empty(device="cpu")`` and
   planned once (policy ``gpt2``: N(0, 0.02) weights, residual projections scaled by
   1/sqrt(2 n_layer), zero biases, unit norms). Then, alternating in one process: every
   parameter filled by a plain ``Tensor.normal_(0, 0.02)`` (the floor: one draw per entry),
   and ``InitPlan.apply(seed=...)``. Target: apply at most 1.2x the plain fill.
2. Peak memory. In a fresh child process: build on meta and plan (no parameter memory yet),
   reset the kernel's peak-RSS mark (``echo 5 > /proc/self/clear_refs``), then
   ``to_empty(device="cpu")`` and ``apply(seed=0)``. The peak resident set size during
   those two steps (``VmHWM`` in ``/proc/self/status``) minus the resident size before them is
   everything the process touched: parameters, scratch buffers, allocator slack. Target: at
   most 1.2x the parameter bytes, i.e. never a second copy of the parameters (apply draws in
   chunks of 1 MiB into the parameters; see ``initlab.policy.streams``).

Run it alone:

    .venv/bin/python benchmarks/bench_plan.py
    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_plan.py --reps 5
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import torch
import transformers

import initlab


def meta_gpt2() -> torch.nn.Module:
    """GPT-2 small on the meta device: shapes only, no parameter memory."""
    config = transformers.GPT2Config()
    with torch.device("meta"):
        return transformers.GPT2Model(config)


def parameter_bytes(model: torch.nn.Module) -> int:
    return sum(p.numel() * p.element_size() for p in model.parameters())


def normal_fill(model: torch.nn.Module) -> None:
    """The floor: every parameter from one plain normal_ fill."""
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0.0, 0.02)


def bench_time(reps: int, policy: str) -> None:
    model = meta_gpt2()
    init_plan = initlab.plan(model, policy)
    model.to_empty(device="cpu")
    n = sum(p.numel() for p in model.parameters())
    print(f"GPT-2 small, {n:,} parameters, policy {policy!r}, {reps} reps, alternating")
    contenders = {
        "normal_ fill of every parameter": lambda i: normal_fill(model),
        "InitPlan.apply(seed)": lambda i: init_plan.apply(seed=i),
    }
    for fn in contenders.values():  # warm-up: page in every parameter
        fn(0)
    times: dict[str, list[float]] = {name: [] for name in contenders}
    for i in range(reps):
        for name, fn in contenders.items():
            start = time.perf_counter()
            fn(i)
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["normal_ fill of every parameter"])
    for name, values in times.items():
        median = statistics.median(values)
        runs = " ".join(f"{v:.3f}" for v in values)
        print(f"  {name:<32} median {median:7.3f} s  ratio {median / base:5.2f}x   ({runs})")


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def memory_child(policy: str) -> dict:
    """Run in a fresh process: RSS peak of to_empty + apply, relative to parameter bytes."""
    model = meta_gpt2()
    init_plan = initlab.plan(model, policy)
    with open("/proc/self/clear_refs", "w") as clear:
        clear.write("5")  # resets VmHWM (peak RSS) to the current RSS
    before = _status_kib("VmRSS")
    model.to_empty(device="cpu")
    init_plan.apply(seed=0)
    peak = _status_kib("VmHWM")
    params = parameter_bytes(model)
    return {"parameter_bytes": params, "peak_delta_bytes": (peak - before) * 1024}


def bench_memory(policy: str) -> None:
    command = [sys.executable, __file__, "--memory-child", "--policy", policy]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    params, peak = result["parameter_bytes"], result["peak_delta_bytes"]
    print(
        "meta -> to_empty -> apply, fresh process: peak RSS increase "
        f"{peak / 2**20:,.1f} MiB for {params / 2**20:,.1f} MiB of parameters: "
        f"ratio {peak / params:.3f}x (VmHWM after clear_refs, minus VmRSS before)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="timed reps each (default: 5)")
    parser.add_argument("--policy", default="gpt2", help="initlab policy (default: gpt2)")
    parser.add_argument("--memory-child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        print(json.dumps(memory_child(args.policy)))
        return
    print(f"torch {torch.__version__}, {torch.get_num_threads()} thread(s)")
    bench_time(args.reps, args.policy)
    bench_memory(args.policy)


if __name__ == "__main__":
    main()
