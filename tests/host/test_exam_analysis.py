"""The clinical exam, repetition by repetition, against synthetic sessions with known truth
(hipsync.analysis.synthetic_exam: envelopes, angles and the device's repetitions built directly),
and its part of the report: schema, golden snapshots, HTML, findings."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from test_report import CHROMIUM, FIXED_TIME, SCHEMA, VOLATILE, _chromium, _close, _validate

from hipsync.analysis import analyse, rules
from hipsync.analysis import synthetic as syn
from hipsync.analysis import synthetic_exam as se
from hipsync.exam_tasks import BY_NAME
from hipsync.report import build_report, findings_text, html, write_session_report
from hipsync.store import NoGaitData

GOLDEN = Path(__file__).parent / "golden"
PATTERN_CODES = {"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "ES_FIRST", "PELVIC_DROP"}


@pytest.fixture(scope="module")
def weak():
    s, truth = se.make_exam_session(se.weak_left_exam(seed=12))
    return analyse(s), truth


def _codes(a, task, side):
    return {f.code for f in a.exam.tasks[task][side].flags}


def _expected_loading_pct(rep_truth, role, task):
    """Noise-free mean activation over the loading phase of the construction, in % of the MVC
    the analysis derives (the MVC task's level plus the resting offset), resting offset included."""
    p = rep_truth["pattern"]
    a, low, b = rep_truth["t_start_s"], rep_truth["t_low_s"], rep_truth["t_end_s"]
    end = b if BY_NAME[task].hold_s else low
    t = np.linspace(a, end, 20001)
    level, lead, hold = {"stance_gmed": (p.gmed_pct, p.gmed_lead_s, se.HOLD_GMED_PCT),
                         "es_ipsi": (p.es_ipsi_pct, p.es_lead_s, se.HOLD_ES_PCT),
                         "es_contra": (p.es_contra_pct, p.es_lead_s, se.HOLD_ES_PCT)}[role]
    fall = np.clip((b - t) / (b - low), 0, 1) if not BY_NAME[task].hold_s else \
        np.clip((b - t) / 0.3, 0, 1)
    act = hold + (level - hold) * np.clip((t - a - lead) / se.RISE_S, 0, 1) * fall
    return float(np.mean(act))


def test_per_repetition_values_match_the_construction(weak):
    a, truth = weak
    mvc = a.calibration.mvc_uv
    for (task, side), reps_truth in truth.items():
        res = a.exam.tasks[task][side]
        assert [r["index"] for r in res.reps] == [t["index"] for t in reps_truth]
        own, oth = ("l", "r") if side == "left" else ("r", "l")
        chans = {"stance_gmed": f"{own}_gmed", "es_ipsi": f"{own}_es", "es_contra": f"{oth}_es"}
        for rep, t in zip(res.reps, reps_truth):
            assert rep["t_start_s"] == t["t_start_s"] and rep["emg_valid"]
            assert rep["duration_s"] == pytest.approx(t["t_end_s"] - t["t_start_s"])
            for role, ch in chans.items():
                act = _expected_loading_pct(t, role, task)
                uv = act / 100 * syn.MVC_UV[ch] + syn.REST_UV
                expected = 100 * uv / mvc[ch]
                assert rep[f"{role}_pct_mvc"] == pytest.approx(expected, rel=0.04, abs=0.5), \
                    (task, side, rep["index"], role)
            assert rep["gmed_es_ratio_ipsi"] == pytest.approx(
                rep["stance_gmed_pct_mvc"] / rep["es_ipsi_pct_mvc"])
            # drop: the construction's peak plus 0.15 deg of noise on the peak sample
            assert t["pattern"].drop_deg - 0.1 <= rep["pelvic_drop_deg"] <= t["pattern"].drop_deg + 0.6
            if BY_NAME[task].hold_s:
                continue
            # onsets: the construction's onset plus the climb of its 200 ms ramp to the threshold
            p = t["pattern"]
            assert p.gmed_lead_s * 1000 - 150 <= rep["gmed_onset_ms"] <= p.gmed_lead_s * 1000 + 120
            assert p.es_lead_s * 1000 - 150 <= rep["es_onset_ms"] <= p.es_lead_s * 1000 + 120
            assert rep["first_onset"] == ("es" if t["compensated"] else "gmed")


def test_flags_where_the_patient_compensates_and_nowhere_else(weak):
    a, _ = weak
    full = {"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "ES_FIRST", "PELVIC_DROP"}
    assert _codes(a, "step_down", "left") == full
    assert _codes(a, "single_leg_squat", "left") == full
    # one hold: ES_FIRST is not judged; its epochs carry the ES dominance
    assert _codes(a, "single_leg_stance", "left") == full - {"ES_FIRST"}
    for task in ("single_leg_stance", "step_down", "single_leg_squat", "hip_abduction_wb"):
        assert _codes(a, task, "right") == set(), task
    assert _codes(a, "hip_abduction_wb", "left") == set()
    sd = a.exam.tasks["step_down"]["left"]
    assert "erector-dominant" in sd.sentence and "5 of 5 repetitions" in sd.sentence
    assert "no erector-dominant pattern" in a.exam.tasks["step_down"]["right"].sentence
    pd = next(f for f in sd.flags if f.code == "PELVIC_DROP")
    assert "asymmetric" in pd.evidence and "other side" in pd.evidence
    assert a.exam.left_vs_right["step_down"]["pelvic_drop_deg_left_minus_right"] > 4


def test_healthy_exam_has_no_flags():
    s, _ = se.make_exam_session(se.healthy_exam(seed=13))
    a = analyse(s)
    assert len(a.exam.tasks) == 4 and a.exam.flags == []


@pytest.mark.parametrize("n_comp, flagged", [(4, True), (3, False)])
def test_consistency_needs_four_of_five_repetitions(n_comp, flagged):
    spec = se.ExamSpec(seed=14, tasks=("step_down",),
                       compensated={("step_down", "left"): tuple(range(n_comp))})
    a = analyse(se.make_exam_session(spec)[0])
    codes = _codes(a, "step_down", "left")
    assert ({"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "ES_FIRST"} <= codes) is flagged
    if flagged:  # the drop is judged on the median: with 4 of 5 dropping it is a dropping rep
        assert "PELVIC_DROP" in codes


def test_missing_repetitions_are_counted_not_invented():
    spec = se.ExamSpec(seed=15, tasks=("step_down",), compensated=se.all_sides("step_down"),
                       missing={("step_down", "left"): (1, 3)})
    a = analyse(se.make_exam_session(spec)[0])
    left = a.exam.tasks["step_down"]["left"]
    assert [r["index"] for r in left.reps] == [0, 2, 4]
    assert (left.counts["found"], left.counts["expected"], left.counts["missing"]) == (3, 5, 2)
    codes = {f.code for f in left.flags}
    assert "FEW_REPS" in codes and not codes & {"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "ES_FIRST"}
    assert "3 of 5 repetitions found by the device (2 missing)" in left.sentence
    right = a.exam.tasks["step_down"]["right"]  # complete and compensated: judged
    assert {"ES_DOMINANT_IPSI", "ES_FIRST"} <= {f.code for f in right.flags}


def test_electrode_problem_and_truncated_repetitions_are_left_out():
    spec = se.ExamSpec(seed=16, tasks=("step_down",))
    s, truth = se.make_exam_session(spec)
    rep1 = truth[("step_down", "left")][1]
    s.status.fields[int(rep1["t_start_s"]) + 1]["quality"][2] = 0x01  # l_es lead-off, in rep 1
    s.reps["flags"][4] = 0x01  # the device ended rep 4 at the task's end
    a = analyse(s)
    res = a.exam.tasks["step_down"]["left"]
    assert [r["excluded"] for r in res.reps] == [None, "electrode problem", None, None, "truncated"]
    assert res.reps[1]["quality"]["electrode_problem_channels"] == ["l_es"]
    assert np.isnan(res.reps[1]["stance_gmed_pct_mvc"]) and np.isfinite(res.reps[1]["pelvic_drop_deg"])
    assert res.counts["valid"] == 3 and res.counts["excluded"] == 2
    assert res.summaries["pelvic_drop_deg"]["n"] == 4  # the electrode problem keeps its drop
    assert {f.code for f in res.flags} == {"FEW_REPS"}


def test_exam_only_session_is_analysed_and_reported():
    s, _ = se.make_exam_session(se.weak_left_exam(seed=17))
    assert len(s.events) == 0
    a = analyse(s)  # no NoGaitData
    assert not a.walking_recorded and a.flags == []
    assert a.sides["left"].counts["detected"] == 0
    rep = build_report(s, FIXED_TIME)
    _validate(rep, SCHEMA, SCHEMA)
    assert rep["walking_recorded"] is False and set(rep["exam"]) == set(BY_NAME)
    text = findings_text(rep)
    assert text.startswith("Walking: not recorded. Exam: single-leg stance left (")
    assert "step-down left (ES_DOMINANT_IPSI, ES_DOMINANT_CONTRA, ES_FIRST, PELVIC_DROP)" in text
    page = html.render(rep)
    for pid in html.plot_ids() + html.exam_plot_ids(rep):
        assert f'id="{pid}"' in page, pid
    assert page.count("<svg") == len(html.plot_ids()) + len(html.exam_plot_ids(rep)) == 12 + 16
    assert "exam-step_down-left-reps" in page and "Exam flag rules" in page
    assert "<span class='flag'>ES_FIRST</span>" in page  # exam flags on the first screen too


def test_skipped_and_redone_attempts():
    import dataclasses

    s, _ = se.make_exam_session(se.ExamSpec(seed=21, tasks=("step_down", "single_leg_squat")))
    tasks = []
    for t in s.tasks:
        if t.name == "step_down_right":
            t = dataclasses.replace(t, name="step_down_right:skipped")
        if t.name == "single_leg_squat_left":  # an earlier attempt, redone
            tasks.append(dataclasses.replace(t, name="single_leg_squat_left:redone",
                                             t_start_s=t.t_start_s - 30, t_end_s=t.t_start_s - 20))
        tasks.append(t)
    s.tasks = tasks
    a = analyse(s)
    skipped = a.exam.tasks["step_down"]["right"]
    assert skipped.status == "skipped" and skipped.reps == [] and skipped.flags == []
    assert "skipped" in skipped.sentence
    squat = a.exam.tasks["single_leg_squat"]["left"]
    assert squat.counts["redone_attempts"] == 1 and squat.counts["found"] == 5
    rep = build_report(s, FIXED_TIME)
    _validate(rep, SCHEMA, SCHEMA)
    assert rep["exam"]["step_down"]["left_vs_right"] is None
    assert "step-down right skipped" in findings_text(rep)


def test_session_with_neither_walk_nor_exam_still_raises():
    s = syn.make_session(syn.healthy(seed=8, walk_s=20))
    s.events = s.events[:0]
    with pytest.raises(NoGaitData):
        analyse(s)


def test_walking_is_unchanged_by_an_exam_before_it():
    s, _ = se.make_exam_session(se.weak_left_exam(seed=18, walk_s=60))
    a = analyse(s)
    assert a.walking_recorded and a.sides["left"].counts["detected"] > 40
    # the synthetic walk is a healthy one: no walking flags, while the exam has its own
    assert a.flags == [] and "PELVIC_DROP" in _codes(a, "step_down", "left")
    assert all(a.sides[sd].summaries["gmed_es_ratio_ipsi"]["median"] > 2 for sd in ("left", "right"))


def test_exam_rules():
    assert rules.exam_consistent(4, 5) and rules.exam_consistent(5, 6) and rules.exam_consistent(4, 4)
    assert not rules.exam_consistent(3, 5) and not rules.exam_consistent(4, 6)
    assert not rules.exam_consistent(3, 3)  # too few repetitions for any pattern
    assert rules.exam_drop_excess(7.0, 2.0) == "asymmetric"
    assert rules.exam_drop_excess(7.0, 4.0) is None  # 3 deg above the other side: below the SDC
    assert rules.exam_drop_excess(9.5, 9.0) == "beyond clinical"
    assert rules.exam_drop_excess(5.0, 0.0) is None  # the clinical 2 cm itself is not beyond it
    assert set(rules.EXAM_RULE_TEXT) == PATTERN_CODES | {"LOW_QUALITY", "FEW_REPS"}


def test_no_mvc_means_no_es_dominance_but_onsets_and_drop_still_judged():
    s, _ = se.make_exam_session(se.weak_left_exam(seed=19, with_mvc=False))
    a = analyse(s)
    assert a.normalisation.method == "peak_dynamic"
    assert _codes(a, "step_down", "left") == {"ES_FIRST", "PELVIC_DROP"}
    assert "cannot be compared because no MVC" in a.exam.tasks["step_down"]["left"].sentence


# ---------------------------------------------------------------- golden snapshots
CASES = {"exam_weak_left_seed12": lambda: se.weak_left_exam(seed=12),
         "exam_healthy_walk_seed13": lambda: se.healthy_exam(seed=13, walk_s=30,
                                                             missing={("step_down", "right"): (2,)})}


@pytest.mark.parametrize("name", sorted(CASES))
def test_exam_report_matches_golden_snapshot(name):
    """Set HIPSYNC_UPDATE_GOLDEN=1 to rewrite the snapshots after an intended change."""
    rep = build_report(se.make_exam_session(CASES[name]())[0], FIXED_TIME)
    _validate(rep, SCHEMA, SCHEMA)
    for k in VOLATILE:
        rep.pop(k)
    path = GOLDEN / f"report_{name}.json"
    if os.environ.get("HIPSYNC_UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(json.dumps(rep, indent=1, sort_keys=True) + "\n")
        if os.environ.get("HIPSYNC_UPDATE_GOLDEN") != "1":
            pytest.fail(f"golden snapshot {path.name} was missing and has been written; rerun")
    _close(rep, json.loads(path.read_text()))


def test_exam_golden_snapshots_hold_the_expected_flags():
    got = {}
    for n in CASES:
        rep = json.loads((GOLDEN / f"report_{n}.json").read_text())
        got[n] = sorted(f"{task}/{side}/{code}" for task, e in rep["exam"].items()
                        for side in ("left", "right") if side in e for code in e[side]["flags"])
    assert got["exam_healthy_walk_seed13"] == []
    assert got["exam_weak_left_seed12"] == sorted(
        [f"{t}/left/{c}" for t in ("step_down", "single_leg_squat") for c in PATTERN_CODES]
        + [f"single_leg_stance/left/{c}" for c in PATTERN_CODES - {"ES_FIRST"}])
    rep = json.loads((GOLDEN / "report_exam_healthy_walk_seed13.json").read_text())
    assert rep["exam"]["step_down"]["right"]["counts"]["missing"] == 1
    assert len(rep["exam"]["step_down"]["right"]["reps"]) == 4


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed")
def test_exam_page_renders_in_headless_chromium(tmp_path):
    s, _ = se.make_exam_session(se.weak_left_exam(seed=20, walk_s=30))
    html_path, json_path = write_session_report(s, tmp_path, "exam")
    rep = json.loads(json_path.read_text())
    dom = _chromium(["--dump-dom", html_path.resolve().as_uri()], tmp_path, "dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for marker in ("Uncaught", "ERROR:CONSOLE", "Failed to load resource"):
        assert marker not in dom.stderr, dom.stderr[-2000:]
    ids = html.plot_ids() + html.exam_plot_ids(rep)
    for pid in ids:
        assert f'id="{pid}"' in dom.stdout, pid
    assert dom.stdout.count("<svg") == len(ids)
    assert "exam-step_down-left-summary" in dom.stdout and "Clinical exam" in dom.stdout


# ---------------------------------------------------------------- against the simulator's truth
def test_per_repetition_values_match_the_simulator_truth_with_an_ideal_device():
    """The simulated patient's true envelopes and pelvis at 100 Hz, its true repetitions as the
    device's: what the analysis measures per repetition is what the simulator says it did. (The
    firmware's own detector and envelope are measured by their own tests and benchmarks.)"""
    from hipsync.session import REP_DTYPE, Metadata, SessionData, Task, make_events
    from hipsync.sim import patient
    from hipsync.sim import tasks as T
    from hipsync.sim.config import PatientConfig
    from hipwire import units

    cfg = PatientConfig(seed=5, weak_side="left", es_compensation="stance")
    protocol = [T.standing_calibration(10.0), T.rest(3.0)]
    for m in units.EMG_CHANNELS:
        protocol += [T.mvc(m), T.rest(3.0)]
    rec = patient.simulate(cfg, protocol + T.exam_protocol())
    env = rec.envelope_uv[:: units.EMG_RATE_HZ // 100]
    pel = rec.pelvis_deg[:: units.IMU_RATE_HZ // 100]
    rest_uv = 3.0 + np.random.default_rng(0).normal(0.0, 0.5, env.shape)  # a resting floor
    reps = np.array([(r["t_start_s"], r["t_low_s"], r["t_end_s"], r["task"], r["side"], r["index"],
                      0, r["depth"]) for r in rec.reps], dtype=REP_DTYPE)
    s = SessionData(np.arange(len(env)) / 100.0, env + rest_uv, np.arange(len(pel)) / 100.0, pel,
                    make_events([]), tasks=[Task(g.name, g.t_start_s, g.t_end_s) for g in rec.segments],
                    metadata=Metadata(filters={"envelope_delay_ms": 0}), reps=reps)
    a = analyse(s)
    assert set(a.exam.tasks) == set(BY_NAME)
    for task, sides in a.exam.tasks.items():
        for side, res in sides.items():
            truth = rec.reps[(rec.reps["task"] == task) & (rec.reps["side"] == side[0].upper())]
            assert res.counts["found"] == len(truth) == res.counts["expected"]
            for rep, t in zip(res.reps, truth):
                for key, tkey in (("stance_gmed_pct_mvc", "stance_gmed_pct_mvc"),
                                  ("es_ipsi_pct_mvc", "es_ipsi_pct_mvc"),
                                  ("es_contra_pct_mvc", "es_contra_pct_mvc")):
                    # the resting floor adds about 3 uV (1-3 %MVC) to every channel
                    assert 0 <= rep[key] - t[tkey] <= 0.05 * t[tkey] + 2.5, (task, side, key)
                if t["drop_deg"] > 1.0:  # a drop peaks at the low point (a hike does not)
                    assert rep["pelvic_drop_deg"] == pytest.approx(t["drop_deg"], abs=0.3)
    for task in ("step_down", "single_leg_squat"):
        for side in ("left", "right"):
            # what the flag should say, from the truth and the rule: the simulator compensates 80 %
            # of the weak side's repetitions, and a shallow compensated one may still be GMed-led
            truth = rec.reps[(rec.reps["task"] == task) & (rec.reps["side"] == side[0].upper())]
            es_led = float(np.mean(truth["es_ipsi_pct_mvc"] > truth["stance_gmed_pct_mvc"]))
            expected = es_led >= rules.EXAM_CONSISTENT_FRACTION
            assert ("ES_DOMINANT_IPSI" in _codes(a, task, side)) == expected, (task, side, es_led)
        assert _codes(a, task, "right") == set()
    assert any("ES_DOMINANT_IPSI" in _codes(a, task, "left") for task in BY_NAME)
