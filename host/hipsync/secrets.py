"""Per-device secrets on the clinic host.

One JSON file, mode 0600 in a 0700 folder: $HIPSYNC_SECRETS if set, else `device-secrets.json` in
the user's config folder (platformdirs). Each entry: device id (hex) -> name and the 32-byte
secret (hex). Written atomically (temporary file created 0600, fsync, rename). A file that group
or others can read is refused, not silently used. (The OS keyring is not used: it is not a
dependency of this project; see docs/SECURITY.md.)

Nothing here prints, logs or formats a secret: DeviceSecret's repr shows the device only.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import platformdirs

ENV_SECRETS = "HIPSYNC_SECRETS"
SECRETS_FILENAME = "device-secrets.json"
SECRET_SIZE = 32
_VERSION = 1


class SecretsError(Exception):
    """The secrets file cannot be used; the message says what to do."""


class UnknownDevice(SecretsError):
    def __init__(self, device: str, path: Path):
        super().__init__(f"No secret for device {device} in {path}. Provision it first "
                         f"(`hipsync provision`), or point {ENV_SECRETS} at the right file.")
        self.device = device


class InsecureSecretsFile(SecretsError):
    def __init__(self, path: Path, mode: int):
        super().__init__(f"{path} is readable by other users (mode {mode:o}); refusing to use it. "
                         f"Run `chmod 600 {path}` if you trust its content, else re-provision.")


def default_secrets_path() -> Path:
    env = os.environ.get(ENV_SECRETS)
    if env:
        return Path(env)
    return Path(platformdirs.user_config_dir("hipsync", appauthor=False)) / SECRETS_FILENAME


class DeviceSecret:
    """A device's id, name and secret. repr/str never include the secret."""

    __slots__ = ("device_id", "name", "_secret")

    def __init__(self, device_id: bytes, name: str, secret: bytes):
        if len(secret) != SECRET_SIZE:
            raise ValueError(f"a device secret is {SECRET_SIZE} bytes")
        self.device_id = bytes(device_id)
        self.name = name
        self._secret = bytes(secret)

    @property
    def secret(self) -> bytes:
        return self._secret

    def __repr__(self) -> str:
        return f"DeviceSecret(device_id={self.device_id.hex()}, name={self.name!r}, secret=<hidden>)"

    __str__ = __repr__


def _key(device_id: bytes | str) -> str:
    return device_id.hex() if isinstance(device_id, (bytes, bytearray)) else str(device_id).lower()


class SecretStore:
    def __init__(self, path: str | os.PathLike | None = None):
        self.path = Path(path) if path is not None else default_secrets_path()

    def _load(self) -> dict:
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        if os.name == "posix" and st.st_mode & 0o077:
            raise InsecureSecretsFile(self.path, stat.S_IMODE(st.st_mode))
        try:
            doc = json.loads(self.path.read_text())
            devices = doc["devices"]
            assert isinstance(devices, dict)
        except (ValueError, KeyError, AssertionError, TypeError):
            raise SecretsError(f"{self.path} is not a hipsync secrets file (damaged?). Move it "
                               f"away and re-provision the devices.") from None
        return devices

    def _save(self, devices: dict) -> None:
        folder = self.path.parent
        folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = folder / f".{self.path.name}.{os.getpid()}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w") as f:
                json.dump({"version": _VERSION, "devices": devices}, f, indent=1, sort_keys=True)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def get(self, device_id: bytes | str) -> DeviceSecret:
        entry = self._load().get(_key(device_id))
        if entry is None:
            raise UnknownDevice(_key(device_id), self.path)
        return DeviceSecret(bytes.fromhex(_key(device_id)), entry["name"],
                            bytes.fromhex(entry["secret"]))

    def find(self, name_or_id: str) -> DeviceSecret:
        """By device id (hex) or by name (e.g. the advertised hipsync-XXXX)."""
        devices = self._load()
        if name_or_id.lower() in devices:
            return self.get(name_or_id)
        for key, entry in devices.items():
            if entry["name"] == name_or_id:
                return self.get(key)
        raise UnknownDevice(name_or_id, self.path)

    def put(self, device_id: bytes, name: str, secret: bytes) -> DeviceSecret:
        ds = DeviceSecret(device_id, name, secret)
        devices = self._load()
        devices[_key(device_id)] = {"name": name, "secret": ds.secret.hex()}
        self._save(devices)
        return ds

    def remove(self, device_id: bytes | str) -> None:
        devices = self._load()
        if devices.pop(_key(device_id), None) is not None:
            self._save(devices)

    def devices(self) -> list[tuple[str, str]]:
        """(device id hex, name) of every provisioned device; no secrets."""
        return sorted((k, v["name"]) for k, v in self._load().items())
