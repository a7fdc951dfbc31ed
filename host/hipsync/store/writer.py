"""Incremental, idempotent writing of received frames into the store.

SessionWriter.add(received) buffers rows and commits whenever one second of device clock (or one
second of wall time) has passed since the last commit, so a killed process loses at most the last
second; every committed frame survives (WAL, synchronous=FULL: see db.py). Rows are keyed by
(session, seq) with INSERT OR IGNORE: re-ingesting frames already stored adds nothing.

A store that cannot be written (its disk is full, an I/O error) never ends a live session: the
failed commit is rolled back, its rows stay in memory and further rows join them, up to
HOLD_MAX_ROWS (beyond that they are counted in `rows_not_held`, never silently); the commit is
tried again every RETRY_WALL_S, so freeing space writes everything held. `error` is the store's
error while it lasts, `on_error(e)` is called when it starts; close() tries a last time and returns
the result, `rows_unwritten` counting what never reached the store."""

from __future__ import annotations

import itertools
import json
import sqlite3
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Self

import numpy as np

from hipwire import frames as wire
from hipwire import units

from ..protocol import Batch, Event, RawEmg, Received, Rep, Status

COMMIT_EVERY_TICKS = units.CLOCK_HZ  # 1 s of device clock
COMMIT_EVERY_WALL_S = 1.0
COMMIT_EVERY_ROWS = 2000  # bound the memory held between commits
# While the store cannot be written: rows held in memory (about an hour of the processed stream,
# some 30 MB) and how often writing them is tried again.
HOLD_MAX_ROWS = 40_000
RETRY_WALL_S = 2.0


def batch_rows_from_arrays(ftype: int, t_s: np.ndarray, values: np.ndarray, per_frame: int):
    """(type, clock, period, n, n_ch, data, host_time_s, late, suspect) rows from sampled arrays;
    splits at gaps and at changes of sampling period."""
    if len(t_s) == 0:
        return
    ticks = np.rint(np.asarray(t_s) * units.CLOCK_HZ).astype(np.int64)
    vals = np.asarray(values, dtype="<i4")
    steps = np.diff(ticks)
    period = int(np.median(steps)) if len(steps) else units.TICKS_PER_ENVELOPE_SAMPLE
    breaks = np.flatnonzero(steps != period) + 1
    bounds = [0, *breaks.tolist(), len(ticks)]
    for a, b in itertools.pairwise(bounds):
        for s in range(a, b, per_frame):
            e = min(b, s + per_frame)
            yield (ftype, int(ticks[s]), period, e - s, vals.shape[1],
                   np.ascontiguousarray(vals[s:e]).tobytes(), float(t_s[s]), 0, 0)


@dataclass
class IngestResult:
    added: int = 0
    duplicates: int = 0  # already in the store (re-sync)
    skipped: int = 0  # frame types the store does not keep
    rows_not_held: int = 0  # arrived while the store failed and the memory held enough already
    rows_unwritten: int = 0  # after close(): rows that never reached the store (not_held included)


class SessionWriter:
    def __init__(self, store, session_id: int, link_stats=None,
                 on_commit: Callable[[int], None] | None = None,
                 on_error: Callable[[Exception], None] | None = None,
                 retry_wall_s: float = RETRY_WALL_S):
        """link_stats: an object with as_dict() (protocol.LinkStats), saved at every commit.
        on_commit(last_seq) is called after each commit (for progress display and tests);
        on_error(e) when the store starts refusing writes."""
        store._check_session(session_id)
        self.store = store
        self.session_id = session_id
        self.link_stats = link_stats
        self.on_commit = on_commit
        self._rows: dict[str, list[tuple]] = {"batches": [], "events": [], "reps": [],
                                              "status": []}
        self._n_pending = 0
        self._last_commit_clock: int | None = None
        self._last_commit_wall = time.monotonic()
        self._last_seq: int | None = None
        self.result = IngestResult()
        self.on_error = on_error
        self.retry_wall_s = retry_wall_s
        self.error: Exception | None = None

    @property
    def rows_held(self) -> int:
        """Rows received and not yet in the store."""
        return self._n_pending

    def add(self, rx: Received) -> None:
        if self.error is not None and self._n_pending >= HOLD_MAX_ROWS:
            self.result.rows_not_held += 1
            if time.monotonic() - self._last_commit_wall >= self.retry_wall_s:
                self.commit(rx.clock)
            return
        f = rx.frame
        sid, suspect = self.session_id, int(rx.clock_suspect)
        if isinstance(f, Batch):
            data = np.asarray(f.channels, dtype="<i4").T.copy().tobytes()
            self._rows["batches"].append((sid, rx.seq, f.header.type, rx.clock, f.period_ticks,
                                          f.n_samples, len(f.channels), data, rx.host_time_s,
                                          int(rx.late), suspect))
        elif isinstance(f, Event):
            self._rows["events"].append((sid, rx.seq, rx.clock, f.kind, f.side, f.stride,
                                         rx.host_time_s, suspect))
        elif isinstance(f, Rep):
            self._rows["reps"].append((sid, rx.seq, rx.clock, f.task, f.side, f.index,
                                       rx.clock + f.low_ticks, rx.clock + f.end_ticks, f.flags,
                                       f.depth, rx.host_time_s, suspect))
        elif isinstance(f, Status):
            self._rows["status"].append((sid, rx.seq, rx.clock, json.dumps(f.fields),
                                         rx.host_time_s, suspect))
        elif isinstance(f, RawEmg):
            self._rows["batches"].append((sid, rx.seq, wire.RAW_EMG, rx.clock, 1, 0, 0, f.payload,
                                          rx.host_time_s, int(rx.late), suspect))
        else:
            self.result.skipped += 1
            return
        self._n_pending += 1
        self._last_seq = rx.seq
        if self._last_commit_clock is None:
            self._last_commit_clock = rx.clock
        if self.error is not None:
            if time.monotonic() - self._last_commit_wall >= self.retry_wall_s:
                self.commit(rx.clock)
        elif (rx.clock - self._last_commit_clock >= COMMIT_EVERY_TICKS
                or time.monotonic() - self._last_commit_wall >= COMMIT_EVERY_WALL_S
                or self._n_pending >= COMMIT_EVERY_ROWS):
            self.commit(rx.clock)

    def add_all(self, received: Iterable[Received]) -> IngestResult:
        for rx in received:
            self.add(rx)
        self.commit()
        return self.result

    def commit(self, clock: int | None = None) -> None:
        conn = self.store.conn
        before = conn.total_changes
        sql = {"batches": "INSERT OR IGNORE INTO batches VALUES (?,?,?,?,?,?,?,?,?,?,?)",
               "events": "INSERT OR IGNORE INTO events VALUES (?,?,?,?,?,?,?,?)",
               "reps": "INSERT OR IGNORE INTO reps VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
               "status": "INSERT OR IGNORE INTO status VALUES (?,?,?,?,?,?)"}
        try:
            for table, rows in self._rows.items():
                if rows:
                    conn.executemany(sql[table], rows)
            added = conn.total_changes - before
            if self.link_stats is not None:
                self.store.save_link_stats(self.session_id, self.link_stats.as_dict())
            self.store.commit()  # inside a Store.transaction(): at its end
        except sqlite3.OperationalError as e:  # disk full, I/O error, read-only: hold the rows
            if self.store.in_transaction:
                raise  # a transaction's caller decides (sync: nothing was stored, run it again)
            conn.rollback()
            self._last_commit_wall = time.monotonic()
            first = self.error is None
            self.error = e
            if first and self.on_error is not None:
                self.on_error(e)
            return
        self.error = None
        self.result.added += added
        self.result.duplicates += self._n_pending - added
        for rows in self._rows.values():
            rows.clear()
        self._n_pending = 0
        if clock is not None:
            self._last_commit_clock = clock
        self._last_commit_wall = time.monotonic()
        if self.on_commit is not None and self._last_seq is not None:
            self.on_commit(self._last_seq)

    def close(self) -> IngestResult:
        self.commit()
        self.result.rows_unwritten = self._n_pending + self.result.rows_not_held
        return self.result

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def ingest(store, session_id: int, received: Iterable[Received], link_stats=None) -> IngestResult:
    """Write received frames (e.g. a re-sync from the device's flash log) into a session;
    frames already stored under the same (session, seq) are counted as duplicates, not added."""
    return SessionWriter(store, session_id, link_stats=link_stats).add_all(received)
