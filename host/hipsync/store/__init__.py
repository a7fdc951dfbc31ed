"""SQLite session store: open_store() -> Store; Store.writer() / ingest() to record; load_session()."""

from .db import ENV_STORE, Store, default_store_path, open_store
from .errors import (
                     CorruptStore,
                     HipsyncDataError,
                     MissingCalibration,
                     NoGaitData,
                     OutputNotWritable,
                     StoreError,
                     StoreVersionError,
                     UnknownPatient,
                     UnknownSession,
)
from .writer import IngestResult, SessionWriter, ingest

__all__ = [
                     "ENV_STORE",
                     "CorruptStore",
                     "HipsyncDataError",
                     "IngestResult",
                     "MissingCalibration",
                     "NoGaitData",
                     "OutputNotWritable",
                     "SessionWriter",
                     "Store",
                     "StoreError",
                     "StoreVersionError",
                     "UnknownPatient",
                     "UnknownSession",
                     "default_store_path",
                     "ingest",
                     "open_store",
]
