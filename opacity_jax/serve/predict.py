"""Tables of surrogate predictions for bin/predict (plain text, NIST-LANL-like columns)."""

from __future__ import annotations

import numpy as np

from opacity_jax.physics import elements as _el
from opacity_jax.serve.surrogate import Surrogate
from opacity_jax.train.workdir import write_text as write_text_atomic  # noqa: F401  (bin/predict)


def prediction_table(workdir, element, temperatures_ev, densities_gcc, regressor=None,
                     on_domain_error: str = "raise", ensemble=None,
                     outside: str = "raise") -> str:
    """Text table: one block per (T, rho) with a `#` header (element, T [eV], rho [g/cm^3],
    Planck and Rosseland means [cm^2/g]) and rows `energy [eV]  kappa [cm^2/g]`.

    For an ensemble (an FC-NN trained with K members, or a CAE workdir with a latent ensemble
    and ensemble=True) the values are member means and each gets its member standard deviation
    (`kappa_std`, `planck_mean_std`, `rosseland_mean_std`, same units) next to it.
    `outside`: the validity-envelope policy (`opacity_jax.serve.envelope.POLICIES`).
    """
    t = np.asarray(temperatures_ev, np.float64)
    r = np.asarray(densities_gcc, np.float64)
    if t.shape != r.shape:
        raise ValueError(f"need one density per temperature, got {t.size} temperatures and "
                         f"{r.size} densities")
    s = Surrogate.load(workdir, regressor=regressor, on_domain_error=on_domain_error,
                       ensemble=ensemble, outside=outside)
    ens = s.members > 1
    kappa, ksd = s.spectrum(element, t, r, return_std=True)
    kp, kp_sd = s.planck_mean(element, t, r, return_std=True)
    kr, kr_sd = s.rosseland_mean(element, t, r, return_std=True)
    sym = _el.SYMBOLS[_el.element_index(element if not str(element).isdigit() else int(element))]
    lines = []
    for i in range(t.size):
        model = f"{s.meta['model']}+{s.regressor}" + (f", {s.members}-member ensemble"
                                                      if ens else "")
        lines.append(f"# element = {sym}, T = {t[i]:.6g} eV, rho = {r[i]:.6g} g/cm3, "
                     f"model = {model}")
        if ens:
            lines.append(f"# planck_mean = {kp[i]:.6e} +- {kp_sd[i]:.2e} cm2/g, "
                         f"rosseland_mean = {kr[i]:.6e} +- {kr_sd[i]:.2e} cm2/g")
            lines.append("# energy_eV  kappa_cm2_per_g  kappa_std_cm2_per_g")
            lines += [f"{e:.6e} {k:.6e} {d:.6e}"
                      for e, k, d in zip(s.energy_ev, kappa[i], ksd[i])]
        else:
            lines.append(f"# planck_mean = {kp[i]:.6e} cm2/g, rosseland_mean = {kr[i]:.6e} "
                         f"cm2/g")
            lines.append("# energy_eV  kappa_cm2_per_g")
            lines += [f"{e:.6e} {k:.6e}" for e, k in zip(s.energy_ev, kappa[i])]
    return "\n".join(lines) + "\n"
