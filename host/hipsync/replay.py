"""Replay recorded samples through the real firmware pipeline (issue 4).

EMG (and optionally IMU) samples from CSV files are turned into a chip feed (`hipwire.feed`), the
unix board's fake ADS1294R and ICM-42688-P convert it, and the device app itself - drivers,
capture, DSP, streamer - runs on it inside MicroPython (`firmware/unixboard/run_replay.py`). Its
frames come back as flash-log records and are decoded into CSV files. Nothing of the DSP is
re-implemented here.

Input
- EMG CSV: `t_s` and 1-4 of `l_gmed, r_gmed, l_es, r_es` in uV, evenly sampled at 500-4000 Hz.
  Channels not given are fed as zero codes and not written back.
- IMU CSV: `t_s, acc_x_g, acc_y_g, acc_z_g, gyr_x_dps, gyr_y_dps, gyr_z_dps` in the sacrum body
  frame (x anterior, y left, z up), evenly sampled at 50-1000 Hz, on the same time base as the
  EMG file. Without it the device sees a still, upright IMU.

Time: t_s = 0 in every output is the first EMG sample. The device clock ticks once per EMG sample
at units.CLOCK_HZ, so an output at device clock c has t_s = c / CLOCK_HZ.

Resampling (to units.EMG_RATE_HZ and units.IMU_RATE_HZ) uses scipy.signal.resample_poly, not
interpolation: surface EMG carries power up to ~500 Hz, so taking a 2-4 kHz recording down to
1 kHz needs an anti-aliasing low-pass, or that power folds into the band the firmware rectifies
and inflates the envelope; linear interpolation has none and also attenuates the upper band when
going up from 500 Hz. resample_poly's FIR is linear-phase and compensated, so nothing is shifted
in time; `padtype="line"` keeps the edges free of the step a zero-padded filter would put there
(an accelerometer reads 1 g, not 0, before the first sample). The rate ratio is the fraction with
denominator <= 1000 closest to the measured rate (relative error < 1e-6).

The fake IMU delivers feed sample k at device clock 10 k + 9 (its output-data-rate divider ends
its first period on the tenth tick), so feed sample k is the input at that instant. The device
stamps IMU samples itself (its capture anchors the FIFO at the first drain); run_replay.py times
that drain so the stamps equal the delivery clocks, and the run reports any difference.
"""

from __future__ import annotations

import ast
import csv
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path

import numpy as np
from scipy.signal import resample_poly

from hipwire import quality as qflags
from hipwire import records, units

from .protocol import Envelope, Event, Pelvis, ProtocolError, Status, decode
from .sim.feed import write_feed
from .sim.virtual_device import FIRMWARE, SHARED, UNIX_BOARD, micropython_binary

EMG_RATE_RANGE_HZ = (500.0, 4000.0)
IMU_RATE_RANGE_HZ = (50.0, 1000.0)
IMU_COLUMNS = ("acc_x_g", "acc_y_g", "acc_z_g", "gyr_x_dps", "gyr_y_dps", "gyr_z_dps")
ENTRY = UNIX_BOARD / "run_replay.py"
PINS = FIRMWARE / "board" / "pins.py"
HEAP = "512k"
# Clock at which the fake IMU delivers feed sample 0 (then one every TICKS_PER_IMU_SAMPLE); the
# MicroPython side reports the real value and the run fails if they ever disagree.
FAKE_IMU_FIRST_TICK = units.TICKS_PER_IMU_SAMPLE - 1
# Evenly sampled: every step of t_s within this fraction of the nominal period (a lost or
# duplicated sample is a step of 2 or 0 periods).
_STEP_TOLERANCE = 0.5

Warn = Callable[[str], None]


class ReplayInputError(ValueError):
    """An input file the replay cannot take; the message names the file, column and line."""


class ReplayFailed(RuntimeError):
    """The MicroPython run or its output went wrong (not the user's input)."""


@dataclass
class Samples:
    """Rows of a validated input CSV: t_s (n,) and values (n, len(columns)), in file order."""

    path: Path
    columns: tuple[str, ...]
    t_s: np.ndarray
    values: np.ndarray
    rate_hz: float


@dataclass
class ReplayResult:
    out_dir: Path
    paths: dict[str, Path]
    duration_s: float
    channels: tuple[str, ...]
    emg_rate_hz: float
    imu_rate_hz: float | None
    envelope_samples: int
    pelvis_samples: int
    events: int
    status_frames: int
    calibration: str | None  # "ok" | "refused" | None (not asked)
    micropython_s: float
    imu_stamp_offset_ticks: int  # device IMU stamp minus the clock the fake IMU delivered at
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- reading inputs
def read_samples(path: str | os.PathLike, *, allowed: tuple[str, ...], required: tuple[str, ...],
                 rate_range_hz: tuple[float, float], kind: str, warn: Warn) -> Samples:
    """Read and validate one input CSV. Raises ReplayInputError naming the column or line."""
    path = Path(path)
    name = f"{kind} file {path}"
    if not path.exists():
        raise ReplayInputError(f"{name}: no such file")
    if path.is_dir():
        raise ReplayInputError(f"{name}: is a folder, not a file")
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            header = next(reader, None)
            while header is not None and not any(c.strip() for c in header):
                header = next(reader, None)
            if header is None:
                raise ReplayInputError(f"{name}: the file is empty")
            columns = tuple(c.strip().lower() for c in header)
            _check_header(name, columns, allowed, required)
            lines = []
            rows = []
            for row in reader:
                if not any(c.strip() for c in row):
                    continue  # blank line
                if len(row) != len(columns):
                    raise ReplayInputError(f"{name}: line {reader.line_num} has {len(row)} fields, "
                                           f"the header has {len(columns)}")
                lines.append(reader.line_num)
                rows.append(row)
    except UnicodeDecodeError:
        raise ReplayInputError(f"{name}: not a text (UTF-8) CSV file") from None
    except csv.Error as e:
        raise ReplayInputError(f"{name}: not a readable CSV file ({e})") from None
    if not rows:
        raise ReplayInputError(f"{name}: no data rows after the header")
    data = _to_float(name, columns, rows, lines)
    data, lines = _trim_missing(name, columns, data, np.asarray(lines), warn)
    t = data[:, 0]
    _check_time(name, t, lines)
    rate = (len(t) - 1) / (t[-1] - t[0])
    lo, hi = rate_range_hz
    if not lo * (1 - 1e-6) <= rate <= hi * (1 + 1e-6):  # t_s rounding: 500 Hz may read 499.99999
        raise ReplayInputError(f"{name}: sample rate {rate:.6g} Hz (from t_s) is outside "
                               f"{lo:g}-{hi:g} Hz")
    step = np.diff(t) * rate
    off = np.flatnonzero(np.abs(step - 1) > _STEP_TOLERANCE)
    if off.size:
        i = off[0] + 1
        raise ReplayInputError(f"{name}: t_s is not evenly sampled: line {lines[i]} comes "
                               f"{(t[i] - t[i - 1]) * 1e3:.4g} ms after the previous row, the "
                               f"period is {1e3 / rate:.4g} ms (a lost or repeated sample?)")
    return Samples(path, columns[1:], t, data[:, 1:], rate)


def _check_header(name: str, columns: tuple[str, ...], allowed: tuple[str, ...],
                  required: tuple[str, ...]) -> None:
    if "t_s" not in columns:
        raise ReplayInputError(f"{name}: no t_s column (columns are {', '.join(columns)})")
    if columns[0] != "t_s":
        raise ReplayInputError(f"{name}: t_s must be the first column")
    seen = set()
    for c in columns:
        if c in seen:
            raise ReplayInputError(f"{name}: column {c} appears twice")
        seen.add(c)
        if c != "t_s" and c not in allowed:
            raise ReplayInputError(f"{name}: unknown column {c!r} (allowed: t_s, "
                                   f"{', '.join(allowed)})")
    missing = [c for c in required if c not in columns]
    if missing:
        raise ReplayInputError(f"{name}: missing column(s) {', '.join(missing)}")
    if len(columns) < 2:
        raise ReplayInputError(f"{name}: no channel column besides t_s (give 1-{len(allowed)} of "
                               f"{', '.join(allowed)})")


def _to_float(name: str, columns: tuple[str, ...], rows: list[list[str]], lines: list[int]) -> np.ndarray:
    text = np.char.strip(np.asarray(rows, dtype=str))
    text[text == ""] = "nan"  # an empty cell is a missing value, like NaN
    try:
        data = text.astype(np.float64)
    except ValueError:
        data = None
    if data is None or not np.isfinite(data[~np.isnan(data)]).all():
        for i, row in enumerate(text):  # slow path only to name the first bad cell
            for j, cell in enumerate(row):
                try:
                    v = float(cell)
                except ValueError:
                    v = None
                if v is None or np.isinf(v):
                    raise ReplayInputError(f"{name}: line {lines[i]}, column {columns[j]}: "
                                           f"{str(cell)!r} is not a finite number")
    return data


def _trim_missing(name: str, columns: tuple[str, ...], data: np.ndarray, lines: np.ndarray,
                  warn: Warn) -> tuple[np.ndarray, np.ndarray]:
    """Rows with a missing value (empty or NaN) at the end are dropped with a warning (recorders
    often leave a ragged last line); one inside the recording is an error."""
    bad = np.isnan(data).any(axis=1)
    if not bad.any():
        return data, lines
    good = np.flatnonzero(~bad)
    if not good.size:
        raise ReplayInputError(f"{name}: every row has a missing value (empty or NaN)")
    end = good[-1] + 1
    inner = np.flatnonzero(bad[:end])
    if inner.size:
        i = inner[0]
        col = columns[int(np.flatnonzero(np.isnan(data[i]))[0])]
        raise ReplayInputError(f"{name}: line {lines[i]}, column {col}: missing value (empty or NaN) "
                               f"inside the recording")
    warn(f"{name}: dropped {len(data) - end} row(s) with missing values at the end "
         f"(lines {lines[end]}-{lines[-1]})")
    return data[:end], lines[:end]


def _check_time(name: str, t: np.ndarray, lines: np.ndarray) -> None:
    if len(t) < 2:
        raise ReplayInputError(f"{name}: needs at least 2 rows to tell the sample rate, has {len(t)}")
    back = np.flatnonzero(np.diff(t) <= 0)
    if back.size:
        i = back[0] + 1
        raise ReplayInputError(f"{name}: t_s does not increase at line {lines[i]} "
                               f"({t[i]:.9g} after {t[i - 1]:.9g})")


def read_emg(path: str | os.PathLike, warn: Warn) -> Samples:
    return read_samples(path, allowed=units.EMG_CHANNELS, required=(), rate_range_hz=EMG_RATE_RANGE_HZ,
                        kind="EMG", warn=warn)


def read_imu(path: str | os.PathLike, warn: Warn) -> Samples:
    return read_samples(path, allowed=IMU_COLUMNS, required=IMU_COLUMNS, rate_range_hz=IMU_RATE_RANGE_HZ,
                        kind="IMU", warn=warn)


# ----------------------------------------------------------------------------- to the chip feed
def resample(x: np.ndarray, rate_hz: float, target_hz: int) -> np.ndarray:
    """Resample the rows of x (n, k) from rate_hz to target_hz; output row i is at i / target_hz
    after input row 0."""
    ratio = Fraction(target_hz / rate_hz).limit_denominator(1000)
    if ratio == 1:
        return np.asarray(x, dtype=np.float64)
    return resample_poly(x, ratio.numerator, ratio.denominator, axis=0, padtype="line")


def imu_to_body() -> np.ndarray:
    """The board's mounting matrix (body = M @ sensor), read from firmware/board/pins.py: the very
    file the firmware imports (generated from hardware/pinmap.json)."""
    tree = ast.parse(PINS.read_text(), str(PINS))
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == "IMU_TO_BODY"
                                                for t in node.targets):
            m = np.array(ast.literal_eval(node.value), dtype=np.int64)
            if m.shape != (3, 3) or round(np.linalg.det(m)) != 1:
                raise ReplayFailed(f"{PINS}: IMU_TO_BODY is not a 3x3 rotation")
            return m
    raise ReplayFailed(f"{PINS}: no IMU_TO_BODY")


def emg_codes(uv: np.ndarray, channels: tuple[str, ...], warn: Warn) -> np.ndarray:
    """(n, len(channels)) uV -> (n, 4) AFE codes in the channel order of units.EMG_CHANNELS."""
    codes = np.zeros((len(uv), units.N_EMG), dtype=np.int64)
    for j, ch in enumerate(channels):
        c = np.rint(uv[:, j] / units.EMG_UV_PER_CODE)
        clipped = int(((c < units.EMG_CODE_MIN) | (c > units.EMG_CODE_MAX)).sum())
        if clipped:
            warn(f"EMG {ch}: {clipped} sample(s) beyond the AFE's range "
                 f"(+-{units.EMG_CODE_MAX * units.EMG_UV_PER_CODE:.0f} uV) clipped")
        codes[:, units.EMG_CHANNELS.index(ch)] = np.clip(c, units.EMG_CODE_MIN, units.EMG_CODE_MAX)
    return codes.astype(np.int32)


def imu_counts(body: np.ndarray, mounting: np.ndarray, warn: Warn) -> np.ndarray:
    """(m, 6) body-frame acc (g) and gyro (dps) -> (m, 6) int16 sensor-frame counts."""
    sensor = np.concatenate([body[:, 0:3] @ mounting, body[:, 3:6] @ mounting], axis=1)  # M.T @ v
    scale = np.array([units.ACC_LSB_PER_G] * 3 + [units.GYR_LSB_PER_DPS_X10 / 10] * 3)
    counts = np.rint(sensor * scale)
    over = np.abs(counts) > 32767
    if over.any():
        warn(f"IMU: {int(over[:, :3].any(axis=1).sum())} sample(s) beyond +-8 g and "
             f"{int(over[:, 3:].any(axis=1).sum())} beyond +-1000 dps clipped (the chip's ranges)")
    return np.clip(counts, -32767, 32767).astype(np.int16)


def imu_feed_body(imu: Samples | None, t0_s: float, n_feed: int, warn: Warn) -> np.ndarray:
    """Body-frame IMU samples at the instants the fake IMU delivers feed samples 0..n_feed-1."""
    if imu is None:
        still = np.zeros((n_feed, 6))
        still[:, 2] = 1.0  # upright: +1 g on body z, no rotation
        return still
    x = resample(imu.values, imu.rate_hz, units.IMU_RATE_HZ)
    t_in = imu.t_s[0] - t0_s + np.arange(len(x)) / units.IMU_RATE_HZ
    t_feed = (FAKE_IMU_FIRST_TICK + units.TICKS_PER_IMU_SAMPLE * np.arange(n_feed)) / units.CLOCK_HZ
    period = 1 / units.IMU_RATE_HZ
    if n_feed and t_in[0] > t_feed[0] + period:
        warn(f"IMU starts {t_in[0]:.3f} s after the first EMG sample: its first sample is held "
             f"until then")
    if n_feed and t_in[-1] < t_feed[-1] - period:
        warn(f"IMU ends {t_feed[-1] - t_in[-1]:.3f} s before the EMG: its last sample is held "
             f"to the end")
    # The shift onto the device's IMU instants is below one 100 Hz sample of an already
    # band-limited signal: linear interpolation between neighbours is enough.
    return np.column_stack([np.interp(t_feed, t_in, x[:, a]) for a in range(6)])


# ----------------------------------------------------------------------------- running the firmware
def run_firmware(feed_path: Path, frames_path: Path, *, calibrate_ticks: int = 0,
                 mains_hz: int | None = None, timeout_s: float = 600) -> dict[str, str]:
    """Run run_replay.py on the feed; return the key=value fields of its `replay: done` line and
    `calibration` when asked for."""
    if not ENTRY.exists():
        raise ReplayFailed(f"firmware not found at {FIRMWARE} (replay needs the source checkout)")
    env = {k: v for k, v in os.environ.items() if not k.startswith("HIPSYNC_")}  # offline radio
    env["MICROPYPATH"] = os.pathsep.join(str(p) for p in (UNIX_BOARD, FIRMWARE, SHARED)) + os.pathsep \
        + ".frozen"
    args = [micropython_binary(), "-X", f"heapsize={HEAP}", str(ENTRY), str(feed_path),
            str(frames_path), str(calibrate_ticks), str(mains_hz or 0)]
    try:
        # the working folder is the unix board's filesystem: the feed's, so nothing lands elsewhere
        proc = subprocess.run(args, capture_output=True, timeout=timeout_s, env=env,
                              cwd=str(Path(feed_path).parent))
    except subprocess.TimeoutExpired:
        raise ReplayFailed(f"the firmware run did not finish within {timeout_s:.0f} s") from None
    out = proc.stdout.decode(errors="replace")
    if proc.returncode != 0:
        raise ReplayFailed("the firmware run failed:\n" + out[-2000:]
                           + proc.stderr.decode(errors="replace")[-2000:])
    fields: dict[str, str] = {}
    for line in out.splitlines():
        if line.startswith("replay: done "):
            fields.update(kv.split("=", 1) for kv in line.split()[2:])
        m = re.match(r"replay: calibration (ok|refused)$", line)
        if m:
            fields["calibration"] = m.group(1)
    if "ticks" not in fields:
        raise ReplayFailed("the firmware run ended without its summary line:\n" + out[-2000:])
    return fields


# ----------------------------------------------------------------------------- frames -> CSV
@dataclass
class Decoded:
    envelope: list[tuple[int, list[int]]] = field(default_factory=list)  # (clock, 4 values)
    pelvis: list[tuple[int, list[int]]] = field(default_factory=list)  # (clock, 3 cdeg)
    events: list[tuple[int, str, str]] = field(default_factory=list)
    status: list[tuple[int, dict]] = field(default_factory=list)


def decode_records(data: bytes) -> Decoded:
    frames, _end, reason = records.scan_records(data)
    if reason:
        raise ReplayFailed(f"the firmware's frame file is damaged: {reason}")
    out = Decoded()
    expect_seq = 0
    for offset, frame in frames:
        try:
            f = decode(frame)
        except ProtocolError as e:
            raise ReplayFailed(f"frame at offset {offset} of the firmware's output: {e}") from None
        if f.header.seq != expect_seq & 0xFFFF:
            raise ReplayFailed(f"frame sequence jumps from {expect_seq - 1} to {f.header.seq}: "
                               f"the streamer dropped frames")
        expect_seq += 1
        clock = f.header.clock
        if isinstance(f, Envelope | Pelvis):
            rows = out.envelope if isinstance(f, Envelope) else out.pelvis
            for k in range(f.n_samples):
                rows.append((clock + k * f.period_ticks, [ch[k] for ch in f.channels]))
        elif isinstance(f, Event):
            out.events.append((clock, f.kind, f.side))
        elif isinstance(f, Status):
            out.status.append((clock, f.fields))
    return out


def write_csvs(decoded: Decoded, channels: tuple[str, ...], out_dir: Path) -> dict[str, Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {name: out_dir / f"{name}.csv" for name in ("envelope", "pelvis", "events", "quality")}
    idx = [units.EMG_CHANNELS.index(c) for c in channels]
    with paths["envelope"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", *channels])
        for clock, v in decoded.envelope:
            w.writerow([_t(clock), *[v[i] for i in idx]])
    with paths["pelvis"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "obliquity_deg", "tilt_deg", "rotation_deg"])
        for clock, v in decoded.pelvis:
            w.writerow([_t(clock), *[f"{a / units.ANGLE_CDEG_PER_DEG:.2f}" for a in v]])
    with paths["events"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", "event", "side"])
        for clock, kind, side in decoded.events:
            w.writerow([_t(clock), kind, side])
    with paths["quality"].open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["t_s", *[f"{c}_flags" for c in channels], *[f"{c}_mains_uv" for c in channels],
                    "emg_lost_samples", "imu_lost_samples"])
        for clock, s in decoded.status:
            flags = [";".join(qflags.describe(s["quality"][i])) or "ok" for i in idx]
            w.writerow([_t(clock), *flags, *[s["mains_uv"][i] for i in idx], s["emg_lost_samples"],
                        s["imu_lost_samples"]])
    return paths


def _t(clock: int) -> str:
    return f"{clock / units.CLOCK_HZ:.3f}"


# ----------------------------------------------------------------------------- the whole replay
def replay(emg_path: str | os.PathLike, out_dir: str | os.PathLike, *,
           imu_path: str | os.PathLike | None = None, calibrate_first_s: float | None = None,
           mains_hz: int | None = None, warn: Warn | None = None) -> ReplayResult:
    """Read and check the inputs, run them through the firmware, write the four CSVs into out_dir.
    Raises ReplayInputError for input the replay cannot take, ReplayFailed if the run goes wrong.
    Warnings (trimmed rows, clipped samples, refused calibration, IMU not covering the EMG) go to
    warn() as they happen and into the result."""
    warnings: list[str] = []

    def _warn(msg: str) -> None:
        warnings.append(msg)
        if warn is not None:
            warn(msg)

    emg = read_emg(emg_path, _warn)
    imu = read_imu(imu_path, _warn) if imu_path is not None else None
    uv = resample(emg.values, emg.rate_hz, units.EMG_RATE_HZ)
    n = len(uv)
    duration_s = n / units.EMG_RATE_HZ
    if imu is not None and (imu.t_s[-1] < emg.t_s[0] or imu.t_s[0] > emg.t_s[-1]):
        raise ReplayInputError(f"IMU file {imu.path}: t_s {imu.t_s[0]:g}..{imu.t_s[-1]:g} s does not "
                               f"overlap the EMG file's {emg.t_s[0]:g}..{emg.t_s[-1]:g} s")
    calibrate_ticks = 0
    if calibrate_first_s is not None:
        if not 0 < calibrate_first_s <= duration_s:
            raise ReplayInputError(f"--calibrate-first-s {calibrate_first_s:g} must be within the "
                                   f"recording (0-{duration_s:.3f} s)")
        calibrate_ticks = round(calibrate_first_s * units.CLOCK_HZ)
    n_imu = n // units.TICKS_PER_IMU_SAMPLE
    body = imu_feed_body(imu, emg.t_s[0], n_imu, _warn)
    codes = emg_codes(uv, emg.columns, _warn)
    counts = imu_counts(body, imu_to_body(), _warn)
    out_dir = Path(out_dir)
    with tempfile.TemporaryDirectory(prefix="hipsync-replay-") as tmp:
        feed = write_feed(Path(tmp) / "replay.feed", codes, np.zeros(n, dtype=np.uint32), counts)
        frames_path = Path(tmp) / "frames.rec"
        t_run = time.perf_counter()
        done = run_firmware(feed, frames_path, calibrate_ticks=calibrate_ticks, mains_hz=mains_hz,
                            timeout_s=120 + 2 * duration_s)
        micropython_s = time.perf_counter() - t_run
        data = frames_path.read_bytes()
    if int(done["emg"]) != n or int(done["imu"]) != n_imu:
        raise ReplayFailed(f"the fake chips converted {done['emg']} EMG and {done['imu']} IMU samples "
                           f"of {n} and {n_imu}")
    stamp_offset_ticks = 0
    if n_imu:
        if int(done["imu_first"]) != FAKE_IMU_FIRST_TICK:
            raise ReplayFailed(f"the fake IMU delivered its first sample at clock {done['imu_first']}, "
                               f"the replay assumed {FAKE_IMU_FIRST_TICK}: fix FAKE_IMU_FIRST_TICK")
        stamp_offset_ticks = int(done["imu_stamp"]) - int(done["imu_first"])
        if stamp_offset_ticks:
            _warn(f"the device stamped IMU samples {stamp_offset_ticks / units.CLOCK_HZ * 1e3:+.0f} ms "
                  f"off the instant they were delivered: pelvis and event times carry that offset")
    decoded = decode_records(data)
    if done.get("calibration") == "refused":
        _warn(f"standing calibration over the first {calibrate_first_s:g} s was refused (the pelvis "
              f"moved: gyro above 5 dps or acceleration varying by more than 0.1 g); angles are "
              f"those of the sensor")
    try:
        paths = write_csvs(decoded, emg.columns, out_dir)
    except OSError as e:
        raise ReplayInputError(f"cannot write to {out_dir}: {e.strerror or e}") from None
    return ReplayResult(out_dir, paths, duration_s, emg.columns, emg.rate_hz,
                        imu.rate_hz if imu is not None else None, len(decoded.envelope),
                        len(decoded.pelvis), len(decoded.events), len(decoded.status),
                        done.get("calibration"), micropython_s, stamp_offset_ticks, warnings)
