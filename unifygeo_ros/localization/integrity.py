"""How far a filter can trust the fixes: calibration and integrity figures of fixes against the truth.

Definitions (the same wherever they are reported: ``unifygeo calibrate``, ``unifygeo replay``, the benchmarks):

* **NEES** of a fix = ``e^T C^-1 e`` with ``e`` the east/north error and ``C`` the published covariance; for a
  consistent 2-D estimator it follows a chi-square with 2 degrees of freedom: mean 2, median 1.386.
* **coverage at n sigma** = share of fixes whose truth lies inside the 2-D n-sigma ellipse, ``NEES <= n^2``:
  a consistent estimator gives ``1 - exp(-n^2 / 2)`` = 39.3 / 86.5 / 98.9 % for n = 1 / 2 / 3.
* **HMI** (hazardously misleading information) = an accepted fix whose error exceeds its protection level; the
  **HMI rate** = HMI / accepted fixes.
* **availability** = accepted fixes / frames (a frame the gate withheld, or that failed, is not available).
* **reliability diagram**: for nominal coverages p, the share of fixes with ``NEES <= -2 ln(1 - p)`` (the 2-D
  Gaussian's p-ellipse); a calibrated covariance lies on the diagonal.
* **Stanford plot** (satellite navigation's integrity plot): each fix's error against its protection level; points
  above the diagonal are HMI.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import numpy as np

#: the 2-D "n-sigma ellipse": NEES <= n^2, holding 1 - exp(-n^2 / 2) of a Gaussian
SIGMA_LEVELS = (1, 2, 3)
EXPECTED_COVERAGE = {n: 1.0 - math.exp(-n * n / 2.0) for n in SIGMA_LEVELS}
RELIABILITY_LEVELS = tuple(np.round(np.arange(0.05, 1.0, 0.05), 2))


@dataclass
class TrustReport:
    """Calibration and integrity of a set of fixes (definitions in the module docstring)."""

    frames: int  #: frames offered (accepted or not)
    accepted: int  #: fixes the gate let out
    availability: float  #: accepted / frames
    inside_1sigma: float | None  #: over accepted fixes
    inside_2sigma: float | None
    inside_3sigma: float | None
    nees_mean: float | None
    nees_median: float | None
    hmi: int  #: accepted fixes with error > protection level
    hmi_rate: float | None  #: hmi / accepted
    error_median_m: float | None
    error_p95_m: float | None
    protection_level_median_m: float | None
    reliability: dict  #: nominal coverage -> observed share (accepted fixes)

    def to_json(self) -> dict:
        """The figures as JSON values (a non-finite number - an infinite protection level - becomes null)."""
        d = finite_or_none(asdict(self))
        d["expected"] = {"inside_1sigma": EXPECTED_COVERAGE[1], "inside_2sigma": EXPECTED_COVERAGE[2],
                         "inside_3sigma": EXPECTED_COVERAGE[3], "nees_mean": 2.0, "nees_median": 2.0 * math.log(2)}
        return d


def nees(err_en_m: np.ndarray, cov_en_m2: np.ndarray) -> np.ndarray:
    """(N,) ``e^T C^-1 e`` of (N, 2) errors and (N, 2, 2) covariances (inf where C is singular)."""
    err = np.asarray(err_en_m, np.float64).reshape(-1, 2)
    cov = np.asarray(cov_en_m2, np.float64).reshape(-1, 2, 2)
    out = np.full(len(err), np.inf)
    det = cov[:, 0, 0] * cov[:, 1, 1] - cov[:, 0, 1] * cov[:, 1, 0]
    ok = np.isfinite(det) & (det > 0)
    if ok.any():
        out[ok] = np.einsum("ni,nij,nj->n", err[ok], np.linalg.inv(cov[ok]), err[ok])
    return out


def trust_report(err_en_m: np.ndarray, cov_en_m2: np.ndarray, protection_level_m: np.ndarray,
                 accepted: np.ndarray, frames: int | None = None) -> TrustReport:
    """The figures of N fixes (errors (N, 2), covariances (N, 2, 2), protection levels (N,), accepted flags (N,));
    ``frames``: frames offered, when more than N (frames without any fix)."""
    acc = np.asarray(accepted, bool).reshape(-1)
    n_frames = int(len(acc) if frames is None else frames)
    err = np.asarray(err_en_m, np.float64).reshape(-1, 2)[acc]
    d2 = nees(err, np.asarray(cov_en_m2, np.float64).reshape(-1, 2, 2)[acc])
    dist = np.hypot(err[:, 0], err[:, 1])
    pl = np.asarray(protection_level_m, np.float64).reshape(-1)[acc]
    n = int(acc.sum())

    def share(mask) -> float | None:
        return float(np.mean(mask)) if n else None

    hmi = int(np.sum(dist > pl))
    return TrustReport(
        frames=n_frames, accepted=n, availability=(n / n_frames) if n_frames else 0.0,
        inside_1sigma=share(d2 <= 1.0), inside_2sigma=share(d2 <= 4.0), inside_3sigma=share(d2 <= 9.0),
        nees_mean=float(np.mean(d2)) if n else None, nees_median=float(np.median(d2)) if n else None,
        hmi=hmi, hmi_rate=(hmi / n) if n else None,
        error_median_m=float(np.median(dist)) if n else None,
        error_p95_m=float(np.percentile(dist, 95)) if n else None,
        protection_level_median_m=float(np.median(pl)) if n else None,
        reliability={float(p): share(d2 <= -2.0 * math.log(1.0 - p)) for p in RELIABILITY_LEVELS})


def finite_or_none(value):
    """JSON-safe copy: non-finite floats (an infinite protection level or limit) become None, recursively."""
    if isinstance(value, dict):
        return {k: finite_or_none(v) for k, v in value.items()}
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value
