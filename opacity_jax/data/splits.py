"""Seeded train/test splits over the (element, temperature, density) grid of spectra.

Three protocols:
  * 'random': a stratified random 90/10 split of the valid spectra (as in the thesis): every element
    contributes ~10 % of its valid (T, rho) nodes to the test set.
  * 'heldout_nodes': the gap-filling test used by all later evaluations. Per element, ~10 % of the
    interior (T, rho) nodes are held out such that no two are 8-neighbours, so every held-out node
    keeps all 8 neighbours in training and is a genuine interpolation target.
  * 'heldout_t_rows': per element, whole interior temperature rows (every density of one T) are
    held out, no two adjacent, so each held-out row has both neighbouring rows in training: the
    test of a model that must carry a missing temperature.

All randomness comes from np.random.default_rng(seed) (never global seeding), so a split is a pure
function of its arguments. Counts use round-half-up: round(0.1 * 375) = 38 on the 27 x 17 grid.
"""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

SPLIT_NAMES = ("random", "heldout_nodes", "heldout_t_rows")
# Randomised greedy attempts before falling back to the lattice construction (see
# `_choose_independent`); the greedy pass succeeds on the first try far below the maximum.
_GREEDY_ATTEMPTS = 64


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def _check_fraction(fraction: float) -> float:
    fraction = float(fraction)
    if not (0.0 < fraction < 1.0):
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    return fraction


def _check_valid(valid_mask) -> np.ndarray:
    valid = np.asarray(valid_mask)
    if valid.ndim != 3:
        raise ValueError(f"valid mask must have shape (nZ, nT, nR), got {valid.shape}")
    return valid.astype(bool)


def random_split(valid_mask, fraction: float = 0.1, seed: int = 0) -> tuple:
    """Stratified random split of the valid spectra: ~fraction of each element's nodes to test.

    Args:
      valid_mask: (nZ, nT, nR) bool, True where a spectrum exists.
      fraction: test fraction in (0, 1); per element round-half-up(fraction * n_valid) nodes,
        capped so at least one valid node stays in training.
      seed: integer seed for np.random.default_rng.

    Returns:
      (train, test): (nZ, nT, nR) bool masks, disjoint, train | test == valid.
    """
    fraction = _check_fraction(fraction)
    valid = _check_valid(valid_mask)
    rng = np.random.default_rng(seed)
    test = np.zeros_like(valid)
    for z in range(valid.shape[0]):
        idx = np.flatnonzero(valid[z])
        n_test = min(_round_half_up(fraction * idx.size), max(idx.size - 1, 0))
        chosen = rng.choice(idx, size=n_test, replace=False) if n_test else idx[:0]
        test[(z,) + np.unravel_index(chosen, valid.shape[1:])] = True
    return valid & ~test, test


def max_heldout_nodes(n_t: int, n_r: int) -> int:
    """Largest number of interior nodes of an n_t x n_r grid with no two 8-adjacent.

    A king's-move independent set on an a x b block has at most ceil(a/2) ceil(b/2) nodes (each
    2 x 2 tile holds at most one), attained by every other row and column.
    """
    a, b = max(int(n_t) - 2, 0), max(int(n_r) - 2, 0)
    return ((a + 1) // 2) * ((b + 1) // 2)


def _eligible(n_t: int, n_r: int, valid_z: Optional[np.ndarray]) -> np.ndarray:
    """(n_t, n_r) bool: interior nodes that are valid and whose 8 neighbours are all valid."""
    ok = np.zeros((n_t, n_r), dtype=bool)
    ok[1:-1, 1:-1] = True
    if valid_z is not None:
        v = np.asarray(valid_z, dtype=bool)
        full = np.ones_like(ok)
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                full[1:-1, 1:-1] &= v[1 + di:n_t - 1 + di, 1 + dj:n_r - 1 + dj]
        ok &= full
    return ok


def _choose_independent(eligible: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k eligible nodes, no two 8-adjacent, chosen at random; None if not found."""
    cand = np.argwhere(eligible)
    n_t, n_r = eligible.shape
    for _ in range(_GREEDY_ATTEMPTS):
        # Random sequential selection: uniform over orderings, succeeds easily well below the
        # maximum packing (random sequential adsorption jams near half of it).
        blocked = np.zeros((n_t + 2, n_r + 2), dtype=bool)   # padded so blocking needs no bounds
        chosen = np.zeros((n_t, n_r), dtype=bool)
        count = 0
        for i, j in cand[rng.permutation(len(cand))]:
            if blocked[i + 1, j + 1]:
                continue
            chosen[i, j] = True
            blocked[i:i + 3, j:j + 3] = True
            count += 1
            if count == k:
                return chosen
    # Near the maximum: a random-phase lattice of every other row/column is a maximal packing of
    # the eligible set's bounding block; subsample k of its eligible points at random.
    phases = []
    for pi in (0, 1):
        for pj in (0, 1):
            lattice = np.zeros_like(eligible)
            lattice[1 + pi::2, 1 + pj::2] = True
            pts = np.argwhere(lattice & eligible)
            if len(pts) >= k:
                phases.append(pts)
    if not phases:
        return None
    best = phases[rng.integers(len(phases))]
    chosen = np.zeros_like(eligible)
    pick = best[rng.choice(len(best), size=k, replace=False)]
    chosen[pick[:, 0], pick[:, 1]] = True
    return chosen


def heldout_node_split(n_t: int, n_r: int, fraction: float = 0.1, seed: int = 0,
                       n_elements: int = 1, valid: Optional[np.ndarray] = None) -> np.ndarray:
    """Held-out interior nodes for the gap-filling test, independently per element.

    For each element, round-half-up(fraction * n_eligible) nodes are drawn among the eligible
    nodes (interior: not on the T or rho border; and, when `valid` is given, valid with all 8
    neighbours valid) such that no two chosen nodes are 8-adjacent. Every held-out node therefore
    keeps its 8 neighbours in training. On the 27 x 17 grid: 38 of 375 interior nodes per element.

    Args:
      n_t, n_r: temperature and density grid sizes.
      fraction: held-out fraction of the eligible nodes, in (0, 1).
      seed: integer seed for np.random.default_rng; the result is a pure function of the inputs.
      n_elements: nZ (ignored when `valid` is given, whose first axis is used).
      valid: optional (nZ, n_t, n_r) bool mask of existing spectra.

    Returns:
      (nZ, n_t, n_r) bool test mask.

    Raises:
      ValueError: if the requested count exceeds what the no-adjacency constraint allows (the
        message gives the maximum), or on bad arguments.
    """
    fraction = _check_fraction(fraction)
    n_t, n_r = int(n_t), int(n_r)
    if n_t < 3 or n_r < 3:
        raise ValueError(f"need n_t, n_r >= 3 to have interior nodes, got {n_t} x {n_r}")
    if valid is not None:
        valid = _check_valid(valid)
        if valid.shape[1:] != (n_t, n_r):
            raise ValueError(f"valid has shape {valid.shape}, expected (nZ, {n_t}, {n_r})")
        n_elements = valid.shape[0]
    rng = np.random.default_rng(seed)
    test = np.zeros((int(n_elements), n_t, n_r), dtype=bool)
    cap = max_heldout_nodes(n_t, n_r)
    for z in range(int(n_elements)):
        eligible = _eligible(n_t, n_r, None if valid is None else valid[z])
        n_elig = int(eligible.sum())
        k = _round_half_up(fraction * n_elig)
        if k == 0:
            continue
        if k > cap:
            raise ValueError(
                f"cannot hold out {k} of {n_elig} interior nodes (fraction {fraction}) with no two "
                f"8-adjacent: at most {cap} nodes (fraction {cap / max(n_elig, 1):.4f}) on a "
                f"{n_t} x {n_r} grid")
        chosen = _choose_independent(eligible, k, rng)
        if chosen is None:
            raise ValueError(
                f"element index {z}: could not place {k} non-adjacent held-out nodes among "
                f"{n_elig} eligible ones (holes in the valid mask); the unconstrained maximum "
                f"is {cap} nodes")
        test[z] = chosen
    return test


@dataclasses.dataclass
class Split:
    """A train/test split of the (nZ, nT, nR) spectra.

    Attributes:
      train, test: (nZ, nT, nR) bool masks, disjoint.
      name: protocol name ('random' | 'heldout_nodes').
      seed: seed it was drawn with.
      fraction: requested test fraction.
    """

    train: np.ndarray
    test: np.ndarray
    name: str
    seed: int
    fraction: float = 0.1

    def __post_init__(self):
        self.train = np.asarray(self.train, dtype=bool)
        self.test = np.asarray(self.test, dtype=bool)
        if self.train.shape != self.test.shape or self.train.ndim != 3:
            raise ValueError(f"train {self.train.shape} and test {self.test.shape} must be equal "
                             "(nZ, nT, nR) shapes")
        if np.any(self.train & self.test):
            raise ValueError("train and test masks overlap")

    def to_dict(self) -> dict:
        """JSON-serialisable form: shape plus flat indices of True entries."""
        return {"name": self.name, "seed": int(self.seed), "fraction": float(self.fraction),
                "shape": list(self.train.shape),
                "train": np.flatnonzero(self.train).tolist(),
                "test": np.flatnonzero(self.test).tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> "Split":
        """Inverse of `to_dict`."""
        shape = tuple(int(s) for s in d["shape"])
        masks = []
        for key in ("train", "test"):
            m = np.zeros(int(np.prod(shape)), dtype=bool)
            m[np.asarray(d[key], dtype=np.int64)] = True
            masks.append(m.reshape(shape))
        return cls(train=masks[0], test=masks[1], name=d["name"], seed=int(d["seed"]),
                   fraction=float(d.get("fraction", 0.1)))


def heldout_t_row_split(valid, fraction: float = 0.1, seed: int = 0) -> np.ndarray:
    """Held-out interior temperature rows, independently per element.

    For each element, max(1, round-half-up(fraction * nT)) rows are drawn among the interior
    rows 1 .. nT-2 that have valid nodes, no two adjacent (each keeps both neighbouring rows).

    Args:
      valid: (nZ, nT, nR) bool mask of existing spectra (nT >= 3).
      fraction: fraction of temperature rows to hold out; seed: integer seed.
    Returns:
      (nZ, nT, nR) bool test mask (the valid nodes of the chosen rows).
    """
    valid = _check_valid(valid)
    fraction = _check_fraction(fraction)
    n_z, n_t, _ = valid.shape
    if n_t < 3:
        raise ValueError(f"heldout_t_rows needs at least 3 temperatures, got {n_t}")
    k = max(1, _round_half_up(fraction * n_t))
    if k > (n_t - 1) // 2:
        raise ValueError(f"cannot hold out {k} non-adjacent interior rows of {n_t} "
                         f"temperatures; lower the test fraction")
    rng = np.random.default_rng(seed)
    test = np.zeros_like(valid)
    for z in range(n_z):
        rows = []
        candidates = [i for i in range(1, n_t - 1) if valid[z, i].any()]
        for i in rng.permutation(candidates):
            if len(rows) == k:
                break
            if all(abs(int(i) - r) > 1 for r in rows):
                rows.append(int(i))
        if len(rows) < k:
            raise ValueError(f"element position {z}: only {len(rows)} non-adjacent interior rows "
                             f"with data, {k} requested")
        test[z, rows] = valid[z, rows]
    return test


def make_split(name: str, valid, seed: int = 0, fraction: float = 0.1) -> Split:
    """Build a Split by protocol name.

    Args:
      name: 'random' (stratified random over valid spectra), 'heldout_nodes' (non-adjacent
        interior nodes per element; neighbours must be valid) or 'heldout_t_rows' (whole
        non-adjacent interior temperature rows per element).
      valid: (nZ, nT, nR) bool mask of existing spectra.
      seed: integer seed.
      fraction: test fraction.

    Returns:
      Split with train | test == valid and train & test empty.
    """
    if name not in SPLIT_NAMES:
        raise ValueError(f"unknown split {name!r}; allowed: {SPLIT_NAMES}")
    valid = _check_valid(valid)
    if name == "random":
        train, test = random_split(valid, fraction=fraction, seed=seed)
    elif name == "heldout_t_rows":
        test = heldout_t_row_split(valid, fraction=fraction, seed=seed)
        train = valid & ~test
    else:
        test = heldout_node_split(valid.shape[1], valid.shape[2], fraction=fraction, seed=seed,
                                  valid=valid)
        train = valid & ~test
    return Split(train=train, test=test, name=name, seed=int(seed), fraction=float(fraction))
