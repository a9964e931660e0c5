"""What the training loop needs to know about a model: the Task, and entity-stacked data.

A Task bundles everything that differs between models (init, loss, evaluation loss); the loop in
`opacity_jax.train.loop` knows nothing else. Data for N independent models (28 elements,
7 molecules, elements x ensemble members, ...) is an `EntityData`: arrays padded to a common
sample count along axis 1, with per-row counts, plus a map from each trained entity to the data
row it learns from (so K ensemble members of one element share one copy of its data).
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Dict, Mapping, Optional

import numpy as np

Batch = Dict[str, Any]


@dataclasses.dataclass(frozen=True)
class Task:
    """A trainable model family.

    Attributes:
      name: short name (used in logs and checkpoints).
      init: (rng, example_batch) -> params of ONE entity; example_batch has leading dim B.
      loss: (params, batch, rng) -> (scalar loss, dict of scalar metrics), training mode
        (dropout on). `batch['weight']` (B,) is 1 for real samples and 0 for padding; losses
        must weight by it so padding never contributes.
      eval_loss: (params, batch) -> (scalar loss, metrics), deterministic; defaults to `loss`
        with a fixed rng.
    """

    name: str
    init: Callable
    loss: Callable
    eval_loss: Optional[Callable] = None

    def evaluation_loss(self, params, batch):
        """Deterministic loss used for validation / early stopping."""
        if self.eval_loss is not None:
            return self.eval_loss(params, batch)
        import jax
        return self.loss(params, batch, jax.random.key(0))


@dataclasses.dataclass
class EntityData:
    """Samples of several entities, padded along axis 1.

    Attributes:
      arrays: name -> (n_rows, n_max, ...) arrays; row r holds counts[r] real samples first.
      counts: (n_rows,) int, real samples per row.
      entity_row: (n_entities,) int, the data row each trained entity uses.
      entity_ids: (n_entities,) int, stable ids folded into every entity's PRNG stream (so an
        entity trains identically alone or next to others).
    """

    arrays: Mapping[str, np.ndarray]
    counts: np.ndarray
    entity_row: Optional[np.ndarray] = None
    entity_ids: Optional[np.ndarray] = None

    def __post_init__(self):
        self.counts = np.asarray(self.counts, np.int64)
        n_rows = self.counts.size
        if self.entity_row is None:
            self.entity_row = np.arange(n_rows)
        self.entity_row = np.asarray(self.entity_row, np.int64)
        if self.entity_ids is None:
            self.entity_ids = np.arange(self.entity_row.size)
        self.entity_ids = np.asarray(self.entity_ids, np.int64)
        for k, v in self.arrays.items():
            if v.shape[0] != n_rows:
                raise ValueError(f"array {k!r} has {v.shape[0]} rows, counts has {n_rows}")
            if v.shape[1] < self.counts.max(initial=0):
                raise ValueError(f"array {k!r} holds {v.shape[1]} samples per row, "
                                 f"counts need {self.counts.max()}")
        if self.entity_row.size != self.entity_ids.size:
            raise ValueError("entity_row and entity_ids must have the same length")
        if np.any(self.entity_row < 0) or np.any(self.entity_row >= n_rows):
            raise ValueError("entity_row points outside the data rows")

    @property
    def n_entities(self) -> int:
        return int(self.entity_row.size)

    @property
    def n_max(self) -> int:
        return int(next(iter(self.arrays.values())).shape[1])

    def entity_counts(self) -> np.ndarray:
        """(n_entities,) real samples available to each entity."""
        return self.counts[self.entity_row]

    def select(self, entities) -> "EntityData":
        """The same data restricted to a subset of entities (by position)."""
        entities = np.asarray(entities)
        return EntityData(self.arrays, self.counts, self.entity_row[entities],
                          self.entity_ids[entities])

    def replicate(self, n_members: int) -> "EntityData":
        """Entities x members (member-fastest), sharing data rows: for deep ensembles."""
        rows = np.repeat(self.entity_row, n_members)
        ids = (np.repeat(self.entity_ids, n_members) * 1000
               + np.tile(np.arange(n_members), self.n_entities))
        return EntityData(self.arrays, self.counts, rows, ids)


def pack_ragged(per_row: list, pad_to: Optional[int] = None) -> EntityData:
    """Build EntityData from a list (one per row) of dicts of (n_i, ...) arrays, zero-padded."""
    if not per_row:
        raise ValueError("no rows to pack")
    keys = list(per_row[0])
    counts = np.array([len(next(iter(r.values()))) for r in per_row])
    n_max = int(pad_to if pad_to is not None else counts.max())
    arrays = {}
    for k in keys:
        first = np.asarray(per_row[0][k])
        out = np.zeros((len(per_row), n_max) + first.shape[1:], first.dtype)
        for i, r in enumerate(per_row):
            a = np.asarray(r[k])
            if a.shape[0] != counts[i]:
                raise ValueError(f"row {i}: array {k!r} has {a.shape[0]} samples, expected "
                                 f"{counts[i]}")
            out[i, :counts[i]] = a
        arrays[k] = out
    return EntityData(arrays, counts)
