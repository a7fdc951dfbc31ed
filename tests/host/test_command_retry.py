"""Command retries over a lossy link.

First DeviceLink against a scripted control endpoint (exact timing: late replies, lost replies,
failed writes, a drop in the middle of a command), then against the real firmware in the virtual
device on a virtual air that loses 10 % of all notifications: every command succeeds, retries are
counted, and commands with a side effect ran exactly once each."""

from __future__ import annotations

import asyncio
import os
import statistics
import time
from pathlib import Path

import pytest
from bleak.exc import BleakError

from hipsync import ble
from hipsync.commands._device import VIRTUAL_DEVICE_ID
from hipsync.provision import provision_virtual
from hipsync.secrets import SecretStore
from hipsync.sim import PatientConfig, scenario
from hipsync.sim import tasks as T
from hipsync.sim.air import Air, LinkModel
from hipsync.sim.bleak_backend import VIRTUAL_BACKEND
from hipsync.sim.virtual_device import VirtualDevice
from hipsync.sync import authenticate
from hipwire import commands as cmd
from hipwire import gatt

DEVICE_ID = bytes.fromhex(VIRTUAL_DEVICE_ID)
LOST = "lost"  # the reply to this write is lost on the air
FAIL = "fail"  # the write itself fails (BleakError), the link stays up
DROP = "drop"  # the link drops during this write


class _Endpoint:
    """A device's control characteristic as the firmware answers it: CALIBRATE answers
    (step, runs), with the firmware's replay entry (same frame again: the last reply, no run);
    protected ops need an AUTH_RESPONSE on the connection first when `auth` is on."""

    def __init__(self, auth: bool = False):
        self.runs = 0
        self.auth = auth
        self.authenticated = False
        self.last: tuple[bytes, bytes] | None = None

    def new_connection(self) -> None:
        self.last = None
        self.authenticated = False

    def answer(self, frame: bytes) -> bytes:
        if self.last is not None and self.last[0] == frame:
            return self.last[1]
        token, op, args = cmd.decode_command(frame)
        buf = bytearray(64)
        if self.auth and cmd.op_spec(op)[4] and not self.authenticated:
            self.last = None
            return bytes(buf[:cmd.encode_response(buf, token, op, cmd.ERR_AUTH_REQUIRED)])
        self.runs += 1
        if op == cmd.OP_AUTH_RESPONSE:
            self.authenticated = True
            n = cmd.encode_response(buf, token, op, cmd.OK, b"\x00" * 32)
        else:
            n = cmd.encode_response(buf, token, op, cmd.OK, args[0], self.runs)
        self.last = (frame, bytes(buf[:n]))
        return self.last[1]


class _Client:
    """Stands in for a connected BleakClient: each write is answered after the next scripted
    delay (seconds, or LOST / FAIL / DROP); 0.01 s once the script is used up."""

    def __init__(self, link: ble.DeviceLink, endpoint: _Endpoint, script: list):
        self.link = link
        self.endpoint = endpoint
        self.script = list(script)
        self.writes: list[bytes] = []
        self.is_connected = True

    async def write_gatt_char(self, uuid, data, response):
        assert uuid == gatt.CONTROL_UUID and response
        if not self.is_connected:
            raise BleakError("Not connected")
        frame = bytes(data)
        self.writes.append(frame)
        what = self.script.pop(0) if self.script else 0.01
        if what == FAIL:
            raise BleakError("write failed")
        if what == DROP:
            self.is_connected = False
            asyncio.get_running_loop().call_soon(self.link._on_disconnected, self)
            raise BleakError("link lost")
        reply = self.endpoint.answer(frame)
        if what != LOST:
            asyncio.get_running_loop().call_later(what, self.link._on_control, None,
                                                  bytearray(reply))

    async def disconnect(self):
        self.is_connected = False


def _link(script: list, endpoint: _Endpoint | None = None, **kwargs) -> tuple:
    link = ble.DeviceLink("AA:BB:CC:DD:EE:FF", backend=("scanner", "client"), **kwargs)
    link.first_try_s = 0.1  # the schedule scaled down: 0.1, 0.2, 0.4, then max_try_s
    link.max_try_s = 0.4
    endpoint = endpoint or _Endpoint()
    link._client = _Client(link, endpoint, script)
    return link, endpoint


def run(coro):
    return asyncio.run(asyncio.wait_for(coro, 30))


def test_per_try_waits_double_and_add_up_to_the_callers_timeout():
    assert ble.try_timeouts(5.0) == pytest.approx([0.4, 0.8, 1.6, 1.6, 0.6])
    assert ble.try_timeouts(1.0) == pytest.approx([0.4, 0.6])
    assert ble.try_timeouts(0.5) == pytest.approx([0.5])  # no 0.1 s sliver of a try
    assert ble.try_timeouts(0.1) == pytest.approx([0.1])
    assert sum(ble.try_timeouts(12.3)) == pytest.approx(12.3)


def test_lost_replies_are_retried_with_the_same_token_and_the_device_runs_once():
    async def go():
        link, dev = _link([LOST, LOST, 0.01])
        _, values = await link.command(cmd.OP_CALIBRATE, cmd.CAL_MVC_END + 1)
        writes = link._client.writes
        return link, dev, values, writes

    link, dev, values, writes = run(go())
    assert values == (cmd.CAL_MVC_END + 1, 1) and dev.runs == 1
    assert len(writes) == 3 and len(set(writes)) == 1  # the same frame, token included
    assert link.command_retries == 2


def test_a_late_reply_to_the_first_try_resolves_the_command_exactly_once():
    async def go():
        # try 1 is answered at 0.15 s, after try 2 went out at 0.1 s; try 2's reply (from the
        # device's replay entry) comes at 0.2 s and finds the command finished
        link, dev = _link([0.15, 0.1])
        t0 = time.monotonic()
        _, values = await link.command(cmd.OP_CALIBRATE, cmd.CAL_STANDING_BEGIN)
        took = time.monotonic() - t0
        await asyncio.sleep(0.2)
        _, values2 = await link.command(cmd.OP_CALIBRATE, cmd.CAL_STANDING_BEGIN)
        return link, dev, values, values2, took

    link, dev, values, values2, took = run(go())
    assert values == (cmd.CAL_STANDING_BEGIN, 1) and 0.14 < took < 0.19
    assert link.command_retries == 1 and link.stale_responses == 1
    assert values2 == (cmd.CAL_STANDING_BEGIN, 2)  # the next command has its own token
    assert dev.runs == 2


def test_a_failed_write_is_retried_after_its_wait():
    async def go():
        link, dev = _link([FAIL, 0.01])
        t0 = time.monotonic()
        await link.command(cmd.OP_CALIBRATE, cmd.CAL_STANDING_BEGIN)
        return link, time.monotonic() - t0

    link, took = run(go())
    assert link.command_retries == 1 and took >= 0.1  # backed off for the first try's wait


def test_writes_that_keep_failing_name_the_write_error():
    async def go():
        link, dev = _link([FAIL] * 10)
        with pytest.raises(ble.LinkError, match="failed after 3 tries: write failed"):
            await link.command(cmd.OP_CALIBRATE, cmd.CAL_STANDING_BEGIN, timeout_s=0.7)
        link2, _ = _link([FAIL, LOST, LOST])
        with pytest.raises(ble.CommandTimeout):  # the last writes went out: no answer is a timeout
            await link2.command(cmd.OP_CALIBRATE, cmd.CAL_STANDING_BEGIN, timeout_s=0.7)

    run(go())


def test_no_reply_at_all_times_out_after_the_callers_budget():
    async def go():
        link, dev = _link([LOST] * 10)
        t0 = time.monotonic()
        with pytest.raises(ble.CommandTimeout, match="no response to calibrate within 0.7 s"):
            await link.command(cmd.OP_CALIBRATE, cmd.CAL_STANDING_BEGIN, timeout_s=0.7)
        return link, dev, time.monotonic() - t0

    link, dev, took = run(go())
    assert 0.69 < took < 1.0 and link.command_retries == 2  # 0.1 + 0.2 + 0.4
    assert dev.runs == 1  # every try after the first was answered from the replay entry
    assert link._pending == {}


def _reconnecting_link(script_old: list, script_new: list, endpoint: _Endpoint):
    link, _ = _link(script_old, endpoint, auto_reconnect=True, reconnect_delay_s=0.01)
    new_clients = []

    async def connect(timeout_s: float = 10.0) -> None:  # a new connection: a new replay entry
        endpoint.new_connection()
        link._client = _Client(link, endpoint, script_new)
        link._authenticated.clear()
        link.disconnected.clear()
        new_clients.append(link._client)

    link.connect = connect
    return link, new_clients


def test_a_drop_during_a_repeatable_command_sends_it_again_on_the_new_link():
    async def go():
        dev = _Endpoint()
        link, new_clients = _reconnecting_link([DROP], [], dev)
        _, values = await link.command(cmd.OP_CALIBRATE, cmd.CAL_MVC_BEGIN + 2)
        return link, dev, values, new_clients

    link, dev, values, new_clients = run(go())
    assert values == (cmd.CAL_MVC_BEGIN + 2, 1) and link.commands_resent == 1
    assert len(new_clients) == 1 and len(new_clients[0].writes) == 1


def test_a_drop_during_a_calibration_end_is_not_sent_again():
    async def go():
        dev = _Endpoint()
        link, new_clients = _reconnecting_link([LOST, DROP], [], dev)
        with pytest.raises(ble.CommandInterrupted, match="may have run it") as err:
            await link.command(cmd.OP_CALIBRATE, cmd.CAL_MVC_END + 2)
        assert isinstance(err.value, ble.NotConnected)  # callers catching the old type still do
        await asyncio.sleep(0.05)
        # the caller may insist
        _, values = await link.command(cmd.OP_CALIBRATE, cmd.CAL_MVC_END + 2, repeatable=True)
        return link, dev, values, new_clients

    link, dev, values, new_clients = run(go())
    assert values == (cmd.CAL_MVC_END + 2, 2) and dev.runs == 2  # it did run twice: why it asks
    assert link.commands_resent == 0


def test_which_ops_are_sent_again_after_a_reconnect():
    rep = ble.repeatable_on_new_link
    assert rep(cmd.OP_INFO) and rep(cmd.OP_TIME_SYNC, (1,)) and rep(cmd.OP_SESSION_READ, (1, 0, 9))
    assert rep(cmd.OP_SET_MVC, (1, 2, 3, 4)) and rep(cmd.OP_CAL_INFO) and rep(cmd.OP_REC_STATUS)
    assert rep(cmd.OP_CALIBRATE, (cmd.CAL_STANDING_BEGIN,))
    assert rep(cmd.OP_CALIBRATE, (cmd.CAL_MVC_BEGIN + 3,))
    assert rep(cmd.OP_CALIBRATE, (cmd.CAL_STANDING_END,))  # same sums, same pose
    assert not rep(cmd.OP_CALIBRATE, (cmd.CAL_MVC_END,))
    for op in (cmd.OP_REC_START, cmd.OP_REC_STOP, cmd.OP_ERASE, cmd.OP_AUTH_RESPONSE, 0x7E):
        assert not rep(op)  # an op nobody judged yet is not sent again either


def test_after_a_reconnect_a_protected_command_waits_for_the_new_authentication():
    async def go():
        dev = _Endpoint(auth=True)
        dev.authenticated = True
        link, _ = _reconnecting_link([DROP], [], dev)

        async def authenticate_after_reconnect():  # what acquire.LiveSession does
            await link.reconnected.wait()
            await asyncio.sleep(0.05)
            await link.command(cmd.OP_AUTH_RESPONSE, b"\x00" * 16, b"\x00" * 32)

        helper = asyncio.create_task(authenticate_after_reconnect())
        _, values = await link.command(cmd.OP_CALIBRATE, cmd.CAL_STANDING_BEGIN)
        await helper
        return link, values

    link, values = run(go())
    assert values[0] == cmd.CAL_STANDING_BEGIN
    assert link.commands_resent == 2  # on the new link, then once it was authenticated


# ---------------------------------------------------------------- the real firmware, lossy air
pytest_slow = pytest.mark.slow


async def _connect(air: Air) -> ble.DeviceLink:
    os.environ["HIPSYNC_AIR"] = air.address
    found = await ble.scan(timeout_s=5, backend=VIRTUAL_BACKEND, stop_after=1)
    assert found, "virtual device not found"
    link = ble.DeviceLink(found[0], backend=VIRTUAL_BACKEND)
    await link.connect()
    return link


async def _logical_commands(link: ble.DeviceLink, count: int) -> dict:
    """count commands with side effects a second run would show, timed one by one:
    MVC begin/end pairs (a second end answers bad_arg), REC_START/REC_STOP pairs (a second start
    answers busy, a second stop 0; each start makes one session) and TIME_SYNC."""
    latencies: list[float] = []
    retries: list[int] = []
    sessions: list[int] = []

    async def timed(op, *args):
        before = link.command_retries
        t0 = time.monotonic()
        result = await link.command(op, *args)
        latencies.append(time.monotonic() - t0)
        retries.append(link.command_retries - before)
        return result

    done = 0
    k = 0
    while done < count:
        if k % 3 == 0:
            ch = k % 4
            _, begin = await timed(cmd.OP_CALIBRATE, cmd.CAL_MVC_BEGIN + ch)
            _, end = await timed(cmd.OP_CALIBRATE, cmd.CAL_MVC_END + ch)
            assert begin[0] == cmd.CAL_MVC_BEGIN + ch and end[0] == cmd.CAL_MVC_END + ch
        elif k % 3 == 1:
            _, (started,) = await timed(cmd.OP_REC_START)
            _, (stopped,) = await timed(cmd.OP_REC_STOP)
            assert stopped == started
            sessions.append(started)
        else:
            await timed(cmd.OP_TIME_SYNC, int(time.time() * 1000))
            await timed(cmd.OP_INFO)
        done += 2
        k += 1
    listed = []
    while True:
        _, entries = await link.command(cmd.OP_SESSION_LIST, listed[-1] + 1 if listed else 0)
        if not entries:
            break
        listed += [e[0] for e in entries]
    return {"latencies": latencies, "retries": retries, "sessions": sessions, "listed": listed}


def _measure(tmp_path: Path, loss: float, seed: int, count: int,
             speed: float = 2.0) -> tuple[dict, ble.DeviceLink, Air]:
    scen = scenario.build(PatientConfig(seed=5), tmp_path / "patient", tasks=[T.rest(4.0)])
    fs = tmp_path / "fs"
    secret = provision_virtual(fs, DEVICE_ID, store=SecretStore(tmp_path / "secrets.json")).secret
    with Air(LinkModel(speed=speed)) as air, VirtualDevice(
            air, feed_path=scen.feed_path, fs_dir=fs, device_id=VIRTUAL_DEVICE_ID) as dev:
        dev.wait_advertising(timeout_s=20)

        async def go():
            link = await _connect(air)
            try:
                # loss from the first authentication command on: it is retried like the rest
                air.link.loss_probability = loss
                air.link.seed = seed
                await authenticate(link, secret, DEVICE_ID)
                return await _logical_commands(link, count), link
            finally:
                await link.disconnect()

        out, link = asyncio.run(asyncio.wait_for(go(), 240))
    return out, link, air


@pytest_slow
def test_200_commands_over_a_lossy_link_all_succeed_and_run_once(tmp_path):
    out, link, air = _measure(tmp_path, loss=0.10, seed=3, count=200)
    lat = sorted(out["latencies"])
    mean_retries = statistics.mean(out["retries"])
    print(f"\n10 % loss: {len(lat)} commands ok, {link.command_retries} retries "
          f"(mean {mean_retries:.3f}), {air.stats.dropped(gatt.CONTROL_UUID)} responses lost, "
          f"p50 {lat[len(lat) // 2] * 1000:.0f} ms, p95 {lat[int(len(lat) * 0.95)] * 1000:.0f} ms, "
          f"max {lat[-1] * 1000:.0f} ms, stale {link.stale_responses}")
    assert len(lat) == 200
    assert air.stats.dropped(gatt.CONTROL_UUID) > 0 and link.command_retries > 0
    # each REC_START made exactly one session, and the list holds exactly those
    sessions = out["sessions"]
    assert sessions == list(range(sessions[0], sessions[0] + len(sessions)))
    assert out["listed"] == sessions
    assert link.malformed_responses == 0
