"""Child processes for tests that run kerasnets as a user would (the CLI, a worker of a cluster)."""

import os
import socket
import subprocess
import sys
import time

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


def wait_for_backup(processes, output, timeout=600):
    """Waits until the training run in `output` has written its first epoch's backup (BackupAndRestore), while every
    one of `processes` runs. If it never comes, all are killed (a worker whose peer died would wait in its next
    all-reduce forever) and the test fails with the output of the one that ended first, else the first one's."""
    backup = os.path.join(output, "backup", "training_metadata.json")
    deadline = time.time() + timeout
    while not os.path.exists(backup) and all(p.poll() is None for p in processes) and time.time() < deadline:
        time.sleep(0.1)
    if not os.path.exists(backup):
        ended = next((p for p in processes if p.poll() is not None), processes[0])
        for p in processes:
            p.kill()
        printed = ended.communicate(timeout=60)[0]
        for p in processes:
            p.wait(timeout=60)
        raise AssertionError(f"no backup in {output}; a process printed:\n{printed[-3000:]}")
