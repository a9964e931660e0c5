"""The in-memory Dataset: grid axes plus opacity arrays. The canonical file: data/h5file.py."""

from __future__ import annotations

import dataclasses
from typing import Optional

import numpy as np

from opacity_jax.data import grid as _grid

COMPONENTS = ("bb", "bf", "ff", "es")   # bound-bound, bound-free, free-free, electron scattering


@dataclasses.dataclass
class Dataset:
    """Opacity spectra on a (element, temperature, density, energy) grid.

    Attributes:
      elements: (nZ,) int atomic numbers.
      temperature_ev: (nT,) temperatures [eV], increasing.
      density_gcc: (nR,) mass densities [g/cm^3], increasing.
      energy_edges_ev: (nE + 1,) photon-energy bin edges [eV], increasing; spectra are bin averages.
      kappa: (nZ, nT, nR, nE) float32 total monochromatic opacity [cm^2/g].
      components: dict name -> (nZ, nT, nR, nE) float32 [cm^2/g] for names in COMPONENTS
        (may be empty when a table does not provide them).
      zbar: (nZ, nT, nR) mean ionic charge, or None.
      charge_fractions: (nZ, nT, nR, nQ) LTE charge-state fractions (charge 0..nQ-1), or None.
      valid: (nZ, nT, nR) bool, True where a spectrum exists (tables with holes).
      provenance: JSON-serialisable dict (source, generator version, seed, package version, ...).
    """

    elements: np.ndarray
    temperature_ev: np.ndarray
    density_gcc: np.ndarray
    energy_edges_ev: np.ndarray
    kappa: np.ndarray
    components: dict = dataclasses.field(default_factory=dict)
    zbar: Optional[np.ndarray] = None
    charge_fractions: Optional[np.ndarray] = None
    valid: Optional[np.ndarray] = None
    provenance: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.elements = np.asarray(self.elements, dtype=np.int32)
        self.temperature_ev = np.asarray(self.temperature_ev, dtype=np.float64)
        self.density_gcc = np.asarray(self.density_gcc, dtype=np.float64)
        self.energy_edges_ev = np.asarray(self.energy_edges_ev, dtype=np.float64)
        if self.valid is None:
            self.valid = np.ones(self.kappa.shape[:3], dtype=bool)
        self.validate()

    @property
    def energy_ev(self) -> np.ndarray:
        """(nE,) geometric bin centres [eV]."""
        return _grid.bin_centers_ev(self.energy_edges_ev)

    @property
    def shape(self) -> tuple:
        """(nZ, nT, nR, nE)."""
        return tuple(self.kappa.shape)

    def validate(self) -> None:
        """Check shapes, ordering and finiteness; raises ValueError naming the field."""
        nz, nt, nr = len(self.elements), len(self.temperature_ev), len(self.density_gcc)
        ne = len(self.energy_edges_ev) - 1
        want = (nz, nt, nr, ne)
        if tuple(self.kappa.shape) != want:
            raise ValueError(f"kappa has shape {self.kappa.shape}, axes imply {want}")
        for name, axis in (("temperature_ev", self.temperature_ev),
                           ("density_gcc", self.density_gcc),
                           ("energy_edges_ev", self.energy_edges_ev)):
            if axis.ndim != 1 or np.any(~np.isfinite(axis)) or np.any(axis <= 0):
                raise ValueError(f"{name} must be a finite, positive 1-D array")
            if axis.size > 1 and np.any(np.diff(axis) <= 0):
                raise ValueError(f"{name} must be strictly increasing")
        for name, arr in self.components.items():
            if name not in COMPONENTS:
                raise ValueError(f"unknown component {name!r}; allowed: {COMPONENTS}")
            if tuple(arr.shape) != want:
                raise ValueError(f"component {name!r} has shape {arr.shape}, expected {want}")
        if self.zbar is not None and tuple(self.zbar.shape) != want[:3]:
            raise ValueError(f"zbar has shape {self.zbar.shape}, expected {want[:3]}")
        if self.charge_fractions is not None and tuple(self.charge_fractions.shape[:3]) != want[:3]:
            raise ValueError(f"charge_fractions has shape {self.charge_fractions.shape}, "
                             f"expected {want[:3]} + (n_charge,)")
        if tuple(self.valid.shape) != want[:3]:
            raise ValueError(f"valid has shape {self.valid.shape}, expected {want[:3]}")

    def element_position(self, z: int) -> int:
        """Position of atomic number z on this dataset's element axis (ValueError if absent)."""
        hits = np.nonzero(self.elements == int(z))[0]
        if hits.size != 1:
            raise ValueError(f"element Z={z} not in dataset (has {self.elements.tolist()})")
        return int(hits[0])
