# The control characteristic's dispatcher: every command gets exactly one response with a status,
# whatever bytes arrive. Handlers never see malformed input and never need to check auth.
#
# Retries are idempotent (the semantics are in hipwire/commands.py): the dispatcher keeps the last
# command whose handler ran and the reply it produced. The same frame again (same token, op and
# request bytes: the whole frame, CRC included, is compared) on the same connection is answered
# with that reply, without running the handler again, so a host that lost a response can repeat a
# CALIBRATE end or a REC_START. Anything else runs normally and replaces (or, if refused before a
# handler ran, drops) the entry; a different request under the same token is a new command. The
# entry belongs to one connection: a new connection handle, a new value of `connection_epoch()`
# or new_connection() clears it. Both buffers are preallocated; a replay allocates nothing.
from micropython import const

from hipwire import commands as cmd
from hipwire.frames import CRC_SIZE, FrameError, crc16

_REPLY_SIZE = const(256)
_PAYLOAD_START = const(5)  # cmd.RESPONSE_HEADER_SIZE
_REQUEST_SIZE = const(128)  # the BLE server's control value buffer: the longest command it passes
_NO_CONN = const(-2)  # no connection has sent a command yet (conn handles are >= -1)


class Control:
    """handlers: {op: fn(args, conn) -> status | (status, values) | (status, payload_len)}.

    A handler that returns (status, int) has written its payload itself into
    `self.reply[_PAYLOAD_START:]` (variable-length answers such as the session list). `auth` needs
    `is_authenticated(conn)`; ops marked needs-auth in hipwire.commands.OPS are refused without it.
    `log(msg)` receives internal errors (never secrets). `connection_epoch()`, if given, returns a
    number that changes with every new connection (the BLE server's `connections`): the replay
    entry is cleared when it changes, also when the stack hands out the same handle again.

    Counters: `errors` (malformed frames, handler exceptions), `executed` (handler runs),
    `replayed` (repeated commands answered from the last reply)."""

    def __init__(self, handlers, auth, log=None, connection_epoch=None):
        self.handlers = handlers
        self.auth = auth
        self.log = log
        self.connection_epoch = connection_epoch
        self.reply = bytearray(_REPLY_SIZE)
        self.errors = 0
        self.executed = 0
        self.replayed = 0
        # the replay entry: the last command frame whose handler ran, and its reply
        self._last_request = bytearray(_REQUEST_SIZE)
        self._last_request_len = 0  # 0: no entry
        self._last_reply = bytearray(_REPLY_SIZE)
        self._last_reply_len = 0
        self._conn = _NO_CONN
        self._epoch = 0

    def new_connection(self):
        """Forget the replay entry (call on connect and disconnect)."""
        self._last_request_len = 0

    def handle(self, frame, conn, att_payload):
        """Answer one command frame; return the response length in self.reply (never raises)."""
        self._check_connection(conn)
        n_frame = len(frame)
        token = frame[2] if n_frame > 2 else 0
        op = frame[3] if n_frame > 3 else 0
        if self._is_repeat(frame, n_frame):
            spec = cmd.op_spec(op)  # an identical frame decoded before: spec is not None
            if spec[4] and not self.auth.is_authenticated(conn):
                self._last_request_len = 0
                return self._status_only(token, op, cmd.ERR_AUTH_REQUIRED)
            self.replayed += 1
            n = self._last_reply_len
            _copy(self.reply, self._last_reply, n)
            return n
        self._last_request_len = 0
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
        self.executed += 1
        try:
            result = handler(args, conn)
            n = self._encode(token, op, result)
        except Exception as e:  # noqa: BLE001 - a handler bug is an internal error, not a crash
            self.errors += 1
            if self.log:
                self.log("command 0x%02x failed: %r" % (op, e))
            n = self._status_only(token, op, cmd.ERR_INTERNAL)
        if n > att_payload:
            n = self._status_only(token, op, cmd.ERR_MTU)
        self._remember(frame, n_frame, n)
        return n

    # ------------------------------------------------------------ replay entry
    def _check_connection(self, conn):
        epoch = self.connection_epoch() if self.connection_epoch is not None else 0
        if conn != self._conn or epoch != self._epoch:
            self._conn = conn
            self._epoch = epoch
            self._last_request_len = 0

    def _is_repeat(self, frame, n):
        if n != self._last_request_len or n == 0:
            return False
        last = self._last_request
        if frame[n - 1] != last[n - 1] or frame[n - 2] != last[n - 2]:  # CRC first: cheap reject
            return False
        for i in range(n - 2):
            if frame[i] != last[i]:
                return False
        return True

    def _remember(self, frame, n_frame, n_reply):
        """The handler ran: keep its request and reply (the handler's effect is done, whatever
        status it answered, so a repeat must get this reply and not a second run)."""
        if n_frame > _REQUEST_SIZE:
            return  # cannot happen behind the BLE server (128-byte value buffer): never replayed
        _copy(self._last_request, frame, n_frame)
        _copy(self._last_reply, self.reply, n_reply)
        self._last_reply_len = n_reply
        self._last_request_len = n_frame

    # ------------------------------------------------------------ encoding
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


def _copy(dst, src, n):
    # a plain loop: slicing a memoryview allocates, and replies are short (control is off the
    # sample path)
    for i in range(n):
        dst[i] = src[i]


def _classify(error):
    text = error.args[0] if error.args else ""
    if text.startswith("unknown op"):
        return cmd.ERR_UNKNOWN_OP
    if "version" in text:
        return cmd.ERR_VERSION
    return cmd.ERR_MALFORMED


PAYLOAD_START = _PAYLOAD_START
