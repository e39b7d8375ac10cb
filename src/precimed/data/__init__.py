"""Reading and typing data: the built-in real cohorts and the user's table files. No cleaning, no ML."""

from precimed.data.files import ACCEPTED_SUFFIXES, read_table
from precimed.data.registry import DatasetInfo, dataset_info, list_datasets, load_dataset

__all__ = [
    "ACCEPTED_SUFFIXES",
    "DatasetInfo",
    "dataset_info",
    "list_datasets",
    "load_dataset",
    "read_table",
]
