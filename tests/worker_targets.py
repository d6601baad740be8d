"""Targets for the isolated-worker tests: they run in a spawned child process."""

import os
import time


def echo(payload):
    return {"pid": os.getpid(), "payload": payload}


def misbehave(payload):
    if payload == "crash":
        os._exit(3)  # as an illegal memory access would take the process down
    if payload == "hang":
        time.sleep(60)
    if payload == "slow":  # outlasts a parent that goes away meanwhile
        time.sleep(8)
    if payload == "raise":
        raise ValueError("wrong result: relative error 1.0")
    return {"pid": os.getpid(), "ppid": os.getppid(),
            "interpret": os.environ.get("TRITON_INTERPRET")}


_warmed_at = None


def warm():
    """Marks the process warm, and says so in the file named by WARM_MARK (if set)."""
    global _warmed_at
    _warmed_at = time.time()
    if mark := os.environ.get("WARM_MARK"):
        with open(mark, "w") as f:
            f.write(str(os.getpid()))


def warmed_at(payload):
    return _warmed_at


def environment_seen(names):
    """The worker's view of these environment variables, its sys.path and parent pid."""
    import sys

    return {"env": {n: os.environ.get(n) for n in names}, "path": sys.path,
            "ppid": os.getppid(), "pid": os.getpid()}
