"""The whole device app in the MicroPython unix port (bench/mp_bench_app.py): 4 EMG channels at 1 kHz
through the real ADS1294R driver and DRDY capture from the fake chip, the IMU at 100 Hz through the
real ICM-42688-P driver and FIFO capture, envelopes, signal quality, pelvis angles, gait events,
framing and the STATUS frame, built as firmware/app.py main() builds it. The fake chips replay 70 s of
a simulated walk (host/hipsync/sim), so the gait detector finds real strides. 60 s of device time are
measured after a 3 s warm-up, in 50 ms steps (the app's processing period).

firmware_rtf: device time / CPU time of the loop (fake chips + app). CPU time, not wall time, so
  that other load on a shared machine does not count: the process's CPU time (os.wait4) for 60 s of
  device time less that for 10 s (start-up and warm-up cancel); best of 7 rounds.
firmware_rtf_excluding_fake_chips: the same for the app's step alone (clock.advance, where the fake
  chips convert and raise DRDY, left out): firmware_rtf divided by the step's share of the loop's
  wall time (ticks_us inside the run, same round). The step still calls the unix
  board's Python SPI bus, chip-select pin and pulse counter (C on the ESP32) and through them the
  fake IMU's FIFO; firmware_rtf_excluding_fake_board also leaves that share out (measured in a
  separate instrumented run as a fraction of the step's time, and taken off the step's share).
firmware_drdy_handler_us: the DRDY IRQ handler's own time per EMG sample (frame read, 24-bit decode,
  ring store), its bus calls (pulse counter, chip select, SPI: C on the ESP32) left out; the median
  of paired rounds within a run, lowest of the runs (mp_bench_app.py DRDY_US). It runs 1000 times per device second.
firmware_rtf_device_code: device seconds per CPU second of firmware code only: the app's step
  (capture drains, DSP, framing, status, radio queue) without the fake board's share, plus the DRDY
  handler 1000 times per device second. The fake chips' own Python (conversions, FIFO, feed
  reading, fake SPI transfers, fake pins and counters) is left out. This is the figure that scales to
  the ESP32 (divide by 50-100, docs/REFERENCES.md): it is what the device's CPU has to do.
firmware_alloc_bytes_per_s: micropython.mem_total() growth inside the app's step per device second,
  less what the fake board allocated inside it. mem_total counts every heap allocation, including
  the bytecode frames MicroPython puts on the heap (and frees on return) for functions whose state
  exceeds 11 words; micropython.heap_lock() does not see those, as the VM then falls back to the C
  stack. firmware_unfreed_alloc_bytes_per_s: mem_current() growth, i.e. what the GC must collect.
firmware_heap_kb: gc.mem_alloc() after the app is built and started and gc.collect() ran, everything
  in the process included (interpreter, fake chips, fake radio module) except the bytecode: the
  firmware runs as deployed, imported from a ROMFS image of the deploy set (tools/device.py; the
  frozen build, firmware/manifest.py, keeps bytecode in flash the same way), mounted from a buffer
  that stands in for the flash and is left out. 64-bit unix port: object slots and pointers are
  8 bytes, 4 on the ESP32, so object figures are upper bounds there (buffers are the same size);
  the _32bit figures have the ESP32's sizes.
  firmware_heap_excluding_fakes_kb leaves out what was allocated before the firmware's modules were
  imported (interpreter start-up, fake chips, their feed buffers, the unix board's clock and radio
  modules). firmware_heap_module_objects_kb: what importing the firmware's modules from the image
  left on the heap (module dicts, function and class objects, code descriptors, module tables).
  firmware_heap_app_objects_kb: what building and starting the app allocated (buffers, state).
The timed runs ("clean") make no gc.mem_alloc() call: it scans the heap's allocation table (about
50 us each here, more than a 10 ms step of the app), and with four per step in the loop it made up
most of the CPU time that firmware_rtf and firmware_rtf_excluding_fake_chips reported. The heap and
allocation figures come from the instrumented ("fakebus") run, outside its timed windows.
The ESP32-S3 runs MicroPython bytecode roughly 50-100x slower than this machine (MicroPython's
tests/perf_bench; docs/REFERENCES.md).

The binary is micropython_binary() (HIPSYNC_MICROPYTHON chooses it), the ROMFS image is built for its
native arch (read from the binary). On a 32-bit binary (tools/build_micropython32.py: 4-byte
pointers and object slots and small ints below 2^30, as on the ESP32-S3) every name ends in _32bit;
bench/run.py runs this script on both when the 32-bit build is there. The 32-bit speed figures are
this machine's x86 code in 32-bit mode, no nearer the Xtensa cores than the 64-bit ones."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "tests"))
sys.path.insert(0, str(HERE.parent / "tools"))

import device  # noqa: E402

from hipsync.sim import PatientConfig, scenario  # noqa: E402
from hipsync.sim import tasks as T  # noqa: E402
from micropython_port import DEFAULT_HEAP, micropython_binary, micropython_native_arch, micropython_path  # noqa: E402

SCRIPT = HERE / "mp_bench_app.py"
MEASURE_S = 60
SHORT_S = 10
RUNS = 7


def run_app(feed: Path, seconds: int, mode: str, workdir: Path, rom: Path) -> dict[str, list[float]]:
    """Run mp_bench_app.py; its KEY value lines as a dict, plus CPU_S: the process's CPU time."""
    env = dict(os.environ)
    env["MICROPYPATH"] = micropython_path()
    fs = Path(tempfile.mkdtemp(prefix="fs-", dir=workdir))  # the device's flash log lands here
    with tempfile.TemporaryFile("w+") as out_file:
        # the image stands in for flash: the heap gets its size on top, so that the app has the same
        # free heap (and the same GC rhythm) as without it
        heap_kb = int(DEFAULT_HEAP.rstrip("k")) + -(-rom.stat().st_size // 1024)
        proc = subprocess.Popen([micropython_binary(), "-X", f"heapsize={heap_kb}k",
                                 str(SCRIPT), str(feed), str(seconds), mode, str(rom)],
                                stdout=out_file, stderr=subprocess.STDOUT, env=env, cwd=fs)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        out_file.seek(0)
        text = out_file.read()
    if proc.returncode != 0:
        raise RuntimeError(f"mp_bench_app.py failed:\n{text}")
    out: dict[str, list[float]] = {"CPU_S": [usage.ru_utime + usage.ru_stime]}
    for line in text.splitlines():
        key, *values = line.split()
        out[key] = [float(v) for v in values]
    return out


def name_suffix() -> str:
    """"_32bit" when the binary is a 32-bit port (its figures are named apart), else ""."""
    proc = subprocess.run([micropython_binary(), "-c", "import sys; print(sys.maxsize)"],
                          capture_output=True, text=True, timeout=30, check=True)
    return "_32bit" if int(proc.stdout.split()[-1]) < 2**32 else ""


def main() -> None:
    suffix = name_suffix()
    with tempfile.TemporaryDirectory(prefix="hipsync-bench-fw-") as tmp:
        work = Path(tmp)
        scen = scenario.build(PatientConfig(seed=5), work / "patient",
                              tasks=[T.rest(2.0), T.walking(MEASURE_S + 10.0)])
        rom = work / "hipsync.romfs"  # the firmware as deployed: bytecode in (stand-in) flash
        rom.write_bytes(device.romfs_image(device.deploy_set(), march=micropython_native_arch()))
        rounds = [(run_app(scen.feed_path, MEASURE_S, "clean", work, rom),
                   run_app(scen.feed_path, SHORT_S, "clean", work, rom)) for _ in range(RUNS)]
        probe = run_app(scen.feed_path, MEASURE_S, "fakebus", work, rom)
    first = rounds[0][0]
    if first["LOST"] != [0.0, 0.0]:
        raise RuntimeError(f"samples lost during the benchmark: {first['LOST']}")
    if first["EVENT_FRAMES_MOD256"][0] == 0:
        raise RuntimeError("no gait event frames: the feed did not exercise the gait detector")
    device_s = first["DEVICE_S"][0]
    # CPU seconds per device second: the long run less the short one (start-up, imports and
    # warm-up cancel), so other load on the machine does not count; best round
    cpu_per_s, chain_fraction = min(
        ((long["CPU_S"][0] - short["CPU_S"][0]) / (MEASURE_S - SHORT_S),
         long["CHAIN_US"][0] / long["WALL_US"][0]) for long, short in rounds)
    # share of the step spent in the fake board, from the instrumented run (its wrapper's own cost
    # per call, measured on a no-op, taken out of the step first)
    probe_chain = probe["CHAIN_US"][0] - probe["FAKEBUS_CALLS"][0] * probe["WRAP_US"][0]
    fake_share = probe["FAKEBUS_US"][0] / probe_chain
    alloc = probe["ALLOC"][0] - probe["FAKEBUS_ALLOC"][0]
    heap = first["HEAP_ALLOC"][0]
    fakes = first["HEAP_FAKES"][0]
    rtf = 1 / cpu_per_s
    step_own_rtf = rtf / (chain_fraction * (1 - fake_share))
    drdy_us = min(long["DRDY_US"][0] for long, _ in rounds)
    # CPU seconds per device second: the step's own share plus 1000 handler calls
    device_code_s = 1 / step_own_rtf + drdy_us * 1e-6 * 1000
    print(f"BENCH firmware_rtf{suffix} {rtf:.1f} x")
    print(f"BENCH firmware_rtf_excluding_fake_chips{suffix} {rtf / chain_fraction:.1f} x")
    print(f"BENCH firmware_rtf_excluding_fake_board{suffix} {step_own_rtf:.1f} x")
    print(f"BENCH firmware_drdy_handler_us{suffix} {drdy_us:.2f} us")
    print(f"BENCH firmware_rtf_device_code{suffix} {1 / device_code_s:.1f} x")
    # heap bytes the steady-state sample path takes (it runs heap-locked: any would raise)
    print(f"BENCH firmware_alloc_bytes_per_s{suffix} {probe['HEAP_GROWN'][0] / device_s:.0f} B/s")
    # what micropython.mem_total() counts in a processing period: call frames MicroPython tries on the
    # heap first (kept on the C stack while the heap is locked), plus the once-a-second status path
    print(f"BENCH firmware_transient_alloc_attempt_bytes_per_s{suffix} {alloc / device_s:.0f} B/s")
    print(f"BENCH firmware_unfreed_alloc_bytes_per_s{suffix} {probe['UNFREED'][0] / device_s:.0f} B/s")
    print(f"BENCH firmware_heap_kb{suffix} {heap / 1024:.1f} kB")
    print(f"BENCH firmware_heap_excluding_fakes_kb{suffix} {(heap - fakes) / 1024:.1f} kB")
    print(f"BENCH firmware_heap_module_objects_kb{suffix} {first['HEAP_IMPORTS'][0] / 1024:.1f} kB")
    print(f"BENCH firmware_heap_app_objects_kb{suffix} "
          f"{(heap - fakes - first['HEAP_IMPORTS'][0]) / 1024:.1f} kB")


if __name__ == "__main__":
    main()
