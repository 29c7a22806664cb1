"""How closely two float32 computations of the same training agree when they round differently.

Stacked and one-by-one training, two processes with other thread counts, or two CPUs compute
the same sums of products in different orders (batched against single matrix products,
blocked and vectorized reductions whose shape depends on the CPU's vector width and the thread
count): the same mathematics, rounded differently. What a test may ask of such a pair follows
from the rounding, not from what one machine happened to print:

- ``K`` float32 terms summed in any order lie within ``gamma_K = K u / (1 - K u)`` (``u`` =
  eps / 2) of the exact sum, relative to the sum of the terms' magnitudes (Higham, "Accuracy
  and Stability of Numerical Algorithms", 2nd ed., 2002, Sec. 3.1 and 4.2), so two orders
  differ by at most about ``K * eps``;
- a step's loss is a chain of such sums, the longest over the ``TERMS = 784`` pixels an image
  feeds into the first layer (InitNet, MLP, ResMLP; the CNN's dot products are shorter), and a
  cross-entropy is a mean of positive terms (no cancellation), so the first step's loss agrees
  to ``784 eps = 9.3e-5`` relative;
- each further step at a learning rate that trains (no blow-up) adds its own ``K eps`` and
  carries the earlier differences on without amplifying them, so after ``t`` steps the losses
  agree to ``t K eps`` (3.0e-3 after 32 steps): :func:`band`.

Measured on an AMD EPYC (AVX2; also under PyTorch's scalar kernels with MKL's compatible
path, and with 2 threads), stacked and one-by-one AdamW losses agree to 3e-7 relative over 32
steps, under 1/100 of the band at every step, while a real mix-up (another run's batch order,
a run's data swapped with another's, AdamW's step count off by one or reset when the stack
shrinks) moves them by 3e-2 to 2e-1, 30 to 250 times the band, from the step it happens on
(tests/test_vectorized.py). A run blowing up towards overflow amplifies rounding without
bound: only its divergence can be compared, and only where it is decisive (a non-finite value
at once, not a crossing of float32's largest value that a rounding could move by a step).
"""

from __future__ import annotations

import torch

EPS = torch.finfo(torch.float32).eps  # 2**-23
TERMS = 784  # the longest dot product of a forward pass here: 28 x 28 pixels into a layer


def band(steps: int, terms: int = TERMS) -> float:
    """Relative tolerance of a loss computed after ``steps`` optimizer steps (at least one)."""
    return max(steps, 1) * terms * EPS


def accuracy_tolerance(steps: int, images: int) -> float:
    """Absolute tolerance of a test accuracy over ``images`` images after ``steps`` steps.

    An image's predicted class can change only if its two largest logits are closer than their
    rounding difference, at most ``band(steps)`` of their size. The gaps between the two largest
    logits spread over the logits' own scale, so about a fraction ``band(steps)`` of the images
    are that close; one image more for a single near-tie.
    """
    return (1 + images * band(steps)) / images
