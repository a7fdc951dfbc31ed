"""LSL timestamps follow the device sample clock through the clock fit, not frame arrival.

The frames arrive in bursts (as BLE delivers them: several frames at once, late), the device clock
drifts 40 ppm against the host. SampleClock is the code LslOutlets.push stamps samples with; the
outlet test pushes through real liblsl outlets and reads the stamps back from an inlet."""

from __future__ import annotations

import numpy as np
import pytest

from hipsync.analysis import synthetic as syn
from hipsync.export import lsl
from hipsync.protocol import Envelope, Event, Header, Received
from hipsync.store import open_store
from hipwire import frames as wire

DRIFT = 40e-6
HOST0_S = 5000.0
N_SAMPLES = 2652  # the envelope stream of the defect report: 26.52 s at 100 Hz


def _bursty_frames(n_samples=N_SAMPLES, per_frame=51, burst=2, seed=0):
    """Envelope frames (value = sample index) with host arrival times: a burst of `burst` frames
    is delivered together after its last frame was filled, plus 5-60 ms latency."""
    rng = np.random.default_rng(seed)
    out = []
    starts = list(range(0, n_samples, per_frame))
    for i, k0 in enumerate(starts):
        n = min(per_frame, n_samples - k0)
        clock = 1000 + 10 * k0
        last_of_burst = min(len(starts) - 1, (i // burst + 1) * burst - 1)
        filled_ticks = 1000 + 10 * (min(n_samples, starts[last_of_burst] + per_frame) - 1)
        host = float(_true_host_s(filled_ticks)) + 0.005 + 0.055 * rng.random()
        chans = tuple(tuple(range(k0, k0 + n)) for _ in range(4))
        frame = Envelope(Header(wire.ENVELOPE, wire.VERSION, i, clock), 10, chans)
        out.append(Received(frame, i, clock, host))
    return out


def _true_host_s(clock_ticks):
    """When the device sampled at clock_ticks, in host seconds."""
    return HOST0_S + np.asarray(clock_ticks) / 1000 * (1 + DRIFT)


def _stamp(frames, sc):
    """What LslOutlets.push does per frame: observe, then stamp its samples."""
    stamps, ticks = [], []
    for rx in frames:
        sc.observe(rx)
        stamps.append(sc.times(rx.clock, rx.frame.n_samples, rx.frame.period_ticks))
        ticks.append(rx.clock + rx.frame.period_ticks * np.arange(rx.frame.n_samples))
    return np.concatenate(stamps), np.concatenate(ticks)


def test_sample_clock_stamps_follow_the_device_clock():
    frames = _bursty_frames()
    ts, ticks = _stamp(frames, lsl.SampleClock())
    assert len(ts) == N_SAMPLES
    # within a frame: one device period apart in host seconds at the fit's rate (ClockMap's
    # least-squares slope over 10-20 s of 1-s bursts strays by up to ~0.2 %)
    same_frame = np.diff(ticks) == 10
    same_frame[np.cumsum([f.frame.n_samples for f in frames])[:-1] - 1] = False
    assert np.allclose(np.diff(ts)[same_frame], 0.01, rtol=0, atol=5e-5)
    # past the warm-up every stamp is the sampling instant plus about the fastest delivery, and
    # the stamps span the device's sample periods whatever the bursts did
    settled = ticks >= 1000 + 12000
    err = ts[settled] - _true_host_s(ticks[settled])
    assert np.all(np.abs(err) < 0.05), (err.min(), err.max())
    span = ts[settled][-1] - ts[settled][0]
    assert span == pytest.approx((ticks[settled][-1] - ticks[settled][0]) / 1000 * (1 + DRIFT),
                                 abs=0.05)
    # stamping by arrival (the old outlet: a frame's last sample at "now") is off by the bursts
    arrival_err = [rx.host_time_s - _true_host_s(rx.clock + 10 * (rx.frame.n_samples - 1))
                   for rx in frames]
    assert max(arrival_err) > 0.5


def test_stored_session_host_times_follow_the_clock_fit(tmp_path):
    with open_store(tmp_path / "s.sqlite3") as store:
        sid = store.save_session_data(syn.make_session(syn.healthy(seed=1, walk_s=20)),
                                      samples_per_frame=50)
        rng = np.random.default_rng(1)
        late = lambda: 0.005 + 0.2 * rng.random() ** 4  # noqa: E731 - link latency, s
        q = store.conn.execute
        batches = q("SELECT seq, clock + (n_samples - 1) * period_ticks FROM batches "
                    "WHERE session=?", (sid,)).fetchall()
        store.conn.executemany("UPDATE batches SET host_time_s=? WHERE session=? AND seq=?",
                               [(float(_true_host_s(c)) + late(), sid, seq) for seq, c in batches])
        for table, delay in (("status", 0.0), ("events", 0.4)):  # events leave the device late
            rows = q(f"SELECT seq, clock FROM {table} WHERE session=?", (sid,)).fetchall()
            store.conn.executemany(f"UPDATE {table} SET host_time_s=? WHERE session=? AND seq=?",
                                   [(float(_true_host_s(c)) + delay + late(), sid, seq)
                                    for seq, c in rows])
        store.conn.commit()
        cm = lsl.clock_map_from_store(store, sid)
        session = store.load_session(sid)
    host = lsl.host_times(cm, session.envelope_t_s)
    expected = _true_host_s(np.rint(session.envelope_t_s * 1000))
    assert np.all(np.abs(host - expected) < 0.01)
    assert cm.drift_ppm == pytest.approx(DRIFT * 1e6, abs=50)  # least squares, heavy-tailed lags


def test_lsl_outlet_pushes_device_clock_stamps_and_markers():
    ok, reason = lsl.available()
    if not ok:
        pytest.skip(reason)
    import pylsl

    meta = syn.make_session(syn.healthy(seed=1, walk_s=10)).metadata
    frames = _bursty_frames(n_samples=510)
    now_host = frames[-1].host_time_s  # the "host clock" of the simulated link, at the end
    outlets = lsl.LslOutlets(meta, name_prefix=f"hipsync-test-{np.random.randint(1 << 30)}",
                             host_clock=lambda: now_host)
    found = {k: pylsl.resolve_byprop("name", outlets.names[k], 1, 5.0) for k in ("envelope", "events")}
    assert all(found.values()), "outlets not found on localhost within 5 s"
    info = found["envelope"][0]
    assert info.channel_count() == 4 and info.nominal_srate() == 100 and info.type() == "EMG"
    inlets = {k: pylsl.StreamInlet(v[0]) for k, v in found.items()}
    for inlet in inlets.values():
        inlet.open_stream(timeout=5.0)
    reference = lsl.SampleClock(host_to_lsl_s=outlets.clock.host_to_lsl_s)
    expected = []
    for rx in frames:
        outlets.push(rx)
        reference.observe(rx)
        expected.append(reference.times(rx.clock, rx.frame.n_samples, 10))
    ev = Event(Header(wire.EVENT, wire.VERSION, 99, 6000), "FC", "R", 0xFFFF)  # stride -1
    outlets.push(Received(ev, 99, 6000, frames[-1].host_time_s))
    samples, stamps = [], []
    for _ in range(100):
        chunk, ts = inlets["envelope"].pull_chunk(timeout=0.2)
        samples += chunk
        stamps += ts
        if len(samples) >= 510:
            break
    assert len(samples) == 510
    assert [s[0] for s in samples] == list(range(510))
    np.testing.assert_allclose(stamps, np.concatenate(expected), rtol=0, atol=1e-6)
    marker, marker_ts = inlets["events"].pull_sample(timeout=5.0)
    assert marker == ["FC R"]
    assert marker_ts == pytest.approx(float(reference.times(6000)[0]), abs=1e-6)
    outlets.close()
