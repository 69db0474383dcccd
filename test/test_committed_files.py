"""What the repository ships holds no machine's absolute path: every JSON file under benchmarks/results, models and
config (benchmark figures, checkpoints' metadata and calibrations, the demo index) is read and each string in it
checked. A benchmark records paths relative to the repository (or says where it wrote outside it in words)."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("benchmarks/results", "models", "config")


def _strings(value):
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k)
            yield from _strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v)


#: first components of absolute file-system paths (ROS topic names such as /gt/kidnap also start with a slash)
ROOTS = ("home", "tmp", "work", "root", "Users", "opt", "mnt", "var", "srv", "media", "usr", "data", "scratch")


def _absolute(text: str) -> bool:
    first = text[1:].split("/", 1)[0] if text.startswith("/") else ""
    return first in ROOTS or text.startswith("~/") or (len(text) > 2 and text[1] == ":" and text[2] in "\\/")


@pytest.mark.parametrize("folder", FOLDERS)
def test_no_committed_json_holds_an_absolute_path(folder):
    files = sorted((ROOT / folder).rglob("*.json"))
    assert files or folder == "config"
    bad = [f"{f.relative_to(ROOT)}: {s!r}" for f in files for s in _strings(json.loads(f.read_text()))
           if _absolute(s)]
    assert not bad, "absolute paths in committed files:\n" + "\n".join(bad[:20])
