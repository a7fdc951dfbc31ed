"""`hipsync sessions`: what the store holds."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient", help="only this patient's sessions")


def run(args: argparse.Namespace) -> int:
    from hipsync.store import open_store

    store = open_store(create=False)
    rows = store.list_sessions()
    if args.patient:
        rows = [r for r in rows if r["patient_id"] == args.patient]
    if not rows:
        print("no sessions")
        return 0
    print(f"{'id':>4}  {'patient':<12} {'device':<18} {'started':<26} batches")
    for r in rows:
        print(f"{r['session_id']:>4}  {r['patient_id']:<12} {r['device_id']:<18} {r['started_at']:<26} "
              f"{r['n_batches']}")
    return 0
