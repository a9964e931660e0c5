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


class DomainError(ValueError):
    """A query outside the domain a model or table covers (never extrapolated silently)."""
