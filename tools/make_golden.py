"""Regenerates shared/hipwire/golden.json: the golden vectors of every frame type.

Each vector holds the encoder's arguments, the exact bytes (hex) and the decoded fields. The host
tests decode the bytes; the firmware tests (inside MicroPython) re-encode from the arguments and
must produce the same bytes. Run it only when the format changes on purpose, and bump the version."""

from __future__ import annotations

import json
import sys
from array import array
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "shared"))
sys.path.insert(0, str(ROOT / "host"))

from hipsync.protocol import decode, to_json_dict  # noqa: E402
from hipwire import commands as c  # noqa: E402
from hipwire import frames as f  # noqa: E402
from hipwire import records as r  # noqa: E402


def batch_vector(name, ftype, max_len, seq, clock, period, rows):
    flat = array("i", [v for row in rows for v in row])
    buf = bytearray(f.MAX_FRAME)
    n = f.encode_batch(buf, max_len, ftype, seq, clock, period, flat, 0, len(rows), len(rows[0]))
    frame = bytes(buf[:n])
    return {"name": name, "kind": "batch",
            "args": {"frame_type": ftype, "max_len": max_len, "seq": seq, "clock": clock,
                     "period_ticks": period, "samples": list(flat), "n_avail": len(rows),
                     "n_channels": len(rows[0])},
            "hex": frame.hex(), "decoded": to_json_dict(decode(frame))}


def main() -> None:
    vectors = []
    env_rows = [[120 + 7 * k, 80 - 3 * k, 35 + (k % 3), 40 + 300 * (k == 4)] for k in range(12)]
    vectors.append(batch_vector("envelope_12_samples", f.ENVELOPE, 244, 17, 123456, 10, env_rows))
    vectors.append(batch_vector("envelope_min_mtu", f.ENVELOPE, 20, 18, 123576, 10, env_rows))
    vectors.append(batch_vector("envelope_wide_deltas", f.ENVELOPE, 244, 19, 4294967000, 10,
                                [[0, 0, 0, 0], [70000, 5, 0, 0], [0, 200, 0, 0]]))
    pel_rows = [[-312 + 9 * k, 145 - k, -(-1) ** k * 20, 1000 - 50 * k] for k in range(10)]
    vectors.append(batch_vector("pelvis_10_samples", f.PELVIS, 244, 65535, 2000, 10,
                                [row[:3] for row in pel_rows]))
    buf = bytearray(f.MAX_FRAME)
    n = f.encode_event(buf, 20, 987654, f.IC, f.RIGHT, 42)
    vectors.append({"name": "event_ic_right", "kind": "event",
                    "args": {"seq": 20, "clock": 987654, "kind": f.IC, "side": f.RIGHT, "stride": 42},
                    "hex": buf[:n].hex(), "decoded": to_json_dict(decode(bytes(buf[:n])))})
    values = [87, f.STATE_STREAMING | f.STATE_CALIBRATED, 3910, 0, 1, 4, 0, 3, 0, 12, 2048, 5, 4,
              6, 3, 0, 1]
    for name, max_len, first in (("status_all_pages", 244, 0), ("status_min_mtu_page2", 20, 2)):
        n = f.encode_status(buf, max_len, 21, 1000, first, array("i", values))
        vectors.append({"name": name, "kind": "status",
                        "args": {"max_len": max_len, "seq": 21, "clock": 1000, "first_page": first,
                                 "values": values},
                        "hex": buf[:n].hex(), "decoded": to_json_dict(decode(bytes(buf[:n])))})
    for name, op, token, args in (("cmd_stream_start_raw", c.OP_STREAM_START, 3, [c.MODE_RAW]),
                                  ("cmd_session_read", c.OP_SESSION_READ, 9, [2, 4096, 65536]),
                                  ("cmd_time_sync", c.OP_TIME_SYNC, 10, [1763700000123]),
                                  ("cmd_info", c.OP_INFO, 1, []),
                                  ("cmd_set_mvc", c.OP_SET_MVC, 11, [412, 388, 0, 164]),
                                  ("cmd_task_step_down_left", c.OP_TASK, 14,
                                   [1 + c.EXAM_TASKS.index("step_down"), f.LEFT, 5]),
                                  ("cmd_task_stop", c.OP_TASK, 15, [c.TASK_NONE, f.LEFT, 0])):
        vectors.append({"name": name, "kind": "command",
                        "args": {"op": op, "token": token, "values": args},
                        "hex": c.encode_command(op, token, *args).hex(),
                        "decoded": {"token": token, "op": op, "values": args}})
    for name, op, token, status, args in (
            ("resp_info", c.OP_INFO, 1, c.OK, [0, 1, 0, f.VERSION, 1000, 100, 4, "a1b2c3d4e5f6", 1]),
            ("resp_auth_required", c.OP_STREAM_START, 3, c.ERR_AUTH_REQUIRED, []),
            ("resp_time_sync", c.OP_TIME_SYNC, 10, c.OK, [5000]),
            ("resp_cal_info", c.OP_CAL_INFO, 12, c.OK,
             [c.CAL_HAS_STANDING, 1764600000, 412, 388, 0, 164, 1764600300]),
            ("resp_rec_status", c.OP_REC_STATUS, 13, c.OK, [c.REC_RECORDING, 7, 95, 91234, 13800]),
            ("resp_task", c.OP_TASK, 14, c.OK, [2461000])):
        packed = [bytes.fromhex(a) if isinstance(a, str) else a for a in args]
        n = c.encode_response(buf, token, op, status, *packed)
        vectors.append({"name": name, "kind": "response",
                        "args": {"op": op, "token": token, "status": status, "values": args},
                        "hex": buf[:n].hex(),
                        "decoded": {"token": token, "op": op, "status": status, "values": args}})
    n = c.encode_chunk_header(buf, 2, 4096)
    buf[n:n + 5] = b"\xa5\x02\x00hi"
    n = f.seal(buf, n + 5)
    vectors.append({"name": "sync_chunk", "kind": "chunk",
                    "args": {"session": 2, "offset": 4096, "data": "a5020068 69".replace(" ", "")},
                    "hex": buf[:n].hex(),
                    "decoded": {"session": 2, "offset": 4096, "data": "a502006869"}})
    frame = bytes.fromhex(vectors[4]["hex"])
    out = bytearray(r.record_size(len(frame)))
    n = r.encode_record(out, frame, len(frame))
    vectors.append({"name": "record_of_event", "kind": "record", "args": {"frame": frame.hex()},
                    "hex": out[:n].hex(), "decoded": {"frame": frame.hex()}})
    # the calibration record a recording starts with: kind "record" (the flash record around it),
    # with the fields in args/decoded["calibration"] (test_sync.py, mp_test_flashlog.py)
    fields = {"clock": 73500, "flags": r.CAL_HAS_STANDING, "standing_unix": 1764600000,
              "mvc_uv": [412, 388, 0, 164], "mvc_unix": 1764600300}
    cal = bytearray(r.CALIBRATION_SIZE)
    n = r.encode_calibration(cal, fields["clock"], fields["flags"], fields["standing_unix"],
                             fields["mvc_uv"], fields["mvc_unix"])
    out = bytearray(r.record_size(n))
    m = r.encode_record(out, cal, n)
    vectors.append({"name": "record_of_calibration", "kind": "record",
                    "args": {"frame": cal[:n].hex(), "calibration": fields},
                    "hex": out[:m].hex(), "decoded": {"frame": cal[:n].hex(), "calibration": fields}})
    # REP (added after the others: record_of_event above takes vectors[4]): a step-down repetition
    # of the left leg, lowest point 0.7 s and end 1.6 s after its start, 62 mm deep, shallow; and
    # a single-leg stance hold of the right leg ended by the task's end (a clock past 2^31 too)
    for name, args in (("rep_step_down_left", {
            "seq": 22, "clock": 2461000 + 3250, "task": 1 + c.EXAM_TASKS.index("step_down"),
            "side": f.LEFT, "index": 2, "flags": f.REP_SHALLOW, "low_ticks": 700,
            "end_ticks": 1600, "depth": 62}),
            ("rep_stance_right_truncated", {
                "seq": 65535, "clock": 3000000000, "task": 1 + c.EXAM_TASKS.index("single_leg_stance"),
                "side": f.RIGHT, "index": 0, "flags": f.REP_TRUNCATED, "low_ticks": 12400,
                "end_ticks": 30000, "depth": -135})):
        n = f.encode_rep(buf, args["seq"], args["clock"], args["task"], args["side"],
                         args["index"], args["flags"], args["low_ticks"], args["end_ticks"],
                         args["depth"])
        vectors.append({"name": name, "kind": "rep", "args": args, "hex": buf[:n].hex(),
                        "decoded": to_json_dict(decode(bytes(buf[:n])))})
    text = json.dumps({"version": f.VERSION, "vectors": vectors}, indent=1, sort_keys=True)
    (ROOT / "shared" / "hipwire" / "golden.json").write_text(text + "\n")
    print(f"wrote {len(vectors)} vectors")


if __name__ == "__main__":
    main()
