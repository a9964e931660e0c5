"""Photodissociation cross-sections of diatomic molecular ions from potential curves.

Modules, in the order the computation uses them:

* :mod:`.common`: cross-section prefactor, masses, unit conversions, single-threaded BLAS;
* :mod:`.h2plus_exact`: H2+ electronic energies and transition dipole from first principles;
* :mod:`.potentials`: :class:`Molecule` (potential curves, dipole, spin weights), H2+ and the six
  model ions with their parameters and sources;
* :mod:`.bound`: bound rovibrational levels (mapped sinc DVR);
* :mod:`.continuum`: energy-normalised continuum functions (Numerov) and dipole matrix elements;
* :mod:`.photodissociation`: the theory, cross-sections, LTE averages, wavelength grids.

This package re-exports the public names, so ``from opacity_jax.physics import molecular as mol;
mol.cross_section(...)`` is the API.

``SOURCE_FILES`` lists the package's source files: computed tables cached on disk are keyed by a
hash of them (any edit to the physics regenerates the tables).
"""

from pathlib import Path

from opacity_jax.physics.molecular.bound import bound_levels, bound_wavefunctions
from opacity_jax.physics.molecular.common import (H2PLUS_REDUCED_MASS, UGAMOP_H2PLUS_REDUCED_MASS,
                                                 XSEC_PREFACTOR_CM2, hartree_to_wavelength,
                                                 wavelength_to_hartree)
from opacity_jax.physics.molecular.continuum import continuum_wavefunction
from opacity_jax.physics.molecular.h2plus_exact import (h2plus_dipole, h2plus_electronic_energy,
                                                       h2plus_electronic_table, h2plus_potential,
                                                       solve_h2plus_state)
from opacity_jax.physics.molecular.photodissociation import (cross_section, cross_section_h2plus,
                                                            cross_sections,
                                                            level_wavelength_arrays, lte_average,
                                                            lte_combine, lte_weights,
                                                            thermal_j_max, wavelength_grid)
from opacity_jax.physics.molecular.potentials import (MOLECULE_NAMES, Molecule, get_molecule,
                                                     h2plus, model_parameters)

SOURCE_FILES = tuple(sorted(Path(__file__).resolve().parent.glob("*.py")))

__all__ = [
    "Molecule", "MOLECULE_NAMES", "get_molecule", "h2plus",
    "H2PLUS_REDUCED_MASS", "UGAMOP_H2PLUS_REDUCED_MASS",
    "h2plus_electronic_energy", "h2plus_potential", "h2plus_dipole", "h2plus_electronic_table",
    "solve_h2plus_state", "model_parameters",
    "bound_levels", "bound_wavefunctions", "continuum_wavefunction",
    "cross_section", "cross_section_h2plus", "cross_sections", "level_wavelength_arrays",
    "lte_weights", "lte_combine", "lte_average", "thermal_j_max",
    "wavelength_grid", "wavelength_to_hartree", "hartree_to_wavelength",
    "XSEC_PREFACTOR_CM2", "SOURCE_FILES",
]
