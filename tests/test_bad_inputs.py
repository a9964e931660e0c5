"""The bad-input corpus (tests/bad_inputs.py): its committed fixtures are what the script writes,
and every case of the manifest is a clear error or, where the input is valid after all
(`--element=60`, a Z), correct behaviour: 0 unclear, 0 silent, 0 crashes."""

import json

import bad_inputs


def test_committed_fixtures_are_what_the_script_writes(tmp_path):
    """Re-writing the fixtures gives the committed bytes, so the corpus cannot drift from its
    generator (HDF5 files byte for byte when the HDF5 library is the one that wrote them)."""
    import h5py
    new = tmp_path / "fx"
    bad_inputs.write_fixtures(new)
    old = bad_inputs.FIXTURES
    listing = sorted(str(p.relative_to(old)) for p in old.rglob("*") if p.is_file())
    assert listing == sorted(str(p.relative_to(new)) for p in new.rglob("*") if p.is_file())
    committed = json.loads((old / bad_inputs.MANIFEST).read_text())
    same_hdf5 = (committed["hdf5_version"], committed["h5py_version"]) == (
        h5py.version.hdf5_version, h5py.version.version)
    differ = [rel for rel in listing if (old / rel).read_bytes() != (new / rel).read_bytes()
              and (same_hdf5 or not (rel == bad_inputs.MANIFEST or rel.endswith(".h5")))]
    assert not differ, f"re-run {bad_inputs.WRITE_COMMAND}: {differ}"
    fresh = json.loads((new / bad_inputs.MANIFEST).read_text())
    assert fresh["cases"] == committed["cases"]
    assert len(committed["cases"]) >= 100
    # Small: the corpus is files of bytes to kilobytes, not a data set.
    assert sum((old / rel).stat().st_size for rel in listing) < 400_000


def test_bad_input_corpus_gives_only_clear_errors(tiny_workdir, tmp_path):
    ctx, pairs = bad_inputs.corpus(tmp_path, tiny_workdir)
    # Every case of the manifest but the slow ones (the standalone command runs those).
    assert len(pairs) == sum(not e["slow"] for e in bad_inputs.read_manifest()["cases"]) >= 100
    # Every fixture file is read by some case.
    used = {rel for _, e in pairs for rel in e["inputs"]} | {
        ed["from"] for _, e in pairs for ed in (e["recipe"] or {}).get("edits", [])
        if "from" in ed}
    files = {str(p.relative_to(bad_inputs.FIXTURES)) for p in bad_inputs.FIXTURES.rglob("*")
             if p.is_file()} - {bad_inputs.MANIFEST, ".gitattributes"}
    assert files <= used, files - used
    results = bad_inputs.run_corpus(ctx, pairs)
    counts = {o: sum(1 for _, out, _ in results if out == o)
              for o in ("clear", "correct", "unclear", "silent", "crash")}
    bad = [(c.kind, c.name, o, m) for c, o, m in results if o not in ("clear", "correct")]
    assert not bad, (counts, bad)
    assert counts["correct"] == sum(c.accept for c, _, _ in results)
    # The corpus covers every kind of input the bin/ scripts take.
    kinds = {c.kind for c, _, _ in results}
    assert {"text table (bin/complete)", "HDF5 dataset", "model.json", "checkpoint",
            "bin/predict flags", "config value (bin/train)", "bin/ subprocess"} <= kinds
