"""What the Debye continuum lowering does on the grid of the sb_ipd runs (-> sb_ipd/lowering.{json,md}).

  python3 reports/stage_basis/lowering.py

For the 6 default elements at three grid temperatures and the densest / thinnest grid density:
the dominant charge q*, n_e, the depression dI_q* [eV], the lowest bound-free threshold of q*
without and with lowering, the number of q* levels dissolved from bound-free, and Zbar without /
with lowering; plus, over the whole 27 x 17 grid, how far the lowered dataset's Planck means move
from the default one's (|d log10 kappa_P|).
"""

import json
import pathlib

import jax.numpy as jnp
import numpy as np

from opacity_jax import _compat
from opacity_jax.data import atomic, embedded, generator, grid, h5file
from opacity_jax.physics import elements as el
from opacity_jax.physics import planck

HERE = pathlib.Path(__file__).resolve().parent
ELEMENTS = ("Ce", "Nd", "Eu", "Er", "U", "Cm")
T_PICK = (0.93826223, 1.92195781, 5.0)      # grid temperatures [eV]
N_ENERGY = 200


def main():
    plain = generator.OpacityGenerator(generator.GeneratorConfig())
    lowered = generator.OpacityGenerator(generator.GeneratorConfig(continuum_lowering="debye"))
    t_ax, r_ax = grid.temperatures_ev(), grid.densities_gcc()
    t_pick = np.array([t_ax[np.argmin(abs(t_ax - t))] for t in T_PICK])
    rows, grid_stats = [], {}
    zs = [int(el.ATOMIC_NUMBERS[el.element_index(s)]) for s in ELEMENTS]
    datasets = {lo: h5file.load_dataset(embedded.ensure_embedded_dataset(
        N_ENERGY, 0, zs, continuum_lowering=lo)) for lo in ("none", "debye")}
    edges = grid.energy_edges_ev(N_ENERGY)
    tt, rr = np.meshgrid(t_ax, r_ax, indexing="ij")
    with _compat.enable_x64():
        w = np.asarray(planck.planck_weights(edges, jnp.asarray(tt.ravel())))
    for sym in ELEMENTS:
        z = int(el.ATOMIC_NUMBERS[el.element_index(sym)])
        for rho in (r_ax[-1], r_ax[0]):
            a = plain.ionization(z, t_pick, np.full(t_pick.size, rho))
            b = lowered.ionization(z, t_pick, np.full(t_pick.size, rho))
            for k, t in enumerate(t_pick):
                q = int(np.argmax(b["fractions"][k]))
                ion = atomic.ion_structure(z, q)
                e_th = np.sort(ion.ionization_energy_ev - ion.level_energy_ev)
                d_i = float(b["lowering_ev"][k, q])
                rows.append({"element": sym, "t_ev": float(t), "rho_gcc": float(rho),
                             "dominant_charge": q, "log10_ne_cm3": float(b["log_ne"][k] / np.log(10)),
                             "lowering_ev": d_i, "lowest_threshold_ev": float(e_th[0]),
                             "lowest_threshold_lowered_ev": float(e_th[e_th > d_i][0] - d_i),
                             "levels_dissolved": int(np.sum(e_th <= d_i)),
                             "n_levels": int(e_th.size),
                             "zbar": float(a["zbar"][k]), "zbar_lowered": float(b["zbar"][k])})
        ka = datasets["none"].kappa[datasets["none"].elements.tolist().index(z)].reshape(-1, N_ENERGY)
        kb = datasets["debye"].kappa[datasets["debye"].elements.tolist().index(z)].reshape(-1, N_ENERGY)
        with _compat.enable_x64():
            pa = np.asarray(planck.planck_mean_from_weights(jnp.asarray(ka, jnp.float64), w))
            pb = np.asarray(planck.planck_mean_from_weights(jnp.asarray(kb, jnp.float64), w))
        dex = np.abs(np.log10(pb / pa))
        grid_stats[sym] = {"planck_dex_median": float(np.median(dex)),
                           "planck_dex_p95": float(np.percentile(dex, 95)),
                           "planck_dex_max": float(dex.max()),
                           "planck_dex_max_at_dense": float(dex.reshape(tt.shape)[:, -1].max())}
    out = {"command": "python3 reports/stage_basis/lowering.py", "points": rows,
           "planck_change_over_grid": grid_stats}
    (HERE / "sb_ipd").mkdir(exist_ok=True)
    (HERE / "sb_ipd" / "lowering.json").write_text(json.dumps(out, indent=1) + "\n")
    md = ["# Debye continuum lowering on the grid", "",
          "Written by `python3 reports/stage_basis/lowering.py`. dI of the dominant charge q* "
          "(with lowering); thresholds are the lowest bound-free edge of q*.", "",
          "| element | T [eV] | rho [g/cm^3] | q* | log10 n_e | dI [eV] | lowest edge [eV] | "
          "lowered edge [eV] | dissolved levels | Zbar | Zbar lowered |", "|" + "---|" * 11]
    for r in rows:
        md.append(f"| {r['element']} | {r['t_ev']:.3g} | {r['rho_gcc']:.0e} | {r['dominant_charge']} | "
                  f"{r['log10_ne_cm3']:.3g} | {r['lowering_ev']:.3g} | {r['lowest_threshold_ev']:.4g} | "
                  f"{r['lowest_threshold_lowered_ev']:.4g} | {r['levels_dissolved']} / {r['n_levels']} | "
                  f"{r['zbar']:.4g} | {r['zbar_lowered']:.4g} |")
    md += ["", "Planck-mean change of the lowered dataset against the default (27 x 17 nodes, "
           f"{N_ENERGY} bins), |d log10 kappa_P|:", "",
           "| element | median | p95 | max | max at rho = 1e-4 |", "|---|---|---|---|---|"]
    for sym, s in grid_stats.items():
        md.append(f"| {sym} | {s['planck_dex_median']:.3g} | {s['planck_dex_p95']:.3g} | "
                  f"{s['planck_dex_max']:.3g} | {s['planck_dex_max_at_dense']:.3g} |")
    (HERE / "sb_ipd" / "lowering.md").write_text("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
