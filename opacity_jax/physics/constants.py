"""Physical constants in CGS units plus eV, in one place.

Values are CODATA 2018 (exact SI-defined values where applicable). Every other module imports
from here; nothing else in the package spells out a physical constant.
"""

# Fundamental (CGS).
C_LIGHT_CM_S = 2.99792458e10          # speed of light [cm/s]
H_PLANCK_ERG_S = 6.62607015e-27        # Planck constant [erg s]
H_PLANCK_EV_S = 4.135667696e-15        # Planck constant [eV s]
HBAR_ERG_S = 1.054571817e-27           # reduced Planck constant [erg s]
K_BOLTZMANN_ERG_K = 1.380649e-16       # Boltzmann constant [erg/K]
K_BOLTZMANN_EV_K = 8.617333262e-5      # Boltzmann constant [eV/K]
ELECTRON_MASS_G = 9.1093837015e-28     # electron mass [g]
ELECTRON_CHARGE_ESU = 4.80320471e-10   # elementary charge [statC]
ATOMIC_MASS_UNIT_G = 1.66053906660e-24  # unified atomic mass unit [g]
EV_ERG = 1.602176634e-12               # 1 eV in erg
RYDBERG_EV = 13.605693122994           # Rydberg energy [eV]
HARTREE_EV = 27.211386245988           # Hartree energy [eV]
BOHR_CM = 5.29177210903e-9             # Bohr radius [cm]
FINE_STRUCTURE = 7.2973525693e-3       # fine-structure constant
THOMSON_CM2 = 6.6524587321e-25         # Thomson cross-section [cm^2]
ELECTRON_MASS_AMU = 5.48579909065e-4   # electron mass [u]

# Derived.
# pi e^2 / (m_e c): integrated line cross-section per unit oscillator strength, in cm^2 Hz.
LINE_XSEC_CM2_HZ = 3.141592653589793 * ELECTRON_CHARGE_ESU**2 / (ELECTRON_MASS_G * C_LIGHT_CM_S)
# Same in cm^2 eV (multiply by h in eV s).
LINE_XSEC_CM2_EV = LINE_XSEC_CM2_HZ * H_PLANCK_EV_S
# (2 pi m_e k / h^2)^{3/2} evaluated at T = 1 eV: thermal de Broglie density [cm^-3].
SAHA_CONST_CM3_EV32 = (2.0 * 3.141592653589793 * ELECTRON_MASS_G * EV_ERG
                       / H_PLANCK_ERG_S**2) ** 1.5
# e^2 in eV cm (Coulomb energy of two unit charges 1 cm apart; ~1.44e-7): Debye-Hueckel lowering
# of the ionization potential, dI_q = (q + 1) e^2 / lambda_D.
ELECTRON_CHARGE_SQ_EV_CM = ELECTRON_CHARGE_ESU**2 / EV_ERG
# Kramers hydrogenic photoionisation cross-section at threshold for n = 1, Z = 1 [cm^2].
KRAMERS_BF_CM2 = 7.906e-18
# Kramers free-free absorption coefficient prefactor (Rybicki & Lightman eq. 5.18b, Gaunt = 1):
# alpha_ff = C * Z^2 n_e n_i T_K^{-1/2} nu^{-3} (1 - e^{-h nu / k T})  [cm^-1], CGS inputs.
KRAMERS_FF_CGS = 3.692e8
# Stefan-Boltzmann-type integrals of the Planck kernel in x = E/kT.
PLANCK_INTEGRAL = 3.141592653589793**4 / 15.0          # int_0^inf x^3/(e^x-1) dx
DPLANCK_INTEGRAL = 4.0 * 3.141592653589793**4 / 15.0   # int_0^inf x^4 e^x/(e^x-1)^2 dx

# Atomic units and molecular data (used by physics.molecular; CODATA 2018 unless noted).
HARTREE_CM1 = 219474.6313632            # Hartree energy in wavenumbers [cm^-1]
BOHR_ANGSTROM = 0.529177210903          # Bohr radius [Angstrom]
PROTON_MASS_AMU = 1.007276466621        # proton mass [u]
PROTON_ELECTRON_MASS_RATIO = 1836.15267343  # m_p / m_e
AMU_ELECTRON_MASSES = 1.0 / ELECTRON_MASS_AMU  # 1 u in electron masses (~1822.888)
# Neutral-atom masses of the isotopes used for the molecular ions [u]
# (AME2020: W. J. Huang et al., Chin. Phys. C 45, 030002 (2021); M. Wang et al., ibid. 030003).
ATOMIC_MASS_H1_AMU = 1.00782503223
ATOMIC_MASS_HE4_AMU = 4.00260325413
ATOMIC_MASS_LI7_AMU = 7.0160034366
ATOMIC_MASS_NA23_AMU = 22.9897692820
# First ionization energies of the neutral atoms [eV] (NIST ASD, Kramida et al.).
IONIZATION_H_EV = 13.598434599702
IONIZATION_HE_EV = 24.587389011
IONIZATION_LI_EV = 5.391714996
IONIZATION_NA_EV = 5.13907696
# Static electric-dipole polarizabilities of the ground-state atoms [a.u. = a0^3]:
# H(1s) 9/2 exactly; He 1.383191 (Lach, Jeziorski & Szalewicz, PRL 92, 233001 (2004));
# Li(2s) 164.11 (theory, as tabulated in the review of Mitroy, Safronova & Clark, J. Phys. B 43,
# 202001 (2010)); Na(3s) 162.7 (Ekstrom et al., PRA 51, 3883 (1995), measured +-0.8).
POLARIZABILITY_H_AU = 4.5
POLARIZABILITY_HE_AU = 1.383191
POLARIZABILITY_LI_AU = 164.11
POLARIZABILITY_NA_AU = 162.7
