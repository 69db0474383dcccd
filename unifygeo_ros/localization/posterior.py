"""The posterior over the whole hierarchy, its covariance and its protection level.

The fix's uncertainty must cover every way it can be wrong, not only the chosen tile's map (which is conditional on
the tile being right). The posterior over the camera's ground position is a mixture over the K re-ranked
candidates and over "none of them" (retrieval missed the camera's tile):

    p(x) = pi_0 * (somewhere else)  +  sum_k pi_k * P_k(x)

* ``pi`` = softmax over the candidates' logits ``s_k / score_temperature + consensus_weight * ln n_k`` and a
  constant ``outside_logit`` for "none of the K" (calibrated: :class:`Calibration`, fitted on cities the model
  never saw). ``n_k`` is the number of candidates whose map peaks lie within ``consensus_radius_m`` of candidate
  k's own peak (itself included): overlapping tiles that see the camera at one place agree, a wrong tile's peak
  stands alone - the consensus of :mod:`~unifygeo_ros.model.rerank`, weighed by the fit (1 -> agreeing candidates
  reinforce each other like independent evidence; 0 -> off, the calibrations stored before it existed);
* ``P_k`` = candidate k's probability map over its tile's cells, sharpened or flattened by a map temperature
  (``P_k ~ p_k ** (1 / temperature)``), each cell a uniform square of the map's cell size: ``map_temperature`` for the
  covariance of the fix's mode (fitted so that the ellipses cover the truth like a Gaussian's), ``pl_map_temperature``
  for the whole posterior behind the protection level (fitted with the score temperature by maximum likelihood).

From it, about the published fix ``f`` (what :func:`~unifygeo_ros.localization.choice.choose_fix` chose):

* ``covariance_en_m2`` = the covariance of the fix's own mode: the second moment about ``f`` of the mass of the
  candidates whose tiles hold ``f`` (the chosen tile and its overlapping neighbours), plus each cell's own variance.
  This is what a filter should fuse: it describes the error when the fix is in the right place. The mass of the
  other candidates (other places the camera may be) is not averaged into it - a mixture's second moment is
  dominated by small far-away mass and would be too wide for the usual case and still meaningless for the rare
  wrong one - it is carried by the protection level, and the integrity gate withholds a fix whose other modes are
  too likely;
* ``protection_level_m`` = the radius around ``f`` that holds the truth with probability ``1 - alpha`` under the
  posterior (each cell counted at its far corner, so the bound is conservative; the "none of the K" mass counts as
  outside any radius: ``inf`` when it alone exceeds ``alpha``). As in satellite navigation integrity: an error larger
  than the protection level is hazardously misleading information (HMI), and the integrity gate
  (:func:`~unifygeo_ros.localization.pipeline.gate_fix`) withholds fixes whose protection level is too large.
"""
from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np

from unifygeo_ros.errors import CheckpointError
from unifygeo_ros.model.rerank import within_radius

#: file beside a checkpoint's weights that holds its :class:`Calibration`
CALIBRATION_FILE = "calibration.json"
DEFAULT_ALPHA = 0.01
#: a cell holding less posterior mass than this is left out of the protection level's sort (protection_level_m)
NEGLIGIBLE_MASS = 1e-12


@dataclass(frozen=True)
class Calibration:
    """The posterior's three numbers (defaults: uncalibrated - the model's own probabilities, nothing outside)."""

    score_temperature: float = 1.0  #: re-ranking scores are divided by this before the softmax
    outside_logit: float = -math.inf  #: logit of "none of the K candidates", in the same units as scores / T
    map_temperature: float = 1.0  #: maps raised to 1 / this and renormalised, for the covariance of the fix's mode
    pl_map_temperature: float = 1.0  #: the same, for the whole posterior behind the protection level
    min_descriptor_cosine: float = -math.inf  #: a query's best descriptor cosine below this is out of distribution
    consensus_weight: float = 0.0  #: logits gain this times ln(candidates agreeing with each one's peak); 0 = off
    consensus_radius_m: float = 5.0  #: two candidates agree when their map peaks are at most this far apart, m
    fitted_on: str = ""  #: what it was fitted on (cities, queries, command), for the record

    def __post_init__(self):
        if not (isinstance(self.consensus_weight, (int, float)) and math.isfinite(self.consensus_weight)
                and self.consensus_weight >= 0):
            raise CheckpointError(f"calibration consensus_weight must be a number >= 0, got {self.consensus_weight!r}")
        for name in ("score_temperature", "map_temperature", "pl_map_temperature", "consensus_radius_m"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise CheckpointError(f"calibration {name} must be a positive number, got {v!r}")
        for name in ("outside_logit", "min_descriptor_cosine"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or math.isnan(v) or v == math.inf:
                raise CheckpointError(f"calibration {name} must be a number or -inf (null), got {v!r}")

    def to_json(self) -> dict:
        d = asdict(self)
        for name in ("outside_logit", "min_descriptor_cosine"):
            d[name] = None if d[name] == -math.inf else float(d[name])
        return d

    @classmethod
    def from_json(cls, d: object) -> "Calibration":
        if not isinstance(d, dict) or set(d) - {f.name for f in fields(cls)}:
            raise CheckpointError(f"calibration: expected an object with keys {[f.name for f in fields(cls)]}, "
                                  f"got {d!r:.200}")
        d = dict(d)
        for name in ("outside_logit", "min_descriptor_cosine"):
            if d.get(name, None) is None:
                d[name] = -math.inf
        try:
            return cls(**{k: (v if k == "fitted_on" else float(v)) for k, v in d.items()})
        except (TypeError, ValueError) as exc:
            raise CheckpointError(f"calibration: {exc}") from None


def load_calibration(checkpoint: str | Path | None) -> Calibration:
    """The calibration stored with a checkpoint (``calibration.json``), or the uncalibrated default when the
    checkpoint has none. A present but unreadable file is a :class:`CheckpointError` (never silently ignored)."""
    if checkpoint is None:
        return Calibration()
    path = Path(checkpoint) / CALIBRATION_FILE
    if not path.is_file():
        return Calibration()
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: not a readable calibration ({exc})") from None
    return Calibration.from_json(data)


def save_calibration(checkpoint: str | Path, cal: Calibration) -> Path:
    path = Path(checkpoint) / CALIBRATION_FILE
    path.write_text(json.dumps(cal.to_json(), indent=1) + "\n")
    return path


@dataclass(frozen=True)
class Posterior:
    """The posterior's summary about the fix (see the module docstring)."""

    covariance_en_m2: np.ndarray  #: (2, 2) second moment of the candidates' mixture about the fix, m^2
    protection_level_m: float  #: radius holding the truth with probability 1 - alpha (inf: cannot be bounded)
    outside_probability: float  #: pi_0, the probability that none of the K candidates holds the camera
    candidate_probabilities: np.ndarray  #: (K,) pi_k
    #: (2, 2) second moment about the fix of every candidate's mass (the whole mixture, other places included; maps at
    #: ``map_temperature``), when asked for (``mixture=True``): not published - a mixture is no Gaussian
    #: (BENCHMARKS.md 0b, bench_trust_mixture.py)
    mixture_covariance_en_m2: np.ndarray | None = None


def map_peaks_en_m(centres_en_m: np.ndarray, tile_m: np.ndarray, maps: np.ndarray) -> np.ndarray:
    """(K, 2) the centre of each candidate's most probable map cell, in the centres' metric frame."""
    maps = np.asarray(maps)
    k, h, w = maps.shape
    flat = np.argmax(maps.reshape(k, -1), axis=1)
    tile = np.broadcast_to(np.asarray(tile_m, np.float64), (k,))
    east = ((flat % w + 0.5) / w - 0.5) * tile
    north = (0.5 - (flat // w + 0.5) / h) * tile
    return np.asarray(centres_en_m, np.float64) + np.stack([east, north], axis=1)


def agreement_counts(peaks_en_m: np.ndarray, radius_m: float) -> np.ndarray:
    """(K,) how many candidates' peaks lie within ``radius_m`` of each candidate's peak (itself included; the
    consensus' :func:`~unifygeo_ros.model.rerank.within_radius`)."""
    return within_radius(peaks_en_m, radius_m).sum(axis=1).astype(np.float64)


def candidate_logits(scores: np.ndarray, cal: Calibration, centres_en_m: np.ndarray | None = None,
                     tile_m: np.ndarray | None = None, maps: np.ndarray | None = None) -> np.ndarray:
    """(K,) the calibrated logits ``s_k / T + consensus_weight * ln n_k`` (the module docstring); the maps and
    their tiles are needed only when the calibration has a consensus weight."""
    scores = np.asarray(scores, np.float64)
    if cal.consensus_weight <= 0 or not scores.size:
        return logits_from(scores, None, cal)
    if maps is None or centres_en_m is None or tile_m is None:
        raise ValueError("a calibration with a consensus weight needs the candidates' maps and tiles")
    return logits_from(scores, np.log(agreement_counts(map_peaks_en_m(centres_en_m, tile_m, maps),
                                                       cal.consensus_radius_m)), cal)


def logits_from(scores: np.ndarray, log_agreement: np.ndarray | None, cal: Calibration) -> np.ndarray:
    """``s / T + consensus_weight * ln n`` from scores and ln agreement counts of any matching shape (one query's
    (K,) or the calibration fit's (N, K)); ``log_agreement`` is not read when the consensus weight is 0."""
    z = np.asarray(scores, np.float64) / cal.score_temperature
    return z + cal.consensus_weight * log_agreement if cal.consensus_weight > 0 else z


def candidate_probabilities(scores: np.ndarray, cal: Calibration, centres_en_m: np.ndarray | None = None,
                            tile_m: np.ndarray | None = None,
                            maps: np.ndarray | None = None) -> tuple[np.ndarray, float]:
    """(pi_k (K,), pi_0): the calibrated softmax over the K logits (:func:`candidate_logits`) and the "none of
    them" logit."""
    z = candidate_logits(scores, cal, centres_en_m, tile_m, maps)
    top = max(float(z.max()), cal.outside_logit)
    w = np.exp(z - top)
    w0 = math.exp(cal.outside_logit - top) if cal.outside_logit > -math.inf else 0.0
    total = float(w.sum()) + w0
    return w / total, w0 / total


def cell_offsets_en_m(hw: tuple[int, int], tile_m: float) -> np.ndarray:
    """(h, w, 2) east/north metres of each cell centre from the tile centre (row 0 = north, col 0 = west)."""
    h, w = hw
    east = ((np.arange(w) + 0.5) / w - 0.5) * tile_m
    north = (0.5 - (np.arange(h) + 0.5) / h) * tile_m
    return np.stack(np.broadcast_arrays(east[None, :], north[:, None]), axis=-1)


def hierarchy_posterior(fix_en_m: np.ndarray, centres_en_m: np.ndarray, tile_m: np.ndarray,
                        maps: np.ndarray, scores: np.ndarray, cal: Calibration,
                        alpha: float = DEFAULT_ALPHA, mixture: bool = False) -> Posterior:
    """The posterior of one query (see the module docstring). ``maps`` (K, h, w): each candidate's probability map;
    ``centres_en_m`` (K, 2) and ``fix_en_m`` (2,) in one metric frame; ``tile_m`` (K,) tile sides. ``mixture``: also
    the whole mixture's second moment (a quarter of the time again; for measurements)."""
    maps = np.asarray(maps, np.float64)
    k, h, w = maps.shape
    pi, pi0 = candidate_probabilities(scores, cal, centres_en_m, tile_m, maps)
    tile = np.broadcast_to(np.asarray(tile_m, np.float64), (k,))
    sizes = {float(t): cell_offsets_en_m((h, w), t).reshape(-1, 2) for t in np.unique(tile)}  # usually one size
    cells = np.stack([sizes[float(t)] for t in tile])
    d = (np.asarray(centres_en_m, np.float64)[:, None, :] + cells) - np.asarray(fix_en_m, np.float64)
    d = d.reshape(-1, 2)
    cell_m = np.repeat(tile / w, h * w), np.repeat(tile / h, h * w)
    holds = np.abs(np.asarray(centres_en_m, np.float64) - np.asarray(fix_en_m, np.float64)).max(axis=1) <= tile / 2
    local = np.repeat(holds if holds.any() else np.ones(k, bool), h * w)
    weight = (pi[:, None] * tempered(maps, cal.map_temperature)).reshape(-1)
    cov = _second_moment(d[local], weight[local], cell_m[0][local], cell_m[1][local])
    mixture = _second_moment(d, weight, cell_m[0], cell_m[1]) if mixture else None
    if cal.pl_map_temperature != cal.map_temperature:
        weight = (pi[:, None] * tempered(maps, cal.pl_map_temperature)).reshape(-1)  # sums to 1 - pi0
    pl = protection_level_m(np.hypot(d[:, 0], d[:, 1]) + 0.5 * np.hypot(*cell_m), weight, pi0, alpha)
    return Posterior(cov, pl, float(pi0), pi, mixture)


def tempered(maps: np.ndarray, temperature: float) -> np.ndarray:
    """(K, h*w) each map raised to 1 / ``temperature`` and renormalised (in log space: sharp maps stay finite)."""
    k = maps.shape[0]
    logm = np.log(np.clip(maps.reshape(k, -1), 1e-300, None)) / temperature
    logm -= logm.max(axis=1, keepdims=True)
    m = np.exp(logm)
    return m / m.sum(axis=1, keepdims=True)


def _second_moment(d: np.ndarray, weight: np.ndarray, cell_e_m: np.ndarray, cell_n_m: np.ndarray) -> np.ndarray:
    """(2, 2) weighted second moment of offsets ``d`` (N, 2) plus each cell's uniform variance (side^2 / 12)."""
    total = max(float(weight.sum()), 1e-300)
    cov = np.einsum("n,ni,nj->ij", weight, d, d) / total
    return cov + np.diag([float(weight @ cell_e_m ** 2), float(weight @ cell_n_m ** 2)]) / (12.0 * total)


def protection_level_m(far_m: np.ndarray, weight: np.ndarray, outside: float, alpha: float) -> float:
    """Smallest radius r whose cells (by their far corner ``far_m``) hold at least 1 - ``alpha`` of the mass
    (``outside`` mass is never inside); inf when that cannot be reached."""
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must be within (0, 1), got {alpha}")
    need = 1.0 - alpha
    if 1.0 - outside < need:
        return math.inf
    # cells under NEGLIGIBLE_MASS each cannot move the bound (all of them together hold < 1e-8 of the mass): left
    # out of the sort (10 x faster on sharpened maps), counted as never inside - the bound can only grow by it
    keep = weight >= NEGLIGIBLE_MASS
    if not keep.all():
        if 1.0 - outside - float(weight[~keep].sum()) < need:
            keep = np.ones_like(keep)
        far_m, weight = far_m[keep], weight[keep]
    order = np.argsort(far_m, kind="stable")
    mass = np.cumsum(weight[order])
    i = int(np.searchsorted(mass, need - 1e-12))
    return float(far_m[order][min(i, len(order) - 1)])
