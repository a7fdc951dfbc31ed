"""`hipsync report SESSION` / `hipsync report --patient ID`: the synergy report (HTML + JSON).

`hipsync report SESSION --calibration-from OTHER` first copies the standing angles and the
plausible MVCs of another session of the same patient into SESSION's stored calibration (for a
home recording without a standing task), then writes the report, which says so on its first
screen."""

from __future__ import annotations

import argparse
import os
import sys

from hipsync.cli import EXIT_FAILED, EXIT_USAGE, CliError

ENV_DEBUG = "HIPSYNC_DEBUG"  # set to 1 to see the traceback of an unexpected error


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", nargs="?", type=int, help="session id (see `hipsync sessions`)")
    p.add_argument("--patient", help="trend across every session of this patient instead")
    p.add_argument("--out", default="out/report", help="output folder (default: out/report)")
    p.add_argument("--calibration-from", type=int, metavar="OTHER_SESSION",
                   help="copy the standing calibration and MVCs of another session of the same "
                        "patient into SESSION first (kept in the store)")


def run(args: argparse.Namespace) -> int:
    from hipsync.report import CalibrationCopyError, findings_text
    from hipsync.report.calibration import missing_calibration_message
    from hipsync.store import HipsyncDataError, MissingCalibration, open_store

    if args.calibration_from is not None and args.session is None:
        raise CliError("--calibration-from needs a SESSION to copy the calibration into")
    if (args.session is None) == (args.patient is None):
        raise CliError("give either a SESSION id or --patient ID")
    store = open_store(create=False)
    try:
        if args.patient is not None:
            from hipsync.report import patient_trend
            html, js = patient_trend(store, args.patient, args.out)
            print(f"trend:  {html}\njson:   {js}")
            return 0
        if args.calibration_from is not None:
            _copy(store, args.session, args.calibration_from)
        html, js = _session_report(store, args.session, args.out)
    except CalibrationCopyError as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except MissingCalibration as e:
        raise CliError(missing_calibration_message(store, e), EXIT_FAILED) from None
    except HipsyncDataError:
        raise  # typed, with its message: the CLI prints it (exit 2 for an unknown session)
    except Exception as e:  # noqa: BLE001 - a bug: one line for the user, the trace on request
        if os.environ.get(ENV_DEBUG) == "1":
            raise
        what = f"session {args.session}" if args.patient is None else f"patient {args.patient}"
        raise CliError(f"could not analyse {what}: {type(e).__name__}: {e}. "
                       f"This is a bug in hipsync; rerun with {ENV_DEBUG}=1 for the details and "
                       f"report them.", EXIT_FAILED) from None
    print(f"report: {html}\njson:   {js}")
    print(findings_text(_load(js)))
    return 0


def _copy(store, session_id: int, from_session_id: int) -> None:
    from hipsync.report import copy_calibration

    c = copy_calibration(store, session_id, from_session_id)
    mvc = ", ".join(ch for ch, v in c.mvc_uv.items() if v is not None) or "none"
    print(f"session {session_id}: calibration copied from session {from_session_id} of "
          f"{c.from_date} (standing angles; MVCs: {mvc})", file=sys.stderr)
    for ch, why in c.mvc_not_copied.items():
        print(f"  MVC of {ch} not copied: {why}", file=sys.stderr)


def _session_report(store, session_id: int, out):
    from hipsync.report import write_report
    return write_report(store, session_id, out)


def _load(path) -> dict:
    import json
    with open(path, encoding="utf-8") as f:
        return json.load(f)
