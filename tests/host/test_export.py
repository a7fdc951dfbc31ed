"""Exports: CSV, EDF+ (read back with pyedflib) and the live LSL outlet."""

from __future__ import annotations

import csv

import numpy as np
import pyedflib
import pytest

from hipsync.analysis import synthetic as syn
from hipsync.export import lsl, to_csv, to_edf
from hipsync.protocol import Envelope, Event, Header, Pelvis, Received
from hipsync.store import OutputNotWritable
from hipwire import frames as wire


@pytest.fixture(scope="module")
def session():
    return syn.make_session(syn.healthy(seed=1, walk_s=30, loss_fraction=0.1))


def test_csv_round_trip(session, tmp_path):
    env_p, pel_p, ev_p = to_csv(session, tmp_path / "csv", prefix="s1_")
    env = np.loadtxt(env_p, delimiter=",", skiprows=1)
    assert env_p.read_text().splitlines()[0] == "t_s,l_gmed_uv,r_gmed_uv,l_es_uv,r_es_uv"
    np.testing.assert_allclose(env[:, 0], session.envelope_t_s, atol=1e-3)
    np.testing.assert_allclose(env[:, 1:], session.envelope_uv, atol=0.05)
    pel = np.loadtxt(pel_p, delimiter=",", skiprows=1)
    assert pel_p.read_text().splitlines()[0] == "t_s,obliquity_deg,tilt_deg,rotation_deg"
    np.testing.assert_allclose(pel[:, 1:], session.pelvis_deg, atol=0.005)
    rows = list(csv.DictReader(ev_p.open()))
    assert len(rows) == len(session.events)
    assert (rows[0]["kind"], rows[0]["side"], rows[0]["stride"]) == ("IC", "L", "0")


def test_edf_round_trip_with_annotations_and_gaps(session, tmp_path):
    path = to_edf(session, tmp_path / "s.edf")
    with pyedflib.EdfReader(str(path)) as r:
        labels = r.getSignalLabels()
        assert labels == ["l_gmed env", "r_gmed env", "l_es env", "r_es env", "obliquity", "tilt",
                          "rotation"]
        assert r.getSampleFrequency(0) == 100 and r.getPhysicalDimension(4) == "deg"
        assert r.filetype == pyedflib.FILETYPE_EDFPLUS
        t0 = min(session.envelope_t_s[0], session.pelvis_t_s[0])
        idx = np.rint((session.envelope_t_s - t0) * 100).astype(int)
        env = np.column_stack([r.readSignal(i) for i in range(4)])
        res_uv = (r.getPhysicalMaximum(0) - r.getPhysicalMinimum(0)) / 65535
        np.testing.assert_allclose(env[idx], session.envelope_uv, atol=res_uv)
        obl = r.readSignal(4)
        np.testing.assert_allclose(obl[idx], session.pelvis_deg[:, 0], atol=0.003)
        onsets, durations, texts = r.readAnnotations()
    events = [(o, t) for o, t in zip(onsets, texts) if t.startswith(("IC", "FC"))]
    assert len(events) == len(session.events)
    first = session.events[0]
    assert events[0][1] == f"{first['kind']} {first['side']} {first['stride']}"
    assert events[0][0] == pytest.approx(first["t_s"] - t0, abs=1e-3)
    tasks = [t for t in texts if t.startswith("task ")]
    assert tasks == [f"task {t.name}" for t in session.tasks]
    gaps = [(o, d) for o, d, t in zip(onsets, durations, texts) if t == "data gap envelope"]
    assert gaps, "lost samples must be annotated"
    # every annotated gap is a stretch with no received sample
    for onset, dur in gaps:
        inside = (session.envelope_t_s - t0 > onset + 0.005) & (session.envelope_t_s - t0 < onset + dur - 0.005)
        assert not inside.any()


def test_edf_to_unwritable_place(session, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritable):
        to_edf(session, blocker / "s.edf")
    with pytest.raises(OutputNotWritable):
        to_csv(session, blocker / "csv")


def test_lsl_outlet_resolves_on_localhost():
    ok, reason = lsl.available()
    if not ok:
        pytest.skip(reason)
    import pylsl

    meta = syn.make_session(syn.healthy(seed=1, walk_s=10)).metadata
    outlets = lsl.LslOutlets(meta, name_prefix=f"hipsync-test-{np.random.randint(1 << 30)}")
    streams = pylsl.resolve_byprop("name", outlets.names["envelope"], 1, 5.0)
    assert streams, "envelope outlet not found on localhost within 5 s"
    info = streams[0]
    assert info.channel_count() == 4 and info.nominal_srate() == 100 and info.type() == "EMG"
    inlet = pylsl.StreamInlet(info)
    inlet.open_stream(timeout=5.0)
    env = tuple(tuple(range(10 * c, 10 * c + 10)) for c in range(4))
    outlets.push(Received(Envelope(Header(wire.ENVELOPE, wire.VERSION, 0, 0), 10, env), 0, 0, 0.0))
    outlets.push(Received(Pelvis(Header(wire.PELVIS, wire.VERSION, 1, 0), 10,
                                 ((150,) * 10, (0,) * 10, (-20,) * 10)), 1, 0, 0.0))
    outlets.push(Received(Event(Header(wire.EVENT, wire.VERSION, 2, 5), "IC", "L", 3), 2, 5, 0.0))
    samples, stamps = [], []
    for _ in range(50):
        chunk, ts = inlet.pull_chunk(timeout=0.2)
        samples += chunk
        stamps += ts
        if len(samples) >= 10:
            break
    assert len(samples) == 10
    assert samples[0] == [0.0, 10.0, 20.0, 30.0] and samples[9] == [9.0, 19.0, 29.0, 39.0]
    assert np.all(np.diff(stamps) > 0)
    outlets.close()
