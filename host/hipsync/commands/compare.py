"""`hipsync compare BEFORE AFTER --out DIR`: before/after of two sessions of one patient
(compare.html + compare.json), each measure's change judged against the between-session variation
(sEMG) or the smallest detectable change (pelvic drop).

Refused, with a one-line message: the same session twice, a session that is not in the store
(exit 2), sessions of two patients (exit 2; no override: the thresholds are within-person), a
session not normalised to its own MVC, an output folder that cannot be written, a session that
cannot be analysed (exit 1)."""

from __future__ import annotations

import argparse
import os

from hipsync.cli import EXIT_FAILED, EXIT_USAGE, CliError

ENV_DEBUG = "HIPSYNC_DEBUG"  # set to 1 to see the traceback of an unexpected error


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("before", type=int, help="session id before (see `hipsync sessions`)")
    p.add_argument("after", type=int, help="session id after, of the same patient")
    p.add_argument("--out", default="out/compare", help="output folder (default: out/compare)")


def run(args: argparse.Namespace) -> int:
    from hipsync.analysis.compare import DifferentPatients, NotMvcNormalised, SameSession
    from hipsync.report.calibration import missing_calibration_message
    from hipsync.report.compare import write_compare
    from hipsync.store import HipsyncDataError, MissingCalibration, open_store

    if args.before == args.after:
        raise CliError(str(SameSession(args.before)), EXIT_USAGE)
    store = open_store(create=False)
    try:
        html, js = write_compare(store, args.before, args.after, args.out)
    except (SameSession, DifferentPatients) as e:
        raise CliError(str(e), EXIT_USAGE) from None
    except NotMvcNormalised as e:
        raise CliError(str(e), EXIT_FAILED) from None
    except MissingCalibration as e:
        raise CliError(missing_calibration_message(store, e), EXIT_FAILED) from None
    except HipsyncDataError:
        raise  # typed, with its message: the CLI prints it (exit 2 for an unknown session)
    except Exception as e:  # noqa: BLE001 - a bug: one line for the user, the trace on request
        if os.environ.get(ENV_DEBUG) == "1":
            raise
        raise CliError(f"could not compare sessions {args.before} and {args.after}: "
                       f"{type(e).__name__}: {e}. This is a bug in hipsync; rerun with "
                       f"{ENV_DEBUG}=1 for the details and report them.", EXIT_FAILED) from None
    print(f"compare: {html}\njson:    {js}")
    _print_findings(js)
    return 0


def _print_findings(json_path) -> None:
    """The sentences that name a change beyond the detectable change, for the terminal."""
    import json

    with open(json_path, encoding="utf-8") as f:
        c = json.load(f)
    lines = [side["sentence"] for sec in c["sections"].values() for side in sec["sides"].values()
             if any(m["beyond_detectable_change"] for m in side["measures"].values())]
    print("\n".join(lines) if lines else "No change beyond the detectable change.")
