"""Random Cut Forest anomaly scores: KDA's ``RANDOM_CUT_FOREST`` (and ``..._WITH_EXPLANATION``).

A streaming Random Cut Forest (Guha et al., "Robust Random Cut Forest Based Anomaly Detection on
Streams", ICML 2016). Each of ``trees`` trees holds a sample of at most ``sample`` recent points
and cuts its bounding boxes at random, choosing a dimension with probability proportional to the
box's range in it and a value uniformly in that range.

Every row, in arrival order, is a point (its numeric columns, or with ``shingle`` n > 1 the
numeric columns of the last n rows, oldest first). The row is first **scored** against the
forest, then **offered** to each tree's sample:

- **Sampling** (time-decayed reservoir): point number i gets, per tree, the weight
  ``log(E) - i / time_decay`` with E ~ Exp(1); a tree keeps the ``sample`` points of smallest
  weight. Without decay this is a uniform sample of all points; with it, a point's chance to be
  kept grows as e^(i / time_decay), so the sample favours the recent past. A point that enters a
  full sample evicts the point of largest weight (deleted from the tree, then the new one is
  inserted).
- **Score** (the open-source AWS RCF's anomaly score): walk from the root to the leaf where the
  point would land, at depths 0..d. At a node whose box B does not contain x, a random cut of
  B ∪ {x} separates x from B with probability p = Σ_j dist_j(x, B) / Σ_j range_j(B ∪ {x}). Then,
  from the leaf up, ``s_d`` = 1 / (d + 1) if x is not the leaf's point, else
  (1 - m / 2M) / (d + log2(m + 1)) for a leaf holding the point m times in a tree of M points;
  ``s_k = p_k / (k + 1) + (1 - p_k) s_(k+1)``. The tree's score is ``s_0 · log2(1 + M)`` and
  the row's score the mean over the trees. Points like the sample score about 1 or less; a point
  far from all of them about log2(1 + M) (8 with 256-point samples).
- **Explanation**: each term of the score is split over the dimensions in proportion to
  dist_j (``HIGH`` if x is above the box in j, ``LOW`` if below; a seen leaf's term evenly), so
  the attributions sum to the score; a column's attribution sums its shingle positions.

The first ``sample`` points score 0 (the forest is filling, as in KDA); rows before the first
full shingle score 0 and are not points; a row with a NULL or NaN numeric value scores NULL and
is not a point.

Results do not depend on micro-batching: every random number is a hash of (seed, tree, counter)
- the sampling weight of point i in tree t hashes (t, i), the cuts of tree t hash a per-tree
draw counter - so a batch can be processed tree by tree (rows between two changes of a tree are
scored against that tree at once) and gives the same numbers as rows one at a time. The state
(the trees as arrays, the samples, the counters, the shingle) is plain numpy data.
"""

from __future__ import annotations

import json
import random
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from engine.plan.logical import RcfSpec
from engine.types import HIDDEN_PREFIX, MIN_TIME

SCORE_COL = "ANOMALY_SCORE"
EXPLANATION_COL = "ANOMALY_EXPLANATION"
_SAMPLING, _CUTS = 0x5A4D, 0xC075
_PAIR_CHUNK = 1 << 16  # (row, tree) pairs scored at once
_ROWS_CELLS = 1 << 22  # rows x trees (x attributions) per pass


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on uint64 arrays (wrapping arithmetic)."""
    z = z + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def uniforms(seed: int, stream: int, tree: np.ndarray, counter: np.ndarray) -> np.ndarray:
    """Uniform numbers in [0, 1), one per (tree, counter) pair (broadcast), a pure function of them."""
    base = _mix(np.asarray([(seed ^ (stream << 32)) & 0xFFFFFFFFFFFFFFFF], dtype=np.uint64))[0]
    with np.errstate(over="ignore"):
        z = _mix(_mix(base ^ np.asarray(tree, dtype=np.uint64)) ^ np.asarray(counter, dtype=np.uint64))
    return (z >> np.uint64(11)).astype(np.float64) * (1.0 / (1 << 53))


_M64 = (1 << 64) - 1


def _mix_int(z: int) -> int:
    """splitmix64's finaliser on a Python int (the scalar twin of ``_mix``)."""
    z = (z + 0x9E3779B97F4A7C15) & _M64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
    return z ^ (z >> 31)


class Forest:
    """The trees, their samples and the counters; ``state``/``load`` give them as plain data.

    Tree changes (one tree, one point: a few nodes) run in plain Python over lists; scoring runs
    in numpy over a mirror of the nodes (``m_*`` arrays), brought up to date (``_flush``) with
    the nodes that changed before each scoring pass.
    """

    def __init__(self, trees: int, sample: int, dims: int, time_decay: float, seed: int) -> None:
        self.T, self.S, self.D = trees, sample, dims
        self.decay, self.seed = float(time_decay), seed
        n = self.N = 2 * sample
        # the trees, per tree and node (Python lists: changed a node at a time)
        self.lo: list[list[list[float]]] = [[[0.0] * dims for _ in range(n)] for _ in range(trees)]
        self.hi: list[list[list[float]]] = [[[0.0] * dims for _ in range(n)] for _ in range(trees)]
        self.left = [[-1] * n for _ in range(trees)]  # -1: a leaf
        self.right = [[-1] * n for _ in range(trees)]
        self.parent = [[-1] * n for _ in range(trees)]
        self.cdim = [[0] * n for _ in range(trees)]
        self.cval = [[0.0] * n for _ in range(trees)]
        self.mass = [[0] * n for _ in range(trees)]
        self.root = [-1] * trees
        self.free = [list(range(n - 1, -1, -1)) for _ in range(trees)]
        self.slot_leaf = [[-1] * sample for _ in range(trees)]
        self.count = [0] * trees  # points in each tree
        cut_base = _mix_int((seed ^ (_CUTS << 32)) & _M64)
        self.rngs = [random.Random(_mix_int(cut_base ^ t)) for t in range(trees)]  # cuts, per tree
        # the sampler (numpy: decided for a whole batch at once)
        self.weight = np.full((trees, sample), np.inf)  # inf: an empty slot
        self.filled = np.zeros(trees, np.int64)
        self.seen = 0  # points offered so far
        # the scorer's mirror: node g = t * N + n, children as such ids (-1: a leaf)
        self.dirty: set[tuple[int, int]] = set()
        self._rebuild()

    # ------------------------------------------------------------------ checkpoints
    def state(self) -> dict[str, Any]:
        """The forest as plain data (numpy arrays, lists and numbers)."""
        return {
            "lo": np.asarray(self.lo, np.float64),
            "hi": np.asarray(self.hi, np.float64),
            "left": np.asarray(self.left, np.int64),
            "right": np.asarray(self.right, np.int64),
            "parent": np.asarray(self.parent, np.int64),
            "cdim": np.asarray(self.cdim, np.int64),
            "cval": np.asarray(self.cval, np.float64),
            "mass": np.asarray(self.mass, np.int64),
            "root": list(self.root),
            "free": [list(f) for f in self.free],
            "slot_leaf": np.asarray(self.slot_leaf, np.int64),
            "count": list(self.count),
            "rngs": [r.getstate() for r in self.rngs],
            "weight": self.weight.copy(),
            "filled": self.filled.copy(),
            "seen": self.seen,
        }

    def load(self, state: dict[str, Any]) -> None:
        """Take back what ``state`` returned."""
        for name in ("lo", "hi", "left", "right", "parent", "cdim", "cval", "mass", "slot_leaf"):
            setattr(self, name, np.asarray(state[name]).tolist())
        self.root, self.count = [int(v) for v in state["root"]], [int(v) for v in state["count"]]
        self.free = [list(f) for f in state["free"]]
        for r, st in zip(self.rngs, state["rngs"]):
            r.setstate(st)
        self.weight = np.array(state["weight"], np.float64)
        self.filled = np.array(state["filled"], np.int64)
        self.seen = int(state["seen"])
        self.dirty.clear()
        self._rebuild()

    def _rebuild(self) -> None:
        """The scorer's mirror, whole, from the trees."""
        base = (np.arange(self.T, dtype=np.int64) * self.N)[:, None]
        lo, hi = np.asarray(self.lo, np.float64), np.asarray(self.hi, np.float64)
        self.m_box = np.stack([lo, hi], axis=2).reshape(self.T * self.N, 2, self.D)
        self.m_width = (hi - lo).sum(axis=2).reshape(-1)
        left, right = np.asarray(self.left, np.int64), np.asarray(self.right, np.int64)
        self.m_left = np.where(left >= 0, left + base, -1).reshape(-1)
        self.m_right = np.where(right >= 0, right + base, -1).reshape(-1)
        self.m_cdim = np.asarray(self.cdim, np.int64).reshape(-1)
        self.m_cval = np.asarray(self.cval, np.float64).reshape(-1)
        self.m_mass = np.asarray(self.mass, np.float64).reshape(-1)
        self._roots()

    def _roots(self) -> None:
        root = np.asarray(self.root, np.int64)
        self.m_root = np.where(root >= 0, root + np.arange(self.T, dtype=np.int64) * self.N, -1)
        self.m_count = np.asarray(self.count, np.float64)

    def _flush(self) -> None:
        """Bring the scorer's mirror up to date with the nodes changed since the last flush."""
        self._roots()
        if not self.dirty:
            return
        pairs = sorted(self.dirty)
        self.dirty.clear()
        N = self.N
        g = np.fromiter((t * N + n for t, n in pairs), np.int64, len(pairs))
        base = g - np.fromiter((n for _, n in pairs), np.int64, len(pairs))
        lo = np.asarray([self.lo[t][n] for t, n in pairs], np.float64)
        hi = np.asarray([self.hi[t][n] for t, n in pairs], np.float64)
        self.m_box[g, 0], self.m_box[g, 1] = lo, hi
        self.m_width[g] = (hi - lo).sum(axis=1)
        left = np.fromiter((self.left[t][n] for t, n in pairs), np.int64, len(pairs))
        right = np.fromiter((self.right[t][n] for t, n in pairs), np.int64, len(pairs))
        self.m_left[g] = np.where(left >= 0, left + base, -1)
        self.m_right[g] = np.where(right >= 0, right + base, -1)
        self.m_cdim[g] = [self.cdim[t][n] for t, n in pairs]
        self.m_cval[g] = [self.cval[t][n] for t, n in pairs]
        self.m_mass[g] = [self.mass[t][n] for t, n in pairs]

    # ------------------------------------------------------------------ the stream of points
    def update(self, points: np.ndarray, explain: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
        """Score each point against the forest as it was just before it, then offer it to the samples.

        Returns the scores (0 while the forest fills) and, with ``explain``, the attributions
        (m, 2, D): [:, 0] above the boxes (HIGH), [:, 1] below (LOW).
        """
        per_row = self.T * (1 + (2 * self.D if explain else 0))
        step = max(1, _ROWS_CELLS // per_row)  # rows at a time: bounded (rows x trees) matrices
        scores, attrs = [], []
        for a in range(0, len(points), step):
            s, at = self._update(points[a : a + step], explain)
            scores.append(s)
            if at is not None:
                attrs.append(at)
        if not scores:
            return np.zeros(0), (np.zeros((0, 2, self.D)) if explain else None)
        return np.concatenate(scores), (np.concatenate(attrs) if explain else None)

    def _update(self, points: np.ndarray, explain: bool) -> tuple[np.ndarray, np.ndarray | None]:
        m = len(points)
        seqs = np.arange(self.seen, self.seen + m, dtype=np.uint64)
        events = self._decide(seqs)
        per_tree = np.zeros((m, self.T))  # row x tree scores: summed in one order, whatever the batch
        attrs = np.zeros((m, self.T, 2, self.D)) if explain else None
        ready_from = max(0, self.S - self.seen)  # rows before it score 0: the forest is filling
        start = np.zeros(self.T, np.int64)  # per tree: the first row not scored against it yet
        rows = points.tolist()
        for ev_tree, ev_row, ev_evict, ev_slot in events:
            self._score_ranges(points, ev_tree, np.maximum(start[ev_tree], ready_from), ev_row + 1, per_tree, attrs)
            start[ev_tree] = ev_row + 1
            for t, r, e, s in zip(ev_tree.tolist(), ev_row.tolist(), ev_evict.tolist(), ev_slot.tolist()):
                if e >= 0:
                    self._delete(t, e)
                self._insert(t, rows[r], s)
        every = np.arange(self.T)
        self._score_ranges(points, every, np.maximum(start, ready_from), np.full(self.T, m), per_tree, attrs)
        self.seen += m
        return per_tree.sum(axis=1) / self.T, (attrs.sum(axis=1) / self.T if attrs is not None else None)

    def _decide(self, seqs: np.ndarray) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
        """Which points enter which samples: rounds of (trees, rows, evicted slots, slots), round k
        holding each tree's k-th change (so a tree changes at most once per round, in row order)."""
        m = len(seqs)
        u = uniforms(self.seed, _SAMPLING, np.arange(self.T, dtype=np.uint64)[None, :], seqs[:, None])
        exp1 = np.maximum(-np.log1p(-u), 1e-300)
        weights = np.log(exp1) - seqs.astype(np.float64)[:, None] / self.decay  # (m, T)
        full = self.filled >= self.S
        maxw = np.where(full, self.weight.max(axis=1), np.inf)
        busy = np.flatnonzero(~full | (weights < maxw[None, :]).any(axis=0))
        found: list[tuple[int, int, int, int, int]] = []  # (tree, row, evicted slot, slot, rank)
        for t in busy.tolist():
            w = self.weight[t]
            col = weights[:, t]
            rank, r = 0, 0
            while self.filled[t] < self.S and r < m:
                slot = int(self.filled[t])
                w[slot] = col[r]
                self.filled[t] += 1
                found.append((t, r, -1, slot, rank))
                rank, r = rank + 1, r + 1
            if r >= m:
                continue
            top = int(np.argmax(w))
            for rr in (r + np.flatnonzero(col[r:] < w[top])).tolist():
                if col[rr] < w[top]:
                    w[top] = col[rr]
                    found.append((t, rr, top, top, rank))
                    rank += 1
                    top = int(np.argmax(w))
        if not found:
            return []
        table = np.asarray(found, np.int64)
        table = table[np.lexsort((table[:, 0], table[:, 4]))]
        t_arr, r_arr, e_arr, s_arr, k_arr = table.T
        bounds = np.flatnonzero(np.diff(k_arr)) + 1
        cuts = [0, *bounds.tolist(), len(table)]
        return [(t_arr[a:b], r_arr[a:b], e_arr[a:b], s_arr[a:b]) for a, b in zip(cuts, cuts[1:])]

    # ------------------------------------------------------------------ scoring
    def _score_ranges(
        self,
        points: np.ndarray,
        trees: np.ndarray,
        starts: np.ndarray,
        ends: np.ndarray,
        per_tree: np.ndarray,
        attrs: np.ndarray | None,
    ) -> None:
        """Score rows [starts[i], ends[i]) against tree trees[i], into ``per_tree`` (and ``attrs``)."""
        lengths = np.maximum(ends - starts, 0)
        n = int(lengths.sum())
        if n == 0:
            return
        self._flush()
        offsets = np.cumsum(lengths) - lengths
        pair_rows = np.repeat(starts, lengths) + (np.arange(n) - np.repeat(offsets, lengths))
        pair_trees = np.repeat(trees, lengths)
        for a in range(0, n, _PAIR_CHUNK):
            pr, pt = pair_rows[a : a + _PAIR_CHUNK], pair_trees[a : a + _PAIR_CHUNK]
            scores, hi_lo = self._score_pairs(pt, points[pr], attrs is not None)
            per_tree[pr, pt] = scores
            if attrs is not None and hi_lo is not None:
                attrs[pr, pt] = hi_lo

    def _score_pairs(self, pt: np.ndarray, x: np.ndarray, explain: bool) -> tuple[np.ndarray, np.ndarray | None]:
        """Each point x[i]'s score in tree pt[i] (see the module doc), and its attributions."""
        n = len(pt)
        out = np.zeros(n)
        attr = np.zeros((n, 2, self.D)) if explain else None
        tree_mass = self.m_count[pt]
        idx, g, xs = np.arange(n), self.m_root[pt], x
        carry, acc = np.ones(n), np.zeros(n)
        depth = 0
        while len(idx):
            box = self.m_box[g]
            below, above = box[:, 0] - xs, xs - box[:, 1]
            gap = np.maximum(np.maximum(below, above), 0.0).sum(axis=1)
            span = self.m_width[g] + gap
            p = gap / np.where(span > 0, span, 1.0)
            child = self.m_left[g]
            leaf = child < 0
            term = carry * p * (1.0 / (depth + 1))
            seen = None
            if leaf.any():
                li = np.flatnonzero(leaf)
                m = self.m_mass[g[li]]
                seen = gap[li] == 0
                damp = 1.0 - m / (2.0 * tree_mass[idx[li]])
                term[li] = carry[li] * np.where(seen, damp / (depth + np.log2(m + 1.0)), 1.0 / (depth + 1))
            acc += term
            if attr is not None:
                share = term / np.where(gap > 0, gap, 1.0)
                attr[idx, 0] += share[:, None] * np.maximum(above, 0.0)
                attr[idx, 1] += share[:, None] * np.maximum(below, 0.0)
                if seen is not None and seen.any():  # a point the tree holds: its term spread evenly
                    held = np.flatnonzero(leaf)[seen]
                    attr[idx[held]] += (term[held] / (2 * self.D))[:, None, None]
            if seen is not None:
                out[idx[leaf]] = acc[leaf]
                go = ~leaf
                idx, g, xs, carry, acc, p, child = idx[go], g[go], xs[go], carry[go], acc[go], p[go], child[go]
            carry *= 1.0 - p
            left = xs[np.arange(len(g)), self.m_cdim[g]] <= self.m_cval[g]
            g = np.where(left, child, self.m_right[g])
            depth += 1
        scale = np.log2(1.0 + tree_mass)
        return out * scale, (attr * scale[:, None, None] if attr is not None else None)

    # ------------------------------------------------------------------ tree changes (one tree)

    def _alloc(self, t: int) -> int:
        return self.free[t].pop()

    def _new_leaf(self, t: int, x: list[float], parent: int) -> int:
        node = self._alloc(t)
        self.lo[t][node], self.hi[t][node] = list(x), list(x)
        self.left[t][node] = self.right[t][node] = -1
        self.parent[t][node] = parent
        self.mass[t][node] = 1
        self.dirty.add((t, node))
        return node

    def _replace_child(self, t: int, parent: int, old: int, new: int) -> None:
        """In ``parent``, the child ``old`` becomes ``new`` (no parent: ``new`` is the root)."""
        self.parent[t][new] = parent
        if parent < 0:
            self.root[t] = new
            return
        if self.left[t][parent] == old:
            self.left[t][parent] = new
        else:
            self.right[t][parent] = new
        self.dirty.add((t, parent))

    def _insert(self, t: int, x: list[float], slot: int) -> None:
        """Insert point ``x`` into tree ``t`` as its sample slot ``slot`` (Guha et al.'s insertion)."""
        lo_t, hi_t, left, right, mass = self.lo[t], self.hi[t], self.left[t], self.right[t], self.mass[t]
        cdim, cval, draw = self.cdim[t], self.cval[t], self.rngs[t].random
        self.count[t] += 1
        node = self.root[t]
        if node < 0:
            self.root[t] = self.slot_leaf[t][slot] = self._new_leaf(t, x, -1)
            return
        while True:
            lo, hi = lo_t[node], hi_t[node]
            mlo = [a if a < b else b for a, b in zip(lo, x)]
            mhi = [a if a > b else b for a, b in zip(hi, x)]
            ranges = [b - a for a, b in zip(mlo, mhi)]
            total = sum(ranges)
            is_leaf = left[node] < 0
            if is_leaf and total == 0:  # the same point again: the leaf counts it twice
                mass[node] += 1
                self.slot_leaf[t][slot] = node
                self.dirty.add((t, node))
                return
            target, share = draw() * total, draw()
            j, acc = -1, 0.0
            for i, r in enumerate(ranges):
                if r > 0:
                    j, acc = i, acc + r
                    if acc > target:
                        break
            cut = mlo[j] + share * ranges[j]
            xj = x[j]
            separates = (xj <= cut < lo[j]) or (hi[j] <= cut < xj)
            if is_leaf and not separates:  # rounding: a leaf always splits off a distinct point
                cut, separates = mlo[j], True
            if separates:
                new = self._alloc(t)
                leaf = self._new_leaf(t, x, new)
                lo_t[new], hi_t[new] = mlo, mhi
                cdim[new], cval[new] = j, cut
                mass[new] = mass[node] + 1
                if xj <= cut:
                    left[new], right[new] = leaf, node
                else:
                    left[new], right[new] = node, leaf
                self._replace_child(t, self.parent[t][node], node, new)
                self.parent[t][node] = new
                self.slot_leaf[t][slot] = leaf
                self.dirty.add((t, new))
                return
            lo_t[node], hi_t[node] = mlo, mhi
            mass[node] += 1
            self.dirty.add((t, node))
            node = left[node] if x[cdim[node]] <= cval[node] else right[node]

    def _delete(self, t: int, slot: int) -> None:
        """Take sample slot ``slot``'s point out of tree ``t``."""
        lo_t, hi_t, left, right, mass, parent = (
            self.lo[t],
            self.hi[t],
            self.left[t],
            self.right[t],
            self.mass[t],
            self.parent[t],
        )
        self.count[t] -= 1
        leaf = self.slot_leaf[t][slot]
        self.slot_leaf[t][slot] = -1
        mass[leaf] -= 1
        self.dirty.add((t, leaf))
        node = parent[leaf]
        if mass[leaf] == 0:
            self.free[t].append(leaf)
            if node < 0:  # the tree's only point
                self.root[t] = -1
                return
            sibling = right[node] if left[node] == leaf else left[node]
            grand = parent[node]
            self._replace_child(t, grand, node, sibling)
            self.free[t].append(node)
            node = grand
        while node >= 0:  # masses and boxes of the ancestors
            mass[node] -= 1
            a, b = left[node], right[node]
            lo_t[node] = [p if p < q else q for p, q in zip(lo_t[a], lo_t[b])]
            hi_t[node] = [p if p > q else q for p, q in zip(hi_t[a], hi_t[b])]
            self.dirty.add((t, node))
            node = parent[node]


def numeric_type(kind: pa.DataType) -> bool:
    """The column types RANDOM_CUT_FOREST reads: integers and floating point, not DECIMAL."""
    return bool(pa.types.is_integer(kind) or pa.types.is_floating(kind))


class RcfOperator:
    """Appends ANOMALY_SCORE (and ANOMALY_EXPLANATION) to every row, in arrival order."""

    def __init__(self, spec: RcfSpec, con: duckdb.DuckDBPyConnection | None = None) -> None:
        del con  # the forest is numpy, not SQL
        self.spec, self.step_id = spec, spec.step_id
        self.watermark = MIN_TIME
        dims = len(spec.columns) * spec.shingle_size
        self.forest = Forest(spec.trees, spec.sample_size, dims, spec.time_decay, spec.seed)
        self.history = np.zeros((0, len(spec.columns)))  # the last shingle_size - 1 points' values

    def process(self, rows: pa.Table, watermark: int) -> tuple[pa.Table | None, pa.Table | None]:
        self.watermark = max(self.watermark, watermark)
        if not rows.num_rows:
            return None, None
        values = np.column_stack(
            [
                pc.cast(rows[c], pa.float64()).to_numpy(zero_copy_only=False).astype(np.float64)
                for c in self.spec.columns
            ]
        )
        valid = np.isfinite(values).all(axis=1)
        n = rows.num_rows
        scores = np.zeros(n)
        attrs = np.zeros((n, 2, self.forest.D)) if self.spec.explanation else None
        good = np.flatnonzero(valid)
        if len(good):
            s = self.spec.shingle_size
            stacked = np.vstack([self.history, values[good]])
            before = len(self.history)
            first = s - 1 - before  # rows of `good` before it have no full shingle yet
            usable = good[max(first, 0) :]
            if len(usable):
                windows = np.lib.stride_tricks.sliding_window_view(stacked, s, axis=0)  # (k, cols, s)
                points = windows.transpose(0, 2, 1).reshape(len(windows), -1)
                got, got_attrs = self.forest.update(np.ascontiguousarray(points), self.spec.explanation)
                scores[usable] = got
                if attrs is not None and got_attrs is not None:
                    attrs[usable] = got_attrs
            self.history = stacked[len(stacked) - (s - 1) :] if s > 1 else self.history
        score_arr = pa.array(scores, pa.float64(), mask=~valid)
        out = _insert_visible(rows, SCORE_COL, score_arr)
        if attrs is not None:
            texts = [self._explain(attrs[i]) if valid[i] else None for i in range(n)]
            out = _insert_visible(out, EXPLANATION_COL, pa.array(texts, pa.string()))
        return out, None

    def _explain(self, attr: np.ndarray) -> str:
        """One row's explanation as KDA's JSON: per numeric column, its attribution (and direction)."""
        cols = self.spec.columns
        high = attr[0].reshape(self.spec.shingle_size, len(cols)).sum(axis=0)
        low = attr[1].reshape(self.spec.shingle_size, len(cols)).sum(axis=0)
        doc: dict[str, dict[str, object]] = {}
        for i, name in enumerate(cols):
            item: dict[str, object] = {"ATTRIBUTION_SCORE": round(float(high[i] + low[i]), 6)}
            if self.spec.directionality:
                item["STRENGTH"] = round(float(abs(high[i] - low[i])), 6)
                item["DIRECTION"] = "HIGH" if high[i] >= low[i] else "LOW"
            doc[name] = item
        return json.dumps(doc, separators=(",", ":"))

    def snapshot(self) -> dict[str, Any]:
        return {"watermark": self.watermark, "forest": self.forest.state(), "history": self.history.copy()}

    def restore(self, state: dict[str, Any]) -> None:
        self.watermark = int(state["watermark"])
        self.forest.load(state["forest"])
        self.history = np.array(state["history"], dtype=np.float64).reshape(-1, len(self.spec.columns))


def _insert_visible(table: pa.Table, name: str, column: pa.Array) -> pa.Table:
    """``table`` with ``column`` added after its visible columns (before the hidden ``__`` ones)."""
    pos = next((i for i, c in enumerate(table.column_names) if c.startswith(HIDDEN_PREFIX)), table.num_columns)
    return table.add_column(pos, name, column)
