"""Exports of a SessionData: CSV tables, EDF+/BDF+, and live Lab Streaming Layer outlets.

    to_csv(session, out_dir) -> CsvExport (envelope, pelvis, events, tasks, status, strides .csv)
    to_edf(session, path, bdf=False) -> path (every sample exactly the stored one; see edf.py)
    lsl.LslOutlets(metadata)  (needs pylsl; lsl.available() says whether it can run)

An unknown stride (the device's -1, 0xFFFF on the wire) is written as nothing, never as 65535
(common.known_stride)."""

from .common import ExportError, known_stride
from .csv import CsvExport, to_csv
from .edf import to_edf

__all__ = ["CsvExport", "ExportError", "known_stride", "to_csv", "to_edf"]
