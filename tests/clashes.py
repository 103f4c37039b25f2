"""An output path naming a file of the checkpoint being frozen: the cases every client's test
tries, and the checkpoint's contents to compare before and after."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Dict, List, Tuple


def folder_hashes(folder) -> Dict[str, str]:
    """sha256 of every file below ``folder``, by its path relative to it."""
    out = {}
    for d, _, names in os.walk(folder):
        for name in names:
            path = os.path.join(d, name)
            with open(path, "rb") as fh:
                out[os.path.relpath(path, folder)] = hashlib.sha256(fh.read()).hexdigest()
    return dict(sorted(out.items()))


def checkpoint_file_cases(ckpt: Path, out_dir: Path) -> Tuple[str, List[tuple]]:
    """(the checkpoint's prefix, [(argv, flag, path, file, what)]): -o naming its .index, data
    shard and .meta, and --manifest naming its .meta, each to be refused naming ``file``."""
    names = sorted(os.listdir(ckpt))
    index = next(n for n in names if n.endswith(".index"))
    data = next(n for n in names if ".data-" in n)
    meta = next(n for n in names if n.endswith(".meta"))
    cases = [(["-o", str(ckpt / name)], "-o", ckpt / name, name, "the graph") for name in (index, data, meta)]
    cases.append((["-o", str(out_dir / "ok.pb"), "--manifest", str(ckpt / meta)], "--manifest", ckpt / meta, meta,
                  "the manifest"))
    return index[:-len(".index")], cases
