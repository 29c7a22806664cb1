"""Experiments: train models on real data under several initialization schemes and seeds.

Modules, from the bottom up (each imports only those above it in this list):

- ``config``: :class:`~initlab.experiments.config.TrainConfig` (one run),
  ``PretrainConfig`` and ``CompareConfig`` (a comparison, saved as ``config.json``);
- ``core``: what both trainers share: the data on the device, epoch records, the optimizer,
  gradient norms, the divergence check and the evaluation;
- ``results``: the output directory: ``results.jsonl`` lines, ``summary.csv``, the lock;
- ``checkpoint``: a run's state between epochs, checkpoint files, resume points;
- ``data``: does a dataset fit a model (:func:`~initlab.experiments.data.check_data`);
- ``trainer`` (one run at a time) and ``stacked`` (runs of one architecture trained together);
- ``report`` (the table and figures), ``diagnosis`` (schemes diagnosed at step zero),
  ``distributed`` (torchrun ranks), ``pretrain`` (the source model of schemes that load one);
- ``sweep``: the comparison itself, orchestrating the rest
  (:func:`~initlab.experiments.sweep.run_sweep`).
"""
