"""`hipsync stream`: live view in the terminal, saving to the session store as it goes.

Shows per muscle the envelope (uV), pelvic obliquity, the stride count, packet loss, signal
quality and battery. Ctrl-C ends the session cleanly; everything received is already stored."""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import time
from collections import deque
from pathlib import Path

from hipsync.cli import EXIT_FAILED, CliError

_BAR = 30


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--patient", required=True, help="pseudonymous patient code, e.g. P001")
    p.add_argument("--address", help="device address (default: the strongest one found)")
    p.add_argument("--duration", type=float, default=0.0,
                   help="stop after this many seconds of device time (default: until Ctrl-C)")
    p.add_argument("--protocol", choices=["none", "clinic", "exam"], default="none",
                   help="clinic: prompt standing calibration, MVC per muscle, then walking; exam: "
                        "the same with the single-leg tasks on each side before the walk")
    p.add_argument("--walk-s", type=float, default=120.0, help="walking time in the protocol")
    p.add_argument("--capture", type=Path, help="also write the raw notifications to this file")
    p.add_argument("--lsl", action="store_true",
                   help="also publish envelopes, pelvis angles and events as Lab Streaming Layer "
                        "outlets (hipsync-envelope, hipsync-pelvis, hipsync-events)")


def run(args: argparse.Namespace) -> int:
    if not (math.isfinite(args.duration) and math.isfinite(args.walk_s)) \
            or args.duration < 0 or args.walk_s <= 0:
        raise CliError("--duration must be >= 0 and --walk-s > 0")
    if args.duration and args.protocol != "none":
        raise CliError(f"--duration does not apply to --protocol {args.protocol} (its steps have "
                       f"their own times; set the walk with --walk-s)")
    try:
        return asyncio.run(_stream(args))
    except KeyboardInterrupt:
        return 130


class Dashboard:
    def __init__(self, out=sys.stdout):
        self.out = out
        self.env = [0.0] * 4
        self.obliquity = 0.0
        self.strides = 0
        self.status = None
        self.last_draw = 0.0
        self.prompt = ""
        self.messages: deque[str] = deque(maxlen=8)  # the guide's lines, under the live view

    def on_frame(self, received) -> None:
        from hipsync.protocol import Envelope, Event, Pelvis, Status

        frame = received.frame
        if isinstance(frame, Envelope):
            self.env = [ch[-1] for ch in frame.channels]
        elif isinstance(frame, Pelvis):
            self.obliquity = frame.channels[0][-1] / 100
        elif isinstance(frame, Event) and frame.kind == "IC":
            self.strides += 1 if frame.side == "L" else 0
        elif isinstance(frame, Status):
            self.status = frame

    def draw(self, session) -> None:
        from hipwire.units import EMG_CHANNELS

        now = time.monotonic()
        # a terminal redraws 4 times a second; a log (not a terminal) gets one line a second
        if now - self.last_draw < (0.25 if self.out.isatty() else 1.0):
            return
        self.last_draw = now
        stats = session.assembler.stats
        lines = [f"device time {session.device_time_s:7.1f} s   strides {self.strides}   "
                 f"loss {100 * stats.loss_fraction:5.2f} %   frames {stats.frames_received}"]
        scale = max(200.0, max(self.env))
        for name, v in zip(EMG_CHANNELS, self.env):
            n = int(_BAR * min(v, scale) / scale)
            lines.append(f"  {name:<7} {v:7.0f} uV |{'#' * n}{' ' * (_BAR - n)}|")
        pos = int(_BAR / 2 + max(-_BAR / 2, min(_BAR / 2 - 1, self.obliquity)))
        lines.append(f"  obliquity {self.obliquity:+6.2f} deg  "
                     f"|{' ' * pos}*{' ' * (_BAR - pos - 1)}|  (+ = right side low)")
        if self.status is not None:
            f = self.status.fields
            quality = self.status.quality_names()
            if "battery_pct" in f:
                lines.append(f"  battery {f['battery_pct']} %  quality "
                             + ", ".join(f"{n}: {'/'.join(q) or 'ok'}"
                                         for n, q in zip(EMG_CHANNELS, quality or [[]] * 4)))
        if session.writer.error is not None:
            # first on a log line too: the one thing the user must act on
            lines.insert(0, f"STORE NOT WRITABLE ({session.writer.error}): "
                            f"{session.writer.rows_held} frames held in memory; free disk space")
        lines += [f"  {m}" for m in self.messages]
        self.out.write("\x1b[H\x1b[J" + "\n".join(lines) + "\n" if self.out.isatty()
                       else lines[0] + "\n")
        self.out.flush()


def _with_lsl(on_frame, metadata):
    from hipsync.export import lsl

    ok, reason = lsl.available()
    if not ok:
        raise CliError(f"--lsl: {reason}")
    outlets = lsl.LslOutlets(metadata)
    print(f"LSL outlets: {', '.join(outlets.names.values())}")

    def both(received) -> None:
        on_frame(received)
        outlets.push(received)

    return both


async def _stream(args: argparse.Namespace) -> int:
    from hipsync.acquire import LiveSession
    from hipsync.commands._device import authenticator, connected, virtual_selected, voice
    from hipsync.commands.demo import device_filters
    from hipsync.guide import PROTOCOLS, Guide, TerminalUI
    from hipsync.report import SIMULATED_KEY
    from hipsync.store import open_store
    from hipwire import commands

    store = open_store()
    dash = Dashboard()
    ui = TerminalUI()
    if dash.out.isatty():
        ui.sink = dash.messages.append
    async with connected(args.address) as link:
        _, info = await link.command(commands.OP_INFO)
        filters = device_filters()
        if virtual_selected():
            filters[SIMULATED_KEY] = "virtual device (hipsync --virtual)"
        session_id = store.create_session(args.patient, link.address,
                                          firmware_version="%d.%d.%d" % info[:3],
                                          filters=filters, normalisation="MVC")
        on_frame = dash.on_frame
        if args.lsl:
            on_frame = _with_lsl(on_frame, store.load_session(session_id).metadata)
        session = LiveSession(link, store, session_id, capture_path=args.capture,
                              on_frame=on_frame, authenticate=authenticator())
        await session.start()
        print(f"session {session_id}: recording to {store.path} (device time "
              f"{session.device_time_s:.1f} s)", flush=True)

        async def redraw() -> None:
            while True:
                if (dash.out.isatty() and not ui.waiting) or args.protocol == "none":
                    dash.draw(session)
                await asyncio.sleep(0.25)

        painter = asyncio.create_task(redraw())
        try:
            if args.protocol in PROTOCOLS:
                guide = Guide(session, ui, say=voice())
                await guide.run(PROTOCOLS[args.protocol](args.walk_s))
            elif args.duration:
                await session.wait_device_time(session.device_time_s + args.duration)
            else:
                await asyncio.Event().wait()
        except (KeyboardInterrupt, asyncio.CancelledError):
            pass
        finally:
            painter.cancel()
            result = await session.stop()
    if result.store_error is not None and (result.rows_unwritten or result.marks_unwritten):
        capture = (f" Every frame received is in the capture {args.capture}." if args.capture
                   else "")
        raise CliError(
            f"session {session_id}: the store {store.path} could not be written since device "
            f"time {result.store_failed_at_s:.1f} s ({result.store_error}): "
            f"{result.frames_stored - result.rows_unwritten} frames are stored, "
            f"{result.rows_unwritten} frames and {result.marks_unwritten} task marks are not."
            f"{capture} Free space on its disk before the next session.", EXIT_FAILED)
    if result.store_error is not None:
        print(f"session {session_id}: the store was full for a while (from device time "
              f"{result.store_failed_at_s:.1f} s); everything held meanwhile was written")
    print(f"session {session_id}: {result.frames_stored} frames stored, "
          f"{result.link_stats.get('frames_lost', 0)} lost, {result.reconnects} reconnects")
    if args.protocol != "none":
        print(_findings(store, session_id))
    return 0


def _findings(store, session_id: int) -> str:
    """One or two lines of what the session shows, or why it cannot be reported yet."""
    from hipsync.report import build_report, findings_text
    from hipsync.store import HipsyncDataError

    try:
        return findings_text(build_report(store.load_session(session_id)))
    except HipsyncDataError as e:
        return f"no findings: {e}"
