"""Every case of the bad-input corpus (tests/bad_inputs.py) is a clear error or, where the input
is valid after all (`--element=60`, a Z), correct behaviour: 0 unclear, 0 silent, 0 crashes."""

import bad_inputs


def test_bad_input_corpus_gives_only_clear_errors(tiny_workdir, tmp_path):
    results = bad_inputs.run_corpus(bad_inputs.corpus(tmp_path, tiny_workdir))
    assert len(results) >= 100
    counts = {o: sum(1 for _, out, _ in results if out == o)
              for o in ("clear", "correct", "unclear", "silent", "crash")}
    bad = [(c.kind, c.name, o, m) for c, o, m in results if o not in ("clear", "correct")]
    assert not bad, (counts, bad)
    assert counts["correct"] == sum(c.accept for c, _, _ in results)
    # The corpus covers every kind of input the bin/ scripts take.
    kinds = {c.kind for c, _, _ in results}
    assert {"text table (bin/complete)", "HDF5 dataset", "model.json", "checkpoint",
            "bin/predict flags", "config value (bin/train)", "bin/ subprocess"} <= kinds
