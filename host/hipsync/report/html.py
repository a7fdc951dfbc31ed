"""The self-contained HTML report: inline CSS and SVG, no script, no external resource."""

from __future__ import annotations

from html import escape

import numpy as np

from ..session import EMG_CHANNELS
from . import svg
from .json_report import MUSCLE_LABEL, metric_units

SIDE_NAMES = ("left", "right")


EXAM_LABEL = {"single_leg_stance": "Single-leg stance", "step_down": "Step-down",
              "single_leg_squat": "Single-leg squat",
              "hip_abduction_wb": "Weight-bearing hip abduction"}
# Per-repetition table: (key, label, decimals); units from report["exam_units"]
EXAM_REP_COLUMNS = [
    ("t_start_s", "start", 1),
    ("duration_s", "duration", 2),
    ("stance_gmed_pct_mvc", "GMed", 1),
    ("stance_gmed_peak_pct_mvc", "GMed peak", 1),
    ("es_ipsi_pct_mvc", "ES ipsi", 1),
    ("es_contra_pct_mvc", "ES contra", 1),
    ("gmed_es_ratio_ipsi", "GMed/ES ipsi", 2),
    ("gmed_es_ratio_contra", "GMed/ES contra", 2),
    ("gmed_onset_ms", "GMed onset", 0),
    ("es_onset_ms", "ES onset", 0),
    ("pelvic_drop_deg", "drop", 1),
]


def exam_plot_ids(rep: dict) -> list[str]:
    """The exam's plots in a report (two per task side stored)."""
    ids = []
    for task, entry in (rep.get("exam") or {}).items():
        for side in SIDE_NAMES:
            if side in entry:
                ids += [f"exam-{task}-{side}-emg", f"exam-{task}-{side}-drop"]
    return ids


def plot_ids() -> list[str]:
    """Every walking plot the session report contains (ids of the <svg> elements); an exam
    session adds exam_plot_ids(report)."""
    ids = []
    for side in SIDE_NAMES:
        ids += [f"curve-{side}-gmed", f"curve-{side}-es-ipsi", f"curve-{side}-es-contra",
                f"curve-{side}-obliquity", f"scatter-{side}"]
    return ids + ["quality-channels", "loss-over-time"]


_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1100px} h1{font-size:22px} h2{font-size:18px;border-bottom:1px solid #ccc;
padding-bottom:3px;margin-top:28px} table{border-collapse:collapse;margin:8px 0;font-size:13px}
td,th{border:1px solid #ccc;padding:3px 7px;text-align:left;vertical-align:top}
th{background:#f4f4f4} .num{text-align:right;font-variant-numeric:tabular-nums}
.plots{display:flex;flex-wrap:wrap;gap:10px} .flag{background:#fff3cd;border:1px solid #e0c060;
padding:2px 6px;border-radius:3px;font-weight:bold;font-size:12px}
.summary{font-size:15px;background:#f7f9fc;border-left:4px solid #1f77b4;padding:8px 12px;margin:6px 0}
.warn{background:#fdecea;border-left:4px solid #d62728;padding:6px 10px;margin:4px 0}
.caveat{font-size:13px} details{margin:8px 0} small{color:#666}
.simulated{background:#5b2a86;color:#fff;font-weight:bold;font-size:16px;padding:8px 12px;
margin:0 0 10px 0;border-radius:3px;letter-spacing:.02em}
.caveat-line{font-weight:bold;margin:6px 0} .note{background:#eef5ff;border-left:4px solid #1f77b4;
padding:6px 10px;margin:4px 0} .subtitle{color:#444;margin:0 0 8px 0}
details.rule summary{cursor:pointer;color:#555;font-size:12px}
"""


def _num(v, digits=1, unit="") -> str:
    if v is None:
        return "–"
    return f"{v:.{digits}f}{unit}"


def _summ(s: dict, digits=1) -> str:
    if not s or s.get("median") is None:
        return "–"
    return f"{s['median']:.{digits}f} [{s['q1']:.{digits}f}–{s['q3']:.{digits}f}]"


def _kv_table(rows) -> str:
    return "<table>" + "".join(f"<tr><th>{escape(str(k))}</th><td>{escape(str(v))}</td></tr>"
                               for k, v in rows) + "</table>"


def _fmt_dict(d) -> str:
    if not d:
        return "not recorded"
    if isinstance(d, dict):
        return "; ".join(f"{k}: {v}" for k, v in d.items())
    return str(d)


METRIC_ROWS = [
    ("strides_valid", "Valid strides (EMG)", None),
    ("stance_gmed_pct_mvc", "Stance GMed, mean in single support", 1),
    ("stance_gmed_peak_pct_mvc", "Stance GMed, peak in single support", 1),
    ("stance_es_ipsi_pct_mvc", "Stance-side ES, mean", 1),
    ("stance_es_ipsi_peak_pct_mvc", "Stance-side ES, peak", 1),
    ("stance_es_contra_pct_mvc", "Opposite ES, mean", 1),
    ("stance_es_contra_peak_pct_mvc", "Opposite ES, peak", 1),
    ("gmed_es_ratio_ipsi", "GMed / stance-side ES", 2),
    ("gmed_es_ratio_contra", "GMed / opposite ES", 2),
    ("pelvic_drop_deg", "Swing-side pelvic drop beyond standing (deg)", 1),
    ("gmed_onset_ms", "GMed onset relative to IC (ms)", 0),
    ("stride_time_s", "Stride time (s)", 2),
    ("single_support_pct", "Single support (% of stride)", 1),
]


# Per-stride table: (metric key, column label, decimals); the unit comes from report["units"].
PER_STRIDE_COLUMNS = [
    ("t_ic_s", "IC", 2),
    ("stance_gmed_pct_mvc", "GMed", 1),
    ("stance_es_ipsi_pct_mvc", "ES ipsi", 1),
    ("stance_es_contra_pct_mvc", "ES contra", 1),
    ("gmed_es_ratio_ipsi", "GMed/ES ipsi", 2),
    ("gmed_es_ratio_contra", "GMed/ES contra", 2),
    ("pelvic_drop_deg", "drop", 1),
    ("gmed_onset_ms", "onset", 0),
    ("stride_time_s", "stride time", 2),
]


def render(rep: dict) -> str:
    s = rep["session"]
    units = rep.get("units") or metric_units(s["normalisation"]["used"])
    unit = units["stance_gmed_pct_mvc"]
    title = (f"hipsync report – patient {s['patient_id']} – "
             + (f"session {s['session_id']}" if s["session_id"] is not None else "unsaved session"))
    parts = [(f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
             f"<meta name='viewport' content='width=device-width,initial-scale=1'>"
             f"<title>{escape(('SIMULATED – ' if rep.get('simulated') else '') + title)}</title>"
             f"<style>{_CSS}</style></head><body>")]
    # ---- first screen: simulated banner, who and when, findings, flags, caveat, notices
    if rep.get("simulated"):
        parts.append(f"<div class='simulated' id='simulated-banner' role='note'>Simulated data – "
                     f"not a recording of a patient ({escape(rep.get('simulated_reason') or '')})"
                     f"</div>")
    parts.append(f"<h1>{escape(title)}</h1>")
    parts.append(f"<p class='subtitle'>Started {escape(str(s['started_at']))} · "
                 f"{s['duration_s']:.0f} s recorded · device {escape(str(s['device_id']))}</p>")
    parts.append("<h2 id='summary'>Summary</h2>")
    for side in SIDE_NAMES:
        parts.append(f"<p class='summary' id='summary-{side}'>{escape(rep['sides'][side]['summary'])}</p>")
    exam = rep.get("exam") or {}
    if exam:
        parts.append("<p><b>Clinical exam</b></p><ul id='exam-summary'>" + "".join(
            f"<li>{escape(entry[side]['summary'])}</li>" for entry in exam.values()
            for side in SIDE_NAMES if side in entry) + "</ul>")
    # the exam's flags on the first screen too (their evidence names the task)
    first_flags = rep["flags"] + [f for entry in exam.values() for side in SIDE_NAMES
                                  if side in entry for f in entry[side]["flag_details"]]
    if first_flags:
        parts.append("<table id='flags'><tr><th>Flag</th><th>Side</th><th>Evidence</th></tr>")
        for f in first_flags:
            parts.append(f"<tr><td><span class='flag'>{escape(f['code'])}</span></td>"
                         f"<td>{escape(f['side'])}</td><td>{escape(f['evidence'])}"
                         f"<details class='rule'><summary>rule</summary>{escape(f['rule'])}"
                         f"</details></td></tr>")
        parts.append("</table>")
    else:
        parts.append("<p id='flags'>No flags raised.</p>")
    fs = rep.get("first_screen") or {}
    parts.append(f"<p class='caveat-line' id='caveat-line'>{escape(fs.get('caveat', ''))}</p>")
    for i, text in enumerate(fs.get("notices", [])):
        parts.append(f"<p class='warn notice' id='notice-{i}'>{escape(text)}</p>")
    for w in rep["warnings"]:
        parts.append(f"<p class='warn'>{escape(w)}</p>")
    parts.append("<h2 id='session'>Session</h2>")
    parts.append(_kv_table([("Patient (pseudonymous)", s["patient_id"]),
                            ("Session", s["session_id"]), ("Started", s["started_at"]),
                            ("Device", s["device_id"]), ("Firmware", s["firmware_version"]),
                            ("Recorded duration", f"{s['duration_s']:.0f} s"),
                            ("Calibration", s["calibration"]["source"]),
                            ("Normalisation", s["normalisation"]["used"]),
                            ("Generated", f"{rep['generated_at']} by {rep['generated_by']}")]))

    # ---- per-side table
    parts.append(f"<h2 id='tables'>Single-leg support, by stance side</h2>"
                 f"<p><small>Median [interquartile range] over valid strides. Activation in "
                 f"{unit}. Symmetry index = 100·(L−R)/(0.5·(L+R)).</small></p>")
    parts.append("<table id='side-table'><tr><th>Measure</th><th>Left stance</th>"
                 "<th>Right stance</th><th>Symmetry index (%)</th></tr>")
    for key, label, digits in METRIC_ROWS:
        label = label + (f" ({unit})" if "pct_mvc" in key else "")
        if digits is None:
            left = f"{rep['sides']['left']['strides']} of {rep['sides']['left']['strides_detected']}"
            right = f"{rep['sides']['right']['strides']} of {rep['sides']['right']['strides_detected']}"
            si = ""
        else:
            left, right = _summ(rep["sides"]["left"][key], digits), _summ(rep["sides"]["right"][key], digits)
            si = _num(rep["symmetry"].get(key), 1)
        parts.append(f"<tr><td>{escape(label)}</td><td class='num'>{left}</td>"
                     f"<td class='num'>{right}</td><td class='num'>{si}</td></tr>")
    parts.append("</table>")

    # ---- curves
    parts.append("<h2 id='curves'>Gait-cycle curves (mean ± SD)</h2><p><small>0–100 % of the "
                 "stance side's gait cycle from its initial contact; the shaded span is single-leg "
                 "support.</small></p>")
    for side in SIDE_NAMES:
        r = rep["sides"][side]
        c = r["curves"]
        x = np.asarray(c["phase_pct"], float)
        shade = tuple(c["single_support_phase_pct"])
        own, other = ("l", "r") if side == "left" else ("r", "l")
        parts.append(f"<h3>{side.capitalize()} stance</h3><div class='plots'>")
        for pid, ch, label in ((f"curve-{side}-gmed", f"{own}_gmed", "stance GMed"),
                               (f"curve-{side}-es-ipsi", f"{own}_es", "stance-side ES"),
                               (f"curve-{side}-es-contra", f"{other}_es", "opposite ES")):
            cur = c[ch]
            parts.append(svg.band_plot(pid, f"{MUSCLE_LABEL[ch]} ({label}), {side} cycle", x,
                                       [(f"{MUSCLE_LABEL[ch]} (n={cur['n']})", cur["mean"], cur["sd"])],
                                       "% gait cycle", unit, shade=shade))
        ob = c["obliquity_rel_deg"]
        parts.append(svg.band_plot(f"curve-{side}-obliquity", f"Pelvic obliquity vs standing, "
                                   f"{side} cycle", x, [(f"obliquity (n={ob['n']})", ob["mean"], ob["sd"])],
                                   "% gait cycle", "deg (+ = right side lower)", shade=shade,
                                   zero_line=True))
        parts.append("</div>")

    # ---- scatter
    parts.append(f"<h2 id='scatter'>Stride by stride: GMed against ES ({unit})</h2><p><small>"
                 f"One dot per stride (mean in single support). Above the dashed line the ES is "
                 f"above the GMed (ratio &lt; 1).</small></p><div class='plots'>")
    for side in SIDE_NAMES:
        ps = rep["sides"][side]["per_stride"]
        g = np.asarray(ps["stance_gmed_pct_mvc"], float)
        parts.append(svg.scatter_plot(
            f"scatter-{side}", f"{side.capitalize()} stance: ES vs stance GMed",
            [("stance-side ES", _arr(ps["stance_gmed_pct_mvc"]), _arr(ps["stance_es_ipsi_pct_mvc"])),
             ("opposite ES", _arr(ps["stance_gmed_pct_mvc"]), _arr(ps["stance_es_contra_pct_mvc"]))]
            if len(g) else [], f"stance GMed ({unit})", f"ES ({unit})"))
    parts.append("</div>")

    if exam:
        parts.append(_exam_section(rep))

    # ---- quality
    qd = rep["quality"]
    parts.append("<h2 id='quality'>Signal quality and data loss</h2>")
    cff = qd["channel_flag_fraction"]
    flag_names = ["lead_off", "clipping", "mains", "flat", "motion"]
    groups = [(fn, [100.0 * (cff[ch][fn] if cff.get(ch) else float("nan")) for ch in EMG_CHANNELS])
              for fn in flag_names]
    parts.append("<div class='plots'>")
    parts.append(svg.bar_plot("quality-channels", "Time with a quality flag, per channel",
                              list(EMG_CHANNELS), groups, "% of status reports"))
    per_min = qd["envelope_loss_per_minute"] or [0.0]
    parts.append(svg.line_plot("loss-over-time", "Envelope samples lost, per minute",
                               [("lost", np.arange(len(per_min)), 100 * np.asarray(per_min, float))],
                               "minute of session", "% lost", markers=len(per_min) < 40))
    parts.append("</div>")
    link = qd.get("link") or {}
    parts.append(_kv_table([("Loss used for HIGH_LOSS", f"{100 * qd['loss_fraction']:.2f} %"),
                            ("Envelope samples", (f"{qd['envelope_samples_received']} of "
                                                 f"{qd['envelope_samples_expected']} expected")),
                            ("Link statistics", _fmt_dict(link)),
                            ("Device flash", "intact" if not qd.get("flash_damage") else
                             (f"damaged: {qd['flash_damage']['bytes_lost']} bytes unreadable, "
                              f"{qd['flash_damage']['records_kept']} records verified and kept")),
                            ("Strides left out (electrode problems), left / right",
                             (f"{rep['sides']['left']['quality']['strides_with_electrode_problems']} / "
                             f"{rep['sides']['right']['quality']['strides_with_electrode_problems']}"))]))

    # ---- tasks
    parts.append("<h2 id='tasks'>Tasks</h2><table><tr><th>Task</th><th>Start (s)</th><th>End (s)</th>"
                 "<th>Result</th></tr>")
    for t in rep["tasks"]:
        if "sides" in t:
            res = "; ".join(f"{sd}: {v['strides']} strides, GMed/ES ipsi {_summ(v['gmed_es_ratio_ipsi'], 2)}, "
                            f"drop {_summ(v['pelvic_drop_deg'])} deg" for sd, v in t["sides"].items())
        elif "channels_pct_mvc" in t:
            res = ", ".join(f"{ch} {_summ(v)}" for ch, v in t["channels_pct_mvc"].items()) + f" ({unit})"
        else:
            res = "no data"
        parts.append(f"<tr><td>{escape(t['name'])}</td><td class='num'>{t['t_start_s']:.1f}</td>"
                     f"<td class='num'>{t['t_end_s']:.1f}</td><td>{escape(res)}</td></tr>")
    parts.append("</table>")

    # ---- methods (ISEK)
    norm = s["normalisation"]
    el = s["electrodes"]
    parts.append("<h2 id='methods'>Methods (ISEK reporting)</h2>")
    parts.append(_kv_table([
        ("Electrodes", _fmt_dict(el)),
        ("Detection mode", el.get("detection_mode", "not recorded") if isinstance(el, dict) else "not recorded"),
        *[(f"Placement {ch}", s["placement"].get(ch, "not recorded")) for ch in EMG_CHANNELS],
        ("Filters", _fmt_dict(s["filters"])),
        ("Sampling", (f"EMG {s['sampling']['emg_hz']:g} Hz; envelope {s['sampling']['envelope_hz']:g} Hz; "
                     f"pelvis {s['sampling']['pelvis_hz']:g} Hz")),
        ("Normalisation", f"{norm['used']} (requested {norm['requested']}): {norm['description']}"),
        ("Reference amplitude (uV)", _fmt_dict({k: (round(v, 1) if v else v) for k, v in norm["reference_uv"].items()})),
        ("MVC plausibility", "; ".join(f"{ch}: {c['status']} – {c['reason']}"
                                       for ch, c in (norm.get("mvc_checks") or {}).items())
         or "not checked"),
        ("Standing calibration (deg)", _fmt_dict({k: round(v, 2) for k, v in s["calibration"]["standing_deg"].items()})
         + f" ({s['calibration']['source']})"),
        ("Onset method", rep["definitions"]["gmed_onset_ms"]),
        ("Pelvic drop", rep["definitions"]["pelvic_drop_deg"]),
    ]))
    parts.append("<h3>Flag rules</h3><table>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>" for k, v in rep["rules"]["text"].items())
        + "</table>")

    # ---- caveats
    parts.append("<h2 id='caveats'>Caveats</h2><ul class='caveat'>"
                 + "".join(f"<li>{escape(c)}</li>" for c in rep["caveats"]) + "</ul>")

    # ---- per stride (collapsed)
    parts.append("<h2 id='strides'>Per stride</h2><p><small>Activation: mean in single support, "
                 f"{escape(unit)}; ratio: stance GMed / ES (both in {escape(unit)}); drop: "
                 "swing-side pelvic drop beyond standing; onset: stance GMed onset relative to "
                 "IC (negative = before).</small></p>")
    for side in SIDE_NAMES:
        ps = rep["sides"][side]["per_stride"]
        head = "".join(f"<th>{escape(label)} ({escape(units[key])})</th>"
                       for key, label, _ in PER_STRIDE_COLUMNS)
        parts.append(f"<details><summary>{side.capitalize()} stance: {len(ps['stride'])} strides"
                     f"</summary><table class='per-stride' id='strides-{side}'><tr><th>stride</th>"
                     f"{head}<th>note</th></tr>")
        rows = []
        for k in range(len(ps["stride"])):
            note = "electrode problem" if ps["quality_excluded"][k] else ("" if ps["emg_valid"][k] else "data gap")
            rows.append(f"<tr><td>{ps['stride'][k]}</td>"
                        + "".join(f"<td class='num'>{_num(ps[m][k], d)}</td>"
                                  for m, _, d in PER_STRIDE_COLUMNS)
                        + f"<td>{note}</td></tr>")
        parts.append("".join(rows) + "</table></details>")
    parts.append("</body></html>")
    return "\n".join(parts)


def _exam_section(rep: dict) -> str:
    units = rep.get("exam_units") or {}
    unit = units.get("stance_gmed_pct_mvc", "%MVC")
    out = ["<h2 id='exam'>Clinical exam, repetition by repetition</h2><p><small>Activation: mean "
           f"over the loading phase (start to lowest point; single-leg stance: the hold), "
           f"{escape(unit)}. Onsets relative to the repetition's start (negative = before). Drop: "
           "largest swing-side pelvic drop beyond standing. Curves: mean ± SD over the valid "
           "repetitions, each time-normalised from its start (0 %) to its end (100 %); the shaded "
           "span is the loading phase (median lowest point). Repetitions the device did not find "
           "are counted as missing, not reconstructed.</small></p>"]
    for task, entry in rep["exam"].items():
        out.append(f"<h3 id='exam-{escape(task)}'>{escape(EXAM_LABEL.get(task, task))}</h3>")
        for side in SIDE_NAMES:
            if side in entry:
                out.append(f"<p class='summary' id='exam-{escape(task)}-{side}-summary'>"
                           f"{escape(entry[side]['summary'])}</p>")
        flags = [f for side in SIDE_NAMES if side in entry for f in entry[side]["flag_details"]]
        if flags:
            out.append(f"<table id='exam-{escape(task)}-flags'><tr><th>Flag</th><th>Side</th>"
                       "<th>Evidence</th></tr>" + "".join(
                           f"<tr><td><span class='flag'>{escape(f['code'])}</span></td>"
                           f"<td>{escape(f['side'])}</td><td>{escape(f['evidence'])}"
                           f"<details class='rule'><summary>rule</summary>{escape(f['rule'])}"
                           "</details></td></tr>" for f in flags) + "</table>")
        out.append("<div class='plots'>")
        for kind in ("emg", "drop"):
            for side in SIDE_NAMES:
                if side not in entry:
                    continue
                c = entry[side]["curves"]
                x = np.asarray(c["phase_pct"], float)
                shade = (0.0, c.get("low_phase_pct")) if task != "single_leg_stance" else (0.0, 100.0)
                title = f"{EXAM_LABEL.get(task, task)}, {side} stance"
                if kind == "emg":
                    series = [(f"{lab} (n={c[role]['n']})", c[role]["mean"], c[role]["sd"])
                              for role, lab in (("stance_gmed", "stance GMed"),
                                                ("es_ipsi", "stance-side ES"),
                                                ("es_contra", "opposite ES"))]
                    out.append(svg.band_plot(f"exam-{task}-{side}-emg", title, x, series,
                                             "% of repetition", unit, shade=shade))
                else:
                    d = c["pelvic_drop_deg"]
                    out.append(svg.band_plot(f"exam-{task}-{side}-drop", title + ": pelvic drop",
                                             x, [(f"swing-side drop (n={d['n']})", d["mean"],
                                                  d["sd"])], "% of repetition",
                                             "deg beyond standing (+ = swing side lower)",
                                             shade=shade, zero_line=True))
        out.append("</div>")
        for side in SIDE_NAMES:
            if side not in entry:
                continue
            r = entry[side]
            cnt = r["counts"]
            head = "".join(f"<th>{escape(label)} ({escape(units.get(key, 's'))})</th>"
                           for key, label, _ in EXAM_REP_COLUMNS)
            rows = []
            for x in r["reps"]:
                note = "; ".join(filter(None, [x.get("excluded") or "", ", ".join(x["device_flags"]),
                                               f"first: {x['first_onset']}" if x.get("first_onset") else ""]))
                rows.append(f"<tr><td>{x['index'] + 1}</td>" + "".join(
                    f"<td class='num'>{_num(x.get(k), d)}</td>" for k, _, d in EXAM_REP_COLUMNS)
                    + f"<td>{escape(note)}</td></tr>")
            if cnt["missing"]:
                rows.append(f"<tr><td colspan='{len(EXAM_REP_COLUMNS) + 2}'>{cnt['missing']} of "
                            f"{cnt['expected']} repetitions not found by the device</td></tr>")
            med = "".join(f"<td class='num'>{_summ(r[k], d)}</td>" if isinstance(r.get(k), dict) else "<td></td>"
                          for k, _, d in EXAM_REP_COLUMNS)
            out.append(f"<table class='per-rep' id='exam-{escape(task)}-{side}-reps'>"
                       f"<tr><th colspan='{len(EXAM_REP_COLUMNS) + 2}'>{side.capitalize()} stance: "
                       f"{cnt['found']} found of {cnt['expected']} expected, {cnt['missing']} "
                       f"missing, {cnt['excluded']} left out</th></tr><tr><th>rep</th>{head}"
                       f"<th>note</th></tr>" + "".join(rows)
                       + f"<tr><th>median [IQR]</th>{med}<td></td></tr></table>")
        lvr = entry.get("left_vs_right")
        if lvr:
            out.append("<p><small>Left against right: symmetry index (%) GMed "
                       f"{_num(lvr.get('stance_gmed_pct_mvc'))}, GMed/ES ipsi "
                       f"{_num(lvr.get('gmed_es_ratio_ipsi'))}, GMed/ES contra "
                       f"{_num(lvr.get('gmed_es_ratio_contra'))}; pelvic drop left − right "
                       f"{_num(lvr.get('pelvic_drop_deg_left_minus_right'))} deg.</small></p>")
    out.append("<h3>Exam flag rules</h3><table>" + "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(v)}</td></tr>"
        for k, v in (rep["rules"].get("exam_text") or {}).items()) + "</table>")
    return "".join(out)


def _arr(values) -> np.ndarray:
    return np.array([np.nan if v is None else v for v in values], dtype=float)
