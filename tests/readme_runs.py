"""README's training examples, and runs the test workers make once and share.

pytest-xdist's workers (pytest.ini: two) each run their own fixtures, so a
training run that two test files need would run twice. `made_once` makes a
directory once per test session, in the folder all workers' temporary
directories share, whichever worker asks first; the other waits on a lock.
"""

import fcntl
import json
import os
import shlex
import shutil

from kerasnets import cli
from image_folders import write_digits_folder

README = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "README.md")


def readme_training_commands():
    """The `kerasnets train` lines of README's Training section, comments dropped."""
    text = open(README, encoding="utf8").read()
    section = text[text.index("## Training"):]
    block = section[section.index("```bash") + len("```bash"):]
    block = block[:block.index("```")]
    commands = [line.split("#")[0].strip() for line in block.splitlines() if line.startswith("kerasnets train")]
    assert len(commands) >= 4, block
    return commands


def run_readme_command(command, root, runs):
    """One README command as written (ROOT: `root`; runs/: `runs`): {argv, rc, output, size}."""
    argv = shlex.split(command.replace("ROOT", root).replace("runs/", runs + "/"))
    assert argv[0] == "kerasnets"
    output = argv[argv.index("--output") + 1]
    return {"argv": argv[1:], "rc": cli.main(argv[1:] + ["--verbose", "0"]), "output": output,
            "size": int(argv[argv.index("--image-size") + 1])}


def shared_root(tmp_path_factory):
    """The folder above every worker's own temporary directory (the session's own without workers)."""
    base = tmp_path_factory.getbasetemp()
    return str(base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base)


def made_once(root, key, make):
    """`make(path)` run once per session for `key`, by the first worker that asks; returns the path."""
    path = os.path.join(root, "shared", key)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        if not os.path.exists(path + ".done"):
            shutil.rmtree(path, ignore_errors=True)
            make(path)
            open(path + ".done", "w").close()
    return path


def readme_first_run(tmp_path_factory):
    """README's first training example (NIN on the digits) run as written, once per session: its {argv, rc, output,
    size} and `digits`, the ROOT it read. Its run directory is shared: read it, write elsewhere."""
    def make(path):
        digits = write_digits_folder(os.path.join(path, "digits"))
        run = dict(run_readme_command(readme_training_commands()[0], digits, os.path.join(path, "runs")),
                   digits=digits)
        with open(os.path.join(path, "run.json"), "w") as f:
            json.dump(run, f)

    return json.load(open(os.path.join(made_once(shared_root(tmp_path_factory), "readme-first-run", make),
                                       "run.json")))
