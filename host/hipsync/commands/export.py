"""`hipsync export SESSION --format csv|edf --out PATH`: take a session elsewhere."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", type=int, help="session id (see `hipsync sessions`)")
    p.add_argument("--format", choices=["csv", "edf"], default="csv")
    p.add_argument("--out", default="out/export",
                   help="folder (csv) or file or folder (edf; default: out/export)")


def run(args: argparse.Namespace) -> int:
    from hipsync.export import to_csv, to_edf
    from hipsync.store import open_store

    session = open_store(create=False).load_session(args.session)
    out = Path(args.out)
    if args.format == "csv":
        for path in to_csv(session, out):
            print(path)
    else:
        path = out / f"session_{args.session}.edf" if out.suffix.lower() != ".edf" else out
        print(to_edf(session, path))
    return 0
