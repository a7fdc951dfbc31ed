"""Maps the device sample clock to host time with a drift fit."""

from __future__ import annotations

import numpy as np

from hipwire.units import CLOCK_HZ


class ClockMap:
    """host_time = offset + rate * device_seconds, fitted to (clock, receive time) pairs.

    Receive times carry a positive, variable latency, so after the least-squares slope the offset is
    placed at a low percentile of the residuals: the fit follows the fastest deliveries."""

    def __init__(self, max_points: int = 20000):
        self._clock: list[int] = []
        self._host: list[float] = []
        self._max = max_points
        self._fit: tuple[float, float] | None = None

    def add(self, clock_ticks: int, host_time_s: float) -> None:
        if len(self._clock) >= self._max:  # keep the span: thin out every other point
            self._clock = self._clock[::2]
            self._host = self._host[::2]
        self._clock.append(clock_ticks)
        self._host.append(host_time_s)
        self._fit = None

    @property
    def n_points(self) -> int:
        return len(self._clock)

    def fit(self) -> tuple[float, float]:
        """(offset_s, rate): host_s = offset_s + rate * clock / CLOCK_HZ."""
        if self._fit is None:
            if not self._clock:
                raise ValueError("no clock points yet")
            dev = np.asarray(self._clock, dtype=float) / CLOCK_HZ
            host = np.asarray(self._host, dtype=float)
            if len(dev) >= 2 and np.ptp(dev) > 1.0:
                rate = float(np.polyfit(dev - dev[0], host - host[0], 1)[0])
            else:
                rate = 1.0
            resid = host - rate * dev
            self._fit = (float(np.percentile(resid, 2)), rate)
        return self._fit

    def host_time(self, clock_ticks) -> np.ndarray | float:
        offset, rate = self.fit()
        return offset + rate * np.asarray(clock_ticks, dtype=float) / CLOCK_HZ

    def device_ticks(self, host_time_s: float) -> float:
        """The device clock the fit expects at host_time_s (the inverse of host_time)."""
        offset, rate = self.fit()
        return (host_time_s - offset) / rate * CLOCK_HZ

    @property
    def drift_ppm(self) -> float:
        return (self.fit()[1] - 1.0) * 1e6
