"""What ``unifygeo replay`` will not score, and why: the rules that keep garbage out of ``metrics.json``.

Each case is excluded, counted by reason in ``metrics.json`` ``data_quality`` (:class:`DataQuality`) and said in
one warning line:

* **Ground truth that is not a position** - a NavSatFix without a fix (status NO_FIX), a latitude or longitude
  that is NaN or infinite (any GT type; a local-frame pose with a NaN x or y converts to one), or out of range
  (|lat| > 90, |lon| > 180): the message is not used (``gt_excluded``: ``no_fix``, ``non_finite``,
  ``out_of_range``). Frames between the usable samples are interpolated as usual, within ``--max-gap``.
* **Duplicate ground truth** - several GT messages with one stamp: within :data:`GT_DUPLICATE_TOLERANCE_M` of
  each other they are the same measurement recorded twice, the first is kept (``gt_duplicates_merged``); farther
  apart they contradict each other and the truth at that stamp is unknown: all of them are excluded
  (``gt_excluded.conflicting_duplicate``) and a frame whose interpolation would use that stamp (the GT samples
  around it) is not scored (``frames_not_scored.conflicting_gt``, a note in ``frames.csv``), never interpolated
  into a wild truth.
* **Image stamps that repeat or go back** - the image topic's header stamps must increase. An image whose stamp
  equals the previous image's (``images_dropped.duplicate_stamp``) or is earlier than it
  (``images_dropped.backward_stamp``) is dropped before ``--every``/``--rate``: not localized, not scored, not a
  frame (``frames`` does not count it). A stamp repeated would score one fix twice; a stamp going back would
  feed the tracking prior a negative time step and write TUM files evo cannot pair.
* **Damaged MCAP chunks** - ``mcap`` (:mod:`unifygeo_ros.rosbag.mcap_check`): per storage file, the chunks,
  those without a CRC (their damage cannot be detected), the corrupt ones skipped and the messages lost.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from unifygeo_ros.rosbag import trajectory
from unifygeo_ros.rosbag.mcap_check import McapCheck

#: GT messages with one stamp farther apart than this (m) contradict each other
GT_DUPLICATE_TOLERANCE_M = 0.5
#: why a GT message is not used
GT_NO_FIX, GT_NON_FINITE, GT_OUT_OF_RANGE, GT_CONFLICTING = ("no_fix", "non_finite", "out_of_range",
                                                             "conflicting_duplicate")


def gt_position_problem(lat_deg: float, lon_deg: float) -> str:
    """Why a GT position is unusable (:data:`GT_NON_FINITE`, :data:`GT_OUT_OF_RANGE`), "" when it is usable."""
    if not (math.isfinite(lat_deg) and math.isfinite(lon_deg)):
        return GT_NON_FINITE
    if not (-90.0 <= lat_deg <= 90.0 and -180.0 <= lon_deg <= 180.0):
        return GT_OUT_OF_RANGE
    return ""


# ---------------------------------------------------------------------------------------------- images
@dataclass
class ImageStamps:
    """The image topic's stamps as they come (module docstring): :meth:`accept` says whether to keep an image."""

    last_ns: int | None = None
    duplicate: int = 0
    backward: int = 0
    first: str = ""  # the first dropped image, for the warning

    def accept(self, t_ns: int) -> bool:
        if self.last_ns is not None and t_ns <= self.last_ns:
            if t_ns == self.last_ns:
                self.duplicate += 1
            else:
                self.backward += 1
            self.first = self.first or f"t={t_ns * 1e-9:.3f} s after t={self.last_ns * 1e-9:.3f} s"
            return False
        self.last_ns = int(t_ns)
        return True

    def warning(self, topic: str) -> str | None:
        if not (self.duplicate or self.backward):
            return None
        return (f"image stamps on {topic} repeat or go back: {self.duplicate} images with the previous image's "
                f"stamp, {self.backward} earlier than it (first at {self.first}): dropped, not localized or "
                "scored (docs/REPLAY.md, 'What is not scored')")


# ------------------------------------------------------------------------------------------ ground truth
@dataclass
class CleanGroundTruth:
    """GT with one sample per stamp, sorted; the position is NaN at a stamp whose messages contradict each
    other (:func:`trajectory.associate` then rejects the frames it brackets)."""

    traj: trajectory.Trajectory
    duplicates_merged: int = 0
    conflicting_stamps: int = 0
    conflicting_messages: int = 0
    largest_conflict_m: float = 0.0  # the largest distance between two GT messages of one stamp


def _spread_m(e: np.ndarray, n: np.ndarray) -> float:
    """The largest distance between two of the points."""
    return float(np.max(np.hypot(e[:, None] - e[None, :], n[:, None] - n[None, :])))


def clean_ground_truth(t_ns: list[int], east_m: np.ndarray, north_m: np.ndarray, yaw_deg: list[float],
                       tolerance_m: float = GT_DUPLICATE_TOLERANCE_M) -> CleanGroundTruth:
    """Merge agreeing duplicates (the first kept) and mark contradicting ones unknown (module docstring)."""
    t = np.asarray(t_ns, np.int64).reshape(-1)
    order = np.argsort(t, kind="stable")
    t = t[order]
    e = np.asarray(east_m, np.float64).reshape(-1)[order]
    n = np.asarray(north_m, np.float64).reshape(-1)[order]
    y = np.asarray(yaw_deg, np.float64).reshape(-1)[order]
    stamps, first, counts = np.unique(t, return_index=True, return_counts=True)
    out_e, out_n, out_y = e[first].copy(), n[first].copy(), y[first].copy()
    res = CleanGroundTruth(trajectory.make_trajectory([], [], [], []))
    for k in np.flatnonzero(counts > 1):
        sl = slice(first[k], first[k] + counts[k])
        spread = _spread_m(e[sl], n[sl])
        if spread <= tolerance_m:
            res.duplicates_merged += int(counts[k]) - 1
            continue
        out_e[k] = out_n[k] = out_y[k] = np.nan
        res.conflicting_stamps += 1
        res.conflicting_messages += int(counts[k])
        res.largest_conflict_m = max(res.largest_conflict_m, spread)
    res.traj = trajectory.Trajectory(stamps, out_e, out_n, out_y)
    return res


# ------------------------------------------------------------------------------------------------ report
@dataclass
class DataQuality:
    """``metrics.json`` ``data_quality`` (module docstring)."""

    images_dropped: dict = field(default_factory=lambda: {"duplicate_stamp": 0, "backward_stamp": 0})
    gt_excluded: dict = field(default_factory=lambda: {GT_NO_FIX: 0, GT_NON_FINITE: 0, GT_OUT_OF_RANGE: 0,
                                                       GT_CONFLICTING: 0})
    gt_duplicates_merged: int = 0
    gt_largest_conflict_m: float = 0.0
    frames_not_scored: dict = field(default_factory=lambda: {"conflicting_gt": 0})
    mcap: list[dict] = field(default_factory=list)

    def add_images(self, stamps: ImageStamps) -> None:
        self.images_dropped = {"duplicate_stamp": stamps.duplicate, "backward_stamp": stamps.backward}

    def add_ground_truth(self, excluded: dict[str, int], clean: CleanGroundTruth) -> None:
        self.gt_excluded = {**self.gt_excluded, **excluded, GT_CONFLICTING: clean.conflicting_messages}
        self.gt_duplicates_merged = clean.duplicates_merged
        self.gt_largest_conflict_m = clean.largest_conflict_m

    def add_mcap(self, checks: list[McapCheck], warnings: list[str]) -> None:
        """The chunk checks, and a warning when chunks carry no CRC (corrupt ones are warned of when opened)."""
        self.mcap = [c.to_json() for c in checks]
        chunks, without = sum(c.chunks for c in checks), sum(c.without_crc for c in checks)
        if without:
            warnings.append(f"{without} of {chunks} MCAP chunks carry no CRC (their writer left it 0): damage inside "
                            "them cannot be detected (docs/REPLAY.md, 'Damaged recordings')")

    def to_json(self) -> dict:
        return {"images_dropped": dict(self.images_dropped), "gt_excluded": dict(self.gt_excluded),
                "gt_duplicates_merged": self.gt_duplicates_merged,
                "gt_largest_conflict_m": self.gt_largest_conflict_m,
                "frames_not_scored": dict(self.frames_not_scored), "mcap": list(self.mcap),
                "tolerance_m": GT_DUPLICATE_TOLERANCE_M}


def summary_line(dq: dict) -> str:
    """The printed summary's ``data quality:`` line from ``metrics.json``'s ``data_quality``."""
    mcap = dq.get("mcap") or []
    mc = (f"; MCAP chunks {sum(m['chunks'] for m in mcap)}, without CRC {sum(m['chunks_without_crc'] for m in mcap)}"
          f", corrupt {sum(m['chunks_corrupt'] for m in mcap)} ({sum(m['messages_lost'] for m in mcap)} messages "
          "lost)") if mcap else ""
    kv = (lambda d: ", ".join(f"{k} {v}" for k, v in d.items()))
    return (f"images dropped: {kv(dq['images_dropped'])}; GT excluded: {kv(dq['gt_excluded'])}, duplicates merged "
            f"{dq['gt_duplicates_merged']}; frames not scored: {kv(dq['frames_not_scored'])}{mc}")


def gt_warning(topic: str, excluded: dict[str, int], clean: CleanGroundTruth, frames_not_scored: int) -> str | None:
    """One line on the GT messages not used and the frames left unscored for it; None when all were used."""
    reasons = {k: v for k, v in {**excluded, GT_CONFLICTING: clean.conflicting_messages}.items() if v}
    if not reasons:
        return None
    line = (f"GT on {topic}: {sum(reasons.values())} messages not used "
            f"({', '.join(f'{k} {v}' for k, v in reasons.items())})")
    if clean.conflicting_messages:
        line += (f"; {clean.conflicting_stamps} stamps carry contradicting positions (up to "
                 f"{clean.largest_conflict_m:.1f} m apart): {frames_not_scored} frames around them not scored")
    return line
