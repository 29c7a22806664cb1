"""Experiments: train models on real data under several initialization schemes and seeds.

Modules: ``trainer`` (one run), ``stacked`` (runs of one shape trained together),
``checkpoint`` (resume), ``sweep`` (the comparison: config, runs, results), ``report``
(tables and figures), ``pretrain`` (the ``pretrained`` scheme's source model),
``diagnosis`` (diagnose schemes at step zero), ``distributed`` (torchrun ranks).
"""
