"""Exports: EDF+ read back with pyedflib sample by sample against the store, CSV tables, and the
errors a user sees. LSL timestamps: test_export_lsl.py.

The session of these tests has its streams NOT on one grid (envelope at clock ...5, 15, 25 ticks
after the start, pelvis at ...0, 10, 20), a real loss of pelvis samples, an FC of unknown stride
and a task that began before the first sample, at a device clock that is not a whole second."""

from __future__ import annotations

import csv
import os
import subprocess
import sys

import numpy as np
import pyedflib
import pytest

from hipsync.analysis import analyse
from hipsync.analysis import synthetic as syn
from hipsync.export import ExportError, to_csv, to_edf
from hipsync.export.edf import check_edf
from hipsync.session import REP_DTYPE, Task
from hipsync.store import OutputNotWritable, open_store

BASE_S = 1234.567  # device clock of the first (pelvis) sample
ENV_OFFSET_S = 0.005  # envelope half a sample after pelvis
PELVIS_GAP_S = (20.0, 20.5)  # 50 pelvis samples lost (relative to BASE_S)


def _build():
    s = syn.make_session(syn.healthy(seed=3, walk_s=30))
    s.envelope_t_s = s.envelope_t_s + BASE_S + ENV_OFFSET_S
    s.pelvis_t_s = s.pelvis_t_s + BASE_S
    lost = (s.pelvis_t_s >= BASE_S + PELVIS_GAP_S[0]) & (s.pelvis_t_s < BASE_S + PELVIS_GAP_S[1] - 1e-9)
    s.pelvis_t_s, s.pelvis_deg = s.pelvis_t_s[~lost], s.pelvis_deg[~lost]
    s.events["t_s"] += BASE_S
    first_fc_r = np.flatnonzero((s.events["kind"] == "FC") & (s.events["side"] == "R"))[0]
    s.events["stride"][first_fc_r] = -1  # FC before that foot's first IC: the device sends -1
    s.status.t_s = s.status.t_s + BASE_S
    moved = [Task(t.name, t.t_start_s + BASE_S - (1.0 if t.name == "standing" else 0.0),
                  t.t_end_s + BASE_S) for t in s.tasks]
    s.tasks = [Task("before_recording", BASE_S - 5.0, BASE_S - 2.0), *moved]
    s.reps = np.array(REPS, dtype=REP_DTYPE)
    return s


# exam repetitions the device found (t_start_s, t_low_s, t_end_s, task, side, index, flags, depth):
# a shallow step-down, a truncated stance hold with a swing-side rise, listed out of start order
REPS = [(BASE_S + 12.25, BASE_S + 12.95, BASE_S + 13.85, "step_down", "L", 1, 2, 62.0),
        (BASE_S + 4.5, BASE_S + 9.0, BASE_S + 10.0, "single_leg_stance", "R", 0, 1, -135.0)]


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """(store path, session id, the session as loaded back from the store)."""
    path = tmp_path_factory.mktemp("store") / "s.sqlite3"
    with open_store(path) as store:
        sid = store.save_session_data(_build())
        return path, sid, store.load_session(sid)


@pytest.fixture(scope="module")
def edf(stored, tmp_path_factory):
    session = stored[2]
    path = to_edf(session, tmp_path_factory.mktemp("edf") / "s.edf")
    with pyedflib.EdfReader(str(path)) as r:
        onsets, durations, texts = r.readAnnotations()
        signals = [r.readSignal(i) for i in range(r.signals_in_file)]
        digital = [r.readSignal(i, digital=True) for i in range(r.signals_in_file)]
        info = {"labels": r.getSignalLabels(), "rates": [r.getSampleFrequency(i) for i in range(7)],
                "dims": [r.getPhysicalDimension(i) for i in range(7)], "filetype": r.filetype,
                "recording": r.getRecordingAdditional(), "n": r.getNSamples()}
    return {"path": path, "session": session, "ann": list(zip(onsets, durations, map(str, texts))),
            "signals": signals, "digital": digital, **info}


def _texts(edf, prefix):
    return [(o, d, t) for o, d, t in edf["ann"] if t.startswith(prefix)]


def test_streams_are_not_on_one_grid_in_the_stored_session(stored):
    s = stored[2]
    env_ticks = np.rint(s.envelope_t_s * 1000).astype(int)
    pel_ticks = np.rint(s.pelvis_t_s * 1000).astype(int)
    assert set(env_ticks % 10) == {2} and set(pel_ticks % 10) == {7}
    assert np.any(np.diff(pel_ticks) > 10) and not np.any(np.diff(env_ticks) > 10)


def test_edf_every_sample_equals_the_stored_sample(edf):
    s = edf["session"]
    assert edf["labels"] == ["l_gmed env", "r_gmed env", "l_es env", "r_es env", "obliquity",
                             "tilt", "rotation"]
    assert edf["rates"] == [100.0] * 7 and edf["filetype"] == pyedflib.FILETYPE_EDFPLUS
    assert edf["dims"][:4] == ["uV"] * 4 and edf["dims"][4:] == ["deg"] * 3
    # the file starts at the first (pelvis) sample; the envelope's grid is 5 ms later
    assert _texts(edf, "signal offset envelope") == [(0.0, -1.0, "signal offset envelope +0.005 s")]
    assert _texts(edf, "signal offset pelvis") == [(0.0, -1.0, "signal offset pelvis +0.000 s")]
    k_env = np.rint((s.envelope_t_s - BASE_S - ENV_OFFSET_S) * 100).astype(int)
    k_pel = np.rint((s.pelvis_t_s - BASE_S) * 100).astype(int)
    assert len(np.unique(k_env)) == len(k_env) and len(np.unique(k_pel)) == len(k_pel)
    for c in range(4):  # 1 uV per digit: physical == digital == stored, exactly
        np.testing.assert_array_equal(edf["signals"][c][k_env], s.envelope_uv[:, c])
        np.testing.assert_array_equal(edf["digital"][c][k_env], s.envelope_uv[:, c])
    for c in range(3):  # 0.01 deg per digit: the digits are the stored centidegrees
        np.testing.assert_array_equal(edf["digital"][4 + c][k_pel], np.rint(s.pelvis_deg[:, c] * 100))
        np.testing.assert_allclose(edf["signals"][4 + c][k_pel], s.pelvis_deg[:, c], rtol=0,
                                   atol=1e-9)
    # everything else in the file is 0 and lies inside a gap / no-samples annotation
    empty_pel = np.setdiff1d(np.arange(edf["n"][4]), k_pel)
    assert np.all(edf["digital"][4][empty_pel] == 0)
    assert check_edf(edf["path"], s).samples_mismatched == 0


def test_edf_gap_annotated_only_where_samples_were_lost(edf):
    gaps = _texts(edf, "data gap")
    assert [(t, round(o, 4), round(d, 4)) for o, d, t in gaps] == [
        ("data gap pelvis", PELVIS_GAP_S[0], PELVIS_GAP_S[1] - PELVIS_GAP_S[0])]
    # both grids begin with their stream's first sample (the envelope's 5 ms after the file
    # start): nothing is missing before; only padding after the last sample may say "no samples"
    s = edf["session"]
    last = {"envelope": s.envelope_t_s[-1] - BASE_S, "pelvis": s.pelvis_t_s[-1] - BASE_S}
    assert all(o > last[t.split()[-1]] for o, _, t in _texts(edf, "no samples"))
    check = check_edf(edf["path"], edf["session"])
    assert (check.gaps, check.false_gaps) == (1, 0)


def test_edf_keeps_device_time_in_full_precision(edf):
    assert _texts(edf, "device clock at start") == [(0.0, -1.0, "device clock at start 1234.567 s")]
    assert "dev_t0_1234.567s" in edf["recording"]
    first = edf["session"].events[0]
    (onset, _, _), = [a for a in edf["ann"] if a[2] == f"IC L {first['stride']}"]
    assert onset == pytest.approx(first["t_s"] - BASE_S, abs=1e-6)


def test_edf_tasks_clipped_to_the_recorded_span(edf):
    s = edf["session"]
    tasks = {t: (round(o, 4), round(d, 4)) for o, d, t in _texts(edf, "task ")}
    assert "task before_recording" not in tasks and not any("before_rec" in t for t in tasks)
    standing = next(t for t in s.tasks if t.name == "standing")
    assert standing.t_start_s < BASE_S
    assert tasks["task standing (clipped)"] == (0.0, round(standing.t_end_s - BASE_S, 4))
    walk = next(t for t in s.tasks if t.name == "walk")
    assert tasks["task walk"] == (round(walk.t_start_s - BASE_S, 4), round(walk.duration_s, 4))


def test_edf_events_with_unknown_stride_have_no_number(edf):
    s = edf["session"]
    events = [t for _, _, t in edf["ann"] if t[:2] in ("IC", "FC")]
    assert len(events) == len(s.events)
    assert "FC R" in events and not any("65535" in t or "-1" in t for t in events)
    assert events.count("FC R") == 1


def test_edf_envelope_beyond_16_bit_needs_bdf(stored, tmp_path):
    s = stored[2]
    s = type(s)(s.envelope_t_s, s.envelope_uv.copy(), s.pelvis_t_s, s.pelvis_deg, s.events,
                s.status, s.tasks, s.calibration, s.metadata)
    s.envelope_uv[100, 2] = 40000.0
    with pytest.raises(ExportError, match="--format bdf"):
        to_edf(s, tmp_path / "big.edf")
    assert not (tmp_path / "big.edf").exists()
    path = to_edf(s, tmp_path / "big.bdf", bdf=True)
    with pyedflib.EdfReader(str(path)) as r:
        assert r.filetype == pyedflib.FILETYPE_BDFPLUS
    assert check_edf(path, s).samples_mismatched == 0


def test_edf_to_unwritable_place(stored, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritable):
        to_edf(stored[2], blocker / "s.edf")
    with pytest.raises(OutputNotWritable):
        to_csv(stored[2], blocker / "csv")


# ----------------------------------------------------------------------------- CSV
@pytest.fixture(scope="module")
def tables(stored, tmp_path_factory):
    result = to_csv(stored[2], tmp_path_factory.mktemp("csv"), prefix="s1_")
    return result, {p.name[3:-4]: list(csv.DictReader(p.open())) for p in result}


def test_csv_tables_written(tables):
    result, t = tables
    assert [p.name for p in result] == [f"s1_{n}.csv" for n in
                                        ("envelope", "pelvis", "events", "reps", "tasks", "status",
                                         "strides")]
    assert result.notes == []


def test_csv_streams_round_trip(stored, tables):
    s = stored[2]
    result, _ = tables
    env = np.loadtxt(result.path("envelope"), delimiter=",", skiprows=1)
    assert result.path("envelope").read_text().splitlines()[0] == "t_s,l_gmed_uv,r_gmed_uv,l_es_uv,r_es_uv"
    np.testing.assert_array_equal(np.rint(env[:, 0] * 1000), np.rint(s.envelope_t_s * 1000))
    np.testing.assert_array_equal(env[:, 1:], s.envelope_uv)
    pel = np.loadtxt(result.path("pelvis"), delimiter=",", skiprows=1)
    assert result.path("pelvis").read_text().splitlines()[0] == "t_s,obliquity_deg,tilt_deg,rotation_deg"
    np.testing.assert_array_equal(np.rint(pel[:, 1:] * 100), np.rint(s.pelvis_deg * 100))


def test_csv_events_unknown_stride_is_empty(stored, tables):
    rows = tables[1]["events"]
    assert len(rows) == len(stored[2].events)
    assert (rows[0]["kind"], rows[0]["side"], rows[0]["stride"]) == ("IC", "L", "0")
    unknown = [r for r in rows if r["stride"] == ""]
    assert len(unknown) == 1 and unknown[0]["kind"] == "FC" and unknown[0]["side"] == "R"
    assert not any(r["stride"] in ("65535", "-1") for r in rows)


def test_csv_wire_wrapped_unknown_stride_is_empty(stored, tmp_path):
    s = stored[2]
    ev = s.events.copy()
    ev["stride"][ev["stride"] == -1] = 0xFFFF  # what a live session stores from the wire
    s2 = type(s)(s.envelope_t_s, s.envelope_uv, s.pelvis_t_s, s.pelvis_deg, ev, s.status, s.tasks,
                 s.calibration, s.metadata)
    rows = list(csv.DictReader(to_csv(s2, tmp_path).path("events").open()))
    assert sum(r["stride"] == "" for r in rows) == 1
    path = to_edf(s2, tmp_path / "w.edf")
    with pyedflib.EdfReader(str(path)) as r:
        assert not any("65535" in t for t in r.readAnnotations()[2])


def test_csv_reps_in_start_order_with_their_units(stored, tables):
    _, t = tables
    assert t["reps"] == [
        {"task": "single_leg_stance", "side": "R", "index": "0", "t_start_s": f"{BASE_S + 4.5:.3f}",
         "t_low_s": f"{BASE_S + 9.0:.3f}", "t_end_s": f"{BASE_S + 10.0:.3f}", "duration_s": "5.500",
         "flags": "truncated", "depth_mm": "", "depth_deg": "-1.35"},
        {"task": "step_down", "side": "L", "index": "1", "t_start_s": f"{BASE_S + 12.25:.3f}",
         "t_low_s": f"{BASE_S + 12.95:.3f}", "t_end_s": f"{BASE_S + 13.85:.3f}", "duration_s": "1.600",
         "flags": "shallow", "depth_mm": "62", "depth_deg": ""}]


def test_edf_reps_annotated_with_their_duration_and_lowest_point(edf):
    start = BASE_S  # the file starts at the first (pelvis) sample
    ann = [(round(o, 4), round(d, 4), t) for o, d, t in edf["ann"] if t.startswith("rep ")]
    assert sorted(ann) == sorted([
        (4.5, 5.5, "rep single_leg_stance R 0 truncated"),
        (9.0, -1.0, "rep low single_leg_stance R 0"),
        (12.25, 1.6, "rep step_down L 1 shallow"),
        (12.95, -1.0, "rep low step_down L 1")])
    assert start == pytest.approx(edf["session"].pelvis_t_s[0])


def test_csv_tasks(stored, tables):
    rows = tables[1]["tasks"]
    assert [r["task"] for r in rows] == [t.name for t in stored[2].tasks]
    standing = next(r for r in rows if r["task"] == "standing")
    task = next(t for t in stored[2].tasks if t.name == "standing")
    assert float(standing["t_start_s"]) == pytest.approx(task.t_start_s, abs=5e-4)
    assert float(standing["duration_s"]) == pytest.approx(task.duration_s, abs=5e-4)


def test_csv_status(stored, tables):
    rows = tables[1]["status"]
    s = stored[2]
    assert len(rows) == len(s.status)
    assert list(rows[0])[:2] == ["t_s", "battery_pct"]
    assert {"quality_l_gmed", "quality_r_es", "emg_lost_samples", "mains_l_gmed_uv"} <= set(rows[0])
    assert rows[0]["quality_l_gmed"] == "ok" and rows[0]["battery_pct"] == str(s.status.fields[0]["battery_pct"])
    assert rows[0]["mains_l_gmed_uv"] == ""  # the synthetic status frames carry no mains page


def test_csv_status_quality_names(tmp_path):
    s = syn.make_session(syn.healthy(seed=1, walk_s=20, lead_off=("r_gmed", 3.0, 4.0)))
    rows = list(csv.DictReader(to_csv(s, tmp_path).path("status").open()))
    assert [r["quality_r_gmed"] for r in rows[2:6]] == ["ok", "lead_off", "lead_off", "ok"]


def test_csv_strides_are_the_analysis_per_stride_results(stored, tables):
    rows = tables[1]["strides"]
    a = analyse(stored[2])
    assert len(rows) == sum(len(r.strides) for r in a.sides.values()) > 20
    left = [r for r in rows if r["side"] == "left"]
    res = a.sides["left"]
    assert [int(r["stride"]) for r in left] == res.strides.stride.tolist()
    np.testing.assert_allclose([float(r["pelvic_drop_deg"]) for r in left],
                               res.per_stride["pelvic_drop_deg"], rtol=1e-5)
    assert all(r["normalisation"] == a.normalisation.method for r in rows)
    t = [float(r["t_ic_s"]) for r in rows]
    assert t == sorted(t)


def test_csv_without_analysis_notes_why(stored, tmp_path):
    s = stored[2]
    s2 = type(s)(s.envelope_t_s, s.envelope_uv, s.pelvis_t_s, s.pelvis_deg, s.events[:0],
                 s.status, s.tasks, s.calibration, s.metadata)
    result = to_csv(s2, tmp_path)
    assert len(result) == 6 and "strides.csv not written" in result.notes[0]


# ----------------------------------------------------------------------------- CLI
def _cli(*args):
    env = {k: v for k, v in os.environ.items() if k != "HIPSYNC_STORE"}
    return subprocess.run([sys.executable, "-m", "hipsync.cli", *args], capture_output=True,
                          text=True, env=env, timeout=120)


def test_cli_export_edf_and_csv(stored, tmp_path):
    store, sid, _ = stored
    proc = _cli("--store", str(store), "export", str(sid), "--format", "edf", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(tmp_path / f"session_{sid}.edf")
    proc = _cli("--store", str(store), "export", str(sid), "--out", str(tmp_path / "c"))
    assert proc.returncode == 0, proc.stderr
    assert len(proc.stdout.split()) == 7 and len(list((tmp_path / "c").glob("*.csv"))) == 7


@pytest.mark.parametrize("args, code, message", [
    (["export", "99"], 2, "No session 99"),
    (["export", "1", "--format", "wav"], 2, "invalid choice"),
    (["export", "1", "--format", "bdf", "--out", "x.edf"], 2, "ends in .edf"),
    (["export", "1", "--out", "/dev/null/x"], 1, "Cannot write to"),
])
def test_cli_export_errors(stored, args, code, message):
    proc = _cli("--store", str(stored[0]), *args)
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_cli_export_without_a_store(tmp_path):
    proc = _cli("--store", str(tmp_path / "missing.sqlite3"), "export", "1")
    assert proc.returncode == 1 and "No session store" in proc.stderr
    assert "Traceback" not in proc.stderr


def _streams(env_ticks, pel_ticks):
    """A small in-memory session: sample value = its clock tick (so a misplaced sample shows)."""
    from hipsync.session import SessionData, make_events

    env_ticks, pel_ticks = np.asarray(env_ticks), np.asarray(pel_ticks)
    return SessionData(env_ticks / 1000, np.repeat(env_ticks[:, None] % 30000, 4, axis=1),
                       pel_ticks / 1000, np.repeat((pel_ticks[:, None] % 30000) / 100, 3, axis=1),
                       make_events([]))


def test_edf_stream_starting_later_is_padded_not_a_gap(tmp_path):
    s = _streams(np.arange(1059, 5059, 10), np.arange(1294, 5294, 10))  # the demo's phases
    path = to_edf(s, tmp_path / "late.edf")
    with pyedflib.EdfReader(str(path)) as r:
        ann = [(round(o, 4), round(d, 4), str(t)) for o, d, t in zip(*r.readAnnotations())]
    assert (0.0, 0.235, "no samples pelvis") in ann
    assert (0.0, -1.0, "signal offset pelvis +0.005 s") in ann
    assert not any(t.startswith("data gap") for _, _, t in ann)
    check = check_edf(path, s)
    assert (check.samples_mismatched, check.false_gaps) == (0, 0)


def test_edf_phase_change_is_kept_as_a_time_shift(tmp_path):
    # a device restart: the new epoch's clock continues 3 ticks off the old grid after a gap
    env = np.concatenate([np.arange(0, 2000, 10), np.arange(2503, 4503, 10)])
    s = _streams(env, np.arange(0, 4500, 10))
    path = to_edf(s, tmp_path / "shift.edf")
    with pyedflib.EdfReader(str(path)) as r:
        ann = [(round(o, 4), round(d, 4), str(t)) for o, d, t in zip(*r.readAnnotations())]
    assert (2.5, 2.0, "time shift envelope +0.003 s") in ann
    assert (2.0, 0.5, "data gap envelope") in ann
    check = check_edf(path, s)
    assert (check.samples_mismatched, check.false_gaps, check.gaps) == (0, 0, 1)
