"""Experiments: real datasets, a model zoo, training and the comparison of initialization schemes.

Modules: ``idx`` (the IDX file format), ``datasets`` (known datasets, locating and verifying
files, :func:`~initlab.experiments.datasets.load_dataset`), ``download`` (optional fetching from
public mirrors); models, training and comparison live beside them.
"""
