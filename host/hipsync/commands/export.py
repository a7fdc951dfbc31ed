"""`hipsync export SESSION --format csv|edf|bdf --out PATH`: take a session elsewhere.

csv: one table per file in the --out folder, each with a header row and units in the column
names, device time in seconds: session_<id>_envelope.csv, _pelvis.csv, _events.csv, _reps.csv
(exam repetitions the device found), _tasks.csv, _status.csv and _strides.csv (per-stride
results of the analysis; left out, with the reason on stderr, when the session cannot be
analysed). An unknown stride is an empty cell.
edf: EDF+ with every sample exactly as stored (envelope 1 uV, pelvis 0.01 deg per digit), each
stream on its own time base (its offset against the file start is an annotation), lost samples
annotated "data gap", gait events and tasks as annotations (hipsync.export.edf).
bdf: the same as BDF+ (24-bit), for envelopes beyond EDF's 32767 uV.

Paths written go to stdout, one a line; notes and errors to stderr."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from hipsync.cli import CliError

_FORMATS = ("csv", "edf", "bdf")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.description = __doc__.split("\n\n", 1)[1]  # what each format writes
    p.formatter_class = argparse.RawDescriptionHelpFormatter
    p.add_argument("session", type=int, help="session id (see `hipsync sessions`)")
    p.add_argument("--format", choices=_FORMATS, default="csv",
                   help="csv: a folder of tables (envelope, pelvis, events, tasks, status, "
                        "per-stride results), one header row each, unknown stride = empty cell; "
                        "edf: EDF+ with exact samples, each stream on its own time base, gaps and "
                        "events as annotations; bdf: the same in 24-bit BDF+ (default: csv)")
    p.add_argument("--out", default="out/export",
                   help="folder (csv), or .edf/.bdf file or folder (edf, bdf) "
                        "(default: out/export)")


def run(args: argparse.Namespace) -> int:
    from hipsync.export import to_csv, to_edf
    from hipsync.store import open_store

    if args.format not in _FORMATS:  # argparse refuses it first; kept for callers of run()
        raise CliError(f"--format must be one of {', '.join(_FORMATS)}, not {args.format!r}")
    out = Path(args.out)
    ext = f".{args.format}"
    if args.format != "csv" and out.suffix.lower() in (".edf", ".bdf") and out.suffix.lower() != ext:
        raise CliError(f"--out {out} ends in {out.suffix} but --format is {args.format}")
    store = open_store(create=False)
    try:
        session = store.load_session(args.session)
    finally:
        store.close()
    if args.format == "csv":
        result = to_csv(session, out, prefix=f"session_{args.session}_")
        for path in result:
            print(path)
        for note in result.notes:
            print(f"hipsync export: {note}", file=sys.stderr)
    else:
        path = out if out.suffix.lower() == ext else out / f"session_{args.session}{ext}"
        print(to_edf(session, path, bdf=args.format == "bdf"))
    return 0
