# The control characteristic's dispatcher: every command gets exactly one response with a status,
# whatever bytes arrive. Handlers never see malformed input and never need to check auth.
from micropython import const

from hipwire import commands as cmd
from hipwire.frames import CRC_SIZE, FrameError, crc16

_REPLY_SIZE = const(256)
_PAYLOAD_START = const(5)  # cmd.RESPONSE_HEADER_SIZE


class Control:
    """handlers: {op: fn(args, conn) -> status | (status, values) | (status, payload_len)}.

    A handler that returns (status, int) has written its payload itself into
    `self.reply[_PAYLOAD_START:]` (variable-length answers such as the session list). `auth` needs
    `is_authenticated(conn)`; ops marked needs-auth in hipwire.commands.OPS are refused without it.
    `log(msg)` receives internal errors (never secrets)."""

    def __init__(self, handlers, auth, log=None):
        self.handlers = handlers
        self.auth = auth
        self.log = log
        self.reply = bytearray(_REPLY_SIZE)
        self.errors = 0

    def handle(self, frame, conn, att_payload):
        """Answer one command frame; return the response length in self.reply (never raises)."""
        token = frame[2] if len(frame) > 2 else 0
        op = frame[3] if len(frame) > 3 else 0
        try:
            token, op, args = cmd.decode_command(frame)
        except FrameError as e:
            self.errors += 1
            return self._status_only(token, op, _classify(e))
        except Exception:  # noqa: BLE001 - a parser bug must still produce an answer
            self.errors += 1
            return self._status_only(token, op, cmd.ERR_MALFORMED)
        spec = cmd.op_spec(op)
        if spec[4] and not self.auth.is_authenticated(conn):
            return self._status_only(token, op, cmd.ERR_AUTH_REQUIRED)
        handler = self.handlers.get(op)
        if handler is None:
            return self._status_only(token, op, cmd.ERR_UNKNOWN_OP)
        try:
            result = handler(args, conn)
            n = self._encode(token, op, result)
        except Exception as e:  # noqa: BLE001 - a handler bug is an internal error, not a crash
            self.errors += 1
            if self.log:
                self.log("command 0x%02x failed: %r" % (op, e))
            return self._status_only(token, op, cmd.ERR_INTERNAL)
        if n > att_payload:
            return self._status_only(token, op, cmd.ERR_MTU)
        return n

    def _encode(self, token, op, result):
        if isinstance(result, int):
            return cmd.encode_response(self.reply, token, op, result)
        status, values = result
        if status != cmd.OK:
            return cmd.encode_response(self.reply, token, op, status)
        if isinstance(values, int):  # payload already written by the handler
            off = cmd.pack_response_header(self.reply, token, op, status) + values
            crc = crc16(self.reply, off)
            self.reply[off] = crc & 0xFF
            self.reply[off + 1] = crc >> 8
            return off + CRC_SIZE
        return cmd.encode_response(self.reply, token, op, status, *values)

    def _status_only(self, token, op, status):
        return cmd.encode_response(self.reply, token, op, status)


def _classify(error):
    text = error.args[0] if error.args else ""
    if text.startswith("unknown op"):
        return cmd.ERR_UNKNOWN_OP
    if "version" in text:
        return cmd.ERR_VERSION
    return cmd.ERR_MALFORMED


PAYLOAD_START = _PAYLOAD_START
