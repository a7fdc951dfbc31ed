"""Float reference of the on-device EMG chain (numpy/scipy), and helpers that drive the MicroPython
implementation (firmware/dsp/emg_*.py) on the same input so that tests can compare the two.

The reference uses scipy's own designs of the same filters: butter(2, 20 Hz, high-pass),
iirnotch(mains, Q=10) and iirnotch(3 * mains, Q=10), full-wave rectification, butter(2, 7 Hz),
then every 10th sample (the last of each block of 10), in uV. Like the device, it starts as if the
first sample's level had always been there (the high-pass sees x - x[0])."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from scipy import signal

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import micropython_port  # noqa: E402

REPO = micropython_port.REPO
DATA = REPO.parent / "shared" / "data"
FS_HZ = 1000
DECIM = 10
UV_PER_CODE = 3125 / 2**17
CODE_MAX = 2**23 - 1
CODE_MIN = -(2**23)


def data_dir(name: str) -> Path:
    """Folder of a public recording under ../shared/data; pytest.skip when it is absent."""
    path = DATA / name
    if not path.is_dir():
        import pytest

        pytest.skip(f"public recordings not found at {path} (see shared/data/README.md)")
    return path


def uv_to_codes(uv: np.ndarray) -> np.ndarray:
    return np.clip(np.round(np.asarray(uv, float) / UV_PER_CODE), CODE_MIN, CODE_MAX).astype(np.int64)


def designs(mains_hz: int = 50, *, highpass_hz: float = 20, envelope_hz: float = 7,
            notch_q: float = 10, harmonic: bool = True, fs: float = FS_HZ):
    stages = [signal.butter(2, highpass_hz, "highpass", fs=fs), signal.iirnotch(mains_hz, notch_q, fs)]
    if harmonic and 3 * mains_hz < fs / 2:
        stages.append(signal.iirnotch(3 * mains_hz, notch_q, fs))
    return stages, signal.butter(2, envelope_hz, fs=fs)


def bandpassed_uv(codes: np.ndarray, mains_hz: int = 50, **kw) -> np.ndarray:
    """High-pass and notches of one channel's codes, in uV, full rate."""
    stages, _ = designs(mains_hz, **kw)
    x = (np.asarray(codes, float) - float(codes[0])) * UV_PER_CODE
    for b, a in stages:
        x = signal.lfilter(b, a, x)
    return x


def envelope_uv(codes: np.ndarray, mains_hz: int = 50, *, decimate: bool = True, **kw) -> np.ndarray:
    """The causal envelope of one channel, as the device computes it, in float uV."""
    _, (b, a) = designs(mains_hz, **kw)
    env = np.maximum(signal.lfilter(b, a, np.abs(bandpassed_uv(codes, mains_hz, **kw))), 0.0)
    return env[DECIM - 1::DECIM] if decimate else env


def zero_lag_envelope_uv(codes: np.ndarray, mains_hz: int = 50, **kw) -> np.ndarray:
    """The same low-pass run forwards and backwards (filtfilt, 4th-order effective): no lag."""
    _, (b, a) = designs(mains_hz, **kw)
    return signal.filtfilt(b, a, np.abs(bandpassed_uv(codes, mains_hz, **kw)))


def lag_ms(delayed: np.ndarray, reference: np.ndarray, fs: float, max_lag_ms: float = 200) -> float:
    """Lag of `delayed` behind `reference` by cross-correlation (demeaned), with parabolic
    interpolation of the peak."""
    a = np.asarray(delayed, float) - np.mean(delayed)
    r = np.asarray(reference, float) - np.mean(reference)
    max_lag = int(max_lag_ms * fs / 1000)
    lags = np.arange(-max_lag, max_lag + 1)
    cc = np.array([np.dot(a[max(0, k):len(a) + min(0, k)], r[max(0, -k):len(r) - max(0, k)])
                   for k in lags])
    i = int(np.argmax(cc))
    frac = 0.0
    if 0 < i < len(cc) - 1:
        den = cc[i - 1] - 2 * cc[i] + cc[i + 1]
        frac = 0.5 * (cc[i - 1] - cc[i + 1]) / den if den else 0.0
    return (lags[i] + frac) * 1000 / fs


def time_normalise(env: np.ndarray, t_s: np.ndarray, cycles, cycle_index=(1, 2, 3),
                   points: int = 100) -> np.ndarray:
    """Santuz et al.'s time normalisation: per cycle, stance (touchdown..liftoff) and swing
    (liftoff..next touchdown) each resampled to `points` by linear interpolation, concatenated,
    min-max normalised. `cycles` has columns touchdown_s, liftoff_s."""
    td = np.asarray(cycles["touchdown_s"], float)
    lo = np.asarray(cycles["liftoff_s"], float)
    parts = []
    for k in cycle_index:
        parts.append(np.interp(np.linspace(td[k], lo[k], points), t_s, env))
        parts.append(np.interp(np.linspace(lo[k], td[k + 1], points), t_s, env))
    v = np.concatenate(parts)
    return (v - v.min()) / (v.max() - v.min())


def authors_envelope(uv: np.ndarray, fs: float = FS_HZ) -> np.ndarray:
    """Santuz et al.'s envelope: demean, 4th-order Butterworth high-pass 50 Hz zero-phase,
    rectify, 4th-order low-pass 20 Hz zero-phase."""
    x = np.asarray(uv, float) - np.mean(uv)
    b, a = signal.butter(4, 50, "highpass", fs=fs)
    x = np.abs(signal.filtfilt(b, a, x))
    b, a = signal.butter(4, 20, fs=fs)
    return signal.filtfilt(b, a, x)


def load_santuz(muscle: str = "ME"):
    """Santuz ID0012_TW_01: (time_s, raw uV of `muscle`, cycles, authors' time-normalised
    envelope of `muscle`). ME is the gluteus medius. Skips when the data folder is absent."""
    folder = data_dir("santuz_walking_emg")
    raw = np.genfromtxt(folder / "ID0012_TW_01_raw_emg.csv", delimiter=",", names=True)
    cycles = np.genfromtxt(folder / "ID0012_TW_01_cycles.csv", delimiter=",", names=True)
    authors = np.genfromtxt(folder / "ID0012_TW_01_filtered_timenorm_emg.csv", delimiter=",",
                            names=True)
    return raw["time"], raw[muscle], cycles, authors[muscle]


def load_uci(name: str = "5Nmar") -> np.ndarray:
    """UCI lower-limb EMG file: rows (RF, BF, VM, ST in mV, knee angle in deg) up to the first
    row without EMG (5Nmar ends in rows holding only the angle, or NaN)."""
    path = data_dir("uci_lower_limb_emg") / f"{name}.txt"
    rows = []
    for line in path.read_text(encoding="latin-1").splitlines()[7:]:
        fields = line.split()
        if len(fields) != 5:
            break
        values = [float(f) for f in fields]
        if any(np.isnan(values[:4])):
            break
        rows.append(values)
    return np.array(rows)


# --- Synthetic signals -----------------------------------------------------------------------

def semg_uv(n: int, *, rms_uv: float = 100, seed: int = 0, bursts_hz: float | None = 1.0,
            duty: float = 0.4, fs: float = FS_HZ) -> np.ndarray:
    """sEMG-like signal: white noise band-passed 20-250 Hz (the sEMG band), amplitude-modulated
    by smooth activation bursts (raised-cosine edges), plus 1 uV rms AFE noise."""
    rng = np.random.default_rng(seed)
    b, a = signal.butter(4, [20, 250], "bandpass", fs=fs)
    carrier = signal.lfilter(b, a, rng.standard_normal(n + 500))[500:]
    carrier *= 1 / np.std(carrier)
    if bursts_hz is None:
        act = np.ones(n)
    else:
        act = activation(n, bursts_hz, duty, fs)
    return rms_uv * act * carrier + rng.standard_normal(n)


def activation(n: int, bursts_hz: float, duty: float, fs: float = FS_HZ) -> np.ndarray:
    phase = (np.arange(n) / fs * bursts_hz) % 1.0
    # smooth on/off: raised cosine over the burst, small rest level
    on = phase < duty
    act = np.where(on, 0.5 - 0.5 * np.cos(2 * np.pi * phase / duty), 0.0)
    return 0.05 + act


# --- Driving the MicroPython implementation --------------------------------------------------

_ENVELOPE_DRIVER = """
import array
from dsp.emg_envelope import EnvelopeChain
nch, n, chunk_file, out_file = {nch}, {n}, {chunks!r}, {out!r}
codes = array.array('i', bytes(4 * nch * n))
with open({inp!r}, 'rb') as f:
    f.readinto(codes)
chunks = array.array('i', bytes(4 * {n_chunk_ints}))
with open(chunk_file, 'rb') as f:
    f.readinto(chunks)
chain = EnvelopeChain(n_channels=nch, mains_hz={mains}, check={check}, **{kw!r})
ci = 0
with open(out_file, 'wb') as fo:
    for run in range({n_runs}):
        chain.reset()
        out = array.array('i', bytes(4 * nch * (n // {decim} + 2)))
        pos = 0
        done = 0
        while done < n:
            k = chunks[ci]
            ci += 1
            view = memoryview(codes)[done * nch:]
            m = chain.process(view, k, out, pos * nch)
            pos += m
            done += k
        fo.write(memoryview(out)[:pos * nch])
print('PEAKBITS', chain.peak_bits())
"""


def run_envelope(codes: np.ndarray, *, chunkings: list[list[int]] | None = None, mains_hz: int = 50,
                 check: bool = False, **kw) -> tuple[list[np.ndarray], int]:
    """Run dsp.emg_envelope.EnvelopeChain in MicroPython over codes (n x nch), once per chunking
    (list of block sizes summing to n; default one block). Returns ([env (n_out x nch)], peak_bits)."""
    codes = np.asarray(codes, np.int64)
    if codes.ndim == 1:
        codes = codes[:, None]
    n, nch = codes.shape
    chunkings = chunkings or [[n]]
    for c in chunkings:
        assert sum(c) == n and all(k > 0 for k in c)
    with tempfile.TemporaryDirectory() as tmp:
        inp, cfile, out = (os.path.join(tmp, f) for f in ("in.bin", "chunks.bin", "out.bin"))
        codes.astype("<i4").tofile(inp)
        flat = [k for c in chunkings for k in c]
        np.asarray(flat, "<i4").tofile(cfile)
        code = _ENVELOPE_DRIVER.format(nch=nch, n=n, chunks=cfile, out=out, inp=inp, mains=mains_hz,
                                       check=check, kw=kw, n_chunk_ints=len(flat),
                                       n_runs=len(chunkings), decim=DECIM)
        text = micropython_port.check_code(code, heap="16M", timeout_s=300)
        raw = np.fromfile(out, "<i4")
    n_out = n // DECIM
    envs = [raw[i * n_out * nch:(i + 1) * n_out * nch].reshape(n_out, nch) for i in range(len(chunkings))]
    peak = int(text.split("PEAKBITS")[1].split()[0])
    return envs, peak
