"""Host side of the wire format: typed decoding, ordering, loss accounting, clock mapping."""

from .assembler import LinkStats, Received, StreamAssembler
from .clock import ClockMap
from .frames import (
                     Batch,
                     Envelope,
                     Event,
                     Frame,
                     Header,
                     Pelvis,
                     ProtocolError,
                     RawEmg,
                     Rep,
                     Status,
                     UnsupportedFrame,
                     decode,
                     to_json_dict,
                     type_name,
)

__all__ = ["Batch", "ClockMap", "Envelope", "Event", "Frame", "Header", "LinkStats", "Pelvis",
           "ProtocolError", "RawEmg", "Received", "Rep", "Status", "StreamAssembler", "UnsupportedFrame",
           "decode", "to_json_dict", "type_name"]
