"""Provisioning: a fresh random 32-byte secret per device, written to the device and kept in the
host's secrets file (hipsync.secrets).

- Real board (USB): `provision_board(port)` reads the device id (machine.unique_id(), the id the
  firmware authenticates with) through mpremote, copies the secret to the board's filesystem as
  `secret.bin` (the firmware's security.SECRET_PATH), checks its size, and stores it on the host.
  The secret goes through a 0600 file in a private temporary folder (never on a command line,
  where other users could see it in the process list) that is deleted afterwards.
- Virtual device: `provision_virtual(fs_dir, device_id)` writes `secret.bin` into the folder the
  virtual device uses as its filesystem.

The host copy is stored first: if writing to the device then fails, the old secret on the device
still works with nothing, and provisioning is simply run again. Provisioning replaces any secret
the device had (it needs the USB cable, i.e. physical access, which is the trust boundary).
"""

from __future__ import annotations

import os
import secrets as pysecrets
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from hipwire import gatt

from .secrets import SECRET_SIZE, DeviceSecret, SecretStore

DEVICE_SECRET_FILE = "secret.bin"  # firmware/security/secret.py SECRET_PATH
_READ_ID = "import machine, binascii; print(binascii.hexlify(machine.unique_id()).decode())"
_CHECK = "import os; print(os.stat('secret.bin')[6])"


class ProvisionError(Exception):
    pass


def new_secret() -> bytes:
    return pysecrets.token_bytes(SECRET_SIZE)


def default_name(device_id: bytes) -> str:
    """The name the device advertises (firmware link.ble_server.device_name)."""
    return f"{gatt.NAME_PREFIX}{device_id[-2]:02x}{device_id[-1]:02x}"


def provision_virtual(fs_dir: str | os.PathLike, device_id: bytes, *, name: str | None = None,
                      store: SecretStore | None = None) -> DeviceSecret:
    store = store or SecretStore()
    secret = new_secret()
    ds = store.put(device_id, name or default_name(device_id), secret)
    path = Path(fs_dir) / DEVICE_SECRET_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return ds


def _mpremote() -> list[str]:
    return [sys.executable, "-m", "mpremote"]


def provision_board(port: str, *, name: str | None = None, store: SecretStore | None = None,
                    run: Callable[..., subprocess.CompletedProcess] = subprocess.run) -> DeviceSecret:
    """Provision the board on serial port `port` (e.g. /dev/ttyACM0) through mpremote."""
    store = store or SecretStore()
    base = _mpremote() + ["connect", port]

    def call(*args: str) -> str:
        proc = run(base + list(args), capture_output=True, text=True, timeout=60)
        if proc.returncode != 0:
            # mpremote's own message; the secret is never on its command line
            raise ProvisionError(f"mpremote {args[0]} failed on {port}: "
                                 f"{(proc.stderr or proc.stdout).strip()[-300:]}")
        return proc.stdout

    out = call("exec", _READ_ID).strip().splitlines()
    try:
        device_id = bytes.fromhex(out[-1])
    except (IndexError, ValueError):
        raise ProvisionError(f"could not read the device id from {port}: {out!r}") from None
    secret = new_secret()
    ds = store.put(device_id, name or default_name(device_id), secret)
    with tempfile.TemporaryDirectory(prefix="hipsync-provision-") as tmp:
        path = Path(tmp) / DEVICE_SECRET_FILE
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(secret)
        call("cp", str(path), ":" + DEVICE_SECRET_FILE)
    size = call("exec", _CHECK).strip().splitlines()
    if not size or size[-1] != str(SECRET_SIZE):
        raise ProvisionError(f"the secret on {port} has the wrong size ({size!r}); run again")
    return ds
