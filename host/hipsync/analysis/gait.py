"""Strides and single-leg-support windows from the device's gait events.

A stride of stance side S runs from IC_S to the next IC_S. Inside it: FC of the contralateral
foot C, IC_C, then FC_S. Single-leg support of S runs from FC_C to IC_C (docs/ARCHITECTURE.md)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import rules

SIDES = (("left", "L", "R"), ("right", "R", "L"))  # (name, stance side, contralateral side)


@dataclass
class Strides:
    side: str  # "left" | "right"
    stride: np.ndarray  # device stride index of the opening IC (int)
    t_ic_s: np.ndarray  # stride start (IC of the stance foot)
    t_next_ic_s: np.ndarray  # stride end
    t_ss_start_s: np.ndarray  # contralateral FC = start of single support
    t_ss_end_s: np.ndarray  # contralateral IC = end of single support
    t_fc_s: np.ndarray  # FC of the stance foot (end of stance)
    excluded: dict[str, int]  # reason -> count of stride candidates left out

    def __len__(self) -> int:
        return len(self.t_ic_s)


def _first_after(times: np.ndarray, after: np.ndarray) -> np.ndarray:
    """For each value in `after`, the first element of sorted `times` strictly greater (inf if none)."""
    idx = np.searchsorted(times, after, side="right")
    padded = np.append(times, np.inf)
    return padded[idx]


def _in_windows(t: np.ndarray, windows: list[tuple[float, float]]) -> np.ndarray:
    inside = np.zeros(len(t), bool)
    for a, b in windows:
        inside |= (t >= a) & (t <= b)
    return inside


def find_strides(events: np.ndarray, side: str, walk_windows: list[tuple[float, float]] | None
                 ) -> Strides:
    """Strides of one stance side. walk_windows: (start, end) s of the walking tasks; a stride
    must lie inside one. None: use every stride (the caller warns)."""
    _, s, c = next(x for x in SIDES if x[0] == side)
    ev = np.sort(events, order="t_s", kind="stable")

    def times(kind, sd):
        sel = (ev["kind"] == kind) & (ev["side"] == sd)
        return ev["t_s"][sel], ev["stride"][sel]

    ic_s, stride_idx = times("IC", s)
    fc_s, _ = times("FC", s)
    ic_c, _ = times("IC", c)
    fc_c, _ = times("FC", c)
    excluded = {"incomplete events": 0, "implausible duration": 0, "outside walking task": 0}
    if len(ic_s) < 2:
        e = np.zeros(0)
        return Strides(side, np.zeros(0, int), e, e, e, e, e, excluded)
    start, end = ic_s[:-1], ic_s[1:]
    ss_start = _first_after(fc_c, start)
    ss_end = _first_after(ic_c, ss_start)
    fc_own = _first_after(fc_s, ss_end)
    complete = (ss_start < end) & (ss_end < end) & (fc_own < end)
    duration = end - start
    plausible = (duration >= rules.MIN_STRIDE_S) & (duration <= rules.MAX_STRIDE_S)
    in_walk = (np.ones(len(start), bool) if walk_windows is None else
               np.array([any(a <= t0 and t1 <= b for a, b in walk_windows)
                         for t0, t1 in zip(start, end)], bool))
    excluded["outside walking task"] = int(np.sum(~in_walk))
    excluded["implausible duration"] = int(np.sum(in_walk & ~plausible))
    excluded["incomplete events"] = int(np.sum(in_walk & plausible & ~complete))
    keep = in_walk & plausible & complete
    return Strides(side, stride_idx[:-1][keep].astype(int), start[keep], end[keep],
                   ss_start[keep], ss_end[keep], fc_own[keep], excluded)
