"""dsp.pelvis in MicroPython against its float twin (pelvis_reference.PelvisReference) and against
the synthetic truth: signs per docs/CONVENTIONS.md, combined motion, gyro bias learned at rest,
bounded rotation, impact rejection, standing calibration, CORDIC accuracy."""

from __future__ import annotations

import micropython_port
import numpy as np
import pytest
from pelvis_reference import (
    ACC_LSB_PER_G,
    PelvisReference,
    qmul,
    quat_from_pelvis_deg,
    run_device,
    synthesize_imu,
)

RATE = 100.0


def smooth_step(t, t0, t1):
    x = np.clip((t - t0) / (t1 - t0), 0, 1)
    return 0.5 - 0.5 * np.cos(np.pi * x)


def rotate(q, v):
    """World coordinates of the body-frame point v for quaternions (N, 4)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_quat(np.asarray(q)[:, [1, 2, 3, 0]]).apply(v)


def both(imu, events=(), **kwargs):
    device, flags, info = run_device(imu, events=events, block=kwargs.pop("block", 10), **kwargs)
    ref, ref_flags, ref_cal = PelvisReference(**kwargs).run(imu, events)
    return device, ref, flags, ref_flags, info, ref_cal


@pytest.mark.parametrize("axis", ["x", "y", "z"])
def test_rotation_about_each_body_axis_has_the_documented_sign(axis):
    t = np.arange(0, 3, 1 / RATE)
    a = np.radians(10) * smooth_step(t, 1.0, 2.0)  # +10 deg right-handed about the body axis
    unit = {"x": [1, 0, 0], "y": [0, 1, 0], "z": [0, 0, 1]}[axis]
    q = np.column_stack([np.cos(a / 2)] + [np.sin(a / 2) * u for u in unit])
    imu = synthesize_imu(q)
    device, ref, *_ = both(imu, heading_tau_s=0)

    # anatomy, from the truth: right iliac crest height, anterior point height, left side forward
    right_crest_drop = -rotate(q, [0, -1, 0])[-1, 2]
    anterior_drop = -rotate(q, [1, 0, 0])[-1, 2]
    left_forward = rotate(q, [0, 1, 0])[-1, 0]
    expected = {"x": (10, 0, 0), "y": (0, 10, 0), "z": (0, 0, -10)}[axis]
    np.testing.assert_allclose(device[-1], expected, atol=0.1)
    np.testing.assert_allclose(device, ref, atol=0.05)
    obliquity, tilt, rotation = device[-1]
    assert np.sign(round(obliquity)) == np.sign(round(right_crest_drop, 3))
    assert np.sign(round(tilt)) == np.sign(round(anterior_drop, 3))
    assert np.sign(round(rotation)) == np.sign(round(left_forward, 3))


def gait_like(duration_s=24.0, bias_dps=(0.3, -0.2, 0.4), seed=1):
    t = np.arange(0, duration_s, 1 / RATE)
    walk = smooth_step(t, 3.0, 4.0)  # 3 s standing, then walking
    f = 0.9  # stride frequency
    obl = walk * 5 * np.sin(2 * np.pi * f * t)
    tilt = 2 + walk * 3 * np.sin(2 * np.pi * 2 * f * t + 0.5)
    rot = walk * 6 * np.sin(2 * np.pi * f * t + 1.0)
    q = quat_from_pelvis_deg(obl, tilt, rot)
    lin = np.zeros((len(t), 3))
    lin[:, 2] = walk * 0.25 * np.sin(2 * np.pi * 2 * f * t)
    lin[:, 0] = walk * 0.08 * np.sin(2 * np.pi * 2 * f * t + 1.3)
    lin[:, 1] = walk * 0.05 * np.sin(2 * np.pi * f * t)
    imu = synthesize_imu(q, lin_acc_world_g=lin, gyro_bias_dps=bias_dps, gyro_noise_dps=0.05,
                         acc_noise_g=0.004, seed=seed)
    return t, np.column_stack([obl, tilt, rot]), imu


def test_combined_motion_matches_reference_and_truth():
    t, truth, imu = gait_like()
    device, ref, *_ = both(imu)
    walking = t > 8  # bias learned, heading tracker settled
    # fixed point vs float: same filter, rounding only
    assert np.abs(device - ref)[:, :2].max() < 0.05
    assert np.abs(device - ref)[:, 2].max() < 0.1
    err = device[walking] - truth[walking]
    rmse = np.sqrt(np.mean(err ** 2, 0))
    assert rmse[0] < 0.4 and rmse[1] < 0.4, rmse  # obliquity, tilt (linear acc disturbs)
    assert rmse[2] < 0.6, rmse  # rotation: high-passed heading (docs/CONVENTIONS.md)


def test_gyro_bias_is_learned_at_rest_and_stops_the_drift():
    t = np.arange(0, 65, 1 / RATE)
    q = np.tile([1.0, 0, 0, 0], (len(t), 1))
    bias = np.array([0.9, -0.6, 1.5])
    imu = synthesize_imu(q, gyro_bias_dps=bias, gyro_noise_dps=0.03, acc_noise_g=0.003)
    device, ref, _, _, info, _ = both(imu, heading_tau_s=0)
    np.testing.assert_allclose(info["bias"], bias * 32.8, atol=1.0)
    # heading not tracked: the yaw integrated before the bias was learned (~3 deg in the first
    # seconds) stays, but the drift stops
    t10 = np.searchsorted(t, 10.0)
    assert abs(device[t10, 2]) < 5
    assert np.abs(device[t10:, 2] - device[t10, 2]).max() < 0.1
    np.testing.assert_allclose(device[:, :2], ref[:, :2], atol=0.05)
    np.testing.assert_allclose(device[:, 2], ref[:, 2], atol=0.1)  # 60 s of integrated rounding
    # same data without rest detection: 1.5 dps drift about z goes straight into rotation
    unlearned, _, info_off = run_device(imu, heading_tau_s=0, rest_s=1e6)
    assert info_off["bias"] == [0, 0, 0]
    assert abs(unlearned[-1, 2]) > 80


def test_rotation_stays_bounded_when_bias_cannot_be_learned():
    # Never at rest (continuous sway), 1 dps bias about z, heading tracked with tau = 5 s:
    # rotation settles at -bias * tau instead of growing.
    t = np.arange(0, 120, 1 / RATE)
    q = quat_from_pelvis_deg(4 * np.sin(2 * np.pi * 0.5 * t), 0 * t, 0 * t)
    imu = synthesize_imu(q, gyro_bias_dps=(0, 0, 1.0))
    device, ref, *_ = both(imu, heading_tau_s=5.0)
    assert np.abs(device[:, 2]).max() < 5.5
    np.testing.assert_allclose(device[-1000:, 2].mean(), -5.0, atol=0.3)
    np.testing.assert_allclose(device, ref, atol=0.1)


def test_impacts_are_rejected_and_angles_stay_steady():
    t = np.arange(0, 12, 1 / RATE)
    pose = (-3.0, 5.0, 0.0)
    q = quat_from_pelvis_deg(*(np.full(len(t), v) for v in pose))
    spike = ((t % 1.0) < 0.04) & (t > 2)  # heel strikes: 40 ms every second
    lin = np.zeros((len(t), 3))
    lin[spike] = (0.8, -0.5, 1.5)  # g, world frame
    imu = synthesize_imu(q, lin_acc_world_g=lin, acc_noise_g=0.002)
    device, ref, flags, ref_flags, *_ = both(imu, block=1)
    np.testing.assert_array_equal(flags[:, 0][t > 1.5], spike[t > 1.5])
    np.testing.assert_array_equal(ref_flags[:, 0][t > 1.5], spike[t > 1.5])
    steady = np.abs(device[t > 2, :2] - pose[:2]).max()
    assert steady < 0.05, steady
    np.testing.assert_allclose(device, ref, atol=0.05)
    # the same spikes accepted (band up to 2.9 g) pull the estimate away
    accepted, accepted_flags, _ = run_device(imu, block=1, acc_reject_g=5.0)
    assert not accepted_flags[:, 0].any()
    assert np.abs(accepted[t > 2, :2] - pose[:2]).max() > 5 * steady + 0.2


def test_standing_calibration_makes_angles_relative_to_standing():
    t = np.arange(0, 10, 1 / RATE)
    pelvis = np.column_stack([4 * smooth_step(t, 5, 6), 6 * smooth_step(t, 5, 6),
                              3 * smooth_step(t, 5, 6)])
    # sensor on the sacrum: inclined 18 deg forward and 4 deg to the left relative to the pelvis
    q_pelvis = quat_from_pelvis_deg(*pelvis.T)
    q_mount = quat_from_pelvis_deg([-4.0], [18.0], [0.0])[0]  # pelvis -> sensor
    q_sensor = np.stack(qmul(q_pelvis.T, q_mount), -1)
    imu = synthesize_imu(q_sensor, acc_noise_g=0.002, gyro_noise_dps=0.03)
    events = [(100, "begin"), (300, "end")]
    device, ref, _, _, info, ref_cal = both(imu, events=events, heading_tau_s=0)
    assert info["cal"] == [True] and ref_cal == [True]
    np.testing.assert_allclose(device[50], (-4, 18, 0), atol=0.1)  # before: sensor inclination
    np.testing.assert_allclose(device[310:500], 0, atol=0.06)  # standing = zero
    np.testing.assert_allclose(device[-50:], pelvis[-50:], atol=0.15)  # pelvis angles
    np.testing.assert_allclose(device, ref, atol=0.05)


def test_standing_calibration_is_refused_when_the_person_moves():
    t = np.arange(0, 5, 1 / RATE)
    q = quat_from_pelvis_deg(0 * t, 10 + 8 * smooth_step(t, 2.0, 2.5), 0 * t)
    imu = synthesize_imu(q)
    device, _, info = run_device(imu, events=[(100, "begin"), (300, "end")])
    assert info["cal"] == [False]
    np.testing.assert_allclose(device[-1, 1], 18, atol=0.1)  # still relative to the sensor


def test_cordic_angles_on_a_grid_of_static_poses():
    # Every (obliquity, tilt) from -75 to 75 deg: exact acc counts, first sample initialises.
    grid = [(ob, ti) for ob in range(-75, 76, 15) for ti in range(-165, 180, 15)]
    counts = []
    for ob, ti in grid:
        up = (-np.cos(np.radians(ob)) * np.sin(np.radians(ti)), np.sin(np.radians(ob)),
              np.cos(np.radians(ob)) * np.cos(np.radians(ti)))
        counts.append([round(float(v) * ACC_LSB_PER_G) for v in up])
    code = f"""
import array
from dsp.pelvis import PelvisEstimator
out = array.array('i', bytes(12 * 5))
for ax, ay, az in {counts!r}:
    est = PelvisEstimator()
    est.process(array.array('h', [ax, ay, az, 0, 0, 0] * 5), 5, out, 0)
    print(out[12] / 100, out[13] / 100)
"""
    got = np.array([[float(v) for v in line.split()] for line in
                    micropython_port.check_code(code).split("\n") if line])
    c = np.array(counts, float)
    exact = np.column_stack([np.degrees(np.arctan2(c[:, 1], np.hypot(c[:, 0], c[:, 2]))),
                             np.degrees(np.arctan2(-c[:, 0], c[:, 2]))])
    assert np.abs(got - exact).max() < 0.05


def test_rotation_over_the_full_circle_without_heading_tracking():
    t = np.arange(0, 10, 1 / RATE)
    yaw = 400 * smooth_step(t, 1, 9)  # more than a full turn, positive about +z
    q = quat_from_pelvis_deg(0 * t, 0 * t, -yaw)
    imu = synthesize_imu(q)
    # no bias learning: the slow start of the turn would pass for rest (below rest_gyro_dps)
    device, _, _ = run_device(imu, heading_tau_s=0, rest_s=1e6)
    expected = -((yaw + 180) % 360 - 180)
    err = (device[:, 2] - expected + 180) % 360 - 180
    assert np.abs(err).max() < 0.05


def test_heading_tracking_follows_a_turn_and_keeps_the_stride_oscillation():
    t = np.arange(0, 40, 1 / RATE)
    heading = 90 * smooth_step(t, 10, 12)  # walker turns left by 90 deg
    osc = 5 * np.sin(2 * np.pi * 1.0 * t)
    q = quat_from_pelvis_deg(0 * t, 0 * t, osc - heading)  # rotation = -yaw
    imu = synthesize_imu(q)
    device, ref, *_ = both(imu, heading_tau_s=5.0)
    before = device[(t > 5) & (t < 10), 2]
    np.testing.assert_allclose(before.max(), 5, atol=0.2)
    np.testing.assert_allclose(before.min(), -5, atol=0.2)
    # 23 s = 4.6 tau after the turn: a first-order tracker leaves 90 * exp(-4.6) = 0.9 deg
    assert np.abs(device[t > 35, 2] - osc[t > 35]).max() < 90 * np.exp(-23 / 5) + 0.3
    np.testing.assert_allclose(device, ref, atol=0.1)
