"""Old import path of the dataset file formats, kept working for code outside the package.

The formats live in their own modules: :mod:`~opacity_jax.data.h5file` (the canonical HDF5
dataset file), :mod:`~opacity_jax.data.spectrum_tables` (per-spectrum text tables),
:mod:`~opacity_jax.data.jlodk` (JLODK Planck-mean tables) and :mod:`~opacity_jax.data.parsing`
(their shared text helpers). This module only re-exports their public names, the very same
objects, so ``from opacity_jax.data import io; io.load_dataset(...)`` behaves as before. Code
inside opacity_jax imports the modules themselves.
"""

from opacity_jax.data.h5file import FORMAT_NAME, FORMAT_VERSION, UNITS, load_dataset, save_dataset
from opacity_jax.data.jlodk import JLODK_COLUMNS, JlodkTable, read_jlodk, write_jlodk
from opacity_jax.data.parsing import (header_pairs, normalize_unit, parse_rows, read_text_lines,
                                      repr_number, require_file, split_row)
from opacity_jax.data.spectrum_tables import (SPECTRUM_COLUMNS, SpectrumTable,
                                              read_spectrum_directory, read_spectrum_table,
                                              write_spectrum_table)

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "UNITS", "SPECTRUM_COLUMNS", "JLODK_COLUMNS",
    "save_dataset", "load_dataset",
    "SpectrumTable", "read_spectrum_table", "write_spectrum_table", "read_spectrum_directory",
    "JlodkTable", "read_jlodk", "write_jlodk",
    "header_pairs", "normalize_unit", "parse_rows", "read_text_lines", "repr_number",
    "require_file", "split_row",
]
