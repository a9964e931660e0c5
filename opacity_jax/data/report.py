"""Physical sanity report of the embedded generator: Zbar, peak opacities, mean opacities, binning bias.

`dataset_report` writes `report.json` and figures (spectra across T, Zbar maps) so that a user
can check magnitudes against published NIST-LANL numbers before training on the data.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Optional, Sequence

import numpy as np

from opacity_jax import _compat
from opacity_jax.data import generator, grid, transforms
from opacity_jax.physics import elements as _el
from opacity_jax.physics import planck
from opacity_jax.train import workdir as workdir_lib


def _means(comps, edges, t):
    # float64: at 0.01-0.03 eV the in-band opacity is ~1e-100 cm^2/g (a transparent neutral gas)
    # and would flush to zero in float32.
    with _compat.enable_x64():
        m = planck.mean_opacities(comps, edges, t)
        return np.asarray(m["planck"], np.float64), np.asarray(m["rosseland"], np.float64)


def binning_bias(gen: generator.OpacityGenerator, z, temperatures_ev, density_gcc: float,
                 n_coarse: int = 200, n_fine: int = grid.NATIVE_POINTS) -> dict:
    """Relative bias of kappa_P and kappa_R computed from n_coarse bins vs native resolution.

    Returns dict with (nT,) arrays 'planck_native', 'planck_binned', 'planck_rel_bias',
    'rosseland_native', 'rosseland_binned', 'rosseland_rel_bias' [cm^2/g, dimensionless].
    The coarse spectrum is the conservative rebinning of the native one (identical to generating
    at n_coarse bins), so the bias is purely that of averaging kappa before weighting.
    """
    t = np.asarray(temperatures_ev, np.float64)
    fine = grid.energy_edges_ev(n_fine)
    coarse = grid.energy_edges_ev(n_coarse)
    out = gen.spectra(z, t, np.full_like(t, density_gcc), fine)
    comps_f = {k: out[k] for k in ("bb", "bf", "ff", "es")}
    comps_c = {k: transforms.rebin(v, fine, coarse) for k, v in comps_f.items()}
    pf, rf = _means(comps_f, fine, t)
    pc, rc = _means(comps_c, coarse, t)
    return {"planck_native": pf, "planck_binned": pc, "planck_rel_bias": pc / pf - 1.0,
            "rosseland_native": rf, "rosseland_binned": rc, "rosseland_rel_bias": rc / rf - 1.0}


def dataset_report(output_dir, element="Nd", density_gcc: float = 1e-13,
                   elements: Optional[Sequence[int]] = None, n_energy: int = 200,
                   seed: int = 0, make_figures: bool = True,
                   n_native: int = grid.NATIVE_POINTS) -> dict:
    """Write report.json (+ figures) with the generator's physical sanity numbers.

    Contents: Zbar at the four (T, rho) grid corners for every element; for `element` at
    `density_gcc`, per temperature the peak kappa at 200 bins and at native resolution, the
    Planck and Rosseland means (absorption / absorption + scattering) and the fraction of
    integral(B) and integral(dB/dT) inside 0.1-10 eV; the binning bias of the means; the time to
    generate the full grid for one element at `n_energy` bins. `n_native` (a multiple of
    `n_energy`) is the reference resolution, 15000 like the NIST-LANL spectra.
    """
    # Bad names fail before the folder exists.
    _el.element_index(element)
    out_dir = Path(output_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen = generator.OpacityGenerator(generator.GeneratorConfig(seed=seed))
    zs = list(elements) if elements else list(grid.DEFAULT_ELEMENTS)
    t_axis, r_axis = grid.temperatures_ev(), grid.densities_gcc()
    corners = {}
    ct = np.array([t_axis[0], t_axis[0], t_axis[-1], t_axis[-1]])
    cr = np.array([r_axis[0], r_axis[-1], r_axis[0], r_axis[-1]])
    for z in zs:
        ion = gen.ionization(z, ct, cr)
        corners[_el.SYMBOLS[_el.element_index(z)]] = {
            "T0.01_rho1e-20": float(ion["zbar"][0]), "T0.01_rho1e-4": float(ion["zbar"][1]),
            "T5_rho1e-20": float(ion["zbar"][2]), "T5_rho1e-4": float(ion["zbar"][3]),
            "max_charge_kept": int(gen.kept_stages(z).max())}
    edges = grid.energy_edges_ev(n_energy)
    t0 = time.perf_counter()
    full = gen.grid_spectra(element, t_axis, r_axis, edges)
    gen_seconds = time.perf_counter() - t0
    ir = int(np.argmin(np.abs(np.log(r_axis / density_gcc))))
    rho = float(r_axis[ir])
    bias = binning_bias(gen, element, t_axis, rho, n_coarse=n_energy, n_fine=n_native)
    native = gen.spectra(element, t_axis, np.full_like(t_axis, rho),
                         grid.energy_edges_ev(n_native))
    fb, fd = planck.band_fraction(t_axis)
    rows = []
    for it, t in enumerate(t_axis):
        rows.append({
            "temperature_ev": float(t), "zbar": float(full["zbar"][it, ir]),
            "peak_kappa_binned": float(full["kappa"][it, ir].max()),
            "peak_kappa_native": float(native["kappa"][it].max()),
            "planck_mean": float(bias["planck_binned"][it]),
            "rosseland_mean": float(bias["rosseland_binned"][it]),
            "planck_rel_bias_binned_vs_native": float(bias["planck_rel_bias"][it]),
            "rosseland_rel_bias_binned_vs_native": float(bias["rosseland_rel_bias"][it]),
            "band_fraction_B": float(fb[it]), "band_fraction_dBdT": float(fd[it])})
    report = {"element": str(element), "density_gcc": rho, "n_energy": n_energy, "seed": seed,
              "generator_version": generator.GENERATOR_VERSION,
              "seconds_one_element_full_grid": round(gen_seconds, 3),
              "zbar_corners": corners, "per_temperature": rows}
    workdir_lib.write_json(out_dir / "report.json", report)
    if make_figures:
        _figures(out_dir, element, edges, full, t_axis, r_axis, ir)
    return report


def _figures(out_dir, element, edges, full, t_axis, r_axis, ir):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    e = grid.bin_centers_ev(edges)
    fig, ax = plt.subplots(1, 2, figsize=(12, 4.5))
    for it in range(0, t_axis.size, 4):
        ax[0].loglog(e, np.maximum(full["kappa"][it, ir], 1e-10), lw=0.8,
                     label=f"T = {t_axis[it]:.3g} eV")
    ax[0].set_xlabel("photon energy [eV]")
    ax[0].set_ylabel("kappa [cm^2/g]")
    ax[0].set_title(f"{element}, rho = {r_axis[ir]:.1e} g/cm^3")
    ax[0].legend(fontsize=7)
    im = ax[1].pcolormesh(np.log10(r_axis), t_axis, full["zbar"], shading="nearest")
    ax[1].set_yscale("log")
    ax[1].set_xlabel("log10 rho [g/cm^3]")
    ax[1].set_ylabel("T [eV]")
    ax[1].set_title(f"{element}: mean ionic charge Zbar")
    fig.colorbar(im, ax=ax[1])
    fig.tight_layout()
    fig.savefig(out_dir / "spectra_and_zbar.png", dpi=110)
    plt.close(fig)


def summary_text(rep: dict) -> str:
    """The per-temperature table of `dataset_report`'s result (T [eV], Zbar, peak kappa of the
    binned and native spectra and Planck / Rosseland means [cm^2/g], their binning biases, the
    band fraction of B) and Zbar at the grid corners."""
    lines = [f"{'T [eV]':>8} {'Zbar':>7} {'peak200':>9} {'peak15000':>10} {'kP':>9} {'kR':>9}"
             f" {'biasP':>8} {'biasR':>8} {'fB':>6}"]
    for r in rep["per_temperature"]:
        lines.append(f"{r['temperature_ev']:8.3g} {r['zbar']:7.3g} {r['peak_kappa_binned']:9.3g} "
                     f"{r['peak_kappa_native']:10.3g} {r['planck_mean']:9.3g} "
                     f"{r['rosseland_mean']:9.3g} "
                     f"{r['planck_rel_bias_binned_vs_native']:8.2g} "
                     f"{r['rosseland_rel_bias_binned_vs_native']:8.2g} "
                     f"{r['band_fraction_B']:6.3f}")
    corners = rep["zbar_corners"][next(iter(rep["zbar_corners"]))]
    lines.append(f"Zbar at grid corners: {corners}")
    return "\n".join(lines)
