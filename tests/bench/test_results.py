"""bench/results.py's revision timing: the versions alternate within each key and the table shows each run, the
medians, after ÷ before and whether the outputs were the same."""


def test_time_revisions_alternates_and_the_table_reads_it(load_bench, tmp_path, capsys):
    results = load_bench("results")
    calls = []

    def run_one(version, key, path):
        calls.append((version, key, path is not None and (path / "resflex" / "bench" / "results.py").is_file()))
        return {"cpu": 2.0 if version == "before" else 1.0, "wall": 3.0}

    times = results.time_revisions("HEAD", tmp_path / "checkout", ["fp16", "int8"], 2, run_one)
    assert calls == [("before", "fp16", True), ("after", "fp16", False), ("before", "int8", True),
                     ("after", "int8", False)] * 2
    results.print_timing_table(times, ["fp16", "int8"], "precision", lambda key: key == "fp16", "same package")
    rows = capsys.readouterr().out.splitlines()
    assert rows[0] == ("| precision | version | CPU s (run 1, run 2) | median CPU s | median wall s | after / before "
                       "| same package |")
    assert rows[3] == "| fp16 | after | 1.0, 1.0 | 1.0 | 3.0 | 0.50 | yes |"
    assert rows[5] == "| int8 | after | 1.0, 1.0 | 1.0 | 3.0 | 0.50 | NO |"


def test_without_a_before_only_this_tree_is_timed(load_bench, tmp_path, capsys):
    results = load_bench("results")
    times = results.time_revisions(None, tmp_path, ["fp32+int8"], 1, lambda v, k, path: {"cpu": 1.5, "wall": 2.0})
    results.print_timing_table(times, ["fp32+int8"], None)
    assert capsys.readouterr().out.splitlines() == ["| version | CPU s (run 1) | median CPU s | median wall s |",
                                                     "|---|---:|---:|---:|", "| after | 1.5 | 1.5 | 2.0 |"]
