"""What the Localizer returns: a :class:`Fix` (definitions in :mod:`unifygeo_ros.localization.localizer`), and the
:class:`Prior` it may be given; :class:`QueryEvidence`, the raw material of a fix's posterior (calibration)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field, fields

import numpy as np


#: bound of a prior's |east|, |north| and sigma, m (10,000 km: a quarter of the Earth's circumference, far beyond any
#: index's local ENU frame; larger finite numbers overflow the tile search's squared distances)
PRIOR_MAX_M = 1e7


@dataclass(frozen=True)
class Prior:
    """A position prior in the index's local ENU frame: a circle of ``sigma_m`` (1-sigma) around a point; east, north
    and sigma within :data:`PRIOR_MAX_M` (``ValueError`` otherwise: the one check of every prior)."""

    east_m: float
    north_m: float
    sigma_m: float

    def __post_init__(self):
        if not (abs(self.east_m) <= PRIOR_MAX_M and abs(self.north_m) <= PRIOR_MAX_M
                and 0 < self.sigma_m <= PRIOR_MAX_M):  # NaN fails every comparison
            raise ValueError(f"Prior needs finite east/north within +-{PRIOR_MAX_M:g} m and 0 < sigma_m <= "
                             f"{PRIOR_MAX_M:g} m, got {self}")


@dataclass
class Fix:
    """One geo-localization result (see the module docstring for the definitions)."""

    latitude_deg: float
    longitude_deg: float
    east_m: float
    north_m: float
    heading_deg: float
    yaw_deg: float
    covariance_en_m2: np.ndarray  # (2, 2) east/north, m^2
    heading_std_deg: float
    score: float
    tile_id: str
    tile_rank_before_rerank: int
    tile_rank_after_rerank: int
    used_prior: bool
    prior_rejected: bool = False
    heading_source: str = "model"  # "model" (estimated) | "input" (given by the caller, known orientation)
    tiles_searched: int = 0
    candidate_tile_ids: tuple = ()  # the K candidates in retrieval (descriptor) order
    evidence_tile_id: str = ""  # the re-ranker's top-1: its map gave the position (tile_id: see the module doc)
    protection_level_m: float = math.inf  # radius holding the truth with probability 1 - alpha (the posterior's)
    outside_probability: float = 0.0  # posterior probability that none of the K candidates holds the camera
    descriptor_cosine: float = math.nan  # best global-descriptor cosine of the query against the searched tiles
    input_problem: str = ""  # why the input looks unlike a camera image of the map ("" = it does not): input_check
    timings_ms: dict = field(default_factory=dict)
    evidence: object = field(default=None, repr=False, compare=False)  # QueryEvidence when the Localizer records it

    @property
    def std_en_m(self) -> tuple[float, float]:
        return float(math.sqrt(self.covariance_en_m2[0, 0])), float(math.sqrt(self.covariance_en_m2[1, 1]))

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "evidence"}
        d["covariance_en_m2"] = np.asarray(self.covariance_en_m2, float).tolist()
        return d

    def to_json(self, image: str | None = None) -> dict:
        """The ``unifygeo localize --json`` object: one name per meaning - ``yaw_deg`` the ENU yaw (0 = east,
        counter-clockwise), ``compass_heading_deg`` the compass heading (0 = north, clockwise; this dataclass's
        ``heading_deg``). ``heading_deg`` there is a **deprecated** alias of ``yaw_deg`` (its meaning before both
        names existed), kept for one release: read ``yaw_deg``."""
        return {
            "image": image, "latitude": self.latitude_deg, "longitude": self.longitude_deg,
            "yaw_deg": self.yaw_deg, "compass_heading_deg": self.heading_deg,
            "heading_deg": self.yaw_deg,  # deprecated alias of yaw_deg (ENU yaw); removed in the next release
            "east_m": self.east_m, "north_m": self.north_m,
            "covariance_m2": np.asarray(self.covariance_en_m2, float).tolist(),
            "heading_std_deg": self.heading_std_deg, "score": self.score, "tile": self.tile_id,
            "evidence_tile": self.evidence_tile_id, "tile_rank_before_rerank": self.tile_rank_before_rerank,
            "used_prior": self.used_prior,
            "prior_rejected": self.prior_rejected, "heading_source": self.heading_source,
            "protection_level_m": self.protection_level_m if math.isfinite(self.protection_level_m) else None,
            "outside_probability": self.outside_probability, "input_problem": self.input_problem,
            "timings_ms": self.timings_ms,
        }


@dataclass
class QueryEvidence:
    """One query's candidates as the posterior saw them (``Localizer(record_evidence=True)``; for calibration)."""

    fix_en_m: np.ndarray  # (2,) the fix, index frame
    centres_en_m: np.ndarray  # (K, 2)
    tile_m: np.ndarray  # (K,)
    maps: np.ndarray  # (K, h, w) float32 probability maps
    scores: np.ndarray  # (K,) re-ranking scores
    evidence_slot: int = 0  # the candidate whose map gave the fix
