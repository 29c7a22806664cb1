"""Pretrained initialization: load weights safely, report everything, initialize only the rest.

``load_pretrained`` reads a checkpoint without running code from it (:mod:`.sources`), maps its
names onto the model's (:mod:`.keys`), checks every tensor before writing any (non-finite
values, lossy casts, conflicting tied tensors, shapes), copies what fits and adapts a first
convolution to a different number of input channels (:mod:`.adapt`), initializes only the
parameters that were not loaded with the policy, and returns a :class:`LoadReport`
(:mod:`.report`).
"""

from initlab.pretrained.load import load_pretrained
from initlab.pretrained.report import LoadReport
from initlab.pretrained.sources import CheckpointReadError, PickleRefusedError

__all__ = ["CheckpointReadError", "LoadReport", "PickleRefusedError", "load_pretrained"]
