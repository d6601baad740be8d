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
    if payload == "raise":
        raise ValueError("wrong result: relative error 1.0")
    return {"pid": os.getpid(), "interpret": os.environ.get("TRITON_INTERPRET")}
