"""Report: JSON against the published schema, golden snapshots for fixed seeds, the HTML page in
headless Chromium, the patient trend, and the errors a user sees."""

from __future__ import annotations

import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from hipsync.analysis import synthetic as syn
from hipsync.report import (
    build_report,
    html,
    patient_trend,
    trend_plot_ids,
    write_report,
    write_session_report,
)
from hipsync.store import (
    MissingCalibration,
    OutputNotWritable,
    UnknownPatient,
    UnknownSession,
    open_store,
)

ROOT = Path(__file__).resolve().parents[2]
GOLDEN = Path(__file__).parent / "golden"
SCHEMA = json.loads((ROOT / "docs" / "report.schema.json").read_text())
FIXED_TIME = "2024-01-01T12:00:00+00:00"
CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)


# ---------------------------------------------------------------- a small JSON Schema checker
def _validate(value, schema, root, path="$"):
    """The subset of JSON Schema 2020-12 that docs/report.schema.json uses."""
    if "$ref" in schema:
        name = schema["$ref"].split("/")[-1]
        return _validate(value, root["$defs"][name], root, path)
    if "oneOf" in schema:
        ok = sum(1 for s in schema["oneOf"] if not _errors(value, s, root))
        assert ok == 1, f"{path}: matches {ok} of oneOf"
    if "const" in schema:
        assert value == schema["const"], f"{path}: {value!r} != {schema['const']!r}"
    if "enum" in schema:
        assert value in schema["enum"], f"{path}: {value!r} not in {schema['enum']}"
    if "type" in schema:
        types = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        checks = {"object": lambda v: isinstance(v, dict), "array": lambda v: isinstance(v, list),
                  "string": lambda v: isinstance(v, str), "boolean": lambda v: isinstance(v, bool),
                  "null": lambda v: v is None,
                  "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
                  "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
                  and math.isfinite(v)}
        assert any(checks[t](value) for t in types), f"{path}: {value!r} is not {types}"
    if isinstance(value, dict):
        for key in schema.get("required", []):
            assert key in value, f"{path}: missing {key!r}"
        props = schema.get("properties", {})
        for key, v in value.items():
            if key in props:
                _validate(v, props[key], root, f"{path}.{key}")
            elif schema.get("additionalProperties") is False:
                raise AssertionError(f"{path}: unexpected {key!r}")
            elif isinstance(schema.get("additionalProperties"), dict):
                _validate(v, schema["additionalProperties"], root, f"{path}.{key}")
    if isinstance(value, list):
        if "minItems" in schema:
            assert len(value) >= schema["minItems"], f"{path}: too few items"
        if "maxItems" in schema:
            assert len(value) <= schema["maxItems"], f"{path}: too many items"
        if "items" in schema:
            for i, v in enumerate(value):
                _validate(v, schema["items"], root, f"{path}[{i}]")
    if "minimum" in schema and isinstance(value, (int, float)):
        assert value >= schema["minimum"], f"{path}: below minimum"


def _errors(value, schema, root):
    try:
        _validate(value, schema, root)
    except AssertionError as e:
        return [str(e)]
    return []


def test_schema_checker_rejects_a_broken_report():
    rep = build_report(syn.make_session(syn.healthy(seed=1, walk_s=30)), FIXED_TIME)
    del rep["sides"]["left"]["pelvic_drop_deg"]
    with pytest.raises(AssertionError, match="pelvic_drop_deg"):
        _validate(rep, SCHEMA, SCHEMA)


# ---------------------------------------------------------------- golden snapshots
CASES = {"healthy_seed1": lambda: syn.healthy(seed=1, walk_s=60),
         "weak_left_seed2": lambda: syn.weak_left_compensating(seed=2, walk_s=60),
         "weak_left_no_mvc_seed3": lambda: syn.weak_left_compensating(seed=3, walk_s=60,
                                                                     with_mvc=False)}
VOLATILE = ("generated_at", "generated_by")


def _close(a, b, path="$"):
    if isinstance(a, dict):
        assert isinstance(b, dict) and a.keys() == b.keys(), f"{path}: keys differ: " \
            f"{sorted(set(a) ^ set(b))}"
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), f"{path}: lengths differ"
        for i, (x, y) in enumerate(zip(a, b)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert b is not None and a is not None and abs(a - b) <= 1e-3 + 1e-6 * abs(b), \
            f"{path}: {a} != {b}"
    else:
        assert a == b, f"{path}: {a!r} != {b!r}"


@pytest.mark.parametrize("name", sorted(CASES))
def test_report_matches_golden_snapshot(name):
    """Set HIPSYNC_UPDATE_GOLDEN=1 to rewrite the snapshots after an intended change."""
    rep = build_report(syn.make_session(CASES[name]()), FIXED_TIME)
    _validate(rep, SCHEMA, SCHEMA)
    for k in VOLATILE:
        rep.pop(k)
    path = GOLDEN / f"report_{name}.json"
    if os.environ.get("HIPSYNC_UPDATE_GOLDEN") == "1" or not path.exists():
        path.write_text(json.dumps(rep, indent=1, sort_keys=True) + "\n")
        if os.environ.get("HIPSYNC_UPDATE_GOLDEN") != "1":
            pytest.fail(f"golden snapshot {path.name} was missing and has been written; rerun")
    _close(rep, json.loads(path.read_text()))


def test_golden_snapshots_hold_the_expected_flags():
    """The snapshots themselves say what a reader should see (guards against blessing a bug)."""
    flags = {n: sorted(f["code"] + "/" + f["side"] for f in json.loads(
        (GOLDEN / f"report_{n}.json").read_text())["flags"]) for n in CASES}
    assert flags["healthy_seed1"] == []
    assert flags["weak_left_seed2"] == ["ES_DOMINANT_CONTRA/left", "ES_DOMINANT_IPSI/left",
                                        "PELVIC_DROP/left"]
    assert flags["weak_left_no_mvc_seed3"] == ["PELVIC_DROP/left"]


# ---------------------------------------------------------------- through the store
@pytest.fixture()
def stored(tmp_path):
    store = open_store(tmp_path / "store.sqlite3")
    sid = store.save_session_data(syn.make_session(syn.weak_left_compensating(seed=2, walk_s=60)))
    return store, sid


def test_write_report_from_store(stored, tmp_path):
    store, sid = stored
    html_path, json_path = write_report(store, sid, tmp_path / "out")
    rep = json.loads(json_path.read_text())
    _validate(rep, SCHEMA, SCHEMA)
    assert rep["session"]["session_id"] == sid and rep["session"]["patient_id"] == "P-SYN"
    assert rep["sides"]["left"]["flags"] == ["ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "PELVIC_DROP"]
    page = html_path.read_text()
    for text in ("pattern consistent with erector-dominant stabilisation on left stance",
                 "Trunk lean is not assessed", "No study has validated a GMed:ES ratio cut-off",
                 "A weak gluteus medius can show higher", "Methods (ISEK reporting)",
                 "Inter", "Placement l_gmed", "highpass_hz: 20", "MVC (requested MVC)"):
        assert text.lower() in page.lower(), text
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    assert "https://" not in page and "<script" not in page


def test_report_errors_are_typed(stored, tmp_path):
    store, sid = stored
    with pytest.raises(UnknownSession):
        write_report(store, sid + 10, tmp_path / "out")
    blocker = tmp_path / "a_file"
    blocker.write_text("x")
    with pytest.raises(OutputNotWritable, match="Choose a folder"):
        write_report(store, sid, blocker / "sub")
    if os.geteuid() != 0:  # root ignores folder permissions
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        with pytest.raises(OutputNotWritable):
            write_report(store, sid, ro)
    s = syn.make_session(syn.healthy(seed=1, walk_s=20))
    s.tasks = [t for t in s.tasks if t.name != "standing"]
    sid2 = store.save_session_data(s)
    with pytest.raises(MissingCalibration):
        write_report(store, sid2, tmp_path / "out")


def test_patient_trend(tmp_path):
    store = open_store(tmp_path / "store.sqlite3")
    for seed, spec in enumerate((syn.weak_left_compensating, syn.weak_left_compensating,
                                 syn.healthy), start=10):
        s = syn.make_session(spec(seed=seed, walk_s=40))
        s.metadata.patient_id = "P-TREND"
        s.metadata.started_at = f"2024-02-{seed:02d}T10:00:00+00:00"
        store.save_session_data(s)
    s = syn.make_session(syn.healthy(seed=20, walk_s=20))
    s.metadata.patient_id = "P-TREND"
    s.metadata.started_at = "2024-03-01T10:00:00+00:00"
    s.tasks = [t for t in s.tasks if t.name != "standing"]
    bad_sid = store.save_session_data(s)
    html_path, json_path = patient_trend(store, "P-TREND", tmp_path / "trend")
    trend = json.loads(json_path.read_text())
    assert [x["sides"]["left"]["flags"] for x in trend["sessions"]] == [
        ["ES_DOMINANT_IPSI", "ES_DOMINANT_CONTRA", "PELVIC_DROP"]] * 2 + [[]]
    assert trend["skipped"][0]["session_id"] == bad_sid and "standing" in trend["skipped"][0]["reason"]
    drops = [x["sides"]["left"]["pelvic_drop_deg"]["median"] for x in trend["sessions"]]
    assert drops[0] > 6 and drops[2] < 3
    page = html_path.read_text()
    assert all(f'id="{pid}"' in page for pid in trend_plot_ids())
    with pytest.raises(UnknownPatient):
        patient_trend(store, "P-NOBODY", tmp_path / "trend")


# ---------------------------------------------------------------- the page in a browser
CHROME_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--no-first-run",
                "--enable-logging=stderr", "--v=0"]


def _chromium(args, tmp_path, tag):
    profile = tmp_path / f"profile-{tag}"
    proc = subprocess.run([CHROMIUM, *CHROME_FLAGS, f"--user-data-dir={profile}", *args],
                          capture_output=True, text=True, timeout=120, check=False)
    return proc


@pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (tools/ensure_chromium.py "
                                             "installs Debian's chromium when run as root with apt)")
def test_html_report_renders_in_headless_chromium(tmp_path):
    s = syn.make_session(syn.weak_left_compensating(seed=2, walk_s=60, lead_off=("r_es", 40, 50),
                                                    loss_fraction=0.08))
    html_path, _ = write_session_report(s, tmp_path, "report")
    url = html_path.resolve().as_uri()
    dom = _chromium(["--dump-dom", url], tmp_path, "dom")
    assert dom.returncode == 0, dom.stderr[-2000:]
    for marker in ("Uncaught", "ERROR:CONSOLE", "Failed to load resource"):
        assert marker not in dom.stderr, dom.stderr[-2000:]
    for pid in html.plot_ids():
        assert f'id="{pid}"' in dom.stdout, f"plot {pid} missing from the rendered DOM"
    assert dom.stdout.count("<svg") == len(html.plot_ids())
    assert "Caveats" in dom.stdout and "summary-left" in dom.stdout
    shot = tmp_path / "report.png"
    cap = _chromium([f"--screenshot={shot}", "--window-size=1200,4000", "--hide-scrollbars", url],
                    tmp_path, "shot")
    assert cap.returncode == 0, cap.stderr[-2000:]
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert shot.stat().st_size > 50_000  # a page of plots, not a blank image
