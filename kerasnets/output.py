"""What the tools write: progress lines, and files written whole or not at all."""

import os


def say(message):
    """One progress line per stage, flushed at once."""
    print(f"[kerasnets] {message}", flush=True)


def atomic_write(path, writer, mode="w"):
    """Writes through `writer(file)` to a temporary file, then renames it over `path`."""
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, mode) as f:
        writer(f)
    os.replace(tmp, path)
