"""Element data for the 28 lanthanides and actinides of the NIST-LANL opacity grid.

Sources
-------
* Ionization energies (eV), stages I-XX: NIST Atomic Spectra Database, Ionization Energies
  (A. Kramida, Yu. Ralchenko, J. Reader and NIST ASD Team, NIST ASD v5.x), as tabulated by the
  ``mendeleev`` package. For stages beyond IV-V most NIST values are themselves semi-empirical or
  theoretical (Carlson et al. 1970, At. Data 2, 63; Rodrigues et al. 2004, ADNDT 86, 117); the
  precise ones are the first 3-4 stages. Stages above XX are never needed on the NIST-LANL grid:
  the Saha solver reports the highest populated stage and the package checks it stays below.
* Standard atomic weights (IUPAC 2021; mass number of the longest-lived isotope for the
  elements without stable isotopes) and ground configurations from the same source.

``N_F_NEUTRAL`` is the number of open-shell f electrons in the neutral ground configuration;
``N_VALENCE`` counts electrons outside the closed [Xe] or [Rn] core. The structure generator
(``opacity_jax.data.atomic``) uses both to decide how rich each ion's level manifold is.
"""

import numpy as np

# (Z, symbol, name, atomic weight [u], neutral open-f count, ground configuration,
#  ionization energies of stages I..XX [eV]).
ELEMENT_TABLE = (
    (57, 'La', 'Lanthanum', 138.9055, 0, '[Xe] 5d 6s2',
     (5.5769, 11.185, 19.1773, 49.95, 61.6, 74, 88, 105, 119, 151.4, 168.77, 275, 303, 332, 364, 393, 431, 464, 498, 533)),
    (58, 'Ce', 'Cerium', 140.116, 1, '[Xe] 4f 5d 6s2',
     (5.5386, 10.956, 20.1974, 36.906, 65.55, 77.6, 91, 106, 125, 140, 172, 192.24, 312, 340, 371, 403, 435, 472, 509, 543)),
    (59, 'Pr', 'Praseodymium', 140.9077, 3, '[Xe] 4f3 6s2',
     (5.4702, 10.631, 21.6237, 38.981, 57.53, 82, 97, 112, 131, 148, 162, 196, 217.02, 350, 378, 412, 445, 478, 516, 554)),
    (60, 'Nd', 'Neodymium', 144.242, 4, '[Xe] 4f4 6s2',
     (5.525, 10.783, 22.09, 40.6, 60, 84, 99, 114, 136, 152, 168, 195, 221, 243, 389, 420, 453, 489, 522, 562)),
    (61, 'Pm', 'Promethium', 144.9128, 5, '[Xe] 4f5 6s2',
     (5.58187, 10.938, 22.44, 41.17, 61.7, 85, 101, 116, 138, 155, 174, 202, 229, 248, 269, 430, 462, 497, 534, 569)),
    (62, 'Sm', 'Samarium', 150.36, 6, '[Xe] 4f6 6s2',
     (5.64372, 11.078, 23.55, 41.64, 62.7, 87, 103, 118, 141, 158, 179, 208, 237, 257, 276, 306.5, 474, 506, 543, 581)),
    (63, 'Eu', 'Europium', 151.964, 7, '[Xe] 4f7 6s2',
     (5.67038, 11.24, 24.84, 42.94, 63.2, 89, 105, 120, 144, 161, 183, 213, 243, 263, 281, 311, 344.4, 518, 553, 590)),
    (64, 'Gd', 'Gadolinium', 157.25, 7, '[Xe] 4f7 5d 6s2',
     (6.1498, 12.076, 20.54, 44.44, 64.8, 89, 106, 123, 144, 165, 183, 213, 246, 268, 288, 319, 352, 384.4, 565, 601)),
    (65, 'Tb', 'Terbium', 158.9254, 9, '[Xe] 4f9 6s2',
     (5.8638, 11.513, 21.82, 39.33, 66.5, 90, 108, 125, 143, 168, 186, 216, 250, 273, 294, 325, 358, 393, 426.6, 613)),
    (66, 'Dy', 'Dysprosium', 162.5, 10, '[Xe] 4f10 6s2',
     (5.93906, 11.647, 22.89, 41.23, 62.1, 93, 110, 127, 152, 170, 192, 224, 259, 279, 300, 332, 366, 399, 431, 464.9)),
    (67, 'Ho', 'Holmium', 164.9303, 11, '[Xe] 4f11 6s2',
     (6.0215, 11.781, 22.79, 42.52, 63.9, 95, 112, 129, 155, 173, 197, 229, 263, 284, 305, 340, 373, 408, 441, 475)),
    (68, 'Er', 'Erbium', 167.259, 12, '[Xe] 4f12 6s2',
     (6.1077, 11.916, 22.7, 42.42, 65.1, 96, 114, 131, 158, 177, 201, 235, 268, 290, 311, 345, 381, 415, 450, 486)),
    (69, 'Tm', 'Thulium', 168.9342, 13, '[Xe] 4f13 6s2',
     (6.1844, 12.065, 23.66, 42.41, 65.4, 98, 116, 133, 160, 180, 205, 239, 274, 295, 317, 352, 387, 424, 460, 496)),
    (70, 'Yb', 'Ytterbium', 173.045, 14, '[Xe] 4f14 6s2',
     (6.25416, 12.1792, 25.053, 43.61, 65.6, 99, 117, 135, 163, 182, 209, 244, 279, 301, 324, 360, 396, 431, 469, 505)),
    (71, 'Lu', 'Lutetium', 174.9668, 14, '[Xe] 4f14 5d 6s2',
     (5.42587, 14.13, 20.9594, 45.249, 66.8, 98, 117, 136, 159, 185, 205, 238, 276, 305, 328, 361, 399, 438, 476, 520)),
    (89, 'Ac', 'Actinium', 227.0, 0, '[Rn] 6d 7s2',
     (5.38023, 11.75, 17.436, 44.8, 55, 67, 79, 98.9, 113.9, 143.9, 161.1, 233, 255, 279, 305, 330, 355, 390, 416, 444)),
    (90, 'Th', 'Thorium', 232.0377, 0, '[Rn] 6d2 7s2',
     (6.3067, 12.1, 18.32, 28.648, 58, 69.1, 82, 95, 118, 133, 165, 181, 262, 285, 310, 336, 362, 389, 424, 451)),
    (91, 'Pa', 'Protactinium', 231.0359, 2, '[Rn] 5f2 6d 7s2',
     (5.89, 11.9, 18.6, 30.9, 44.3, 72, 85.1, 98.9, 111, 137, 153, 187, 203, 292, 316, 342, 369, 395, 423, 460)),
    (92, 'U', 'Uranium', 238.0289, 3, '[Rn] 5f3 6d 7s2',
     (6.19405, 11.6, 19.8, 36.7, 46, 62, 89, 101, 116, 128.9, 158, 173, 210, 227, 323, 348, 375, 402, 431, 458)),
    (93, 'Np', 'Neptunium', 237.0, 4, '[Rn] 5f4 6d 7s2',
     (6.26554, 11.5, 19.7, 33.8, 48, 65, 92, 107, 121, 136, 151, 179, 196, 233, 252, 355, 382, 408, 438, 466)),
    (94, 'Pu', 'Plutonium', 244.0, 6, '[Rn] 5f6 7s2',
     (6.02576, 11.5, 21.1, 35, 49, 80, 95, 109, 124, 139, 159, 179, 200, 219, 258, 278, 389, 416, 444, 474)),
    (95, 'Am', 'Americium', 243.0, 7, '[Rn] 5f7 7s2',
     (5.97381, 11.7, 21.7, 36.8, 50, 67.9, 95, 110, 125, 141, 163, 184, 206, 225, 242, 284, 305, 424, 451, 481)),
    (96, 'Cm', 'Curium', 247.0, 7, '[Rn] 5f7 6d 7s2',
     (5.99224, 12.4, 20.1, 37.7, 51, 69.1, 97, 112, 128, 144, 167, 190, 213, 235, 253, 272, 311, 332, 460, 489)),
    (97, 'Bk', 'Berkelium', 247.0, 9, '[Rn] 5f9 7s2',
     (6.19785, 11.9, 21.6, 36, 56, 70.1, 90, 114, 130, 147, 171, 195, 218, 240, 259, 279, 303, 339, 361, 497)),
    (98, 'Cf', 'Californium', 251.0, 10, '[Rn] 5f10 7s2',
     (6.28188, 12, 22.4, 37.7, 51.9, 75, 91, 112.9, 133, 152, 178, 201, 225, 247, 265, 286, 310, 334, 368, 390)),
    (99, 'Es', 'Einsteinium', 252.0, 11, '[Rn] 5f11 7s2',
     (6.3684, 12.2, 22.7, 38.8, 54.1, 71, 97, 112.9, 137, 157, 180, 206, 231, 252, 270, 294, 317, 342, 367, 398)),
    (100, 'Fm', 'Fermium', 257.0, 12, '[Rn] 5f12 7s2',
     (6.5, 12.4, 23.2, 39.3, 55, 74, 93, 120, 136, 162, 185, 209, 237, 257, 276, 300, 326, 351, 377, 402)),
    (101, 'Md', 'Mendelevium', 258.0, 13, '[Rn] 5f13 7s2',
     (6.58, 12.4, 24.3, 40, 54.1, 76, 96, 115.1, 143.9, 162, 187, 215, 240, 260, 282, 307, 334, 360, 386, 412)),
    (102, 'No', 'Nobelium', 259.0, 14, '[Rn] 5f14 7s2',
     (6.62621, 12.93, 25.8, 41.5, 60, 74, 97, 119, 140, 170, 187, 216, 246, 267, 285, 312, 341, 367, 394, 422)),
    (103, 'Lr', 'Lawrencium', 262.0, 14, '[Rn] 5f14 7s2 7p1',
     (4.96, 14.54, 21.8, 43.6, 56, 80, 96, 121, 143, 165, 197, 216, 244, 269, 290, 322, 344, 374, 403, 431)),
)

ATOMIC_NUMBERS = np.array([r[0] for r in ELEMENT_TABLE], dtype=np.int32)          # (28,)
SYMBOLS = tuple(r[1] for r in ELEMENT_TABLE)                                         # (28,)
NAMES = tuple(r[2] for r in ELEMENT_TABLE)
ATOMIC_WEIGHTS = np.array([r[3] for r in ELEMENT_TABLE], dtype=np.float64)         # (28,) [u]
N_F_NEUTRAL = np.array([r[4] for r in ELEMENT_TABLE], dtype=np.int32)              # (28,)
GROUND_CONFIGURATIONS = tuple(r[5] for r in ELEMENT_TABLE)
IONIZATION_ENERGIES_EV = np.array([r[6] for r in ELEMENT_TABLE], dtype=np.float64)  # (28, 20) [eV]
# Electrons outside the noble-gas core ([Xe] = 54 for 4f elements, [Rn] = 86 for 5f elements).
N_VALENCE = np.where(ATOMIC_NUMBERS < 89, ATOMIC_NUMBERS - 54, ATOMIC_NUMBERS - 86).astype(np.int32)
MAX_STAGES = IONIZATION_ENERGIES_EV.shape[1] + 1   # charge states 0..20


def element_index(element) -> int:
    """Index (0..27) of an element given as atomic number (int or a string of digits) or symbol
    (str, any case).

    Raises ValueError naming the allowed elements if it is not one of the 28.
    """
    if isinstance(element, str) and element.strip().isdigit():
        element = int(element.strip())        # "60" (a command-line flag) is Z = 60
    if isinstance(element, (int, np.integer)) and not isinstance(element, bool):
        hits = np.nonzero(ATOMIC_NUMBERS == int(element))[0]
    else:
        key = str(element).strip().lower()
        hits = [i for i, s in enumerate(SYMBOLS) if s.lower() == key or NAMES[i].lower() == key]
    if len(hits) != 1:
        raise ValueError(
            f"unknown element {element!r}: expected one of Z = 57-71, 89-103 or symbols "
            f"{', '.join(SYMBOLS)}")
    return int(hits[0])



def position_in(served, element) -> int:
    """Position of `element` (symbol or Z) in the atomic numbers `served` (a model's element
    axis); ValueError naming the served elements if it is not among them."""
    z = int(ATOMIC_NUMBERS[element_index(element)])
    hits = np.nonzero(np.asarray(served) == z)[0]
    if hits.size != 1:
        raise ValueError(f"element {element!r} not served by this surrogate; trained on "
                         f"{[SYMBOLS[element_index(int(e))] for e in served]}")
    return int(hits[0])
