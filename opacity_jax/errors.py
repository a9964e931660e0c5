"""Exceptions raised at the package's boundaries (readers, configs, Surrogate queries)."""


class DataFormatError(ValueError):
    """Bad input data: names the file, the line (when known) and the field.

    Attributes:
      path: the offending file (str) or None.
      line: 1-based line number or None.
      field: column / attribute name or None.
    """

    def __init__(self, message: str, path=None, line=None, field=None):
        self.path, self.line, self.field = path, line, field
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field {field!r}")
        super().__init__(f"{': '.join([', '.join(where), message]) if where else message}")


class TrainingDiverged(FloatingPointError):
    """A training or validation loss became NaN/Inf (opacity_jax.train.loop); the message names
    the stage, the epoch and the entities."""


class DomainError(ValueError):
    """A query outside the domain a model or table covers (never extrapolated silently)."""


def check_domain(domain: dict, temperature_ev, density_gcc, on_domain_error: str = "raise"):
    """Broadcast query conditions and check them against a model's domain.

    Args:
      domain: {'temperature_ev': [lo, hi], 'density_gcc': [lo, hi]} [eV], [g/cm^3].
      temperature_ev, density_gcc: scalars or (N,) arrays.
      on_domain_error: 'raise' (DomainError) or 'warn' (a warning; values are returned as given).
    Returns:
      (t, rho), each (N,) float64. Raises ValueError for arrays of more than one dimension.
    """
    import warnings

    import numpy as np

    arrays = []
    for name, v in (("temperature_ev", temperature_ev), ("density_gcc", density_gcc)):
        try:
            arrays.append(np.asarray(v, np.float64))
        except (TypeError, ValueError):
            raise ValueError(f"{name} must be numbers (a scalar or a 1-D array), got "
                             f"{str(v)[:40]!r}") from None
    t, r = arrays
    if t.ndim > 1 or r.ndim > 1:
        raise ValueError(f"temperature_ev and density_gcc must be scalars or 1-D, got shapes "
                         f"{t.shape} and {r.shape}")
    if t.size != r.size and t.size != 1 and r.size != 1:
        raise ValueError(f"temperature_ev has {t.size} values and density_gcc {r.size}: give one "
                         "density per temperature (or a scalar for either)")
    t, r = np.broadcast_arrays(np.atleast_1d(t), np.atleast_1d(r))
    msgs = []
    for name, v in (("temperature_ev", t), ("density_gcc", r)):
        lo, hi = domain[name]
        bad = ~np.isfinite(v) | (v < lo * (1 - 1e-9)) | (v > hi * (1 + 1e-9))
        if np.any(bad):
            msgs.append(f"{name} {v[bad][:3].tolist()} outside the training domain "
                        f"[{lo:.4g}, {hi:.4g}]")
    if msgs:
        msg = "; ".join(msgs) + " (no extrapolation)"
        if on_domain_error == "raise":
            raise DomainError(msg)
        warnings.warn(msg)
    return t, r


class WorkdirError(ValueError):
    """A workdir that cannot be used as asked: held by another run, or holding a run whose
    data, split, elements or model differ from the config's."""


class CheckpointError(OSError):
    """A trained model's file (checkpoint, table) that is missing, unreadable, corrupt or from
    another run; the message names the file and how to recover."""
