"""Old import path of the dataset file formats, kept working for code outside the package.

The readers and writers live in their own modules now; this module only re-exports their public
names (the same objects), so ``from opacity_jax.data import io; io.load_dataset(...)`` behaves as
before. Code inside opacity_jax imports the modules themselves.
"""

from opacity_jax.data.spectrum_tables import (  # noqa: F401  (re-exports)
    FORMAT_NAME, FORMAT_VERSION, JLODK_COLUMNS, SPECTRUM_COLUMNS, UNITS, JlodkTable,
    SpectrumTable, header_pairs, load_dataset, normalize_unit, parse_rows, read_jlodk,
    read_spectrum_directory, read_spectrum_table, read_text_lines, repr_number, require_file,
    save_dataset, split_row, write_jlodk, write_spectrum_table)

__all__ = [
    "FORMAT_NAME", "FORMAT_VERSION", "UNITS", "SPECTRUM_COLUMNS", "JLODK_COLUMNS",
    "save_dataset", "load_dataset",
    "SpectrumTable", "read_spectrum_table", "write_spectrum_table", "read_spectrum_directory",
    "JlodkTable", "read_jlodk", "write_jlodk",
]
