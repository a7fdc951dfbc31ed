"""Install Debian's headless Chromium for the report rendering test, when it is missing and we can.

The report test skips with this script's reason when no browser could be installed (for example on
a machine where apt is not available or we are not root)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys


def main() -> int:
    if shutil.which("chromium"):
        return 0
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        print("ensure_chromium: chromium missing and apt-get unavailable; the browser test will skip")
        return 0
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update", "-qq"],
                ["apt-get", "install", "-y", "-qq", "--no-install-recommends", "chromium"]):
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            print(f"ensure_chromium: {' '.join(cmd)} failed; the browser test will skip\n{proc.stderr[-2000:]}")
            return 0
    return 0


if __name__ == "__main__":
    sys.exit(main())
