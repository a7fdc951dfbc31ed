"""`hipsync report SESSION` / `hipsync report --patient ID`: the synergy report (HTML + JSON)."""

from __future__ import annotations

import argparse

from hipsync.cli import CliError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("session", nargs="?", type=int, help="session id (see `hipsync sessions`)")
    p.add_argument("--patient", help="trend across every session of this patient instead")
    p.add_argument("--out", default="out/report", help="output folder (default: out/report)")


def run(args: argparse.Namespace) -> int:
    from hipsync.report import patient_trend, write_report
    from hipsync.store import open_store

    if (args.session is None) == (args.patient is None):
        raise CliError("give either a SESSION id or --patient ID")
    store = open_store(create=False)
    if args.patient is not None:
        html, js = patient_trend(store, args.patient, args.out)
    else:
        html, js = write_report(store, args.session, args.out)
    print(f"report: {html}\njson:   {js}")
    return 0
