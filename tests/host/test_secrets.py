"""Per-device secrets on the host and provisioning: file mode, no secret in any output or command
line, atomic replacement."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

from hipsync import provision
from hipsync.secrets import InsecureSecretsFile, SecretStore, UnknownDevice

DEVICE = bytes.fromhex("a4cf12345678")


def test_store_roundtrip_mode_0600_and_hidden_repr(tmp_path):
    store = SecretStore(tmp_path / "cfg" / "secrets.json")
    ds = store.put(DEVICE, "hipsync-5678", b"\x11" * 32)
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.path.parent.stat().st_mode) == 0o700
    assert store.get(DEVICE).secret == b"\x11" * 32
    assert store.find("hipsync-5678").device_id == DEVICE
    assert store.devices() == [(DEVICE.hex(), "hipsync-5678")]
    assert "11" * 32 not in repr(ds) and "11" * 32 not in str(store.get(DEVICE))
    store.remove(DEVICE)
    with pytest.raises(UnknownDevice, match="provision"):
        store.get(DEVICE)
    assert not list(store.path.parent.glob("*.tmp"))


def test_a_secrets_file_others_can_read_is_refused(tmp_path):
    store = SecretStore(tmp_path / "secrets.json")
    store.put(DEVICE, "x", b"\x22" * 32)
    os.chmod(store.path, 0o644)
    with pytest.raises(InsecureSecretsFile, match="chmod 600"):
        store.get(DEVICE)


def test_provision_virtual_writes_the_device_file_and_the_host_copy(tmp_path):
    store = SecretStore(tmp_path / "secrets.json")
    ds = provision.provision_virtual(tmp_path / "fs", DEVICE, store=store)
    on_device = (tmp_path / "fs" / "secret.bin").read_bytes()
    assert on_device == ds.secret == store.get(DEVICE).secret and len(on_device) == 32
    assert stat.S_IMODE((tmp_path / "fs" / "secret.bin").stat().st_mode) == 0o600
    assert ds.name == "hipsync-5678"
    # a second provisioning replaces both with a new random secret
    ds2 = provision.provision_virtual(tmp_path / "fs", DEVICE, store=store)
    assert ds2.secret != ds.secret and store.get(DEVICE).secret == ds2.secret


def test_provision_board_never_puts_the_secret_on_a_command_line(tmp_path):
    store = SecretStore(tmp_path / "secrets.json")
    calls = []
    copied = {}

    def fake_run(argv, **kw):
        calls.append(argv)
        if "cp" in argv:
            copied["data"] = open(argv[-2], "rb").read()
            copied["mode"] = stat.S_IMODE(os.stat(argv[-2]).st_mode)
            return subprocess.CompletedProcess(argv, 0, "", "")
        if "os.stat" in argv[-1]:
            return subprocess.CompletedProcess(argv, 0, "32\n", "")
        return subprocess.CompletedProcess(argv, 0, DEVICE.hex() + "\n", "")

    ds = provision.provision_board("/dev/ttyACM0", store=store, run=fake_run)
    assert ds.device_id == DEVICE and copied["data"] == ds.secret and copied["mode"] == 0o600
    assert not os.path.exists(calls[1][-2])  # the temporary copy is gone
    assert all(ds.secret.hex() not in " ".join(c) for c in calls)
    assert calls[1][-1] == ":secret.bin"
    assert store.get(DEVICE).secret == ds.secret
