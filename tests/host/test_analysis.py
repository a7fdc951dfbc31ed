"""Analysis against synthetic sessions with known truth (hipsync.analysis.synthetic: envelopes,
events and angles built directly, independent of firmware and simulator)."""

from __future__ import annotations

import numpy as np
import pytest

from hipsync.analysis import analyse, find_strides, rules, summary, symmetry_index
from hipsync.analysis import synthetic as syn
from hipsync.session import Calibration, Task, make_events
from hipsync.store import MissingCalibration, NoGaitData


@pytest.fixture(scope="module")
def healthy():
    return analyse(syn.make_session(syn.healthy(seed=1)))


@pytest.fixture(scope="module")
def weak_left():
    return analyse(syn.make_session(syn.weak_left_compensating(seed=2)))


def _codes(a, side):
    return {f.code for f in a.sides[side].flags}


def test_healthy_has_no_flags_and_expected_numbers(healthy):
    assert healthy.flags == []
    assert healthy.normalisation.method == "MVC"
    for side in ("left", "right"):
        r = healthy.sides[side]
        assert r.counts["detected"] >= 100 and r.counts["emg_valid"] == r.counts["detected"]
        s = r.summaries
        assert s["gmed_es_ratio_ipsi"]["median"] > 2 and s["gmed_es_ratio_contra"]["median"] > 2
        # drop: half-sine of 2 deg plus 0.15 deg noise; the per-stride peak is a little above 2
        assert 2.0 <= s["pelvic_drop_deg"]["median"] <= 2.6
        assert s["single_support_pct"]["median"] == pytest.approx(40.0, abs=1.0)
        assert s["stride_time_s"]["median"] == pytest.approx(1.1, abs=0.03)
        assert "no erector-dominant pattern" in r.sentence
    assert abs(healthy.symmetry["stance_gmed_pct_mvc"]) < 5


def test_mvc_normalisation_matches_truth(healthy):
    """Stance GMed mean in single support (10-50 % of the cycle) of a 30 %MVC Gaussian bump
    centred at 15 %, width 9 %: compute the truth numerically and compare."""
    p = np.linspace(syn.SS_START, syn.SS_END, 4001)
    truth = np.mean(30.0 * np.exp(-0.5 * ((p - syn.GMED_CENTRE) / syn.GMED_WIDTH) ** 2))
    mvc_true = syn.MVC_UV["l_gmed"] + syn.REST_UV  # the resting offset rides on top
    # the highest 500 ms mean of a noisy hold sits a few % above the true level
    mvc = healthy.calibration.mvc_uv["l_gmed"]
    assert mvc_true <= mvc <= 1.06 * mvc_true
    expected_pct = (truth / 100 * syn.MVC_UV["l_gmed"] + syn.REST_UV) / mvc * 100
    got = healthy.sides["left"].summaries["stance_gmed_pct_mvc"]["median"]
    assert got == pytest.approx(expected_pct, rel=0.03)


def test_weak_left_with_stance_compensation_is_flagged_left_only(weak_left):
    assert _codes(weak_left, "left") == {"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "PELVIC_DROP"}
    assert _codes(weak_left, "right") == set()
    left = weak_left.sides["left"]
    n = left.counts["emg_valid"]
    assert np.sum(left.per_stride["gmed_es_ratio_ipsi"] < 1) == n  # every stride shows it
    assert left.summaries["pelvic_drop_deg"]["median"] == pytest.approx(7.1, abs=0.4)
    assert weak_left.sides["right"].summaries["pelvic_drop_deg"]["median"] == pytest.approx(2.2, abs=0.4)
    assert f"erector-dominant stabilisation on left stance (stance-side erectors above the " \
           f"stance GMed in {n} of {n} strides" in left.sentence
    assert weak_left.symmetry["gmed_es_ratio_ipsi"] < -100


def test_pelvic_drop_sign_follows_the_swing_side():
    """Right stance with a left-side drop (negative obliquity) must give a positive drop; a
    right-side drop during right stance (pelvis hiked on the swing side) a negative one."""
    spec = syn.healthy(seed=3, walk_s=40)
    spec.drop_deg = {"left": 0.0, "right": 6.0}
    a = analyse(syn.make_session(spec))
    assert a.sides["right"].summaries["pelvic_drop_deg"]["median"] == pytest.approx(6.1, abs=0.4)
    assert {f.code for f in a.flags} == {"PELVIC_DROP"}
    spec.drop_deg = {"left": 0.0, "right": -3.0}  # swing side rises
    a = analyse(syn.make_session(spec))
    assert a.sides["right"].summaries["pelvic_drop_deg"]["median"] < 0.5


def test_drop_is_relative_to_the_standing_calibration():
    s = syn.make_session(syn.healthy(seed=4, walk_s=40))
    s.calibration = Calibration(standing_deg=np.array([-3.0, 0.0, 0.0]),
                                mvc_uv=s.calibration.mvc_uv)  # entered: 3 deg lower baseline
    a = analyse(s)
    # obliquity during walking is 1.5 + drop; against -3 the left-stance drop grows by 4.5 deg
    assert a.sides["left"].summaries["pelvic_drop_deg"]["median"] == pytest.approx(2.2 + 4.5, abs=0.4)
    assert a.calibration.source == "entered"


def test_onset_matches_the_threshold_crossing_of_the_truth(healthy, weak_left):
    for a, spec in ((healthy, syn.healthy(seed=1)), (weak_left, syn.weak_left_compensating(seed=2))):
        for side in ("left", "right"):
            expected = syn.expected_onset_ms(spec, side)
            got = a.sides[side].summaries["gmed_onset_ms"]["median"]
            # 10 ms samples and a 25 ms hold make the detector a sample or so late
            assert expected - 5 <= got <= expected + 20, (side, got, expected)


def test_missing_mvc_falls_back_to_peak_dynamic_with_warning():
    a = analyse(syn.make_session(syn.weak_left_compensating(seed=2, with_mvc=False)))
    assert a.normalisation.method == "peak_dynamic"
    assert any("peak dynamic" in w for w in a.warnings)
    # ES dominance cannot be judged without MVC: no such flag, the drop still is
    assert {f.code for f in a.flags} == {"PELVIC_DROP"}
    assert "cannot be compared because no MVC" in a.sides["left"].sentence
    # each channel's mean curve peaks at 100 % of its own reference
    for ch in ("l_gmed", "l_es", "r_es"):
        assert np.max(a.sides["left"].curves[ch]["mean"]) == pytest.approx(100, abs=1) \
            or np.max(a.sides["right"].curves[ch]["mean"]) == pytest.approx(100, abs=1)


def test_lead_off_excludes_strides_and_sets_low_quality():
    spec = syn.healthy(seed=5, walk_s=60, lead_off=("l_es", 40.0, 70.0))
    a = analyse(syn.make_session(spec))
    left, right = a.sides["left"], a.sides["right"]
    # l_es is the stance-side ES of left strides and the contralateral ES of right strides
    assert left.counts["excluded_quality"] > 0.2 * left.counts["detected"]
    assert right.counts["excluded_quality"] > 0.2 * right.counts["detected"]
    assert "LOW_QUALITY" in _codes(a, "left") and "LOW_QUALITY" in _codes(a, "right")
    # excluded strides carry no EMG numbers but keep their pelvic drop
    bad = left.quality_bad
    assert np.all(np.isnan(left.per_stride["stance_gmed_pct_mvc"][bad]))
    assert np.all(np.isfinite(left.per_stride["pelvic_drop_deg"][bad]))


def test_packet_loss_sets_high_loss_and_strides_with_gaps_are_left_out():
    a = analyse(syn.make_session(syn.healthy(seed=6, walk_s=90, loss_fraction=0.15)))
    assert any(f.code == "HIGH_LOSS" and f.side == "session" for f in a.flags)
    assert a.quality["envelope_loss_fraction"] > 0.05
    assert a.sides["left"].counts["excluded_data_gap"] > 0
    assert a.sides["left"].summaries["gmed_es_ratio_ipsi"]["median"] > 2  # still sensible


def test_few_strides_raise_no_pattern_flags():
    a = analyse(syn.make_session(syn.weak_left_compensating(seed=7, walk_s=8)))
    codes = _codes(a, "left")
    assert "FEW_STRIDES" in codes
    assert not codes & {"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "PELVIC_DROP"}


def test_strides_and_single_support_windows_from_events():
    ev = make_events([(0.0, "IC", "L", 0), (0.1, "FC", "R", 0), (0.5, "IC", "R", 0),
                      (0.6, "FC", "L", 0), (1.0, "IC", "L", 1), (1.1, "FC", "R", 1),
                      (1.5, "IC", "R", 1), (1.6, "FC", "L", 1), (2.0, "IC", "L", 2),
                      # a stride with a missing right IC, then a long pause
                      (2.1, "FC", "R", 2), (2.6, "FC", "L", 2), (3.0, "IC", "L", 3),
                      (9.0, "IC", "L", 4)])
    left = find_strides(ev, "left", None)
    np.testing.assert_allclose(left.t_ic_s, [0.0, 1.0])
    np.testing.assert_allclose(left.t_ss_start_s, [0.1, 1.1])
    np.testing.assert_allclose(left.t_ss_end_s, [0.5, 1.5])
    np.testing.assert_allclose(left.t_fc_s, [0.6, 1.6])
    assert left.excluded == {"incomplete events": 1, "implausible duration": 1,
                             "outside walking task": 0}
    right = find_strides(ev, "right", None)
    np.testing.assert_allclose(right.t_ss_start_s, [0.6])  # left FC .. left IC
    np.testing.assert_allclose(right.t_ss_end_s, [1.0])
    assert len(find_strides(ev, "left", [(0.9, 2.5)])) == 1


def test_session_without_standing_calibration_is_an_error():
    s = syn.make_session(syn.healthy(seed=8, walk_s=20))
    s.tasks = [t for t in s.tasks if t.name != "standing"]
    with pytest.raises(MissingCalibration, match="record a 'standing' task"):
        analyse(s)


def test_session_without_events_is_an_error():
    s = syn.make_session(syn.healthy(seed=8, walk_s=20))
    s.events = make_events([])
    with pytest.raises(NoGaitData, match="no gait events"):
        analyse(s)


def test_summary_and_symmetry_helpers():
    assert summary([1, 2, 3, 4, np.nan]) == {"median": 2.5, "iqr": 1.5, "q1": 1.75, "q3": 3.25, "n": 4}
    assert summary([np.nan])["median"] is None
    assert symmetry_index(12.0, 8.0) == pytest.approx(40.0)
    assert symmetry_index(None, 1.0) is None and symmetry_index(0.0, 0.0) is None


def test_rule_thresholds_are_the_documented_ones():
    assert rules.PELVIC_DROP_DEG == 4.0 and rules.GMED_ES_RATIO_BOUNDARY == 1.0
    assert rules.MAJORITY_FRACTION == 0.5 and rules.SIGN_TEST_ALPHA == 0.05
    assert rules.NORMAL_WALKING_DROP_DEG == 5.0
    exactly_half = rules.side_flags("left", ratio_ipsi=[0.5] * 10 + [2.0] * 10,
                                    ratio_contra=[2.0] * 20, drop_median_deg=4.0, n_valid=20,
                                    n_quality_bad=0, n_detected=20, mvc_normalised=True)
    assert exactly_half == []  # a tie is not a majority; 4 deg is a normal walking drop


def _flags(ratio_ipsi=(2.0,) * 30, drop=3.0, other=3.0, n_valid=30, n_pelvis=None):
    return {f.code for f in rules.side_flags(
        "left", ratio_ipsi=list(ratio_ipsi), ratio_contra=[2.0] * len(ratio_ipsi),
        drop_median_deg=drop, drop_other_median_deg=other, n_valid=n_valid,
        n_pelvis_valid=n_pelvis, n_quality_bad=0, n_detected=n_valid, mvc_normalised=True)}


def test_es_dominance_needs_a_consistent_majority():
    """More than half is not enough when chance could give it: the one-sided exact sign test at
    p < 0.05 needs 9 of 10, 15 of 20 and 20 of 30 strides (binomial tail, checked here)."""
    from math import comb
    for n, need in ((10, 9), (20, 15), (30, 20)):
        assert rules.min_count_for_flag(n) == need
        assert sum(comb(n, k) for k in range(need, n + 1)) / 2 ** n < 0.05
        assert sum(comb(n, k) for k in range(need - 1, n + 1)) / 2 ** n >= 0.05
    assert rules.min_count_for_flag(9) is None  # below MIN_STRIDES_FOR_FLAGS
    assert "ES_DOMINANT_IPSI" not in _flags([0.9] * 19 + [1.1] * 11)  # 19 of 30: a majority only
    assert "ES_DOMINANT_IPSI" in _flags([0.9] * 20 + [1.1] * 10)
    assert "ES_DOMINANT_IPSI" not in _flags([0.9] * 9, n_valid=9)  # too few strides


def test_pelvic_drop_is_judged_against_normal_walking_and_the_other_side():
    """A normal walker drops the swing side by about 4-5 deg (Perry & Burnfield 2010): that alone,
    on both sides, is no flag. A drop more than 4 deg (the detectable change) above the other
    side's is, and so is one more than 4 deg beyond the normal 5 deg on both sides."""
    assert "PELVIC_DROP" not in _flags(drop=4.6, other=4.4)  # the old rule flagged this
    assert "PELVIC_DROP" not in _flags(drop=8.0, other=4.0)  # exactly the detectable change
    assert "PELVIC_DROP" in _flags(drop=8.5, other=4.0)
    assert "PELVIC_DROP" in _flags(drop=7.0, other=2.0)
    assert "PELVIC_DROP" not in _flags(drop=4.5, other=0.0)  # a level other side, a normal drop
    assert "PELVIC_DROP" in _flags(drop=9.5, other=9.0)  # both sides far beyond normal
    assert "PELVIC_DROP" not in _flags(drop=8.8, other=8.5)
    assert "PELVIC_DROP" in _flags(drop=9.5, other=None)  # other side unknown: beyond normal only
    assert "PELVIC_DROP" not in _flags(drop=8.5, other=None)
    # strides with electrode problems keep their pelvis data: the drop is judged on those
    assert "PELVIC_DROP" in _flags(drop=8.5, other=4.0, n_valid=3, n_pelvis=30)
    assert "PELVIC_DROP" not in _flags(drop=8.5, other=4.0, n_valid=30, n_pelvis=9)


def test_normal_walking_drop_is_not_flagged_in_a_session():
    """Synthetic healthy walker with the normal 4-5 deg swing-side drop on both sides."""
    spec = syn.healthy(seed=5, walk_s=40)
    spec.drop_deg = {"left": 4.5, "right": 4.5}
    a = analyse(syn.make_session(spec))
    for side in ("left", "right"):
        assert a.sides[side].summaries["pelvic_drop_deg"]["median"] > 4.0
        assert "within normal walking" in a.sides[side].sentence
    assert a.flags == []


def test_task_names_from_the_simulator_protocol_are_understood():
    """'standing_calibration' counts as the standing task; a _L/_R suffix gives the task's side."""
    s = syn.make_session(syn.healthy(seed=9, walk_s=30))
    s.tasks = [Task("standing_calibration", t.t_start_s, t.t_end_s) if t.name == "standing" else t
               for t in s.tasks]
    s.tasks.append(Task("step_down_L", 2.0, 4.0))
    a = analyse(s)
    assert a.calibration.standing_deg[0] == pytest.approx(syn.STANDING_DEG[0], abs=0.05)
    step = next(t for t in a.tasks if t["name"] == "step_down_L")
    assert step["side"] == "left" and set(step["channels_pct_mvc"]) == {"l_gmed", "r_gmed", "l_es", "r_es"}


def test_sign_test_threshold_works_for_an_hour_of_strides():
    from hipsync.analysis import rules

    need = rules.min_count_for_flag(3000)
    assert need is not None and 1500 < need < 1600  # a majority just above half, as n grows
    assert rules.consistent(need, 3000) and not rules.consistent(need - 1, 3000)
