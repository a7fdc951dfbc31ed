"""Saying an instruction to the simulated person who wears a virtual device.

A therapist says "stand still" and the patient hears it; on the virtual device the prompt the host
shows is also said into the room of the virtual air (`air.V_SAY`), where the live patient listens.
Only the CLI, which chose the virtual backend, uses this: the radio module knows nothing of it."""

from __future__ import annotations

import asyncio
import json
import logging

from .air import V_SAY, pack

log = logging.getLogger(__name__)


async def say(air_address: str, instruction: dict, timeout_s: float = 2.0) -> bool:
    """Send one instruction to the room of the air at host:port; False if nobody could hear it."""
    host, _, port = air_address.rpartition(":")
    try:
        _, writer = await asyncio.wait_for(asyncio.open_connection(host, int(port)), timeout_s)
    except (OSError, ValueError, TimeoutError) as e:
        log.warning("the virtual patient did not hear %r (%s)", instruction.get("task"), e)
        return False
    writer.write(pack(V_SAY, body=json.dumps(instruction).encode()))
    try:
        await asyncio.wait_for(writer.drain(), timeout_s)
    finally:
        writer.close()
    return True


class Voice:
    """What a guide says to the person: `await voice(instruction)`."""

    def __init__(self, air_address: str):
        self.air_address = air_address

    async def __call__(self, instruction: dict) -> None:
        await say(self.air_address, instruction)
