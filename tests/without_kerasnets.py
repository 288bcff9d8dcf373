"""Runs a Python script in a child process that cannot import kerasnets, as a colleague without it would."""

import subprocess
import sys

BLOCKER = """
import sys

class NoKerasnets:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "kerasnets":
            raise ImportError("kerasnets must not be imported here")

sys.meta_path.insert(0, NoKerasnets())
"""


def run(script, *args):
    """`script` with `sys.argv[1:] == args`, after the blocker; returns the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-c", BLOCKER + script, *map(str, args)], capture_output=True, text=True)
