"""Database adapters in their official on-disk layouts, behind a registry, and the
resumable face cache that every later stage reads.

    from dffr.datasets import get_dataset
    items = get_dataset("FaceForensics", "/data/ffpp", compression="c23").items()
"""

from dffr.datasets.base import DATASETS, Dataset, DatasetError, Item, get_dataset

__all__ = ["DATASETS", "Dataset", "DatasetError", "Item", "get_dataset"]
