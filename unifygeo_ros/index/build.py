"""``unifygeo index build|merge|info``: encode a map's aerial tiles into a searchable index.

hloc-style: :func:`build_index` (tiles + model -> index folder), :func:`merge` (shard folders -> one index),
:func:`info` (what an index holds) are plain functions; ``configure_parser``/``run`` wrap them for the CLI.
The on-disk format is :mod:`unifygeo_ros.index.store`'s; docs/INDEX.md has the measurements behind the defaults.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from unifygeo_ros.errors import DataFormatError, IndexFormatError
from unifygeo_ros.index import map_checks, portable, store
from unifygeo_ros.index.search import SEARCH_KINDS
from unifygeo_ros.index.tiles import TileSource, orthophoto_tiles, vigor_tiles
from unifygeo_ros.model.backends import apply_threads
from unifygeo_ros.model.handle import ModelHandle, aerial_to_arrays, load_model

log = logging.getLogger(__name__)

#: ``auto`` caches the dense aerial features while they stay below this many bytes, else stores the tiles
#: (re-encoded at query time); see docs/INDEX.md for the memory/latency measurements behind it.
AUTO_FEATURE_CACHE_MAX_BYTES = 2 * 1024**3
AERIAL_MODES = ("auto",) + store.AERIAL_MODES


def feature_bytes_per_tile(handle: ModelHandle) -> int:
    """Bytes of the cached dense aerial features of one tile (float16)."""
    cfg = handle.model_cfg
    channels = int(cfg.orientation_bins) * int(cfg.match_dim)
    cells = sum((handle.aerial_px // int(s)) ** 2 for s in cfg.metric_strides)
    return 2 * channels * cells


def tile_bytes_per_tile(handle: ModelHandle) -> int:
    """Bytes of one stored RGB tile at the model's input size (uint8)."""
    return 3 * handle.aerial_px**2


def choose_aerial_mode(mode: str, handle: ModelHandle, count: int) -> str:
    """``features`` or ``tiles`` for ``mode`` (``auto``: features while ``count`` tiles of them fit the cap)."""
    if mode not in AERIAL_MODES:
        raise ValueError(f"aerial mode must be one of {AERIAL_MODES}, got {mode!r}")
    if mode != "auto":
        return mode
    return "features" if feature_bytes_per_tile(handle) * count <= AUTO_FEATURE_CACHE_MAX_BYTES else "tiles"


class _NoProgress:
    """What :func:`_progress` returns when no bar is wanted."""

    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str):
    """A tqdm bar on stderr counting tiles, or a silent stand-in."""
    if not enabled:
        return _NoProgress()
    return tqdm(total=total, desc=desc, unit="tile", file=sys.stderr, dynamic_ncols=True)


def encode_tiles(handle: ModelHandle, source: TileSource, rows: np.ndarray, aerial_mode: str,
                 batch_size: int = 32, progress: bool = True) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Encode tiles ``rows`` of ``source`` in batches: ``(descriptors (n, D) float32, aerial arrays)``.

    Aerial arrays: ``{"cells<l>": float16}`` (features mode) or ``{"tiles": uint8 (n, A, A, C)}`` at the model's
    aerial input size (tiles mode; re-encoding it reproduces exactly the cached features up to float16).
    Tiles are read by a thread while the network runs.
    """
    n = len(rows)
    a = handle.aerial_px
    desc = np.zeros((n, handle.descriptor_dim), np.float32)
    aerial: dict[str, np.ndarray] = {}
    if aerial_mode == "tiles":
        aerial["tiles"] = np.zeros((n, a, a, handle.aerial_channels), np.uint8)

    def read_batch(start: int) -> list[np.ndarray]:
        out = []
        for r in rows[start:start + batch_size]:
            img = source.read(int(r))
            if img.shape[0] != a or img.shape[1] != a:
                img = cv2.resize(img, (a, a), interpolation=cv2.INTER_AREA if img.shape[0] > a else cv2.INTER_LINEAR)
            out.append(img)
        return out

    bar = _progress(n, progress, "index build")
    starts = list(range(0, n, batch_size))
    with ThreadPoolExecutor(max_workers=1) as pool:
        pending = pool.submit(read_batch, starts[0]) if starts else None
        for bi, start in enumerate(starts):
            tiles = pending.result()
            if bi + 1 < len(starts):
                pending = pool.submit(read_batch, starts[bi + 1])
            feats = handle.encode_aerial(tiles)
            d, cells = aerial_to_arrays(feats)
            stop = start + len(tiles)
            desc[start:stop] = d
            if aerial_mode == "features":
                for k, v in cells.items():
                    if k not in aerial:
                        aerial[k] = np.zeros((n,) + v.shape[1:], np.float16)
                    aerial[k][start:stop] = v
            else:
                aerial["tiles"][start:stop] = np.stack(tiles)
            bar.update(len(tiles))
    bar.close()
    return desc, aerial


def build_index(handle: ModelHandle, source: TileSource, out_dir: str | Path, *, batch_size: int = 32,
                shard: tuple[int, int] | None = None, search_kind: str = "auto", aerial_mode: str = "auto",
                progress: bool = True) -> dict:
    """Encode ``source``'s tiles (or shard ``(i, N)`` of them) with ``handle`` and write an index to ``out_dir``.

    Returns the index metadata (see :mod:`unifygeo_ros.index.store`). The checkpoint and the tile source are
    recorded without absolute paths, relative to ``out_dir`` (:mod:`unifygeo_ros.index.portable`).
    """
    t0 = time.perf_counter()
    rows = store.shard_rows(len(source), shard)
    if rows.size == 0:
        raise DataFormatError(f"shard {shard[0]}/{shard[1]} of {len(source)} tiles is empty" if shard else
                              "the tile source is empty")
    train_tile_m = handle.train_tile_m
    if train_tile_m and abs(source.tile_m / train_tile_m - 1.0) > 0.1:
        log.warning("tiles are %.1f m but the model was trained on %.1f m tiles: expect worse accuracy "
                    "(use --tile-m %.0f)", source.tile_m, train_tile_m, train_tile_m)
    _report_source(handle, source)
    mode = choose_aerial_mode(aerial_mode, handle, len(source))
    desc, aerial = encode_tiles(handle, source, rows, mode, batch_size, progress)
    tiles = [source.tiles[int(r)] for r in rows]
    data = store.IndexData(
        tile_ids=[t.tile_id for t in tiles],
        latlon_deg=np.array([[t.lat_deg, t.lon_deg] for t in tiles], np.float64).reshape(-1, 2),
        en_m=np.array([[t.east_m, t.north_m] for t in tiles], np.float64).reshape(-1, 2),
        ordinal=rows.astype(np.int64), descriptors=desc, aerial=aerial)
    meta = {
        "model": portable.model_record(handle.identity, handle.config, handle.checkpoint, out_dir),
        "tile_m": float(source.tile_m),
        "tile_px": int(source.tile_px),
        "gsd_m": float(source.gsd_m),
        "model_aerial_px": handle.aerial_px,
        "origin": {"lat_deg": source.origin.lat0_deg, "lon_deg": source.origin.lon0_deg},
        "source": portable.source_record(source.describe(), out_dir),
        "shard": None if shard is None else {"index": int(shard[0]), "count": int(shard[1])},
        "aerial": {"mode": mode, "dtype": "float16" if mode == "features" else "uint8"},
    }
    out = store.write_index(out_dir, data, meta, search_kind=search_kind)
    log.info("index %s: %d tiles in %.1f s", out_dir, len(rows), time.perf_counter() - t0)
    return out


def _report_source(handle: ModelHandle, source: TileSource) -> None:
    """Log what the build should say about its map: tiles left out, a resolution far from the model's."""
    counts = source.counts
    if counts is not None:  # tiles without imagery or heights are a warning; outside a rotated footprint, not
        (log.warning if counts.nodata or counts.no_height else log.info)("%s", counts.summary())
    train_tile_m = handle.train_tile_m
    if train_tile_m and source.native_gsd_m:
        note = map_checks.resolution_note(source.native_gsd_m, source.gsd_m, train_tile_m / handle.aerial_px)
        if note is not None:
            (log.warning if note[0] else log.info)("%s", note[1])


def tile_source_from_args(args, handle: ModelHandle | None = None) -> TileSource:
    """The tile source ``unifygeo index build`` arguments name (with heights when ``handle``'s model takes them)."""
    if bool(args.vigor) == bool(args.orthophoto):
        raise DataFormatError("give exactly one tile source: --vigor CITY_DIR or --orthophoto FILE")
    height = handle is not None and handle.aerial_channels == 4
    dsm, dtm = getattr(args, "dsm", None), getattr(args, "dtm", None)
    origin_text = getattr(args, "origin", None)
    origin = map_checks.parse_origin(origin_text) if origin_text else None
    if args.vigor:
        if dsm or dtm:
            raise DataFormatError("--dsm/--dtm go with --orthophoto; a VIGOR city folder keeps its heights in "
                                  "<City>/satellite_height/")
        return vigor_tiles(args.vigor, gsd_m=args.gsd, height=height, origin=origin)
    if height and not dsm:
        raise DataFormatError("this model takes RGB + surface height (model.aerial_height): give the surface "
                              "model of the orthophoto with --dsm FILE (height above ground)")
    gsd = args.gsd
    if gsd is None and handle is not None:
        gsd = args.tile_m / handle.aerial_px  # cut tiles at the model's input resolution
    return orthophoto_tiles(args.orthophoto, tile_m=args.tile_m, stride_m=args.stride_m, gsd_m=gsd, crs=args.crs,
                            min_coverage=args.min_coverage, dsm=dsm if height else None,
                            dsm_crs=getattr(args, "dsm_crs", None), dtm=dtm if height else None, origin=origin)


def merge(shard_dirs: list[str | Path], out_dir: str | Path, search_kind: str | None = None) -> dict:
    """Merge shard folders into one index at ``out_dir`` (:func:`unifygeo_ros.index.store.merge_indexes`)."""
    return store.merge_indexes(shard_dirs, out_dir, search_kind)


def info(index_dir: str | Path, verify: bool = False) -> dict:
    """A summary of an index (for people): counts, model, tiling, search, sizes on disk."""
    ix = store.load_index(index_dir, verify="sha256" if verify else "size")
    m = ix.meta
    disk = sum(int(r.get("bytes", 0)) for r in m["arrays"].values()) + (Path(index_dir) / store.META_FILE).stat().st_size
    e, n = ix.en_m[:, 0], ix.en_m[:, 1]
    return {
        "path": str(Path(index_dir).resolve()), "format": f"{m['format']} v{m['version']}", "tiles": m["count"],
        "descriptor_dim": m["descriptor_dim"], "model_identity": ix.model_identity,
        "checkpoint": portable.checkpoint_hint(m), "tile_m": m["tile_m"], "tile_px": m.get("tile_px"),
        "gsd_m": m.get("gsd_m"), "origin": m["origin"], "source": m["source"], "shard": m.get("shard"),
        "search": m["search"], "aerial_mode": m["aerial"]["mode"],
        "extent_en_m": [float(e.min()), float(n.min()), float(e.max()), float(n.max())],
        "disk_bytes": int(disk), "verified": "sha256" if verify else "size", "created_utc": m.get("created_utc"),
    }


# ------------------------------------------------------------------------------------------------------- CLI


def configure_parser(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    b = sub.add_parser("build", help="encode a map's aerial tiles into an index folder")
    b.add_argument("--checkpoint", required=True, help="model checkpoint folder")
    b.add_argument("--out", required=True, help="index folder to write")
    src = b.add_argument_group("tile source (one of)")
    src.add_argument("--vigor", metavar="CITY_DIR", help="VIGOR-layout city folder (<City>/satellite/*.png)")
    src.add_argument("--orthophoto", metavar="FILE", help="GeoTIFF, or PNG/JPEG with a world file (.pgw/.jgw/.wld)")
    b.add_argument("--tile-m", type=float, default=70.0, help="orthophoto tile side in metres (default 70)")
    b.add_argument("--stride-m", type=float, default=35.0, help="orthophoto tile grid step in metres (default 35)")
    b.add_argument("--gsd", type=float, default=None,
                   help="metres per pixel of the tiles (default: orthophoto: tile_m / model input px; VIGOR: native)")
    b.add_argument("--crs", default=None, help="CRS of a world-file orthophoto without .prj (e.g. EPSG:32633)")
    b.add_argument("--dsm", default=None, metavar="FILE",
                   help="surface model of the orthophoto, height above ground (GeoTIFF in metres, or 16-bit PNG in "
                        "cm + world file); needed by models trained with model.aerial_height")
    b.add_argument("--dsm-crs", default=None, help="CRS of a world-file DSM (and DTM) without .prj")
    b.add_argument("--dtm", default=None, metavar="FILE",
                   help="terrain model of an absolute --dsm (terrain + buildings): heights become DSM - DTM")
    b.add_argument("--min-coverage", type=float, default=0.75,
                   help="leave out orthophoto tiles with less than this fraction inside the image, holding imagery "
                        "(not nodata, alpha 0 or black fill) and, with --dsm, under valid heights (default 0.75)")
    b.add_argument("--origin", default=None, metavar="LAT,LON",
                   help="origin of the index's local east/north frame (default: orthophoto: south-west corner of "
                        "its footprint; VIGOR: geo.json's origin, else the south-west tile centre)")
    b.add_argument("--batch-size", type=int, default=32)
    b.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    b.add_argument("--threads", type=int, default=0,
                   help="torch's intra-op CPU threads (default 0: torch's default, all cores: index building is "
                        "batched work; docs/DEPLOYMENT.md)")
    b.add_argument("--shard", default=None, metavar="I/N", help="build only shard I of N (then `index merge`)")
    b.add_argument("--search", default="auto", choices=SEARCH_KINDS,
                   help="faiss structure: exact (IndexFlatIP), ivf, hnsw, numpy; auto: exact up to "
                        "100k tiles, then ivf")
    b.add_argument("--aerial", default="auto", choices=AERIAL_MODES,
                   help="what the metric step reads: cached dense features, or tiles re-encoded at query time "
                        "(auto: features while they fit in 2 GiB)")
    b.add_argument("--no-progress", action="store_true")

    m = sub.add_parser("merge", help="combine shard folders (built with --shard i/N) into one index")
    m.add_argument("shards", nargs="+", metavar="SHARD_DIR")
    m.add_argument("--out", required=True)
    m.add_argument("--search", default=None, choices=SEARCH_KINDS, help="default: the shards' choice")

    i = sub.add_parser("info", help="describe an index folder")
    i.add_argument("index", metavar="DIR")
    i.add_argument("--verify", action="store_true", help="also check every file's sha256")
    i.add_argument("--json", action="store_true")


def _print_info(d: dict) -> None:
    s = d["search"]
    print(f"index      {d['path']}  ({d['format']}, created {d['created_utc']})")
    print(f"tiles      {d['tiles']}  ({d['tile_m']:g} m, {d['tile_px']} px, {d['gsd_m']:.3f} m/px)"
          + (f"  shard {d['shard']['index']}/{d['shard']['count']}" if d.get("shard") else ""))
    src = d["source"]
    print(f"source     {src.get('kind')}: {src.get('name', src.get('path'))}"
          + (f"  ({src['relpath']} from the index folder)" if src.get("relpath") else ""))
    print(f"origin     lat {d['origin']['lat_deg']:.7f}  lon {d['origin']['lon_deg']:.7f}  "
          f"extent E {d['extent_en_m'][0]:.0f}..{d['extent_en_m'][2]:.0f} m, "
          f"N {d['extent_en_m'][1]:.0f}..{d['extent_en_m'][3]:.0f} m")
    print(f"model      {d['model_identity'][:16]}  ({d['descriptor_dim']}-d)  checkpoint {d['checkpoint']}")
    print(f"search     {s['kind']} {s.get('params') or ''}  recall@10 vs exact {s.get('recall_at_10_vs_exact')}")
    print(f"aerial     {d['aerial_mode']}")
    print(f"disk       {d['disk_bytes'] / 2**20:.1f} MiB  (files checked: {d['verified']})")


def run(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    if args.action == "build":
        try:
            shard = store.parse_shard(args.shard)
        except ValueError as exc:
            raise DataFormatError(str(exc)) from None
        if args.threads < 0:
            raise DataFormatError(f"--threads must be >= 0, got {args.threads}")
        apply_threads(args.threads)
        handle = load_model(args.checkpoint, device=args.device)
        source = tile_source_from_args(args, handle)
        meta = build_index(handle, source, args.out, batch_size=args.batch_size, shard=shard,
                           search_kind=args.search, aerial_mode=args.aerial, progress=not args.no_progress)
        print(f"wrote {args.out}: {meta['count']} tiles, {meta['descriptor_dim']}-d, search {meta['search']['kind']}, "
              f"aerial {meta['aerial']['mode']}")
        print(f"origin of east/north: lat {source.origin.lat0_deg:.7f} lon {source.origin.lon0_deg:.7f} "
              f"({source.origin_note})")
        return 0
    if args.action == "merge":
        meta = merge(args.shards, args.out, args.search)
        print(f"wrote {args.out}: {meta['count']} tiles merged from {len(args.shards)} shards")
        return 0
    d = info(args.index, verify=args.verify)
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        _print_info(d)
    return 0


__all__ = ["build_index", "merge", "info", "encode_tiles", "choose_aerial_mode", "IndexFormatError"]
