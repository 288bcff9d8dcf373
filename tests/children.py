"""Child processes for tests that run kerasnets as a user would (the CLI, a worker of a cluster)."""

import os
import socket
import subprocess
import sys

TESTS = os.path.dirname(os.path.abspath(__file__))


def run_python(args, env=None, **kwargs):
    """`python ARGS` in a child process (stdout and stderr together, as text); the tests folder on its path."""
    env = env or os.environ
    env = {**env, "PYTHONPATH": TESTS + os.pathsep + env.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, **kwargs)


def free_ports(n):
    """`n` TCP ports free on localhost right now."""
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("localhost", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports
