"""The one check that a name read from a file (an index's ``index.json``, an export's ``export.json``) is a plain
file name inside that file's folder: no folder part, no ``..``, nothing absolute (the project's rule: no path from
a file leaves its folder)."""
from __future__ import annotations

import re

#: a plain file name: letters, digits, ``_ . -``, not starting with ``.`` or ``-`` (so neither ``.`` nor ``..``)
FILE_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


def is_file_name(name: object) -> bool:
    """Whether ``name`` is a plain file name (letters, digits, ``_ . -``; not ``.``/``..``, no separator)."""
    return isinstance(name, str) and FILE_NAME.fullmatch(name) is not None
