# The per-device secret, written once by `hipsync provision` (host/hipsync/provision.py).
#
# A 32-byte file beside the firmware (on the board "/secret.bin"; the path is relative so that the
# virtual device finds it in its own filesystem folder). It is readable by anyone with the board and
# a USB cable unless flash encryption is enabled (docs/SECURITY.md). Never print it.
from hipwire.auth import SECRET_SIZE

SECRET_PATH = "secret.bin"


def load_secret(path=SECRET_PATH):
    """The secret bytes, or None when the device is not provisioned (missing or wrong-size file):
    then no client can authenticate, and every protected command is refused."""
    try:
        with open(path, "rb") as f:
            data = f.read(SECRET_SIZE + 1)
    except OSError:
        return None
    if len(data) != SECRET_SIZE:
        return None
    return data
