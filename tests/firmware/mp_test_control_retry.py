# The control dispatcher's replay entry (idempotent retries), inside MicroPython: a repeated
# token + op + request on the same connection is answered from the last reply without running the
# handler again; anything else runs.
import micropython

from hipwire import commands as cmd
from link.control import PAYLOAD_START, Control


class _Auth:
    def __init__(self, ok=True):
        self.ok = ok

    def is_authenticated(self, conn):
        return self.ok


class _Device:
    """CALIBRATE counts its runs and answers (step, runs); MVC end refuses a second end the way the
    app does (ERR_BAD_ARG once no MVC is open); INFO is open to all."""

    def __init__(self):
        self.runs = 0
        self.mvc_open = False

    def calibrate(self, args, conn):
        self.runs += 1
        step = args[0]
        if step & 0xF0 == cmd.CAL_MVC_BEGIN:
            self.mvc_open = True
        elif step & 0xF0 == cmd.CAL_MVC_END:
            if not self.mvc_open:
                return cmd.ERR_BAD_ARG
            self.mvc_open = False
        return cmd.OK, (step, self.runs)

    def info(self, args, conn):
        self.runs += 1
        return cmd.OK, (0, 1, 0, 0x10, 1000, 100, 4, b"abcdef", 1)


def _control(auth=None, epoch=None):
    dev = _Device()
    handlers = {cmd.OP_CALIBRATE: dev.calibrate, cmd.OP_INFO: dev.info}
    return Control(handlers, auth or _Auth(), connection_epoch=epoch), dev


def _ask(control, frame, conn=1, att=244):
    n = control.handle(frame, conn, att)
    return bytes(control.reply[:n])


def test_a_repeated_command_is_answered_from_the_last_reply_and_runs_once():
    control, dev = _control()
    frame = cmd.encode_command(cmd.OP_CALIBRATE, 9, cmd.CAL_STANDING_END)
    first = _ask(control, frame)
    assert cmd.decode_response(first) == (9, cmd.OP_CALIBRATE, cmd.OK, (cmd.CAL_STANDING_END, 1))
    for _ in range(3):
        assert _ask(control, frame) == first  # byte for byte
    assert dev.runs == 1 and control.executed == 1 and control.replayed == 3
    # the frame arrives as a memoryview of the app's command buffer: the same answer
    buf = bytearray(256)
    buf[:len(frame)] = frame
    assert _ask(control, memoryview(buf)[:len(frame)]) == first and dev.runs == 1


def test_a_new_token_runs_again():
    control, dev = _control()
    a = _ask(control, cmd.encode_command(cmd.OP_CALIBRATE, 1, cmd.CAL_STANDING_BEGIN))
    b = _ask(control, cmd.encode_command(cmd.OP_CALIBRATE, 2, cmd.CAL_STANDING_BEGIN))
    assert cmd.decode_response(a)[3] == (cmd.CAL_STANDING_BEGIN, 1)
    assert cmd.decode_response(b)[:1] == (2,) and cmd.decode_response(b)[3][1] == 2
    assert dev.runs == 2 and control.replayed == 0


def test_the_same_token_with_another_request_is_a_new_command():
    # chosen: run it (a host that restarted may reuse a token); the entry then holds the new one
    control, dev = _control()
    begin = cmd.encode_command(cmd.OP_CALIBRATE, 5, cmd.CAL_MVC_BEGIN + 1)
    end = cmd.encode_command(cmd.OP_CALIBRATE, 5, cmd.CAL_MVC_END + 1)
    info = cmd.encode_command(cmd.OP_INFO, 5)
    _ask(control, begin)
    assert cmd.decode_response(_ask(control, end))[2:] == (cmd.OK, (cmd.CAL_MVC_END + 1, 2))
    assert dev.runs == 2
    _ask(control, info)  # same token, another op: runs too
    assert dev.runs == 3
    # only the last command is kept: the begin frame again is a new run
    _ask(control, begin)
    assert dev.runs == 4 and control.replayed == 0


def test_an_error_status_from_a_handler_is_replayed_too():
    # the second MVC end would be refused by a second run; the repeat gets the first answer
    control, dev = _control()
    _ask(control, cmd.encode_command(cmd.OP_CALIBRATE, 1, cmd.CAL_MVC_BEGIN + 2))
    end = cmd.encode_command(cmd.OP_CALIBRATE, 2, cmd.CAL_MVC_END + 2)
    first = _ask(control, end)
    assert cmd.decode_response(first)[2] == cmd.OK
    assert _ask(control, end) == first and dev.runs == 2
    again = _ask(control, cmd.encode_command(cmd.OP_CALIBRATE, 3, cmd.CAL_MVC_END + 2))
    assert cmd.decode_response(again)[2] == cmd.ERR_BAD_ARG  # a real second end
    assert _ask(control, cmd.encode_command(cmd.OP_CALIBRATE, 3, cmd.CAL_MVC_END + 2)) == again
    assert dev.runs == 3


def test_a_new_connection_clears_the_entry():
    control, dev = _control()
    frame = cmd.encode_command(cmd.OP_CALIBRATE, 7, cmd.CAL_STANDING_BEGIN)
    _ask(control, frame, conn=1)
    _ask(control, frame, conn=1)
    assert dev.runs == 1
    _ask(control, frame, conn=2)  # another connection handle
    assert dev.runs == 2
    control.new_connection()  # the app's connect/disconnect hook
    _ask(control, frame, conn=2)
    assert dev.runs == 3
    # the stack may hand out the same handle again: the connection counter tells them apart
    connections = [1]
    control, dev = _control(epoch=lambda: connections[0])
    _ask(control, frame, conn=1)
    _ask(control, frame, conn=1)
    assert dev.runs == 1
    connections[0] = 2
    _ask(control, frame, conn=1)
    assert dev.runs == 2 and control.replayed == 1


def test_a_repeat_is_still_checked_for_auth_and_refusals_are_not_kept():
    auth = _Auth(True)
    control, dev = _control(auth)
    frame = cmd.encode_command(cmd.OP_CALIBRATE, 3, cmd.CAL_STANDING_BEGIN)
    _ask(control, frame)
    auth.ok = False
    assert cmd.decode_response(_ask(control, frame))[2] == cmd.ERR_AUTH_REQUIRED
    auth.ok = True
    _ask(control, frame)  # the refusal dropped the entry: this is a run
    assert dev.runs == 2
    # a refused command (malformed, unknown op, auth) drops the entry: only the immediately
    # preceding command can be replayed
    _ask(control, b"\x40\x10\x03")
    _ask(control, frame)
    assert dev.runs == 3 and control.replayed == 0


def test_a_replayed_variable_payload_survives_a_clobbered_reply_buffer():
    control = None

    def listing(args, conn):
        reply = control.reply
        reply[PAYLOAD_START] = 1
        for j in range(cmd.SESSION_ENTRY_SIZE):
            reply[PAYLOAD_START + 1 + j] = j
        return cmd.OK, 1 + cmd.SESSION_ENTRY_SIZE

    control = Control({cmd.OP_SESSION_LIST: listing}, _Auth())
    frame = cmd.encode_command(cmd.OP_SESSION_LIST, 4, 0)
    first = _ask(control, frame)
    for i in range(len(control.reply)):
        control.reply[i] = 0xEE
    assert _ask(control, frame) == first
    assert cmd.decode_response(first)[3][0][0] == 0x0100  # id bytes 0, 1


def test_an_mtu_refusal_after_the_handler_ran_is_replayed():
    control, dev = _control()
    frame = cmd.encode_command(cmd.OP_INFO, 8)
    first = _ask(control, frame, att=20)
    assert cmd.decode_response(first)[2] == cmd.ERR_MTU
    assert _ask(control, frame, att=20) == first and dev.runs == 1


def test_a_replay_allocates_nothing():
    control, dev = _control()
    frame = cmd.encode_command(cmd.OP_CALIBRATE, 11, cmd.CAL_STANDING_END)
    n_first = control.handle(frame, 1, 244)
    micropython.heap_lock()
    try:
        for _ in range(50):
            n = control.handle(frame, 1, 244)
    finally:
        micropython.heap_unlock()
    assert n == n_first and dev.runs == 1 and control.replayed == 50
