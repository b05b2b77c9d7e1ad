"""A client process to kill mid-upload: uploads one file a part at a time and prints a
line after each part lands, then waits a moment, so a SIGKILL falls between parts.

Run: python -m tests.client.upload_child URL API_KEY PATH
"""

from __future__ import annotations

import sys
import time

from client import ApiKey, Client


def main() -> None:
    url, key, path = sys.argv[1:4]

    def progress(done: int, total: int) -> None:
        print(f"PART {done} {total}", flush=True)
        time.sleep(0.5)  # blocks the client's loop: no next part starts meanwhile

    with Client(url, ApiKey(key), part_concurrency=1) as aperture:
        aperture.upload(path, progress=progress)
    print("DONE", flush=True)


if __name__ == "__main__":
    main()
