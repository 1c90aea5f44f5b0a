"""Imports fine, then sleeps inside its hook for an hour.

It first writes its process id to the file ``$ZOO_FIXTURE_PID_FILE`` names (when set),
so a test can check that the process does not outlive the sync that started it.
"""

import os
import time

import zoo


@zoo.hookimpl
def zoo_register_models():
    where = os.environ.get("ZOO_FIXTURE_PID_FILE")
    if where:
        with open(where, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(3600)
    return []
