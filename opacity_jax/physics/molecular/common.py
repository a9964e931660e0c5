"""Shared pieces of the molecular-ion code: cross-section prefactor, masses and unit
conversions (atomic units inside), and running BLAS single-threaded for the small matrices.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import math
import threading

import numpy as np

from opacity_jax.physics import constants as _c


# sigma [cm^2] = XSEC_PREFACTOR_CM2 * w [hartree] * sum_J' h_J' |M|^2 [a.u.]
XSEC_PREFACTOR_CM2 = 4.0 * math.pi ** 2 / 3.0 * _c.FINE_STRUCTURE * _c.BOHR_CM ** 2

AMU = _c.AMU_ELECTRON_MASSES
H2PLUS_REDUCED_MASS = _c.PROTON_ELECTRON_MASS_RATIO / 2.0   # m_p / 2 [m_e]
UGAMOP_H2PLUS_REDUCED_MASS = 918.326326                      # Stancil (1994) [m_e]

EV_IN_HARTREE = 1.0 / _c.HARTREE_EV   # 1 eV in hartree


# ---------------------------------------------------------------------------------------------
# BLAS threads
# ---------------------------------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _openblas_thread_controls() -> tuple:
    """(set, get) ctypes functions of every OpenBLAS loaded in this process (Linux), else ()."""
    try:
        with open("/proc/self/maps", encoding="utf-8") as fh:
            maps = fh.read()
    except OSError:
        return ()
    paths = sorted({ln.split()[-1] for ln in maps.splitlines()
                    if "openblas" in ln.lower() and ln.split()[-1].startswith("/")})
    names = (("scipy_openblas_set_num_threads64_", "scipy_openblas_get_num_threads64_"),
             ("scipy_openblas_set_num_threads", "scipy_openblas_get_num_threads"),
             ("openblas_set_num_threads", "openblas_get_num_threads"))
    out = []
    for path in paths:
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for set_name, get_name in names:
            if hasattr(lib, set_name) and hasattr(lib, get_name):
                setter, getter = getattr(lib, set_name), getattr(lib, get_name)
                setter.argtypes, setter.restype = [ctypes.c_int], None
                getter.argtypes, getter.restype = [], ctypes.c_int
                out.append((setter, getter))
                break
    return tuple(out)


_BLAS_LOCK = threading.RLock()


@contextlib.contextmanager
def _single_threaded_blas():
    """Run OpenBLAS single-threaded inside the block (restored afterwards).

    The matrices here are small (<= ~1300 x 1300 eigenproblems, thin products); on the 2-core
    development machine with another job running, threaded OpenBLAS made the DVR eigh 10-80x
    slower than one thread (thread hand-off dominates). No-op where OpenBLAS is not found.
    """
    with _BLAS_LOCK:
        controls = _openblas_thread_controls()
        old = [get() for _, get in controls]
        for setter, _ in controls:
            setter(1)
        try:
            yield
        finally:
            for (setter, _), n in zip(controls, old):
                setter(max(int(n), 1))


def blas_single(fn):
    """Decorator: run ``fn`` with OpenBLAS single-threaded (see _single_threaded_blas)."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with _single_threaded_blas():
            return fn(*args, **kwargs)
    return wrapper


# ---------------------------------------------------------------------------------------------
# Unit helpers
# ---------------------------------------------------------------------------------------------

def wavelength_to_hartree(wavelength_nm):
    """Photon energy [hartree] of vacuum wavelength(s) [nm]; any shape, float64."""
    lam = np.asarray(wavelength_nm, dtype=np.float64)
    return 1.0e7 / (lam * _c.HARTREE_CM1)


def hartree_to_wavelength(energy_hartree):
    """Vacuum wavelength [nm] of photon energy(ies) [hartree]; any shape, float64."""
    e = np.asarray(energy_hartree, dtype=np.float64)
    return 1.0e7 / (e * _c.HARTREE_CM1)
