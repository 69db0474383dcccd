"""Benchmark: exact vs approximate descriptor search at 10k / 100k / 1M tiles (figures printed, nothing asserted).

    python benchmarks/bench_index.py [--sizes 10000 100000 1000000] [--dim 128] [--queries 1000] [--threads 2]

Descriptors are random but shaped like a city's: tiles come in neighbourhoods (a mixture of ``N / 50``
directions on the sphere, each tile = 0.7 x its neighbourhood direction + 0.3 x its own, normalised), and queries
are tiles pushed to a cosine of 0.6 from their source (what a matching ground descriptor looks like).
For each size: build time, memory of the structure (faiss serialised size, which is its resident size for these
index types), query time per query (batched and one at a time), recall@10 against exact search (the share of
the exact top-10 the index returns). Also plain numpy and torch brute force (float32 matrix product + top-k).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from unifygeo_ros.index import search  # noqa: E402


def city_like_descriptors(n: int, dim: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = search.normalize(rng.standard_normal((max(1, n // 50), dim)).astype(np.float32))
    out = np.empty((n, dim), np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        own = search.normalize(rng.standard_normal((m, dim)).astype(np.float32))
        out[start:start + m] = search.normalize(0.7 * centres[rng.integers(0, len(centres), m)] + 0.3 * own)
    return out


def _time(fn, repeat: int = 1) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def bench_size(n: int, dim: int, n_queries: int, kinds: list[str]):
    """Yields one result row per method, as soon as it is measured."""
    x = city_like_descriptors(n, dim)
    q = search.synthetic_queries(x, n_queries, cosine=0.6, seed=1)
    t0 = time.perf_counter()
    exact_ids = search.numpy_topk(q, x, 10)[1]
    t_np = time.perf_counter() - t0
    yield {"n": n, "method": "numpy brute force", "build_s": 0.0, "mem_mb": x.nbytes / 2**20,
           "batch_ms_per_q": 1000 * t_np / len(q),
           "single_ms": 1000 * _time(lambda: search.numpy_topk(q[:1], x, 10), 3), "recall10": 1.0}
    import torch

    xt, qt = torch.from_numpy(x), torch.from_numpy(q)

    def torch_topk(qq):
        return torch.topk(qq @ xt.T, 10, dim=1)

    t_t = _time(lambda: [torch_topk(qt[i:i + 256]) for i in range(0, len(qt), 256)])
    ids = torch.cat([torch_topk(qt[i:i + 256]).indices for i in range(0, len(qt), 256)]).numpy()
    yield {"n": n, "method": "torch brute force", "build_s": 0.0, "mem_mb": x.nbytes / 2**20,
           "batch_ms_per_q": 1000 * t_t / len(q), "single_ms": 1000 * _time(lambda: torch_topk(qt[:1]), 3),
           "recall10": search.recall_at_k(ids, exact_ids)}
    if not search.have_faiss():
        return
    faiss = search.faiss
    for kind in kinds:
        index, info = search.build_faiss_index(x, kind, target_recall=0.95)
        mem = faiss.serialize_index(index).nbytes / 2**20
        t_b = _time(lambda: index.search(q, 10))
        ids = index.search(q, 10)[1]
        single = _time(lambda: [index.search(q[i:i + 1], 10) for i in range(20)]) / 20
        yield {"n": n, "method": f"faiss {kind} {info.params or ''}".strip(), "build_s": info.build_s,
               "mem_mb": mem, "batch_ms_per_q": 1000 * t_b / len(q), "single_ms": 1000 * single,
               "recall10": search.recall_at_k(ids, exact_ids)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    p.add_argument("--dim", type=int, default=128, help="descriptor size (the demo model's; the paper uses 768)")
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--kinds", nargs="+", default=["exact", "ivf", "hnsw"])
    p.add_argument("--threads", type=int, default=0, help="faiss/torch threads (0: library default)")
    args = p.parse_args(argv)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
        if search.have_faiss():
            search.faiss.omp_set_num_threads(args.threads)
    import os

    print(f"# bench_index: dim {args.dim}, {args.queries} queries, faiss "
          f"{getattr(search.faiss, '__version__', 'absent')}, {os.cpu_count()} CPUs"
          f"{', threads ' + str(args.threads) if args.threads else ''}")
    print(f"{'tiles':>9} {'method':<34} {'build s':>8} {'mem MiB':>8} {'ms/q batch':>10} {'ms/q single':>11} "
          f"{'recall@10':>9}")
    for n in args.sizes:
        for r in bench_size(n, args.dim, args.queries, args.kinds):
            print(f"{r['n']:>9} {r['method']:<34} {r['build_s']:>8.2f} {r['mem_mb']:>8.1f} {r['batch_ms_per_q']:>10.3f} "
                  f"{r['single_ms']:>11.3f} {r['recall10']:>9.3f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
