"""Wire-format figures: raw-EMG compression, air bytes of the processed stream, host decode speed.

BENCH raw_compression_ratio          real sEMG (Santuz: ME, MA, FL, RF; UCI lower limb: the four
                                     EMG columns of all six files) as AFE codes (uV / (3125/2**17),
                                     rounded) >> RAW_SHIFT, 4-channel RAW_EMG frames at ATT payload
                                     244 (MTU 247), frame header and CRC included; baseline: 3 bytes
                                     (24 bits) per sample and channel, no framing. Pooled over all
                                     recordings; raw_compression_ratio_<recording> per recording.
BENCH raw_compression_ratio_vs_int16 the same against 2 bytes per sample (what a 16-bit system
                                     would send; it could not hold the 22-bit raw samples).
BENCH raw_bits_per_sample            frame bytes * 8 / (samples * channels), pooled.
BENCH raw_encode_rtf                 rawcodec.encode on the Santuz recording inside MicroPython (unix
                                     port, x86), multiples of real time (1000 samples/s x 4);
                                     raw_encode_rtf_bytecode: the same source with the viper
                                     decorators and annotations removed.
BENCH stream_wire_bytes_per_s        the processed stream of a simulated 120 s walk (hipsync.sim
                                     defaults): 4 envelopes (simulated RMS envelope x 0.8 = rectified
                                     mean, every 10th 1 kHz sample -> 100 Hz, integer uV) and 3 pelvis
                                     angles (100 Hz, integer centidegrees) framed as the firmware's
                                     Streamer does (frames.encode_batch, flush at >= 50 buffered
                                     samples, max_len = min(ATT payload 244, slot 256)), the
                                     simulator's gait events as EVENT frames (~3.5/s), one STATUS
                                     frame per second (all 5 pages fit); every frame one
                                     notification with 17 bytes of link overhead.
BENCH stream_wire_ratio_vs_int16     naive baseline / the above. Naive: one notification per 10 ms
                                     tick carrying an 8-byte header and the 7 values as int16
                                     (22 bytes + 17 overhead), plus the same EVENT and STATUS
                                     notifications.
BENCH host_decode_frames_per_s       hipsync.protocol.decode over one hour of that stream (the
                                     120 s walk repeated with continuing seq and clock: 30,480
                                     frames, 47 % batches of 50 samples, 41 % events, 12 % status),
                                     process CPU time, best of 5.
"""

from __future__ import annotations

import re
import sys
import tempfile
import time
from array import array
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "tests"))

import micropython_port  # noqa: E402
from hipsync.protocol import decode  # noqa: E402
from hipsync.protocol.frames import RawEmg  # noqa: E402
from hipsync.sim import PatientConfig, simulate, walking  # noqa: E402
from hipwire import frames as wire  # noqa: E402
from hipwire import rawcodec, units  # noqa: E402

ATT_PAYLOAD = 244  # MTU 247
LINK_OVERHEAD = 17  # bytes per notification on the air
SLOT_BYTES = 256  # firmware/link/streamer.py caps frames at min(ATT payload, slot)
BATCH_SAMPLES = 50  # Streamer(batch_samples=50)
FLUSH_BLOCK = 10  # DSP output per call: 100 ms at 100 Hz


# ------------------------------------------------------------------ raw EMG
def uv_to_raw(uv: np.ndarray) -> np.ndarray:
    codes = np.rint(np.asarray(uv, float) / units.EMG_UV_PER_CODE).astype(np.int64)
    codes = np.clip(codes, units.EMG_CODE_MIN, units.EMG_CODE_MAX)
    return codes >> rawcodec.RAW_SHIFT


def recordings() -> dict[str, np.ndarray]:
    """name -> (n, 4) raw samples of the public recordings present in ../shared/data."""
    out = {}
    santuz = DATA / "santuz_walking_emg" / "ID0012_TW_01_raw_emg.csv"
    if santuz.exists():
        d = np.genfromtxt(santuz, delimiter=",", names=True)
        out["santuz"] = uv_to_raw(np.column_stack([d[c] for c in ("ME", "MA", "FL", "RF")]))
    for path in sorted((DATA / "uci_lower_limb_emg").glob("*.txt")):
        rows = []
        for line in path.read_text(encoding="latin-1").splitlines()[7:]:
            fields = line.split("\t")
            try:
                values = [float(f) for f in fields[:4]]
            except ValueError:  # 5Nmar ends with rows that hold only the knee angle
                continue
            if len(values) == 4 and not np.isnan(values).any():
                rows.append(values)
        out["uci_" + path.stem] = uv_to_raw(1000.0 * np.array(rows))  # mV -> uV
    return out


def encode_raw(raw: np.ndarray, max_len: int = ATT_PAYLOAD) -> list[bytes]:
    """Frame a recording as the device would, checking the round trip on the way."""
    n, nch = raw.shape
    samples = array("i", raw.astype(np.int32).ravel().tolist())
    buf = bytearray(wire.MAX_FRAME)
    frames, start, seq = [], 0, 0
    while start < n:
        length = rawcodec.encode(buf, max_len, seq, start, samples, start * nch, n - start, nch)
        taken = buf[wire.HEADER_SIZE]
        frame = bytes(buf[:length])
        got = decode(frame)
        assert isinstance(got, RawEmg) and got.header.clock == start
        assert np.array_equal(np.array(got.channels).T, raw[start:start + taken]), "not lossless"
        frames.append(frame)
        start += taken
        seq += 1
    return frames


_RTF_CODE = """
import time
from array import array
import rawcodec_under_test as rc
with open({path!r}, 'rb') as f:
    s = array('i', f.read())
nch = 4
n = len(s) // nch
buf = bytearray(509)
best = 0
for rep in range(3):
    t0 = time.ticks_us()
    start = 0
    while start < n:
        rc.encode(buf, {max_len}, 0, start, s, start * nch, n - start, nch)
        start += buf[8]
    dt = time.ticks_diff(time.ticks_us(), t0)
    best = dt if best == 0 or dt < best else best
print('RTF', n * 1000 / best)
"""


def encode_rtf(raw: np.ndarray, viper: bool) -> float:
    src = (ROOT / "shared" / "hipwire" / "rawcodec.py").read_text()
    if not viper:
        src = src.replace("@micropython.viper\n", "")

        def plain(m: re.Match) -> str:
            args = re.sub(r":\s*\w+", "", m.group(2))
            return f"def {m.group(1)}({args}):"

        src = re.sub(r"def (_\w+)\(([^)]*)\) -> int:", plain, src)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "rawcodec_under_test.py").write_text(src)
        path = Path(tmp) / "samples.i32"
        raw.astype("<i4").tofile(path)
        text = micropython_port.check_code(_RTF_CODE.format(path=str(path), max_len=ATT_PAYLOAD),
                                           extra_path=(Path(tmp),), timeout_s=600)
    return float(text.split("RTF")[1].split()[0])


# ------------------------------------------------------------------ processed stream
def simulated_stream(walk_s: float = 120.0):
    rec = simulate(PatientConfig(), [walking(walk_s)])
    env_uv = np.rint(0.8 * rec.envelope_uv[units.TICKS_PER_ENVELOPE_SAMPLE - 1::units.TICKS_PER_ENVELOPE_SAMPLE])
    pelvis_cdeg = np.rint(units.ANGLE_CDEG_PER_DEG * rec.pelvis_deg)
    events = [(int(round(e["t_s"] * units.CLOCK_HZ)), wire.IC if e["kind"] == "IC" else wire.FC,
               wire.LEFT if e["side"] == "L" else wire.RIGHT) for e in rec.events]
    return env_uv.astype(np.int64), pelvis_cdeg.astype(np.int64), events, rec.duration_s


class _Ring:
    """What firmware/link/streamer.py does with one batch stream: buffer, frame when >= 50 samples
    are waiting, keep what did not fit for the next frame."""

    def __init__(self, ftype: int, values: np.ndarray, max_len: int):
        self.ftype, self.values, self.max_len = ftype, values, min(max_len, SLOT_BYTES)
        self.nch = values.shape[1]
        self.flat = array("i", values.astype(np.int32).ravel().tolist())
        self.first = 0  # index of the oldest buffered sample
        self.end = 0  # one past the newest buffered sample

    def add(self, n: int, emit) -> None:
        self.end = min(self.end + n, len(self.values))
        while self.end - self.first >= BATCH_SAMPLES:
            buf = bytearray(wire.MAX_FRAME)
            clock = self.first * units.TICKS_PER_ENVELOPE_SAMPLE
            length = wire.encode_batch(buf, self.max_len, self.ftype, 0, clock,
                                       units.TICKS_PER_ENVELOPE_SAMPLE, self.flat,
                                       self.first * self.nch, self.end - self.first, self.nch)
            emit(clock, buf[:length])
            self.first += buf[wire.HEADER_SIZE]


def stream_frames(env_uv, pelvis_cdeg, events, duration_s, max_len=ATT_PAYLOAD, clock0=0, seq0=0):
    """Frames in device order, (clock, bytes) with seq filled in."""
    out = []
    emit = lambda clock, frame: out.append((clock, bytearray(frame)))  # noqa: E731
    rings = (_Ring(wire.ENVELOPE, env_uv, max_len), _Ring(wire.PELVIS, pelvis_cdeg, max_len))
    status = array("i", [87, wire.STATE_STREAMING | wire.STATE_AUTHENTICATED, 3900, 0, 0, 0, 0,
                         0, 0, 0, 3800, 3, 4, 2, 5, 0, 0])
    ev = sorted(events)
    n_ticks = len(env_uv)
    ei = 0
    for tick in range(0, n_ticks, FLUSH_BLOCK):
        clock = tick * units.TICKS_PER_ENVELOPE_SAMPLE
        while ei < len(ev) and ev[ei][0] < clock:
            buf = bytearray(wire.MAX_FRAME)
            length = wire.encode_event(buf, 0, ev[ei][0], ev[ei][1], ev[ei][2], ei)
            emit(ev[ei][0], buf[:length])
            ei += 1
        for ring in rings:
            ring.add(FLUSH_BLOCK, emit)
        if tick % 100 == 0:  # once a second
            buf = bytearray(wire.MAX_FRAME)
            length = wire.encode_status(buf, min(max_len, SLOT_BYTES), 0, clock, 0, status)
            emit(clock, buf[:length])
    frames = []
    for i, (clock, frame) in enumerate(out):
        # re-stamp seq and clock (continuing across repeats), then re-seal
        frame[2:4] = ((seq0 + i) & 0xFFFF).to_bytes(2, "little")
        frame[4:8] = ((clock0 + clock) & 0xFFFFFFFF).to_bytes(4, "little")
        wire.seal(frame, len(frame) - wire.CRC_SIZE)
        frames.append(bytes(frame))
    return frames


def main() -> None:
    recs = recordings()
    if recs:
        tot_frame = tot_samples = 0
        for name, raw in recs.items():
            frames = encode_raw(raw)
            nbytes = sum(len(f) for f in frames)
            tot_frame += nbytes
            tot_samples += raw.size
            print(f"BENCH raw_compression_ratio_{name} {3 * raw.size / nbytes:.3f} ratio", flush=True)
        print(f"BENCH raw_compression_ratio {3 * tot_samples / tot_frame:.3f} ratio", flush=True)
        print(f"BENCH raw_compression_ratio_vs_int16 {2 * tot_samples / tot_frame:.3f} ratio",
              flush=True)
        print(f"BENCH raw_bits_per_sample {8 * tot_frame / tot_samples:.2f} bits", flush=True)
        santuz = recs.get("santuz", next(iter(recs.values())))
        print(f"BENCH raw_encode_rtf {encode_rtf(santuz, True):.0f} x_realtime", flush=True)
        print(f"BENCH raw_encode_rtf_bytecode {encode_rtf(santuz, False):.0f} x_realtime",
              flush=True)
    else:
        print(f"BENCH-SKIP raw_compression_ratio no recordings in {DATA}", flush=True)

    env_uv, pelvis_cdeg, events, duration_s = simulated_stream()
    frames = stream_frames(env_uv, pelvis_cdeg, events, duration_s)
    air = sum(len(f) + LINK_OVERHEAD for f in frames)
    per_s = air / duration_s
    print(f"BENCH stream_wire_bytes_per_s {per_s:.0f} B/s", flush=True)
    n_ticks = len(env_uv)
    other = sum(len(f) + LINK_OVERHEAD for f in frames if f[0] in (wire.EVENT, wire.STATUS))
    naive = n_ticks * (8 + 2 * (env_uv.shape[1] + pelvis_cdeg.shape[1]) + LINK_OVERHEAD) + other
    print(f"BENCH stream_wire_ratio_vs_int16 {naive / air:.2f} ratio", flush=True)

    # one hour: the walk repeated with continuing seq and clock
    hour = []
    reps = int(np.ceil(3600 / duration_s))
    for r in range(reps):
        hour += stream_frames(env_uv, pelvis_cdeg, events, duration_s,
                              clock0=r * int(duration_s * units.CLOCK_HZ), seq0=len(hour))
    best = np.inf
    for _ in range(5):  # CPU time, best of 5: the benchmark machine is shared
        t0 = time.process_time()
        for frame in hour:
            decode(frame)
        best = min(best, time.process_time() - t0)
    print(f"BENCH host_decode_frames_per_s {len(hour) / best:.0f} frames/s", flush=True)


if __name__ == "__main__":
    main()
