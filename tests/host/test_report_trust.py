"""What a therapist must be able to trust on a report: simulated data says so, the first screen
carries the caveat and every MVC problem, per-stride columns have units, the trend numbers and dates
its sessions, findings_text() says the same as the report, a home recording can borrow a clinic
calibration, and the command's errors are one clear line."""

from __future__ import annotations

import json
import re
from html import escape

import pytest

from hipsync.analysis import synthetic as syn
from hipsync.analysis.mvc_check import (
    MIN_MVC_OVER_REST,
    check_mvc,
    refused_channels,
    refused_task_name,
)
from hipsync.cli import main
from hipsync.report import (
    SIMULATED_KEY,
    CalibrationCopyError,
    build_report,
    copy_calibration,
    findings_text,
    html,
    patient_trend,
    simulated_reason,
    svg,
    write_report,
)
from hipsync.report.calibration import calibrated_sessions
from hipsync.report.json_report import FIRST_SCREEN_CAVEAT
from hipsync.session import Metadata
from hipsync.store import open_store

FIXED_TIME = "2024-01-01T12:00:00+00:00"


def _page(rep: dict) -> str:
    return html.render(rep)


def _first_screen(page: str) -> str:
    """Everything before the session details: what the reader sees before scrolling."""
    return page[:page.index("<h2 id='session'>")]


def _weak(seed=2, **kw):
    return syn.make_session(syn.weak_left_compensating(seed=seed, walk_s=60, **kw))


# ---------------------------------------------------------------- 1. simulated data
def test_simulated_session_has_a_banner_and_a_json_field():
    rep = build_report(_weak(), FIXED_TIME)
    assert rep["simulated"] is True and "synthetic" in rep["simulated_reason"]
    page = _page(rep)
    banner = page.index("id='simulated-banner'")
    assert banner < page.index("<h1>") and "Simulated data" in page[banner:banner + 200]
    assert "<title>SIMULATED" in page


def _meta(**kw) -> Metadata:
    return Metadata(**{"device_id": "C4:12:34:56:78:9A", "firmware_version": "0.1.0", **kw})


@pytest.mark.parametrize("meta, simulated", [
    (_meta(), False),
    (_meta(notes="home walk, knee pain"), False),
    (_meta(device_id="02:A1:B2:C3:D4:E5"), True),  # the virtual device, as the demo stores it
    (_meta(device_id="02a1b2c3d4e5"), True),  # as sync stores it
    (_meta(notes="virtual device demo: simulated patient, weak side left"), True),
    (_meta(filters={SIMULATED_KEY: "cohort benchmark"}), True),
    (_meta(device_id="SYN-0001", firmware_version="synthetic"), True),
])
def test_what_counts_as_simulated(meta, simulated):
    assert (simulated_reason(meta) is not None) == simulated


def test_a_recording_of_a_person_has_no_banner():
    s = _weak()
    s.metadata.device_id, s.metadata.firmware_version = "C4:12:34:56:78:9A", "0.1.0"
    rep = build_report(s, FIXED_TIME)
    assert rep["simulated"] is False and rep["simulated_reason"] is None
    assert "simulated-banner" not in _page(rep)
    assert "Simulated data" not in findings_text(rep)


# ---------------------------------------------------------------- 2. first screen
def test_first_screen_order_flags_then_caveat():
    page = _page(build_report(_weak(), FIXED_TIME))
    first = _first_screen(page)
    assert first.index("id='flags'") < first.index("id='caveat-line'")
    assert f"id='caveat-line'>{FIRST_SCREEN_CAVEAT}</p>" in first
    assert FIRST_SCREEN_CAVEAT == "Patterns, not a diagnosis; trunk lean not assessed."


def test_first_screen_stays_short_with_every_notice():
    """Banner, summary, flags (rules folded away), caveat and notices fit one screen: about 1600
    characters of text at 15 px on a 1280 x 900 window with the worst case below."""
    s = syn.make_session(syn.weak_left_compensating(seed=2, walk_s=60, lead_off=("r_es", 40, 50),
                                                    loss_fraction=0.08))
    s.calibration.mvc_uv["l_gmed"] = 8.0
    first = _first_screen(_page(build_report(s, FIXED_TIME)))
    body = re.sub(r"<details.*?</details>", "", first[first.index("<body>"):], flags=re.S)
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", body))
    assert len(text) < 2200, len(text)
    for needle in ("Simulated data", "HIGH_LOSS", "LOW_QUALITY", FIRST_SCREEN_CAVEAT, "MVC not used"):
        assert needle in text, needle


def test_check_mvc_thresholds():
    assert check_mvc(200.0, 4.0, 60.0)[0]
    ok, why = check_mvc(MIN_MVC_OVER_REST * 4.0 - 0.1, 4.0, None)
    assert not ok and "resting envelope" in why and "4.0 uV" in why
    ok, why = check_mvc(50.0, 4.0, 60.0)
    assert not ok and "95th percentile while walking (60.0 uV)" in why
    ok, why = check_mvc(10.0, 4.0, 60.0)  # both problems named
    assert not ok and "resting" in why and "walking" in why
    assert check_mvc(None, 4.0, 60.0) == (False, "no MVC recorded")
    assert check_mvc(0.0)[0] is False and check_mvc(float("nan"))[0] is False
    ok, why = check_mvc(200.0)
    assert ok and "not checked" in why


def test_refused_task_names():
    assert refused_task_name("l_gmed") == "mvc_l_gmed:refused"
    assert refused_channels(["mvc_l_gmed:refused", "mvc_r_es_refused", "mvc_r_gmed (refused)",
                             "mvc_l_es", "walk", "standing:refused"]) == {"l_gmed", "r_es", "r_gmed"}
    with pytest.raises(ValueError):
        refused_task_name("gmed")


def test_missing_mvc_is_named_on_the_first_screen():
    rep = build_report(_weak(seed=3, with_mvc=False), FIXED_TIME)
    assert rep["session"]["normalisation"]["used"] == "peak_dynamic"
    assert {c["status"] for c in rep["session"]["normalisation"]["mvc_checks"].values()} == {"missing"}
    first = _first_screen(_page(rep))
    for text in ("MVC not used for left GMed, right GMed, left ES, right ES (no MVC recorded)",
                 "own walking peak", "ES_DOMINANT flags are not evaluated"):
        assert text in first, text


def test_implausible_mvc_is_not_normalised_to_and_the_first_screen_says_so():
    s = _weak()
    good = build_report(s, FIXED_TIME)
    assert good["session"]["normalisation"]["used"] == "MVC"
    assert "ES_DOMINANT_IPSI" in good["sides"]["left"]["flags"]
    s.calibration.mvc_uv["l_gmed"] = 8.0  # an "MVC" at twice the resting envelope (4 uV)
    rep = build_report(s, FIXED_TIME)
    chk = rep["session"]["normalisation"]["mvc_checks"]["l_gmed"]
    assert chk["status"] == "implausible" and chk["mvc_uv"] == 8.0 and "resting envelope" in chk["reason"]
    assert rep["session"]["normalisation"]["used"] == "peak_dynamic"
    assert not {"ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA"} & set(rep["sides"]["left"]["flags"])
    assert "PELVIC_DROP" in rep["sides"]["left"]["flags"]  # the pelvis does not need an MVC
    assert [t["name"] for t in rep["tasks"]] == [t.name for t in s.tasks]  # names as stored
    first = _first_screen(_page(rep))
    assert re.search(r"MVC not used for left GMed \(MVC 8\.0 uV is only 2\.\d times the resting "
                     r"envelope", first)
    assert "own walking peak" in first
    assert not any(w.startswith("No MVC recorded") for w in rep["warnings"])
    assert "no MVC was recorded" not in rep["sides"]["left"]["summary"]  # one was, not usable
    assert "because no usable MVC was recorded" in rep["sides"]["left"]["summary"]


def test_mvc_below_walking_is_implausible():
    s = _weak()
    s.calibration.mvc_uv["l_es"] = 30.0  # above 5 x rest, below the walking p95 (about 48 uV)
    rep = build_report(s, FIXED_TIME)
    chk = rep["session"]["normalisation"]["mvc_checks"]["l_es"]
    assert chk["status"] == "implausible" and chk["walk_p95_uv"] > 30.0
    assert escape("left ES (MVC 30.0 uV is below the same muscle's 95th percentile while "
                  "walking") in _first_screen(_page(rep))


def test_refused_mvc_is_named_on_the_first_screen():
    s = _weak()
    for t in s.tasks:
        if t.name == "mvc_r_gmed":
            t.name = refused_task_name("r_gmed")
    rep = build_report(s, FIXED_TIME)
    assert rep["session"]["normalisation"]["mvc_checks"]["r_gmed"]["status"] == "refused"
    assert rep["session"]["normalisation"]["used"] == "peak_dynamic"
    assert ("MVC not used for right GMed (the MVC trial was refused (task mvc_r_gmed:refused))"
            in _first_screen(_page(rep)))


def test_plausible_mvcs_add_no_notice():
    rep = build_report(_weak(), FIXED_TIME)
    assert rep["first_screen"]["notices"] == []
    assert all(c["status"] == "ok" for c in rep["session"]["normalisation"]["mvc_checks"].values())


# ---------------------------------------------------------------- 3. units
def _stride_headers(page: str, side: str) -> list[str]:
    table = page[page.index(f"id='strides-{side}'"):]
    head = table[:table.index("</tr>")]
    return re.findall(r"<th>([^<]*)</th>", head)


def test_per_stride_columns_carry_units():
    rep = build_report(_weak(), FIXED_TIME)
    heads = _stride_headers(_page(rep), "left")
    for h in ("IC (s)", "GMed (%MVC)", "ES ipsi (%MVC)", "ES contra (%MVC)",
              "GMed/ES ipsi (ratio)", "drop (deg)", "onset (ms)", "stride time (s)"):
        assert h in heads, (h, heads)
    assert all(re.search(r"\(.+\)$", h) for h in heads if h not in ("stride", "note"))
    assert rep["units"]["pelvic_drop_deg"] == "deg" and rep["units"]["gmed_onset_ms"] == "ms"
    no_mvc = build_report(_weak(seed=3, with_mvc=False), FIXED_TIME)
    assert "GMed (% walking peak)" in _stride_headers(_page(no_mvc), "right")
    assert no_mvc["units"]["stance_gmed_pct_mvc"] == "% walking peak"


# ---------------------------------------------------------------- 4. trend
@pytest.fixture()
def trend_store(tmp_path):
    store = open_store(tmp_path / "store.sqlite3")
    specs = [(syn.weak_left_compensating(seed=10, walk_s=40), "2024-02-10"),
             (syn.weak_left_compensating(seed=11, walk_s=40, with_mvc=False), "2024-02-17"),
             (syn.healthy(seed=12, walk_s=40), "2024-03-02")]
    ids = []
    for spec, day in specs:
        s = syn.make_session(spec)
        s.metadata.patient_id, s.metadata.started_at = "P-T", f"{day}T10:00:00+00:00"
        ids.append(store.save_session_data(s))
    s = syn.make_session(syn.healthy(seed=13, walk_s=20))  # a home walk without a standing task
    s.metadata.patient_id, s.metadata.started_at = "P-T", "2024-03-05T18:00:00+00:00"
    s.tasks = [t for t in s.tasks if t.name != "standing"]
    ids.append(store.save_session_data(s))
    return store, ids


def test_trend_numbers_dates_n_iqr_and_warnings(trend_store, tmp_path):
    store, ids = trend_store
    html_path, json_path = patient_trend(store, "P-T", tmp_path / "t")
    trend = json.loads(json_path.read_text())
    ss = trend["sessions"]
    assert [s["session_number"] for s in ss] == [1, 2, 3]
    assert [s["date"] for s in ss] == ["2024-02-10", "2024-02-17", "2024-03-02"]
    assert trend["skipped"][0]["session_number"] == 4 and trend["skipped"][0]["date"] == "2024-03-05"
    assert f"--calibration-from {ids[2]}" in trend["skipped"][0]["reason"]
    assert any("own walking peak" in w for w in ss[1]["warnings"])
    assert any("Simulated data" in w for w in ss[0]["warnings"])
    page = html_path.read_text()
    table = page[page.index("id='trend-sessions'"):page.index("</table>", page.index("id='trend-sessions'"))]
    rows = table.split("<tr>")[2:]
    assert len(rows) == 3
    for row, s in zip(rows, ss):
        cells = re.findall(r"<td[^>]*>(.*?)</td>", row, flags=re.S)
        assert cells[0] == str(s["session_number"]) and cells[2] == s["date"]
        assert cells[4] == f"{s['sides']['left']['strides']} / {s['sides']['right']['strides']}"
        drop = s["sides"]["left"]["pelvic_drop_deg"]
        assert f"L {drop['median']:.1f} (IQR {drop['iqr']:.1f}, n {drop['n']})" in cells[5]
    assert "own walking peak" in rows[1] and "none" not in rows[1].split("class='warnings'>")[1][:10]
    # the x axis: whole session numbers with their dates, never 1.5
    ticks = re.findall(r'class="xtick" x="([\d.]+)"[^>]*>([^<]*)</text>', page)
    assert ticks and {label for _, label in ticks} == {"1", "2", "3", "4"}
    assert all(svg.ML <= float(x) <= svg.W - svg.MR for x, _ in ticks)  # inside the frame
    assert "2024-02-17" in re.findall(r'class="xtick-sub"[^>]*>([^<]*)</text>', page)
    assert page.count('class="whisker"') > 0
    # activation of the session without MVC is not plotted next to %MVC sessions
    gmed = page[page.index('id="trend-stance_gmed_pct_mvc"'):]
    gmed = gmed[:gmed.index("</svg>")]
    assert gmed.count("<circle") == 2 * 2  # two MVC sessions x two sides


# ---------------------------------------------------------------- 5. findings_text
def test_findings_text_weak_left():
    rep = build_report(_weak(), FIXED_TIME)
    text = findings_text(rep)
    lines = text.split("\n")
    assert len(lines) == 2 and lines[1] == "Simulated data."
    left = rep["sides"]["left"]
    n = left["strides"]
    below = sum(1 for v, ok in zip(left["per_stride"]["gmed_es_ratio_ipsi"],
                                   left["per_stride"]["emg_valid"]) if ok and v < 1)
    pct = round(100 * below / n)
    drop_l = left["pelvic_drop_deg"]["median"]
    drop_r = rep["sides"]["right"]["pelvic_drop_deg"]["median"]
    assert lines[0].startswith(f"Left stance: erector-dominant in {pct} % (stance-side ES)")
    assert f"of {n} strides (ES_DOMINANT_IPSI, ES_DOMINANT_CONTRA)" in lines[0]
    assert f"pelvic drop {drop_l:.1f} deg vs {drop_r:.1f} on right stance (PELVIC_DROP)" in lines[0]
    assert lines[0].endswith("Right stance: no flag.")


def test_findings_text_from_a_report_file_and_without_mvc(tmp_path):
    store = open_store(tmp_path / "s.sqlite3")
    sid = store.save_session_data(_weak(seed=3, with_mvc=False))
    _, js = write_report(store, sid, tmp_path / "out")
    text = findings_text(json.loads(js.read_text()))
    assert text.startswith("Left stance: pelvic drop") and "Right stance: no flag." in text
    assert "GMed and ES not compared: no usable MVC for l_gmed (missing)" in text.split("\n")[1]
    healthy = build_report(syn.make_session(syn.healthy(seed=1, walk_s=30)), FIXED_TIME)
    assert findings_text(healthy).split("\n")[0] == "Left stance: no flag. Right stance: no flag."


# ---------------------------------------------------------------- 6. calibration from another session
def test_copy_calibration_api(trend_store, tmp_path):
    store, ids = trend_store
    home = ids[3]
    c = copy_calibration(store, home, ids[0])
    assert c.source == f"copied from session {ids[0]} of 2024-02-10"
    assert all(v is not None for v in c.mvc_uv.values()) and not c.mvc_not_copied
    cal = store.load_calibration(home)
    assert cal.has_standing and cal.source == c.source and cal.mvc_uv["l_gmed"] == c.mvc_uv["l_gmed"]
    rep = build_report(store.load_session(home), FIXED_TIME)
    assert rep["session"]["calibration"]["copied_from"] == {"session_id": ids[0], "date": "2024-02-10"}
    assert f"Calibration copied from session {ids[0]} of 2024-02-10" in _first_screen(_page(rep))
    assert rep["session"]["normalisation"]["used"] == "MVC"
    # the session without MVCs gives its standing angles only
    c2 = copy_calibration(store, home, ids[1])
    assert all(v is None for v in c2.mvc_uv.values()) and set(c2.mvc_not_copied) == set(c2.mvc_uv)


def test_copy_takes_the_standing_posture_not_a_device_relative_reference(trend_store):
    store, ids = trend_store
    # a clinic session whose device streamed relative angles after its standing calibration
    # (sync stores that as standing 0, 0, 0 "device calibration (...)"): the copy takes the
    # posture of its standing task, which the home recording's absolute angles need
    store.set_calibration(ids[0], standing_deg=(0.0, 0.0, 0.0),
                          source="device calibration (standing 2024-02-10 10:00 UTC, no MVCs)")
    c = copy_calibration(store, ids[3], ids[0])
    assert c.standing_deg[0] == pytest.approx(syn.STANDING_DEG[0], abs=0.1)
    assert c.standing_deg[1] == pytest.approx(syn.STANDING_DEG[1], abs=0.1)
    # without a standing task there is nothing to copy
    s = syn.make_session(syn.healthy(seed=30, walk_s=20))
    s.metadata.patient_id = "P-T"
    s.tasks = [t for t in s.tasks if t.name != "standing"]
    synced = store.save_session_data(s)
    store.set_calibration(synced, standing_deg=(0.0, 0.0, 0.0),
                          source="device calibration (standing time unknown, no MVCs)")
    with pytest.raises(CalibrationCopyError, match="device's own standing reference"):
        copy_calibration(store, ids[3], synced)
    assert synced not in [sid for sid, _ in calibrated_sessions(store, ids[3])]


def _cli(monkeypatch, capsys, store_path, *args) -> tuple[int, str, str]:
    monkeypatch.setenv("HIPSYNC_STORE", str(store_path))
    rc = main(["report", *map(str, args)])
    out, err = capsys.readouterr()
    assert "Traceback" not in err
    return rc, out, err


def test_report_command_copies_a_calibration(trend_store, tmp_path, monkeypatch, capsys):
    store, ids = trend_store
    home, out = ids[3], tmp_path / "out"
    rc, _, err = _cli(monkeypatch, capsys, store.path, home, "--out", out)
    assert rc == 1 and "no standing calibration" in err
    assert f"`hipsync report {home} --calibration-from {ids[2]}`" in err  # the newest clinic one
    other = store.save_session_data(syn.make_session(syn.healthy(seed=5, walk_s=20)))  # P-SYN
    rc, _, err = _cli(monkeypatch, capsys, store.path, home, "--calibration-from", other, "--out", out)
    assert rc == 2 and "same patient" in err
    rc, _, err = _cli(monkeypatch, capsys, store.path, home, "--calibration-from", 999, "--out", out)
    assert rc == 2 and "No session 999" in err
    rc, stdout, err = _cli(monkeypatch, capsys, store.path, home, "--calibration-from", ids[2],
                           "--out", out)
    assert rc == 0, err
    assert f"calibration copied from session {ids[2]} of 2024-03-02" in err
    assert f"calibration copied from session {ids[2]} of 2024-03-02" in stdout  # findings line 2
    page = (out / f"session_{home}.html").read_text()
    assert f"Calibration copied from session {ids[2]} of 2024-03-02" in _first_screen(page)
    rc, _, err = _cli(monkeypatch, capsys, store.path, home, "--out", out)  # kept in the store
    assert rc == 0, err


# ---------------------------------------------------------------- 7. errors
def test_report_command_errors_are_one_clear_line(trend_store, tmp_path, monkeypatch, capsys):
    store, ids = trend_store
    rc, _, err = _cli(monkeypatch, capsys, store.path, 999)
    assert rc == 2 and "No session 999" in err and "hipsync sessions" in err
    blocker = tmp_path / "file"
    blocker.write_text("x")
    rc, _, err = _cli(monkeypatch, capsys, store.path, ids[0], "--out", blocker / "sub")
    assert rc == 1 and f"Cannot write to {blocker / 'sub'}" in err and "--out" in err
    rc, _, err = _cli(monkeypatch, capsys, store.path, "--patient", "NOBODY", "--out", tmp_path)
    assert rc == 2 and "NOBODY" in err
    rc, _, err = _cli(monkeypatch, capsys, store.path, "--calibration-from", ids[0])
    assert rc == 2 and "needs a SESSION" in err

    def broken(*a, **k):
        raise ValueError("zero-size array")

    monkeypatch.setattr("hipsync.report.write_report", broken)
    rc, _, err = _cli(monkeypatch, capsys, store.path, ids[0], "--out", tmp_path / "o")
    assert rc == 1 and "could not analyse session" in err and "HIPSYNC_DEBUG=1" in err
    assert len(err.strip().splitlines()) == 1


def test_report_command_prints_the_findings(trend_store, tmp_path, monkeypatch, capsys):
    store, ids = trend_store
    rc, out, _ = _cli(monkeypatch, capsys, store.path, ids[0], "--out", tmp_path / "o")
    assert rc == 0
    assert "Left stance: erector-dominant" in out and "(PELVIC_DROP)" in out
