"""Architecture-aware automatic initialization with a plan a person can read.

``plan(model)`` returns an :class:`InitPlan` (one row per parameter: kind, fans, following
activation, rule, distribution, reason); ``InitPlan.apply(seed=...)`` writes it;
``init_model`` does both (:func:`initlab.init_model` adds LSUV after the plan, a scheme's
composition). Rules are data (:class:`Rule`); presets are rule tables. The model is read
through :mod:`initlab.introspect` (activations, layer kinds, traced forward).
Modules: ``rules`` (the Rule table format), ``presets`` (auto, torch, gpt2, bert, keras,
flax), ``build`` (``plan`` and ``init_model``: inspect a model, match rules, make rows),
``plan`` (the data model: ``InitPlan``, ``PlanRow``, apply, table, JSON), ``streams`` (the
chunked random streams apply draws from), ``distributed`` (DTensor shards, filled alone),
``own_init`` (modules' own init re-run, seeded, for ``keep`` rows and for the tensors of a
meta-device model that the plan does not draw), ``receipt`` (init receipts: per tensor its
source, seed, statistics and hash, written by ``apply(receipt=...)``) and ``verify`` (check a
model at step zero against a receipt or alone).
"""

from initlab.introspect.activations import Activation
from initlab.introspect.trace import analyze
from initlab.policy.build import init_model, plan
from initlab.policy.plan import InitPlan, PlanRow
from initlab.policy.presets import PRESETS, PolicyOptions, preset_rules
from initlab.policy.receipt import Receipt, ReceiptError, read_receipt, record_model
from initlab.policy.rules import Rule, RuleSet
from initlab.policy.verify import VerifyReport, verify

__all__ = [
    "PRESETS",
    "Activation",
    "InitPlan",
    "PlanRow",
    "PolicyOptions",
    "Receipt",
    "ReceiptError",
    "Rule",
    "RuleSet",
    "VerifyReport",
    "analyze",
    "init_model",
    "plan",
    "preset_rules",
    "read_receipt",
    "record_model",
    "verify",
]
