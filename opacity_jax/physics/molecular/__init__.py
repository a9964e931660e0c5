"""Photodissociation cross-sections of diatomic molecular ions from potential curves.

The theory, numerics and molecules are described in :mod:`.photodissociation`. This package
re-exports the public names, so ``from opacity_jax.physics import molecular as mol;
mol.cross_section(...)`` is the API.

``SOURCE_FILES`` lists the package's source files: computed tables cached on disk are keyed by a
hash of them (any edit to the physics regenerates the tables).
"""

from pathlib import Path

from opacity_jax.physics.molecular.photodissociation import (
    H2PLUS_REDUCED_MASS, MOLECULE_NAMES, UGAMOP_H2PLUS_REDUCED_MASS, XSEC_PREFACTOR_CM2, Molecule,
    bound_levels, bound_wavefunctions, continuum_wavefunction, cross_section, cross_section_h2plus,
    cross_sections, get_molecule, h2plus, h2plus_dipole, h2plus_electronic_energy,
    h2plus_electronic_table, h2plus_potential, hartree_to_wavelength, lte_average, lte_combine,
    lte_weights, model_parameters, solve_h2plus_state, thermal_j_max, wavelength_grid,
    wavelength_to_hartree)

SOURCE_FILES = tuple(sorted(Path(__file__).resolve().parent.glob("*.py")))

__all__ = [
    "Molecule", "MOLECULE_NAMES", "get_molecule", "h2plus",
    "H2PLUS_REDUCED_MASS", "UGAMOP_H2PLUS_REDUCED_MASS",
    "h2plus_electronic_energy", "h2plus_potential", "h2plus_dipole", "h2plus_electronic_table",
    "solve_h2plus_state", "model_parameters",
    "bound_levels", "bound_wavefunctions", "continuum_wavefunction",
    "cross_section", "cross_section_h2plus", "cross_sections",
    "lte_weights", "lte_combine", "lte_average", "thermal_j_max",
    "wavelength_grid", "wavelength_to_hartree", "hartree_to_wavelength",
    "XSEC_PREFACTOR_CM2", "SOURCE_FILES",
]
