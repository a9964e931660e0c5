"""Seeded train/test splits: random (stratified) and held-out interior nodes."""

import json

import numpy as np
import pytest

from opacity_jax.data import grid, splits

NZ, NT, NR = len(grid.DEFAULT_ELEMENTS), grid.N_TEMPERATURES, grid.N_DENSITIES


def _valid_with_holes(seed=0):
    rng = np.random.default_rng(seed)
    valid = np.ones((NZ, NT, NR), dtype=bool)
    valid &= rng.random(valid.shape) > 0.05
    return valid


# ------------------------------------------------------------------------------- held-out nodes

def test_heldout_deterministic_and_seed_dependent():
    a = splits.heldout_node_split(NT, NR, 0.1, seed=7, n_elements=NZ)
    b = splits.heldout_node_split(NT, NR, 0.1, seed=7, n_elements=NZ)
    c = splits.heldout_node_split(NT, NR, 0.1, seed=8, n_elements=NZ)
    np.testing.assert_array_equal(a, b)
    assert a.shape == (NZ, NT, NR) and a.dtype == bool
    assert not np.array_equal(a, c)
    # Elements are drawn independently, not one pattern repeated.
    assert len({a[z].tobytes() for z in range(NZ)}) == NZ


def test_heldout_interior_nonadjacent_and_count():
    test = splits.heldout_node_split(NT, NR, 0.1, seed=3, n_elements=NZ)
    n_interior = (NT - 2) * (NR - 2)
    assert n_interior == 375
    want = int(np.floor(0.1 * n_interior + 0.5))
    assert want == 38
    np.testing.assert_array_equal(test.sum(axis=(1, 2)), want)
    # Never on the border.
    assert not test[:, 0, :].any() and not test[:, -1, :].any()
    assert not test[:, :, 0].any() and not test[:, :, -1].any()
    train = ~test
    for z, i, j in np.argwhere(test):
        for di in (-1, 0, 1):
            for dj in (-1, 0, 1):
                if di or dj:
                    assert train[z, i + di, j + dj], (z, i, j, di, dj)


def test_heldout_max_fraction_and_errors():
    cap = splits.max_heldout_nodes(NT, NR)
    assert cap == 13 * 8
    # Right at the maximum it still succeeds (lattice fallback when the greedy pass jams).
    frac = cap / 375.0
    test = splits.heldout_node_split(NT, NR, frac, seed=0, n_elements=2)
    np.testing.assert_array_equal(test.sum(axis=(1, 2)), cap)
    padded = np.pad(test, ((0, 0), (1, 1), (1, 1)))
    for z, i, j in np.argwhere(padded):
        assert padded[z, i - 1:i + 2, j - 1:j + 2].sum() == 1
    with pytest.raises(ValueError, match=f"at most {cap}"):
        splits.heldout_node_split(NT, NR, 0.3, seed=0)
    with pytest.raises(ValueError, match="fraction"):
        splits.heldout_node_split(NT, NR, 0.0, seed=0)


def test_heldout_respects_valid_holes():
    valid = _valid_with_holes(1)
    split = splits.make_split("heldout_nodes", valid, seed=5)
    assert not (split.train & split.test).any()
    np.testing.assert_array_equal(split.train | split.test, valid)
    for z, i, j in np.argwhere(split.test):
        block = split.train[z, i - 1:i + 2, j - 1:j + 2].copy()
        block[1, 1] = True
        assert block.all()


# ------------------------------------------------------------------------------- random split

def test_random_split_stratified_disjoint_covering():
    valid = _valid_with_holes(2)
    train, test = splits.random_split(valid, fraction=0.1, seed=11)
    assert train.shape == test.shape == valid.shape
    assert not (train & test).any()
    np.testing.assert_array_equal(train | test, valid)
    n_valid = valid.sum(axis=(1, 2))
    np.testing.assert_array_equal(test.sum(axis=(1, 2)), np.floor(0.1 * n_valid + 0.5))
    frac = test.sum(axis=(1, 2)) / n_valid
    assert np.all(np.abs(frac - 0.1) < 0.01)
    t2, s2 = splits.random_split(valid, fraction=0.1, seed=11)
    np.testing.assert_array_equal(s2, test)
    _, s3 = splits.random_split(valid, fraction=0.1, seed=12)
    assert not np.array_equal(s3, test)


# ------------------------------------------------------------------------------- Split / factory

@pytest.mark.parametrize("name", ["random", "heldout_nodes"])
def test_make_split_and_roundtrip(name):
    valid = np.ones((NZ, NT, NR), dtype=bool)
    sp = splits.make_split(name, valid, seed=4, fraction=0.1)
    assert sp.name == name and sp.seed == 4
    np.testing.assert_array_equal(sp.train | sp.test, valid)
    back = splits.Split.from_dict(json.loads(json.dumps(sp.to_dict())))
    np.testing.assert_array_equal(back.train, sp.train)
    np.testing.assert_array_equal(back.test, sp.test)
    assert (back.name, back.seed, back.fraction) == (name, 4, 0.1)


def test_make_split_unknown_name_and_overlap():
    valid = np.ones((2, NT, NR), dtype=bool)
    with pytest.raises(ValueError, match="heldout_nodes"):
        splits.make_split("kfold", valid, seed=0)
    with pytest.raises(ValueError, match="overlap"):
        splits.Split(train=valid, test=valid, name="random", seed=0)
