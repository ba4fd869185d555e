"""A preprocess worker that dies on videos named `crash*` (as the OOM killer would end
it), for tests of `preprocess --workers`; importable by the spawned workers."""

from __future__ import annotations

import importlib
import os

preprocess = importlib.import_module("dffr.datasets.preprocess")


def work(args):
    item = args[0]
    if os.path.basename(item.video).startswith("crash"):
        os._exit(9)
    return preprocess._work(args)
