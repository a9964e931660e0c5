"""Datasets: the NIST-LANL grid, the embedded generators, readers/writers, transforms and splits."""
