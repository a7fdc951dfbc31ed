"""Is an MVC plausible enough to normalise to? One pure check, shared by the report (which says so on
its first screen and falls back to another reference) and the live protocol (which can refuse the
trial and ask for another attempt).

    check_mvc(mvc_uv, rest_uv=None, walk_p95_uv=None) -> (ok, reason)
    refused_task_name("l_gmed") -> "mvc_l_gmed:refused"   (how a writer stores a refused trial)
    refused_channels(task_names) -> {"l_gmed", ...}
    session_mvc_checks(session, mvc_uv) -> {channel: MvcCheck}

All amplitudes are envelope uV (the same units as `Calibration.mvc_uv`). No I/O, no state."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np

from ..session import EMG_CHANNELS, MVC_TASKS, TASK_STANDING, TASK_WALK, SessionData

# An MVC must be at least this many times the resting envelope (mean envelope of the same muscle
# during the quiet-standing task). The resting envelope is the noise floor plus postural tone, a
# few uV (demo sessions: 2.4-4.6 uV); a real maximal contraction of the GMed or the lumbar ES reads
# tens of times that (demo: 122-243 uV, 26-100 x rest). Below 5 x rest the rest alone would read
# 20 %MVC, so the 10-30 %MVC of ordinary walking could not be told from standing still: the
# "maximal" trial was no contraction (refused or pain-inhibited effort, electrode off the muscle,
# wrong channel).
MIN_MVC_OVER_REST = 5.0
# An MVC must be at least the 95th percentile of the same muscle's envelope while walking. Walking
# asks well under a maximal effort of these muscles (GMed and lumbar ES peak around 20-60 %MVC in
# gait; even a weak GMed, which reads a higher %MVC, Penney et al. 2014, stays below 100 %MVC in
# most of the stride), so a "maximum" exceeded during more than 5 % of the walk was not maximal.
# The 95th percentile, not the maximum, so a motion-artefact spike does not fail a good MVC.
MIN_MVC_OVER_WALK_P95 = 1.0
WALK_PERCENTILE = 95.0

# A refused trial (the protocol judged it not plausible, or the patient could not do it) is stored
# as a task named refused_task_name(channel). The analysis uses only tasks named exactly
# MVC_TASKS[channel], so a refused trial never becomes the reference.
REFUSED_SUFFIX = ":refused"
_REFUSED = re.compile(r"^mvc_(?P<ch>[lr]_(?:gmed|es))[\s:_\-(]*refused\)?$", re.IGNORECASE)


def check_mvc(mvc_uv: float | None, rest_uv: float | None = None,
              walk_p95_uv: float | None = None) -> tuple[bool, str]:
    """(ok, reason) for one muscle's MVC amplitude. rest_uv: mean resting envelope of the standing
    task; walk_p95_uv: 95th percentile of the envelope while walking. A reference that is None (not
    measured) is not checked, and the reason says so. reason is one plain sentence either way."""
    if mvc_uv is None or not math.isfinite(mvc_uv) or mvc_uv <= 0:
        return False, "no MVC recorded"
    problems, checked = [], []
    if rest_uv is not None and math.isfinite(rest_uv) and rest_uv > 0:
        ratio = mvc_uv / rest_uv
        if ratio < MIN_MVC_OVER_REST:
            problems.append(f"only {ratio:.1f} times the resting envelope of the standing task "
                            f"({rest_uv:.1f} uV; at least {MIN_MVC_OVER_REST:g} times expected)")
        else:
            checked.append(f"{ratio:.0f} x rest")
    if walk_p95_uv is not None and math.isfinite(walk_p95_uv) and walk_p95_uv > 0:
        if mvc_uv < MIN_MVC_OVER_WALK_P95 * walk_p95_uv:
            problems.append(f"below the same muscle's {WALK_PERCENTILE:g}th percentile while "
                            f"walking ({walk_p95_uv:.1f} uV)")
        else:
            checked.append(f"{mvc_uv / walk_p95_uv:.1f} x walking p{WALK_PERCENTILE:g}")
    if problems:
        return False, f"MVC {mvc_uv:.1f} uV is " + " and ".join(problems)
    if not checked:
        return True, f"MVC {mvc_uv:.1f} uV (not checked: no standing or walking envelope)"
    return True, f"MVC {mvc_uv:.1f} uV ({', '.join(checked)})"


def refused_task_name(channel: str) -> str:
    """The task name under which a refused MVC trial of `channel` is stored, e.g.
    "mvc_l_gmed:refused"."""
    if channel not in MVC_TASKS:
        raise ValueError(f"unknown channel {channel!r}; one of {', '.join(EMG_CHANNELS)}")
    return MVC_TASKS[channel] + REFUSED_SUFFIX


def refused_channels(task_names) -> set[str]:
    """Channels with a refused MVC trial among these task names. Accepts refused_task_name() and
    the spellings a person would type ("mvc_l_gmed_refused", "mvc_l_gmed (refused)")."""
    out = set()
    for name in task_names:
        m = _REFUSED.match(str(name).strip())
        if m and m.group("ch").lower() in MVC_TASKS:
            out.add(m.group("ch").lower())
    return out


@dataclass(frozen=True)
class MvcCheck:
    channel: str
    status: str  # "ok" | "missing" | "implausible" | "refused"
    mvc_uv: float | None
    rest_uv: float | None
    walk_p95_uv: float | None
    reason: str

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def as_dict(self) -> dict:
        return {"status": self.status, "mvc_uv": self.mvc_uv, "rest_uv": self.rest_uv,
                "walk_p95_uv": self.walk_p95_uv, "reason": self.reason}


def _in_tasks(t: np.ndarray, tasks) -> np.ndarray:
    sel = np.zeros(len(t), bool)
    for task in tasks:
        sel |= (t >= task.t_start_s) & (t <= task.t_end_s)
    return sel


def session_mvc_checks(session: SessionData, mvc_uv: dict[str, float | None]) -> dict[str, MvcCheck]:
    """check_mvc for every channel of a session, with the resting envelope of its standing task
    and the walking percentile of its walk tasks (the whole recording outside the standing and
    MVC tasks when no walk is marked). A channel whose only MVC trial was refused is "refused"."""
    t, env = session.envelope_t_s, session.envelope_uv
    rest_sel = _in_tasks(t, session.tasks_named(TASK_STANDING))
    walks = session.tasks_named(TASK_WALK)
    if walks:
        walk_sel = _in_tasks(t, walks)
    else:
        walk_sel = ~(rest_sel | _in_tasks(t, [x for x in session.tasks if x.name.startswith("mvc_")]))
    refused = refused_channels(x.name for x in session.tasks)
    out = {}
    for i, ch in enumerate(EMG_CHANNELS):
        rest = float(np.mean(env[rest_sel, i])) if rest_sel.sum() > 10 else None
        walk = float(np.percentile(env[walk_sel, i], WALK_PERCENTILE)) if walk_sel.sum() > 10 else None
        mvc = mvc_uv.get(ch)
        mvc = float(mvc) if mvc is not None and math.isfinite(mvc) and mvc > 0 else None
        if mvc is None and ch in refused:
            out[ch] = MvcCheck(ch, "refused", None, rest, walk,
                               f"the MVC trial was refused (task {refused_task_name(ch)})")
            continue
        ok, reason = check_mvc(mvc, rest, walk)
        status = "ok" if ok else ("missing" if mvc is None else "implausible")
        out[ch] = MvcCheck(ch, status, mvc, rest, walk, reason)
    return out
