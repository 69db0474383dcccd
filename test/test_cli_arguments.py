"""Flags the commands cannot use end in one line and a non-zero exit, before any work (the offline CLI audit)."""
from __future__ import annotations

from pathlib import Path

import pytest

from unifygeo_ros import cli
from unifygeo_ros.errors import UnifyGeoError


@pytest.mark.parametrize("flags, said", [
    (["--min-score", "nan"], "--min-score must be within [0, 1], got nan"),  # NaN turned the score gate off
    (["--min-score", "2"], "--min-score must be within [0, 1], got 2.0"),
    (["--max-protection-level", "nan"], "--max-protection-level must be > 0"),
    (["--max-gap", "nan"], "--max-gap must be a finite number > 0"),  # crashed after the whole replay
    (["--rate", "nan"], "--rate must be a finite number > 0"),
])
def test_replay_refuses_numbers_it_cannot_use_before_reading_the_bag(tmp_path, capsys, flags, said):
    rc = cli.main(["replay", str(tmp_path / "no_bag"), "--index", str(tmp_path / "no_index"),
                   "--out", str(tmp_path / "out"), *flags])
    err = capsys.readouterr().err
    assert rc == 1 and said in err and "Traceback" not in err and err.count("\n") == 1, err
    assert not (tmp_path / "out").exists()


def test_a_value_no_check_caught_is_still_one_line(tmp_path, capsys, monkeypatch):
    """A ValueError from deep inside a command (here synth --size-m nan) is one line naming the command, the
    traceback only with UNIFYGEO_DEBUG=1."""
    monkeypatch.delenv("UNIFYGEO_DEBUG", raising=False)
    args = ["synth", "--out", str(tmp_path / "data"), "--city", "Nanville", "--seed", "1", "--size-m", "nan"]
    rc = cli.main(args)
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("unifygeo synth: error: ValueError") and err.count("\n") == 1, err
    monkeypatch.setenv("UNIFYGEO_DEBUG", "1")
    with pytest.raises((ValueError, ArithmeticError)):
        cli.main([*args[:2], str(tmp_path / "data2"), *args[3:]])


def test_the_demo_never_deletes_a_drive_folder_it_did_not_record(tmp_path):
    """`unifygeo demo --out DIR` replaces DIR/drive only when it is a previous demo's recording."""
    from unifygeo_ros.offline.demo import replay_drive

    user = tmp_path / "drive"
    user.mkdir()
    (user / "thesis.txt").write_text("mine")
    with pytest.raises(UnifyGeoError, match="is not a recording of a previous demo: not replaced"):
        replay_drive(None, Path(tmp_path / "city"), tmp_path, 2)
    assert (user / "thesis.txt").read_text() == "mine"
