"""Exports of a SessionData: CSV files, EDF+, and a live Lab Streaming Layer outlet.

    to_csv(session, out_dir) -> [envelope.csv, pelvis.csv, events.csv]
    to_edf(session, path) -> path
    lsl.LslOutlets(metadata)  (needs pylsl; lsl.available() says whether it can run)
"""

from .csv import to_csv
from .edf import to_edf

__all__ = ["to_csv", "to_edf"]
