"""Architecture-aware automatic initialization with a plan a person can read.

``plan(model)`` returns an :class:`InitPlan` (one row per parameter: kind, fans, following
activation, rule, distribution, reason); ``InitPlan.apply(seed=...)`` writes it;
``init_model`` does both. Rules are data (:class:`Rule`); presets are rule tables.
Modules: ``activations`` (recognizing activations), ``trace`` (what follows each layer),
``kinds`` (layer kinds, roles, fans), ``rules`` (the Rule table format), ``presets``
(auto, torch, gpt2, bert, keras, flax), ``plan`` (plan, apply, JSON), ``streams`` (the
chunked random streams apply draws from), ``distributed`` (DTensor shards, filled alone),
``own_init`` (modules' own init re-run, seeded, for ``keep`` rows and for the tensors of a
meta-device model that the plan does not draw).
"""

from initlab.introspect.activations import Activation
from initlab.introspect.trace import analyze
from initlab.policy.plan import InitPlan, PlanRow, init_model, plan
from initlab.policy.presets import PRESETS, PolicyOptions, preset_rules
from initlab.policy.rules import Rule, RuleSet

__all__ = [
    "PRESETS",
    "Activation",
    "InitPlan",
    "PlanRow",
    "PolicyOptions",
    "Rule",
    "RuleSet",
    "analyze",
    "init_model",
    "plan",
    "preset_rules",
]
