"""Indexed top-k: a Lance vector index over a gradient table, candidates re-ranked exactly.

Top-k is a maximum inner product search of the preconditioned query ``q̃ = (H+λI)⁻¹q`` against
the stored ``g_i`` (mode ``if``) or against ``g_i/√self_i`` (``relatif``; ``cosine`` divides every
score of a query by the same positive ``√(q̃ᵀq)``, so it ranks like ``relatif``). The index does
not hold the stored vectors themselves but whitened copies ``A g_i`` (``A = (H+λI)^-1/2`` of the
checkpoint's preconditioner, per module block), searched with ``A⁻¹q̃``: the inner products are
the same, and quantisation errors no longer land in the directions ``(H+λI)⁻¹`` amplifies (on the
digits suite's gradients, PQ candidates held 0.91 of the true top-10 raw, 0.999 whitened). The
``white`` family (mode ``if``) indexes ``white_<table>`` (``A g``), the ``unit`` family
``unit_<table>`` (``A g/√self``, unit vectors); both keep each row's position in the gradient
table (and the unit family its self-influence). One more copy of the vectors, written at finalize.

A query asks the index (``metric="dot"``) for ``k × refine_factor`` candidates, reads their stored
vectors back and scores them exactly with the mode's normalisation; the result says how it was
found. Without an index (or for a batch too large for one to pay) the exact streamed scan answers.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import lance
import numpy as np
import pyarrow as pa
import torch

from storage import codec
from storage.gradients import VECTOR_FILE_FORMAT, GradientTable
from valuation.errors import DataworthError
from valuation.scoring import _EPS, MODES

FAMILY = {"if": "white", "relatif": "unit", "cosine": "unit"}
META_KEY = "dataworth.index"
RERANK_BLOCK = 8192  # candidates re-scored per float64 block


class VectorIndexError(DataworthError, RuntimeError):
    """The index is missing, stale (built from another table version) or was asked for nonsense."""


@dataclass(frozen=True)
class IndexArguments:
    """How a table's index is built and queried.

    Attributes:
        index_type: a Lance vector index (``IVF_PQ``, ``IVF_RQ``, ``IVF_SQ``, ``IVF_HNSW_SQ`` ...).
        num_partitions: IVF lists; ``None``: ``rows / rows_per_partition``.
        rows_per_partition: target list size when ``num_partitions`` is ``None``.
        num_sub_vectors: PQ sub-vectors; ``None``: ``dim / 8`` (one byte of code per 8 dimensions).
        kmeans_sample: rows sampled to train the IVF centroids here (torch, float32).
        kmeans_iters: Lloyd iterations of that training (and of the PQ codebook's).
        pq_sample: rows of that sample that train the PQ codebook (256 codes per sub-vector).
        nprobes: lists searched per query; ``None``: ``probe_fraction`` of the lists.
        probe_fraction: the share of lists searched when ``nprobes`` is ``None``.
        refine_factor: ``k × refine_factor`` candidates are re-ranked exactly.
        min_rows: tables with fewer committed rows are not indexed (an exact scan is cheap).
        max_candidate_fraction: a query batch whose candidates (``queries × k × refine_factor``)
            exceed this fraction of the table's rows is answered by the exact scan, which reads
            every row once for the whole batch while the re-rank reads candidates at random.
        seed: seed of the centroid sample.
    """

    index_type: str = "IVF_PQ"
    num_partitions: int | None = None
    # Measured at 1e6 x 4096, whitened (benchmarks/RESULTS.md): 244 lists, 512-byte codes, a third of
    # the lists probed: recall@10 0.934 with 40x re-ranking, 0.956 with 80x (0.19 s per query
    # against a 13-19 s one-query scan).
    rows_per_partition: int = 4096
    num_sub_vectors: int | None = None
    kmeans_sample: int = 32768
    kmeans_iters: int = 10
    pq_sample: int = 8192
    nprobes: int | None = None
    probe_fraction: float = 1 / 3
    refine_factor: int = 80
    min_rows: int = 200_000
    # Measured at 1e6 x 4096 on a warm 2-core machine (benchmarks/RESULTS.md): 256 queries x 800
    # candidates (20% of the rows) took 48.5 s against the scan's 38.7 s; one query 0.19 s.
    max_candidate_fraction: float = 0.05
    seed: int = 0

    def partitions(self, rows: int) -> int:
        return self.num_partitions or max(1, min(rows // 16, round(rows / self.rows_per_partition)))

    def probes(self, lists: int) -> int:
        """Lists searched per query in an index of ``lists`` lists."""
        return min(lists, self.nprobes or max(1, math.ceil(self.probe_fraction * lists)))

    def index_pays(self, n_query: int, k: int, rows: int) -> bool:
        """Whether a batch of ``n_query`` top-``k`` queries reads fewer candidates than the scan's
        break-even (``max_candidate_fraction`` of ``rows``)."""
        return n_query * k * max(1, self.refine_factor) <= self.max_candidate_fraction * rows


@dataclass
class TopK:
    """Per query the ``k`` best rows, best first: ids ``(n_query)`` lists of length ≤ k, exact
    float64 ``scores`` ``(n_query, k)`` (``-inf`` padding), and ``method`` (how they were found)."""

    example_ids: list[list[str]]
    doc_ids: list[list[str]]
    provider_ids: list[list[str]]
    scores: torch.Tensor
    method: str


def default_sub_vectors(dim: int) -> int:
    """The most PQ sub-vectors of at least 8 dimensions that divide ``dim`` (``dim / 8`` when 8 divides it)."""
    return next((m for m in range(dim // 8, 0, -1) if dim % m == 0), 1)


def kmeans(x: torch.Tensor, k: int, iters: int, seed: int = 0, block: int = 8192) -> torch.Tensor:
    """Lloyd's k-means (squared L2) of ``x`` ``(n, dim)`` from a k-means++ start → centroids
    ``(k, dim)`` float32; an emptied list keeps its previous centroid."""
    x = x.float()
    gen = torch.Generator().manual_seed(seed)
    norms = (x * x).sum(1)
    first = int(torch.randint(x.shape[0], (1,), generator=gen))
    centroids = [x[first]]
    closest = (norms - 2 * x @ x[first] + norms[first]).clamp_min(0)
    for _ in range(1, min(k, x.shape[0])):
        pick = int(torch.multinomial(closest.double() + 1e-30, 1, generator=gen))
        centroids.append(x[pick])
        closest = torch.minimum(closest, (norms - 2 * x @ x[pick] + norms[pick]).clamp_min(0))
    c = torch.stack(centroids)
    for _ in range(iters):
        assign = nearest_centroid(x, c, block)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=c.shape[0])
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled, None].float()
    return c


def nearest_centroid(x: torch.Tensor, centroids: torch.Tensor, block: int = 8192) -> torch.Tensor:
    """Index of the nearest centroid (squared L2) of each row of ``x`` ``(n, dim)``."""
    half = 0.5 * (centroids * centroids).sum(1)
    return torch.cat([(x[s : s + block] @ centroids.T - half).argmax(1) for s in range(0, x.shape[0], block)])


def train_pq(
    residuals: torch.Tensor, num_sub_vectors: int, iters: int, seed: int = 0, block: int = 1024
) -> torch.Tensor:
    """Product-quantisation codebook ``(num_sub_vectors, 256, dim / num_sub_vectors)`` float32: 256
    k-means centroids per sub-vector of ``residuals`` ``(n, dim)`` (all sub-spaces in one batched matmul)."""
    n, dim = residuals.shape
    if dim % num_sub_vectors:
        raise VectorIndexError(f"dim {dim} is not a multiple of num_sub_vectors {num_sub_vectors}")
    x = residuals.float().reshape(n, num_sub_vectors, -1).transpose(0, 1).contiguous()  # (m, n, ds)
    gen = torch.Generator().manual_seed(seed)
    c = x[:, torch.randperm(n, generator=gen)[: min(256, n)]].clone()
    if c.shape[1] < 256:  # fewer rows than codes: repeat (unused codes are harmless)
        c = c.repeat(1, -(-256 // c.shape[1]), 1)[:, :256]
    for _ in range(iters):
        half = 0.5 * (c * c).sum(2)  # (m, 256)
        assign = torch.cat(
            [(torch.bmm(x[:, s : s + block], c.transpose(1, 2)) - half[:, None]).argmax(2) for s in range(0, n, block)],
            1,
        )  # (m, n)
        sums = torch.zeros_like(c).scatter_add_(1, assign[..., None].expand(-1, -1, x.shape[2]), x)
        counts = torch.zeros(c.shape[:2]).scatter_add_(1, assign, torch.ones_like(assign, dtype=torch.float32))
        filled = counts > 0
        c[filled] = sums[filled] / counts[filled][:, None]
    return c


def _sample(table: GradientTable, version: int, rows: int, n: int, seed: int, source=None) -> torch.Tensor:
    ds = source if source is not None else table._dataset(version)
    pick = np.sort(np.random.default_rng(seed).choice(rows, size=min(n, rows), replace=False))
    vec = ds.take(pick, columns=["vector"]).column("vector").combine_chunks()
    flat = vec.values.to_numpy(zero_copy_only=False)
    return codec.numpy_view(flat, "float16" if flat.dtype == np.float16 else "float32").reshape(len(pick), -1).float()


def _companion_uri(table: GradientTable, family: str) -> str:
    return f"{table.store.uri.rstrip('/')}/{family}_{table.name}.lance"


def _write_companion(table: GradientTable, version: int, family: str, pre, chunk_rows: int):
    """``<family>_<table>``: per row its position in the table and its whitened vector ``A g``
    (``white``) or ``A g/√self`` with the self-influence (``unit``)."""
    if table.dtype not in ("float16", "float32"):
        raise VectorIndexError(f"{table.name}: the index needs a float16/float32 table, not {table.dtype}")
    self_inf: dict[str, float] = {}
    if family == "unit":
        for shard in table.committed_shards(version):
            self_inf |= table.self_influence(shard)
    value = pa.float16() if table.dtype == "float16" else pa.float32()
    fields = [pa.field("pos", pa.int64(), nullable=False)]
    if family == "unit":
        fields.append(pa.field("self_influence", pa.float64(), nullable=False))
    schema = pa.schema([*fields, pa.field("vector", pa.list_(value, table.dim), nullable=False)])
    limit = 65504.0 if table.dtype == "float16" else float("inf")

    def batches():
        pos = 0
        for chunk in table.read(chunk_rows=chunk_rows, version=version, prefetch=0):
            cols = [pa.array(np.arange(pos, pos + len(chunk), dtype=np.int64))]
            white = pre.power(chunk.vectors, -0.5)
            if family == "unit":
                try:
                    s = torch.tensor([self_inf[e] for e in chunk.example_ids], dtype=torch.float64)
                except KeyError as exc:
                    msg = f"{table.name}: no self-influence for example {exc}; finalize first"
                    raise VectorIndexError(msg) from None
                white = white / s.clamp_min(_EPS).sqrt()[:, None]
                cols.append(pa.array(s.numpy()))
            if float(white.abs().max()) > limit:
                raise VectorIndexError(
                    f"{table.name}: whitened vectors exceed float16's range (max {float(white.abs().max()):.3g}); "
                    "log the checkpoint with dtype = 'float32'"
                )
            flat = white.to(torch.float16 if table.dtype == "float16" else torch.float32).numpy().reshape(-1)
            cols.append(pa.FixedSizeListArray.from_arrays(pa.array(flat), table.dim))
            yield pa.RecordBatch.from_arrays(cols, schema=schema)
            pos += len(chunk)

    reader = pa.RecordBatchReader.from_batches(schema, batches())
    return lance.write_dataset(
        reader,
        _companion_uri(table, family),
        mode="overwrite",
        data_storage_version=VECTOR_FILE_FORMAT,
        max_rows_per_file=1 << 22,
    )


def build_index(
    table: GradientTable,
    pre,
    args: IndexArguments = IndexArguments(),
    modes: Sequence[str] = ("if",),
    chunk_rows: int = 8192,
) -> dict[str, dict]:
    """Index ``table`` for the ``modes`` (one index per family) in the metric of ``pre`` (the
    checkpoint's :class:`~valuation.Preconditioner` at the damping valuations use); returns per
    family what was built (``{"skipped": reason}`` below ``args.min_rows``). Run at finalize after
    ``optimize()`` and after the self-influence is written (the unit family reads it)."""
    table.tbl.checkout_latest()
    version = table.version
    rows = table.count_rows(version)
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise VectorIndexError(f"modes must be among {MODES}, got {tuple(modes)}")
    if pre.dim != table.dim:
        raise VectorIndexError(f"{table.name}: preconditioner of {pre.dim} dims for a table of {table.dim}")
    # Positions and index entries cover every row of the version: no open shard may hold any.
    if len(table.committed_shards(version)) != len(table.shard_states(version)):
        raise VectorIndexError(f"{table.name}: shards are still open; index after logging finished")
    out: dict[str, dict] = {}
    for family in sorted({FAMILY[m] for m in modes}):
        if rows < args.min_rows:
            out[family] = {"skipped": f"{rows} rows < min_rows {args.min_rows}: exact scan"}
            continue
        ds = _write_companion(table, version, family, pre, chunk_rows)
        info = _index_dataset(ds, table, version, rows, args)
        info["damping"] = {k: float(v) for k, v in sorted(pre.damping.items())}
        out[family] = info
        _save_meta(table, family, info)
    return out


def _index_dataset(ds, table: GradientTable, version: int, rows: int, args: IndexArguments) -> dict:
    start = time.perf_counter()
    parts = args.partitions(rows)
    sample = _sample(table, version, rows, max(args.kmeans_sample, 4 * parts), args.seed, source=ds)
    # Lance assigns rows to the list of largest q·c under the dot metric, so lists must be built
    # from centroids of one common norm (else the longest centroids take nearly every row: lists
    # of 0 .. 37,873 rows at 1e5 measured). Clusters of directions (spherical k-means), scaled to
    # the mean row norm.
    norms = sample.norm(dim=1, keepdim=True)
    centroids = kmeans(sample / norms.clamp_min(1e-30), parts, args.kmeans_iters, args.seed)
    centroids = centroids / centroids.norm(dim=1, keepdim=True).clamp_min(1e-30) * norms.mean()
    # Lance wants the trained parameters in the column's own float type.
    np_type = np.float16 if table.dtype == "float16" else np.float32
    kw = {}
    if "PQ" in args.index_type:
        kw["num_sub_vectors"] = args.num_sub_vectors or default_sub_vectors(table.dim)
        # Lance's own PQ training dominated the build (minutes at 1e5 x 4096 on 2 cores): trained
        # here, one batched matmul per Lloyd step. Under the dot metric Lance encodes the rows
        # themselves, not residuals (measured: a residual codebook gave 52% error on q·x, 2% raw).
        gen = torch.Generator().manual_seed(args.seed + 1)
        pq_rows = sample[torch.randperm(sample.shape[0], generator=gen)[: args.pq_sample]]
        codebook = train_pq(pq_rows, kw["num_sub_vectors"], args.kmeans_iters, args.seed)
        kw["pq_codebook"] = codebook.numpy().astype(np_type)
    trained = time.perf_counter() - start
    ds = ds.create_index(
        "vector",
        args.index_type,
        metric="dot",
        replace=True,
        num_partitions=parts,
        ivf_centroids=centroids.numpy().astype(np_type),
        **kw,
    )
    return {
        "index_type": args.index_type,
        "num_partitions": parts,
        "num_sub_vectors": kw.get("num_sub_vectors"),
        "list_sizes": _list_sizes(ds),
        "rows": rows,
        "source_version": version,
        "train_s": trained,
        "build_s": time.perf_counter() - start,
    }


def _list_sizes(ds) -> dict[str, float]:
    """Min / median / max rows per IVF list (a dot-metric IVF can pile rows into few lists)."""
    try:
        name = ds.list_indices()[-1]["name"]
        stats = ds.stats.index_stats(name)["indices"][0]
        sizes = [p["size"] for p in stats["partitions"]]
    except (KeyError, IndexError, TypeError, ValueError):
        return {}
    return {"min": float(min(sizes)), "median": float(np.median(sizes)), "max": float(max(sizes))}


def _meta_path(table: GradientTable, family: str) -> str:
    return f"{family}_index_{table.name}"


def _save_meta(table: GradientTable, family: str, info: dict) -> None:
    # One small LanceDB table per (table, family): versioned like everything else in the store.
    meta = pa.table({"info": [json.dumps(info, sort_keys=True)]})
    table.store.db.create_table(_meta_path(table, family), meta, mode="overwrite")


def index_info(table: GradientTable, family: str) -> dict | None:
    try:
        t = table.store.db.open_table(_meta_path(table, family))
    except (ValueError, FileNotFoundError):
        return None
    return json.loads(t.to_arrow().column("info")[0].as_py())


def method_string(info: dict, args: IndexArguments) -> str:
    sv = f",sv={info['num_sub_vectors']}" if info.get("num_sub_vectors") else ""
    return (
        f"index:{info['index_type']}(p={info['num_partitions']}{sv},"
        f"nprobes={args.probes(info['num_partitions'])},refine={args.refine_factor})"
    )


def topk(
    table: GradientTable,
    queries_pre: torch.Tensor,
    k: int,
    mode: str = "if",
    query_self: torch.Tensor | None = None,
    args: IndexArguments = IndexArguments(),
    version: int | None = None,
    exact: bool = False,
    chunk_rows: int = 8192,
    pre=None,
) -> TopK:
    """Top-``k`` rows per preconditioned query ``(n_query, dim)`` by the index when the table has
    one built from ``version``'s data and ``pre`` (the checkpoint's preconditioner, whose
    eigenvectors map queries into the index's whitened space) is given; else (or with ``exact``)
    by a full scan. Scores are exact in both cases (``cosine`` needs ``query_self`` ``(n_query,)``)."""
    if mode not in MODES:
        raise VectorIndexError(f"mode must be one of {MODES}, got {mode!r}")
    if mode == "cosine" and query_self is None:
        raise VectorIndexError("mode 'cosine' needs the queries' self-influence")
    table.tbl.checkout_latest()
    version = table.version if version is None else int(version)
    info = None
    if not exact and pre is not None:
        info = usable_index(table, mode, version, args, queries_pre.shape[0], k)
    if info is None:
        return _exact_topk(table, queries_pre, k, mode, query_self, version, chunk_rows)
    return _indexed_topk(table, queries_pre, k, mode, query_self, version, info, args, pre)


def usable_index(
    table: GradientTable, mode: str, version: int, args: IndexArguments, n_query: int, k: int
) -> dict | None:
    """The index record that :func:`topk` would use for this batch at ``version``, or None when it
    scans: no index for the mode's family, one built from another version of the table (its
    positions name that version's rows), or a batch too large for the index to pay
    (:meth:`IndexArguments.index_pays`)."""
    info = index_info(table, FAMILY[mode])
    if info is None or info.get("source_version") != version or "damping" not in info:
        return None
    if not args.index_pays(n_query, k, int(info["rows"])):
        return None
    return info


def _exact_topk(table, queries_pre, k, mode, query_self, version, chunk_rows) -> TopK:
    from storage.scan import QueryBatch, score_table

    scan = score_table(table, [QueryBatch(queries_pre, mode, k, 0, query_self)], version, chunk_rows)
    res = scan.results[0]
    ids, docs, provs = [], [], []
    for row in res.topk_indices.tolist():
        found = scan.rows([i for i in row if i >= 0])
        ids.append([f[0] for f in found])
        docs.append([f[1] for f in found])
        provs.append([f[2] for f in found])
    return TopK(ids, docs, provs, res.topk_scores.double(), "exact")


def _vectors(table: GradientTable, ds, positions: np.ndarray) -> torch.Tensor:
    """Stored vectors of the rows at sorted, distinct ``positions`` → ``(n, dim)`` float32."""
    vec = ds.take(positions, columns=["vector"]).column("vector").combine_chunks()
    flat = vec.values.to_numpy(zero_copy_only=False)
    return torch.from_numpy(flat.astype(np.float32, copy=False).reshape(-1, table.dim))


def _candidate_scores(q: torch.Tensor, g: torch.Tensor, qidx: torch.Tensor, uidx: torch.Tensor) -> torch.Tensor:
    """``q[qidx[j]] · g[uidx[j]]`` for every candidate pair ``j`` (float32, like the scan).

    Candidates of a batch overlap (at 10^5 rows 256 queries x 400 candidates were 13,871 distinct
    rows): a block of distinct rows is scored against every query in one matmul when that costs
    less than the pairs' own dot products, else pair by pair."""
    out = torch.empty(len(qidx), dtype=torch.float32)
    order = torch.argsort(uidx)
    qidx, uidx = qidx[order], uidx[order]
    bounds = torch.searchsorted(uidx, torch.arange(0, g.shape[0] + RERANK_BLOCK, RERANK_BLOCK))
    for b in range(len(bounds) - 1):
        lo, hi = int(bounds[b]), int(bounds[b + 1])
        if lo == hi:
            continue
        first = b * RERANK_BLOCK
        block = g[first : first + RERANK_BLOCK]
        if q.shape[0] * block.shape[0] <= 4 * (hi - lo):
            out[order[lo:hi]] = (q @ block.T)[qidx[lo:hi], uidx[lo:hi] - first]
        else:
            out[order[lo:hi]] = (q[qidx[lo:hi]] * block[uidx[lo:hi] - first]).sum(1)
    return out


def _indexed_topk(table, queries_pre, k, mode, query_self, version, info, args, pre) -> TopK:
    from valuation.fisher import Preconditioner

    main = table._dataset(version)
    n_query = queries_pre.shape[0]
    unit = FAMILY[mode] == "unit"
    # (A⁻¹q̃)·(A g) = q̃·g, with A the build's (H+λI)^-1/2 from this checkpoint's eigenvectors.
    build = Preconditioner(pre.layout, pre.eigvals, pre.eigvecs, info["damping"])
    search = build.power(queries_pre, 0.5).float().numpy()
    nearest = {"column": "vector", "q": search, "k": k * max(1, args.refine_factor), "metric": "dot"}
    nearest["nprobes"] = args.probes(info["num_partitions"])
    # The search returns only where each candidate is; vectors are read once per distinct row and
    # ids only for the rows that make a top-k.
    source = lance.dataset(_companion_uri(table, FAMILY[mode]))
    found = source.to_table(nearest=nearest, columns=["pos", "self_influence"] if unit else ["pos"])
    qidx = found.column("query_index").to_numpy() if "query_index" in found.column_names else np.zeros(found.num_rows)
    distinct, inverse = np.unique(found.column("pos").to_numpy(), return_inverse=True)
    vectors = _vectors(table, main, distinct)
    qidx_t = torch.from_numpy(qidx.astype(np.int64))
    uidx_t = torch.from_numpy(inverse.astype(np.int64))
    scores = _candidate_scores(queries_pre.float().cpu(), vectors, qidx_t, uidx_t).double()
    train_self = torch.from_numpy(found.column("self_influence").to_numpy()) if unit else None
    if train_self is not None:
        scores = scores / train_self.clamp_min(_EPS).sqrt()
    if mode == "cosine":
        scores = scores / query_self.double().cpu()[qidx_t].clamp_min(_EPS).sqrt()
    # Per query its k best candidates, then their scores again exactly in float64.
    out_scores = torch.full((n_query, k), float("-inf"), dtype=torch.float64)
    best: list[list[int]] = [[] for _ in range(n_query)]
    order = torch.argsort(qidx_t, stable=True)
    bounds = torch.searchsorted(qidx_t[order], torch.arange(n_query + 1))
    q64 = queries_pre.double().cpu()
    for qi in range(n_query):
        members = order[int(bounds[qi]) : int(bounds[qi + 1])]
        if not len(members):
            continue
        top = members[scores[members].topk(min(k, len(members))).indices]
        rows = uidx_t[top]
        exact = vectors[rows].double() @ q64[qi]
        if train_self is not None:
            exact = exact / train_self[top].clamp_min(_EPS).sqrt()
        if mode == "cosine":
            exact = exact / query_self.double().cpu()[qi].clamp_min(_EPS).sqrt()
        exact, resort = exact.sort(descending=True)
        out_scores[qi, : len(exact)] = exact
        best[qi] = rows[resort].tolist()
    wanted = sorted({r for b in best for r in b})
    meta = main.take(distinct[wanted], columns=["example_id", "doc_id", "provider_id"])
    at = {r: i for i, r in enumerate(wanted)}
    cols = [meta.column(c).to_pylist() for c in ("example_id", "doc_id", "provider_id")]
    ids = [[cols[0][at[r]] for r in b] for b in best]
    docs = [[cols[1][at[r]] for r in b] for b in best]
    provs = [[cols[2][at[r]] for r in b] for b in best]
    return TopK(ids, docs, provs, out_scores, method_string(info, args))
