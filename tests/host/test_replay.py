"""`hipsync replay`: CSV samples through the real firmware in MicroPython, back out as CSVs.

Every replay here runs firmware/unixboard/run_replay.py (the device app on the unix board's fake
chips); the checks compare its output with what the input makes known: burst timing, static tilt
sign, a scipy envelope of a real recording, mobgap's reference initial contacts."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from scipy import signal

from hipsync import cli

DATA = Path(__file__).resolve().parents[3] / "shared" / "data"
SANTUZ = DATA / "santuz_walking_emg" / "ID0012_TW_01_raw_emg.csv"
MOBGAP = DATA / "mobgap_lowerback_imu" / "data" / "lab" / "HA" / "001" / "data.mat"
IMU_HEADER = ["t_s", "acc_x_g", "acc_y_g", "acc_z_g", "gyr_x_dps", "gyr_y_dps", "gyr_z_dps"]
# docs: the envelope low-pass with the high-pass and notches in front lags an activation by
# ~37-43 ms (firmware/dsp/emg_envelope.py); the half-rise of a step comes a little later.
ENVELOPE_DELAY_S = 0.040


def _write(path: Path, header: list[str], t_s: np.ndarray, values: np.ndarray) -> Path:
    with path.open("w", newline="") as f:
        f.write(",".join(header) + "\n")
        np.savetxt(f, np.column_stack([t_s, values]), delimiter=",", fmt="%.6f")
    return path


def _read(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def _numeric(path: Path) -> tuple[list[str], np.ndarray]:
    header, rows = _read(path)
    return header, np.array(rows, dtype=float).reshape(len(rows), len(header))


def _replay(capsys, *args: str) -> tuple[int, str]:
    rc = cli.main(["replay", *args])
    return rc, capsys.readouterr().err


def _imu_rows(n: int, rate_hz: float, acc_g=(0.0, 0.0, 1.0), gyr_dps=(0.0, 0.0, 0.0)):
    t = np.arange(n) / rate_hz
    return t, np.tile(np.r_[acc_g, gyr_dps], (n, 1))


# ----------------------------------------------------------------------------- behaviour
def test_burst_rises_in_the_envelope_at_the_right_time(tmp_path, capsys):
    fs = 2000
    rng = np.random.default_rng(4)
    t = np.arange(4 * fs) / fs
    burst = (t >= 1.5) & (t < 2.5)
    l_gmed = rng.normal(0, 3, t.size) + burst * rng.normal(0, 100, t.size)
    r_es = rng.normal(0, 3, t.size)
    emg = _write(tmp_path / "emg.csv", ["t_s", "l_gmed", "r_es"], t + 12.0,  # t_s need not start at 0
                 np.c_[l_gmed, r_es])
    rc, err = _replay(capsys, "--emg", str(emg), "--out", str(tmp_path / "out"))
    assert rc == 0, err
    header, env = _numeric(tmp_path / "out" / "envelope.csv")
    assert header == ["t_s", "l_gmed", "r_es"]  # only the channels given
    t_env = env[:, 0]
    assert t_env[0] < 0.02 and abs(t_env[-1] - 4.0) < 0.02 and np.allclose(np.diff(t_env), 0.01)
    plateau = np.median(env[(t_env > 2.0) & (t_env < 2.4), 1])
    # White noise of 100 uV rms at 2 kHz keeps half its power below 500 Hz, where resampling to
    # 1 kHz must cut it (anti-aliasing): 70.7 uV rms, mean |x| = sqrt(2/pi) * 70.7 = 56 uV, a few
    # percent less after the 20 Hz high-pass and the notches. Without the cut it would be ~80.
    assert 45 < plateau < 62, plateau
    rise = t_env[np.argmax(env[:, 1] > plateau / 2)]
    assert 1.5 < rise <= 1.5 + 1.5 * ENVELOPE_DELAY_S, rise
    fall = t_env[(t_env > 2.5) & (env[:, 1] < plateau / 2)][0]
    assert 2.5 < fall <= 2.5 + 2 * ENVELOPE_DELAY_S, fall
    assert env[(t_env > 0.5) & (t_env < 1.5), 1].max() < 10  # quiet before the burst
    assert env[:, 2].max() < 10  # the quiet channel stays quiet
    header, rows = _read(tmp_path / "out" / "quality.csv")
    assert header == ["t_s", "l_gmed_flags", "r_es_flags", "l_gmed_mains_uv", "r_es_mains_uv",
                      "emg_lost_samples", "imu_lost_samples"]
    assert len(rows) >= 4 and all(r[-2:] == ["0", "0"] for r in rows)
    # without --imu: a still, upright pelvis and no gait events
    _h, pel = _numeric(tmp_path / "out" / "pelvis.csv")
    assert len(pel) == pytest.approx(400, abs=2) and np.abs(pel[:, 1:]).max() < 0.05
    assert _read(tmp_path / "out" / "events.csv") == (["t_s", "event", "side"], [])


@pytest.mark.parametrize("tilt_deg", [12.0, -8.0])
def test_static_tilt_has_the_sign_of_the_conventions(tmp_path, capsys, tilt_deg):
    # docs/CONVENTIONS.md: at rest a = (-cos(obl) sin(tilt), sin(obl), cos(obl) cos(tilt)) g,
    # tilt positive = anterior. 200 Hz IMU, one EMG channel at 1 kHz.
    th = np.radians(tilt_deg)
    t_imu, imu = _imu_rows(600, 200.0, acc_g=(-np.sin(th), 0.0, np.cos(th)))
    imu_csv = _write(tmp_path / "imu.csv", IMU_HEADER, t_imu, imu)
    t = np.arange(3000) / 1000
    emg = _write(tmp_path / "emg.csv", ["t_s", "r_gmed"], t, np.zeros_like(t))
    rc, err = _replay(capsys, "--emg", str(emg), "--imu", str(imu_csv), "--out", str(tmp_path / "o"))
    assert rc == 0, err
    header, pel = _numeric(tmp_path / "o" / "pelvis.csv")
    assert header == ["t_s", "obliquity_deg", "tilt_deg", "rotation_deg"]
    # the fake IMU delivers on clocks 9, 19, ...; the device's stamps land on them exactly
    assert pel[0, 0] == pytest.approx(0.009) and np.allclose(np.diff(pel[:, 0]), 0.01)
    settled = pel[pel[:, 0] > 1.0]
    assert np.allclose(settled[:, 2], tilt_deg, atol=0.1)
    assert np.abs(settled[:, [1, 3]]).max() < 0.1
    assert _numeric(tmp_path / "o" / "envelope.csv")[0] == ["t_s", "r_gmed"]


def test_calibrate_first_s_zeroes_the_standing_pose(tmp_path, capsys):
    th = np.radians(10.0)
    t_imu, imu = _imu_rows(300, 100.0, acc_g=(-np.sin(th), 0.0, np.cos(th)))
    imu_csv = _write(tmp_path / "imu.csv", IMU_HEADER, t_imu, imu)
    t = np.arange(3000) / 1000
    emg = _write(tmp_path / "emg.csv", ["t_s", "l_es"], t, np.zeros_like(t))
    rc, err = _replay(capsys, "--emg", str(emg), "--imu", str(imu_csv), "--out", str(tmp_path / "o"),
                      "--calibrate-first-s", "1.5")
    assert rc == 0, err
    _h, pel = _numeric(tmp_path / "o" / "pelvis.csv")
    assert np.abs(pel[pel[:, 0] > 1.6, 2]).max() < 0.1  # calibrated: the standing tilt reads 0
    assert np.allclose(pel[(pel[:, 0] > 1.0) & (pel[:, 0] < 1.4), 2], 10.0, atol=0.1)


@pytest.mark.skipif(not SANTUZ.exists(), reason="../shared/data is not available")
def test_santuz_gluteus_medius_envelope_follows_a_zero_lag_reference(tmp_path, capsys):
    with SANTUZ.open() as f:
        header = f.readline().strip().split(",")
    raw = np.loadtxt(SANTUZ, delimiter=",", skiprows=1)
    t, me = raw[:, header.index("time")], raw[:, header.index("ME")]  # 1 kHz, uV
    emg = _write(tmp_path / "emg.csv", ["t_s", "r_gmed"], t, me)
    rc, err = _replay(capsys, "--emg", str(emg), "--out", str(tmp_path / "o"))
    assert rc == 0, err
    header, env = _numeric(tmp_path / "o" / "envelope.csv")
    assert header == ["t_s", "r_gmed"]
    # zero-lag reference: high-pass 20 Hz, full-wave rectify, 7 Hz low-pass, all forward-backward
    b, a = signal.butter(2, 20, "highpass", fs=1000)
    rect = np.abs(signal.filtfilt(b, a, me - me.mean()))
    b, a = signal.butter(2, 7, fs=1000)
    ref = signal.filtfilt(b, a, rect)
    idx = np.rint(env[:, 0] * 1000).astype(int)  # t_s 0 = first input sample
    keep = (env[:, 0] > 0.5) & (idx < len(ref))  # skip the filters' start-up
    r = np.corrcoef(env[keep, 1], ref[idx[keep]])[0, 1]
    assert r > 0.8, r
    # the residual is the device's causal delay: shifted by ~40 ms the two nearly coincide
    lags_ms = np.arange(0, 81, 5)
    rs = [np.corrcoef(env[keep, 1], ref[idx[keep] - lag])[0, 1] for lag in lags_ms]
    assert 30 <= lags_ms[int(np.argmax(rs))] <= 50 and max(rs) > 0.95, dict(zip(lags_ms, rs))
    assert 0.5 < env[keep, 1].mean() / ref[idx[keep]].mean() < 2  # same scale: uV


@pytest.mark.skipif(not MOBGAP.exists(), reason="../shared/data is not available")
def test_mobgap_lower_back_walk_yields_initial_contacts(tmp_path, capsys):
    import scipy.io

    trial = scipy.io.loadmat(MOBGAP, simplify_cells=True)["data"]["TimeMeasure1"]["Test5"]["Trial1"]
    lb = trial["SU"]["LowerBack"]
    assert lb["Fs"]["Acc"] == 100

    def to_body(v):  # tests/firmware/gait_reference.py: mobgap (x up, y right, z forward)
        v = np.asarray(v, dtype=float)
        return np.c_[v[:, 2], -v[:, 1], v[:, 0]]  # -> ours (x anterior, y left, z up)

    acc, gyr = to_body(lb["Acc"]), to_body(lb["Gyr"])  # g, dps
    t_imu = np.arange(len(acc)) / 100
    imu_csv = _write(tmp_path / "imu.csv", IMU_HEADER, t_imu, np.c_[acc, gyr])
    t = np.arange(len(acc) * 10) / 1000
    emg = _write(tmp_path / "emg.csv", ["t_s", "l_gmed"], t, np.zeros_like(t))
    rc, err = _replay(capsys, "--emg", str(emg), "--imu", str(imu_csv), "--out", str(tmp_path / "o"))
    assert rc == 0, err
    _h, rows = _read(tmp_path / "o" / "events.csv")
    assert {r[1] for r in rows} <= {"IC", "FC"} and {r[2] for r in rows} <= {"L", "R"}
    ic_s = np.array([float(r[0]) for r in rows if r[1] == "IC"])
    wbs = trial["Standards"]["INDIP"]["MicroWB"]
    wbs = [wbs] if isinstance(wbs, dict) else wbs
    # mobgap's convention: reference time t -> sample round(t * fs) - 1
    ref_s = np.concatenate([(np.round(np.atleast_1d(w["InitialContact_Event"]) * 100) - 1) / 100
                            for w in wbs])
    found = [np.abs(ic_s - t_ref).min() < 0.05 for t_ref in ref_s]  # within 50 ms
    assert len(ref_s) >= 8 and np.mean(found) >= 0.8, (ic_s, ref_s)


def test_trailing_missing_rows_are_dropped_with_a_warning(tmp_path, capsys):
    emg = tmp_path / "emg.csv"
    t = np.arange(1000) / 1000
    _write(emg, ["t_s", "l_gmed", "r_gmed"], t, np.zeros((t.size, 2)))
    with emg.open("a") as f:
        f.write("1.000000,3.0,\n1.001000,nan,nan\n")
    rc, err = _replay(capsys, "--emg", str(emg), "--out", str(tmp_path / "o"))
    assert rc == 0, err
    assert "warning" in err and "dropped 2 row(s)" in err and "lines 1002-1003" in err


# ----------------------------------------------------------------------------- bad input
def _emg_text(rows: int = 20, rate: float = 1000.0) -> list[str]:
    return ["t_s,l_gmed"] + [f"{k / rate:.6f},{k % 7}.5" for k in range(rows)]


def _bad_emg_cases():
    base = _emg_text()

    def edit(line: int, text: str) -> list[str]:  # line numbers as in the file (header = 1)
        out = list(base)
        out[line - 1] = text
        return out

    return [
        ("missing t_s", ["time,l_gmed"] + base[1:], "no t_s column"),
        ("unknown column", ["t_s,l_gmed,gmax"] + [r + ",1" for r in base[1:]], "unknown column 'gmax'"),
        ("non-numeric", edit(6, "0.004000,abc"), "line 6, column l_gmed: 'abc' is not a finite number"),
        ("non-monotonic", edit(8, "0.005000,1"), "t_s does not increase at line 8"),
        ("rate", _emg_text(rate=250.0), "sample rate 250 Hz (from t_s) is outside 500-4000 Hz"),
        ("uneven", base[:10] + base[11:], "not evenly sampled: line 11"),
        ("empty", [], "is empty"),
        ("header only", ["t_s,l_gmed"], "no data rows"),
        ("NaN inside", edit(9, "0.007000,NaN"), "line 9, column l_gmed: missing value"),
        ("fields", edit(4, "0.002000,1,2"), "line 4 has 3 fields, the header has 2"),
        ("no channel", ["t_s"] + [r.split(",")[0] for r in base[1:]], "no channel column"),
    ]


@pytest.mark.parametrize("name,lines,message", _bad_emg_cases(), ids=[c[0] for c in _bad_emg_cases()])
def test_bad_emg_file_exits_2_naming_the_problem(tmp_path, capsys, name, lines, message):
    emg = tmp_path / "emg.csv"
    emg.write_text("\n".join(lines) + ("\n" if lines else ""))
    rc, err = _replay(capsys, "--emg", str(emg), "--out", str(tmp_path / "o"))
    assert rc == 2
    assert message in err, err
    assert "EMG file" in err and not (tmp_path / "o").exists()


@pytest.mark.parametrize("name,mutate,message", [
    ("missing column", lambda h, r: (h[:-1], r[:, :-1]), "missing column(s) gyr_z_dps"),
    ("rate", lambda h, r: (h, np.c_[r[:, :1] * 10, r[:, 1:]]), "outside 50-1000 Hz"),
])
def test_bad_imu_file_exits_2(tmp_path, capsys, name, mutate, message):
    t, imu = _imu_rows(200, 100.0)
    header, data = mutate(IMU_HEADER, np.c_[t, imu])
    imu_csv = tmp_path / "imu.csv"
    with imu_csv.open("w") as f:
        f.write(",".join(header) + "\n")
        np.savetxt(f, data, delimiter=",", fmt="%.6f")
    emg = tmp_path / "emg.csv"
    emg.write_text("\n".join(_emg_text(2000)) + "\n")
    rc, err = _replay(capsys, "--emg", str(emg), "--imu", str(imu_csv), "--out", str(tmp_path / "o"))
    assert rc == 2 and "IMU file" in err and message in err, err


def test_calibration_window_outside_the_recording_exits_2(tmp_path, capsys):
    emg = tmp_path / "emg.csv"
    emg.write_text("\n".join(_emg_text(2000)) + "\n")
    rc, err = _replay(capsys, "--emg", str(emg), "--out", str(tmp_path / "o"),
                      "--calibrate-first-s", "5")
    assert rc == 2 and "--calibrate-first-s 5 must be within the recording (0-2.000 s)" in err, err


def test_missing_file_exits_2(tmp_path, capsys):
    rc, err = _replay(capsys, "--emg", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o"))
    assert rc == 2 and "no such file" in err
