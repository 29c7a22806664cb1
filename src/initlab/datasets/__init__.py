"""Datasets: the IDX families (MNIST embedded, Fashion-MNIST, KMNIST, EMNIST), located and verified.

Modules: ``idx`` (the IDX file format), ``families`` (known datasets, locating and verifying
files, :func:`load_dataset`), ``download`` (optional fetching from public mirrors), ``data/``
(the embedded MNIST).
"""

from initlab.datasets.families import DATASETS, Dataset, load_dataset

__all__ = ["DATASETS", "Dataset", "load_dataset"]
