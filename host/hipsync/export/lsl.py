"""Live Lab Streaming Layer outlets: envelope (4 ch, uV), pelvis (3 ch, deg) and gait-event
markers, fed with the assembler's Received frames.

pylsl is optional (not a pinned dependency): `available()` returns (False, reason) when pylsl or
its liblsl cannot be loaded. Tested with pylsl==1.18.6."""

from __future__ import annotations

from hipwire import units

from ..protocol import Envelope, Event, Pelvis, Received
from ..session import EMG_CHANNELS, PELVIS_ANGLES, Metadata


def available() -> tuple[bool, str]:
    try:
        import pylsl
        pylsl.library_version()
    except Exception as e:  # noqa: BLE001 - ImportError, or RuntimeError when liblsl is missing
        return False, f"pylsl/liblsl not usable: {e}"
    return True, "ok"


class LslOutlets:
    def __init__(self, metadata: Metadata, name_prefix: str = "hipsync"):
        import pylsl

        self._pylsl = pylsl
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
            return i

        self.envelope = pylsl.StreamOutlet(info("envelope", "EMG", EMG_CHANNELS, "microvolts",
                                                units.ENVELOPE_RATE_HZ, pylsl.cf_float32))
        self.pelvis = pylsl.StreamOutlet(info("pelvis", "Orientation", PELVIS_ANGLES, "degrees",
                                              units.PELVIS_RATE_HZ, pylsl.cf_float32))
        self.events = pylsl.StreamOutlet(info("events", "Markers", ["event"], "",
                                              pylsl.IRREGULAR_RATE, pylsl.cf_string))

    def push(self, rx: Received) -> None:
        """Push one received frame; the timestamp is 'now' for its last sample (liblsl back-dates
        the earlier samples of a chunk at the nominal rate)."""
        f = rx.frame
        now = self._pylsl.local_clock()
        if isinstance(f, Envelope):
            self.envelope.push_chunk([list(s) for s in zip(*f.channels)], now)
        elif isinstance(f, Pelvis):
            scale = 1.0 / units.ANGLE_CDEG_PER_DEG
            self.pelvis.push_chunk([[v * scale for v in s] for s in zip(*f.channels)], now)
        elif isinstance(f, Event):
            self.events.push_sample([f"{f.kind} {f.side} {f.stride}"], now)

    def close(self) -> None:
        for o in (self.envelope, self.pelvis, self.events):
            del o
