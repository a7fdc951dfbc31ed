"""`hipsync replay --emg EMG.csv [--imu IMU.csv] --out DIR`: recorded samples through the firmware.

The samples run through the real device app inside MicroPython (the unix board's fake chips feed
the real drivers, capture and DSP); the frames it produces become DIR/envelope.csv, pelvis.csv,
events.csv and quality.csv. The library is hipsync.replay."""

from __future__ import annotations

import argparse
import sys

from hipsync.cli import EXIT_FAILED, EXIT_OK, CliError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = ("Run recorded EMG (and IMU) samples through the real firmware (the device "
                          "app in MicroPython) and write DIR/envelope.csv, pelvis.csv, events.csv "
                          "and quality.csv; t_s 0 is the first EMG sample.")
    parser.add_argument("--emg", required=True, metavar="EMG.csv",
                        help="t_s plus 1-4 of l_gmed, r_gmed, l_es, r_es in uV, 500-4000 Hz")
    parser.add_argument("--imu", metavar="IMU.csv",
                        help="t_s, acc_x_g, acc_y_g, acc_z_g, gyr_x_dps, gyr_y_dps, gyr_z_dps in the "
                             "sacrum body frame (x anterior, y left, z up), 50-1000 Hz, same time "
                             "base as the EMG (default: a still, upright IMU)")
    parser.add_argument("--out", required=True, metavar="DIR", help="folder for the output CSVs")
    parser.add_argument("--calibrate-first-s", type=float, metavar="S",
                        help="run the standing calibration over the first S seconds (the person "
                             "stands still); default: no calibration, angles of the sensor")
    parser.add_argument("--mains-hz", type=int, choices=(50, 60),
                        help="mains frequency for the notch and the quality check (default: the "
                             "firmware's, 50)")


def run(args: argparse.Namespace) -> int:
    from hipsync.replay import ReplayFailed, ReplayInputError, replay

    def warn(msg: str) -> None:
        print(f"hipsync replay: warning: {msg}", file=sys.stderr)

    try:
        r = replay(args.emg, args.out, imu_path=args.imu, calibrate_first_s=args.calibrate_first_s,
                   mains_hz=args.mains_hz, warn=warn)
    except ReplayInputError as e:
        raise CliError(str(e)) from None
    except ReplayFailed as e:
        raise CliError(str(e), EXIT_FAILED) from None
    imu = f"IMU {r.imu_rate_hz:.6g} Hz" if r.imu_rate_hz is not None else "no IMU (still, upright)"
    print(f"hipsync replay: {r.duration_s:.3f} s of {', '.join(r.channels)} at {r.emg_rate_hz:.6g} Hz, "
          f"{imu}: {r.envelope_samples} envelope and {r.pelvis_samples} pelvis samples, "
          f"{r.events} gait events, {r.status_frames} status frames -> {r.out_dir} "
          f"(firmware run {r.micropython_s:.1f} s)", file=sys.stderr)
    return EXIT_OK
