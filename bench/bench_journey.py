"""The clinic journey through the CLI, as a therapist types it, against `hipsync virtual-device`
running in a second process (the real firmware in the MicroPython unix port, simulated chips and
radio, a simulated patient who follows the prompts). stdin is not a terminal, so `stream` runs the
protocol unattended with printed countdowns.

journey_clinic_1x_wall_s: `hipsync stream --protocol clinic --walk-s 90` against a device at 1x
  (`--idle stand`), from launching the command to its exit; `nan` if it failed (reason on stderr).
journey_clinic_1x_device_s: the device time the stored tasks cover (last t_end_s minus first
  t_start_s), so the ratio of the two shows the host's overhead.
session_loss_<pct>_completed / session_loss_<pct>_wall_s: a clinic session (`--walk-s 30`) against
  a device at 4x whose radio loses each notification with probability <pct>/100; completed means
  exit 0 and the store holds the accepted tasks standing, mvc_*, walk. Loss goes up until a run
  fails.
session_loss_survived_fraction: the highest loss probability at which the session still completed
  (0 if none did).

Run alone with `--only 1x` or `--only loss`, and `--log-dir DIR` to keep every command's output."""

from __future__ import annotations

import argparse
import math
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from hipsync.sim.terminal import VirtualDeviceCommand

LOSSES = (0.05, 0.10, 0.15, 0.20, 0.30, 0.40)
LOSS_SEED = 8
REQUIRED_TASKS = {"standing", "mvc_l_gmed", "mvc_r_gmed", "mvc_l_es", "mvc_r_es", "walk"}
STREAM_TIMEOUT_S = 600.0


class VirtualDevice(VirtualDeviceCommand):
    """The second terminal's `hipsync virtual-device`, timing each command run against it."""

    def timed(self, *args: str, timeout: float = STREAM_TIMEOUT_S
              ) -> tuple[subprocess.CompletedProcess | None, float, str]:
        """Runs `hipsync <args>` against this device; (process or None on timeout, wall s, output)."""
        t0 = time.monotonic()
        try:
            proc = self.hipsync(*args, timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            return None, time.monotonic() - t0, _text(exc.stdout) + _text(exc.stderr)
        return proc, time.monotonic() - t0, proc.stdout + proc.stderr


def _text(data: str | bytes | None) -> str:
    if data is None:
        return ""
    return data.decode(errors="replace") if isinstance(data, bytes) else data


def _tasks(store: Path) -> list:
    from hipsync.store import open_store
    return list(open_store(store, create=False).load_session(1).tasks)


def _tail(text: str, n: int = 30) -> str:
    return "\n".join(text.splitlines()[-n:])


def _keep(log_dir: Path | None, name: str, text: str) -> None:
    if log_dir is not None:
        log_dir.mkdir(parents=True, exist_ok=True)
        (log_dir / name).write_text(text)


def clinic_run(tmp: Path, device_args: list[str], walk_s: float, log_dir: Path | None,
               tag: str) -> tuple[bool, float, list, str]:
    """One clinic session; (completed, wall s, stored tasks, reason if not)."""
    try:
        dev = VirtualDevice(tmp, *device_args)
    except RuntimeError as exc:
        return False, math.nan, [], str(exc)
    store = tmp / "s.sqlite3"
    try:
        proc, wall, out = dev.timed("--store", str(store), "stream", "--patient", "P",
                                    "--protocol", "clinic", "--walk-s", f"{walk_s:g}")
    finally:
        dev.close()
    _keep(log_dir, f"{tag}_stream.txt", out)
    _keep(log_dir, f"{tag}_device.txt", "\n".join(dev.lines))
    if proc is None:
        return False, wall, [], (f"stream timed out after {STREAM_TIMEOUT_S:g} s; last lines:\n"
                                 + _tail(out))
    if proc.returncode != 0:
        return False, wall, [], f"stream exited {proc.returncode}; last lines:\n" + _tail(out)
    try:
        tasks = _tasks(store)
    except Exception as exc:  # noqa: BLE001 - any failure to read the store is a failed session
        return False, wall, [], f"store unreadable ({exc!r}); last lines:\n" + _tail(out)
    missing = REQUIRED_TASKS - {t.name for t in tasks}
    if missing:
        return False, wall, tasks, (f"stream exited 0 but the store lacks {sorted(missing)} "
                                    f"(has {[t.name for t in tasks]}); last lines:\n" + _tail(out))
    return True, wall, tasks, ""


def bench_1x(log_dir: Path | None) -> None:
    with tempfile.TemporaryDirectory(prefix="hipsync-bench-journey-") as tmp:
        ok, wall, tasks, why = clinic_run(Path(tmp), ["--speed", "1", "--idle", "stand"], 90.0,
                                          log_dir, "clinic_1x")
    if not ok:
        print(f"journey_clinic_1x failed: {why}", file=sys.stderr)
        print("BENCH journey_clinic_1x_wall_s nan s", flush=True)
        print("BENCH journey_clinic_1x_device_s nan s", flush=True)
        return
    device_s = max(t.t_end_s for t in tasks) - min(t.t_start_s for t in tasks)
    print(f"BENCH journey_clinic_1x_wall_s {wall:.1f} s", flush=True)
    print(f"BENCH journey_clinic_1x_device_s {device_s:.1f} s", flush=True)


def bench_loss(log_dir: Path | None) -> None:
    survived = 0.0
    for loss in LOSSES:
        pct = round(loss * 100)
        with tempfile.TemporaryDirectory(prefix=f"hipsync-bench-loss{pct}-") as tmp:
            ok, wall, _tasks_, why = clinic_run(
                Path(tmp), ["--speed", "4", "--idle", "stand", "--loss", f"{loss:g}",
                            "--seed", str(LOSS_SEED)], 30.0, log_dir, f"loss_{pct:02d}")
        print(f"BENCH session_loss_{pct:02d}_completed {int(ok)} bool", flush=True)
        print(f"BENCH session_loss_{pct:02d}_wall_s {wall:.1f} s", flush=True)
        if not ok:
            print(f"session at loss {loss:g} failed: {why}", file=sys.stderr)
            break
        survived = loss
    print(f"BENCH session_loss_survived_fraction {survived:g} fraction", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", choices=("1x", "loss"))
    ap.add_argument("--log-dir", type=Path, help="keep each command's output here")
    args = ap.parse_args()
    if args.only in (None, "1x"):
        bench_1x(args.log_dir)
    if args.only in (None, "loss"):
        bench_loss(args.log_dir)


if __name__ == "__main__":
    main()
