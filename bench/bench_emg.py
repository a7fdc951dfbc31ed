"""EMG envelope chain figures: causal delay, agreement with a real recording, speed.

BENCH envelope_delay_ms       lag of the device envelope (MicroPython, 100 Hz, placed at its
                              sample instants and linearly interpolated to 1 kHz) behind the
                              zero-lag truth: the activation profile that amplitude-modulates
                              synthetic sEMG bursts (1 Hz, 40 % duty, 100 uV rms), by
                              cross-correlation.
BENCH envelope_corr_santuz    Pearson correlation of the device envelope of the Santuz GMed
                              recording (column ME) with the authors' own envelope
                              (*_filtered_timenorm_emg.csv), after applying their time
                              normalisation (cycles 2-4, stance and swing 100 points each) to
                              the device envelope at its own timestamps (no delay compensation).
BENCH envelope_corr_santuz_delay_comp  the same after shifting the device envelope back by the
                              measured envelope_delay_ms (a constant the host can remove).
BENCH mains_attenuation_db    envelope of 1 mV 50 Hz mains alone vs the envelope of the same
                              sinusoid with the notches off, worst of 50 and 60 Hz settings,
                              steady state (after 1 s). The device output is integer uV and
                              reads 1 uV here, so the figure is a lower bound.
BENCH emg_chain_rtf           4 channels at 1 kHz through EnvelopeChain.process in 32-frame
                              blocks, MicroPython unix port (viper kernel), multiples of real
                              time (median of 3 runs); emg_chain_rtf_bytecode: the same kernel source with the
                              viper decorator and annotations removed; emg_quality_rtf:
                              SignalQuality.process.
"""

from __future__ import annotations

import re
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "firmware"))

import emg_reference as R  # noqa: E402

import micropython_port  # noqa: E402

FS = R.FS_HZ


def device_times_s(n_out: int, t0_s: float = 0.0) -> np.ndarray:
    return t0_s + (np.arange(n_out) * R.DECIM + R.DECIM - 1) / FS


def envelope_delay_ms() -> float:
    n = 20 * FS
    act = 100 * R.activation(n, 1.0, 0.4)
    uv = R.semg_uv(n, rms_uv=100, seed=3)  # = 100 * activation * carrier + noise (same seed)
    (env,), _ = R.run_envelope(R.uv_to_codes(uv)[:, None])
    t = np.arange(n) / FS
    dense = np.interp(t, device_times_s(len(env)), env[:, 0].astype(float))
    skip = 2 * FS  # start-up
    return R.lag_ms(dense[skip:], act[skip:], FS)


def santuz_corr(delay_ms: float) -> tuple[float, float] | None:
    if not (R.DATA / "santuz_walking_emg").is_dir():
        return None
    time_s, me_uv, cycles, authors = R.load_santuz("ME")
    (env,), _ = R.run_envelope(R.uv_to_codes(me_uv)[:, None])
    t = device_times_s(len(env), float(time_s[0]))
    out = []
    for shift_s in (0.0, delay_ms / 1000):
        v = R.time_normalise(env[:, 0].astype(float), t - shift_s, cycles, (1, 2, 3))
        out.append(float(np.corrcoef(v, authors)[0, 1]))
    return out[0], out[1]


def mains_attenuation_db() -> float:
    worst = np.inf
    n = 3 * FS
    for hz in (50, 60):
        uv = 1000 * np.sin(2 * np.pi * hz * np.arange(n) / FS)
        codes = R.uv_to_codes(uv)[:, None]
        (on,), _ = R.run_envelope(codes, mains_hz=hz)
        off = R.envelope_uv(codes[:, 0], hz, notch_q=1e9, harmonic=False)  # notch band ~0
        steady = slice(100, None)
        att = 20 * np.log10(np.mean(off[steady]) / max(np.mean(on[steady, 0]), 0.5))
        worst = min(worst, att)
    return float(worst)


_RTF_CODE = """
import array, time
from {module} import EnvelopeChain
from dsp.emg_quality import SignalQuality
nch = 4
block = 32
codes = array.array('i', bytes(4 * nch * block))
s = 1
for i in range(len(codes)):
    s = (s * 1103515245 + 12345) & 0x7FFFFFFF
    codes[i] = ((s >> 8) & 0xFFFF) * 64 - 0x200000
out = array.array('i', bytes(4 * nch * 8))
chain = EnvelopeChain()
qual = SignalQuality()
blocks = {blocks}
t0 = time.ticks_us()
for b in range(blocks):
    chain.process(codes, block, out, 0)
t1 = time.ticks_us()
for b in range(blocks):
    qual.process(codes, block, 0)
t2 = time.ticks_us()
sig_us = blocks * block * 1000
print('RTF', sig_us / time.ticks_diff(t1, t0), sig_us / time.ticks_diff(t2, t1))
"""


def rtf(module: str, blocks: int, extra_path: tuple[Path, ...] = ()) -> tuple[float, float]:
    """Median of 3 runs (the machine is shared)."""
    runs = []
    for _ in range(3):
        text = micropython_port.check_code(_RTF_CODE.format(module=module, blocks=blocks),
                                           extra_path=extra_path, timeout_s=300)
        runs.append([float(v) for v in text.split("RTF")[1].split()])
    chain, qual = np.median(np.array(runs), axis=0)
    return float(chain), float(qual)


def bytecode_copy(folder: Path) -> str:
    """The envelope module with viper removed: the same arithmetic as plain bytecode."""
    src = (ROOT / "firmware" / "dsp" / "emg_envelope.py").read_text()
    src = src.replace("@micropython.viper\n", "")
    src = re.sub(r"def _run\([^)]*\) -> int:",
                 "def _run(codes, n, st, cf, out, out_start):", src)
    (folder / "emg_envelope_bytecode.py").write_text(src)
    return "emg_envelope_bytecode"


def main() -> None:
    delay = envelope_delay_ms()
    print(f"BENCH envelope_delay_ms {delay:.1f} ms", flush=True)
    corr = santuz_corr(delay)
    if corr is not None:
        print(f"BENCH envelope_corr_santuz {corr[0]:.3f} ratio", flush=True)
        print(f"BENCH envelope_corr_santuz_delay_comp {corr[1]:.3f} ratio", flush=True)
    print(f"BENCH mains_attenuation_db {mains_attenuation_db():.1f} dB", flush=True)
    chain, qual = rtf("dsp.emg_envelope", 2000)  # 64 s of signal
    print(f"BENCH emg_chain_rtf {chain:.0f} x", flush=True)
    print(f"BENCH emg_quality_rtf {qual:.0f} x", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        module = bytecode_copy(Path(tmp))
        chain_bc, _ = rtf(module, 100, extra_path=(Path(tmp),))
    print(f"BENCH emg_chain_rtf_bytecode {chain_bc:.1f} x", flush=True)


if __name__ == "__main__":
    main()
