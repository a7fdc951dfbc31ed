"""Live Lab Streaming Layer outlets: envelope (4 ch, uV), pelvis (3 ch, deg) and gait-event
markers, fed with the assembler's Received frames.

Timestamps follow the device sample clock, not arrival: notifications come in bursts (a frame
holds about 50 samples, BLE queues several frames, a reconnect delivers seconds at once), so
"now" at arrival spreads or squeezes the samples (reported against the old outlet, which did
that: 2,652 envelope samples at a nominal 100 Hz stamped over 20.2 s). Sample k of a frame is
at device clock `clock + k * period`, and its LSL time is the clock fit (protocol.ClockMap: host = offset + rate * device seconds, offset
on the fastest deliveries) applied to that clock, plus the offset from the host clock that stamps
notifications (time.monotonic, ble.DeviceLink.clock) to pylsl.local_clock().

The fit is the protocol's ClockMap, fed with each frame's receive time against the clock of the
newest thing it carries: a batch cannot leave the device before its LAST sample exists, so its
point is (clock + (n - 1) * period, host_time_s); a STATUS frame's own clock. Gait events are
left out: the device emits them 0.25-2 s after the clock they carry (firmware/dsp/gait.py), which
would only tilt the slope. (The assembler's own ClockMap pairs a batch's FIRST sample with its
arrival, so its offset includes the ~0.5 s a 50-sample frame takes to fill; pass it as clock_map
only if that is wanted.) The fit is refreshed at most once a second of host time so that a push
stays cheap. A least-squares slope over a few seconds of bursty deliveries is noise (bursts of
two 0.5-s frames tilt it by several percent and step the stamps back by half a second), so for
the first WARMUP_S of device clock the stamps use rate 1 and the fastest delivery so far;
afterwards the fit, which follows the device's drift. The same mapping applies to a stored session:
clock_map_from_store() fits the host_time_s the store keeps per frame by the same rule,
host_times() maps sample times through it.

Frames with a suspect clock (time unknown; the store leaves them out of a loaded session too) are
not pushed; `skipped_suspect` counts them. An unknown stride is a marker without a number ("FC R").

pylsl is optional (not a pinned dependency): `available()` returns (False, reason) when pylsl or
its liblsl cannot be loaded. Tested with pylsl==1.18.6."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np

from hipwire import units

from ..protocol import Batch, ClockMap, Envelope, Event, Pelvis, RawEmg, Received, Status
from ..session import EMG_CHANNELS, PELVIS_ANGLES, Metadata
from .common import event_text

REFIT_EVERY_S = 1.0  # host seconds between clock-fit refreshes during a live stream
WARMUP_S = 10.0  # device seconds of points before the fit's slope is used


def available() -> tuple[bool, str]:
    try:
        import pylsl
        pylsl.library_version()
    except Exception as e:  # noqa: BLE001 - ImportError, or RuntimeError when liblsl is missing
        return False, f"pylsl/liblsl not usable: {e}"
    return True, "ok"


class SampleClock:
    """Device clock -> LSL time for live frames. clock_map: a fit to share (e.g. the assembler's,
    which is fed already); None keeps its own, fed by observe() with the same pairs."""

    def __init__(self, clock_map: ClockMap | None = None, host_to_lsl_s: float = 0.0,
                 refit_every_s: float = REFIT_EVERY_S):
        self._own = clock_map is None
        self.clock_map = ClockMap() if clock_map is None else clock_map
        self.host_to_lsl_s = host_to_lsl_s
        self._refit_every_s = refit_every_s
        self._fit: tuple[float, float] | None = None
        self._fit_at_s = -np.inf
        self._latest_s = -np.inf
        self._clock_span = [np.inf, -np.inf]  # device ticks of the own fit's points
        self._fastest_s = np.inf  # min(host - device seconds): the warm-up offset

    def observe(self, rx: Received) -> None:
        """A frame as released by the assembler (adds its clock point to an own fit)."""
        if self._own and not rx.clock_suspect:
            clock = fit_point_clock(rx)
            if clock is not None:
                self.clock_map.add(clock, rx.host_time_s)
                span = self._clock_span
                span[0], span[1] = min(span[0], clock), max(span[1], clock)
                self._fastest_s = min(self._fastest_s, rx.host_time_s - clock / units.CLOCK_HZ)
        self._latest_s = max(self._latest_s, rx.host_time_s)

    def fit(self) -> tuple[float, float]:
        """(offset_s, rate): ClockMap.fit (rate 1 and the fastest delivery during the warm-up of
        an own fit), refreshed at most every refit_every_s host seconds."""
        if self._fit is None or self._latest_s - self._fit_at_s >= self._refit_every_s:
            span_s = (self._clock_span[1] - self._clock_span[0]) / units.CLOCK_HZ
            if self._own and not span_s >= WARMUP_S and np.isfinite(self._fastest_s):
                self._fit = (float(self._fastest_s), 1.0)
            else:
                self._fit = self.clock_map.fit()
            self._fit_at_s = self._latest_s
        return self._fit

    def times(self, first_clock: int, n: int = 1, period_ticks: int = 0) -> np.ndarray:
        """LSL times of n samples at device clock first_clock + k * period_ticks."""
        offset, rate = self.fit()
        ticks = first_clock + period_ticks * np.arange(n, dtype=np.float64)
        return self.host_to_lsl_s + offset + rate * ticks / units.CLOCK_HZ


def fit_point_clock(rx: Received) -> int | None:
    """The device clock to pair with rx.host_time_s in the fit (module docstring), None to leave
    the frame out."""
    f = rx.frame
    if isinstance(f, (Batch, RawEmg)):
        return rx.clock + max(f.n_samples - 1, 0) * f.period_ticks
    if isinstance(f, Status):
        return rx.clock
    return None  # gait events: emitted long after their clock


def clock_map_from_store(store, session_id: int) -> ClockMap:
    """The clock fit of a stored session from the host_time_s the store keeps per frame, by the
    rule of fit_point_clock (frames with a suspect clock left out)."""
    store._check_session(session_id)
    cm = ClockMap()
    rows = store.conn.execute(
        "SELECT clock + max(n_samples - 1, 0) * period_ticks AS c, host_time_s FROM batches "
        "WHERE session=? AND clock_suspect=0 UNION ALL SELECT clock, host_time_s FROM status "
        "WHERE session=? AND clock_suspect=0 ORDER BY c", (session_id, session_id))
    for clock, host_s in rows:
        cm.add(int(clock), float(host_s))
    if cm.n_points == 0:
        raise ValueError(f"session {session_id} has no stored frames to fit a clock to")
    return cm


def host_times(clock_map: ClockMap, t_s) -> np.ndarray:
    """Host times (s, the clock of host_time_s) of device times t_s (SessionData's *_t_s)."""
    ticks = np.rint(np.asarray(t_s, dtype=float) * units.CLOCK_HZ)
    return np.asarray(clock_map.host_time(ticks), dtype=float)


class LslOutlets:
    def __init__(self, metadata: Metadata, name_prefix: str = "hipsync", *,
                 clock_map: ClockMap | None = None,
                 host_clock: Callable[[], float] = time.monotonic):
        """host_clock: the clock that stamped the frames' host_time_s (DeviceLink.clock)."""
        import pylsl

        self._pylsl = pylsl
        self.clock = SampleClock(clock_map, host_to_lsl_s=pylsl.local_clock() - host_clock())
        self.skipped_suspect = 0
        src = metadata.device_id or "hipsync"
        self.names = {"envelope": f"{name_prefix}-envelope", "pelvis": f"{name_prefix}-pelvis",
                      "events": f"{name_prefix}-events"}

        def info(kind_name, lsl_type, labels, unit, rate, fmt):
            i = pylsl.StreamInfo(self.names[kind_name], lsl_type, len(labels), rate, fmt,
                                 f"{src}-{kind_name}")
            chans = i.desc().append_child("channels")
            for label in labels:
                c = chans.append_child("channel")
                c.append_child_value("label", label)
                c.append_child_value("unit", unit)
            i.desc().append_child_value("patient_id", metadata.patient_id)
            i.desc().append_child_value("firmware", metadata.firmware_version)
            i.desc().append_child_value("timestamps", "device sample clock via host clock fit")
            return i

        self.envelope = pylsl.StreamOutlet(info("envelope", "EMG", EMG_CHANNELS, "microvolts",
                                                units.ENVELOPE_RATE_HZ, pylsl.cf_float32))
        self.pelvis = pylsl.StreamOutlet(info("pelvis", "Orientation", PELVIS_ANGLES, "degrees",
                                              units.PELVIS_RATE_HZ, pylsl.cf_float32))
        self.events = pylsl.StreamOutlet(info("events", "Markers", ["event"], "",
                                              pylsl.IRREGULAR_RATE, pylsl.cf_string))

    def push(self, rx: Received) -> None:
        """Push one received frame, each sample stamped by its device clock (module docstring)."""
        self.clock.observe(rx)
        if rx.clock_suspect:
            self.skipped_suspect += 1
            return
        f = rx.frame
        if isinstance(f, Envelope):
            stamps = self.clock.times(rx.clock, f.n_samples, f.period_ticks)
            self.envelope.push_chunk(np.asarray(f.channels, dtype=np.float32).T, stamps.tolist())
        elif isinstance(f, Pelvis):
            stamps = self.clock.times(rx.clock, f.n_samples, f.period_ticks)
            deg = np.asarray(f.channels, dtype=np.float64).T / units.ANGLE_CDEG_PER_DEG
            self.pelvis.push_chunk(deg.astype(np.float32), stamps.tolist())
        elif isinstance(f, Event):
            self.events.push_sample([event_text(f.kind, f.side, f.stride)],
                                    float(self.clock.times(rx.clock)[0]))

    def close(self) -> None:
        self.envelope = self.pelvis = self.events = None  # liblsl closes an outlet when freed


__all__ = ["LslOutlets", "SampleClock", "available", "clock_map_from_store", "fit_point_clock",
           "host_times"]
