"""The quoted numbers (sd_course/app/numbers.py) against their results (sd_course/core/provenance.py): real files,
a real re-run in a subprocess, and the repository's own prose."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sd_course.app import numbers
from sd_course.app.cli import main as cli
from sd_course.core.provenance import file_sha256, input_sha256, write_result
from sd_course.core.shipped import SOURCE_ROOT


def make_course(root: Path, fid: float = 50.94, accuracy: float = 0.95) -> Path:
    """A tiny checkout: a recipe, a result measured on it, and a README and a doc that quote the result."""
    (root / "docs").mkdir(parents=True)
    (root / "benchmarks" / "results").mkdir(parents=True)
    (root / "recipe.yaml").write_text("num_epochs: 3\n")
    writer = root / "measure.py"
    writer.write_text("import json, sys\n"
                      "json.dump(dict(provenance=dict(device='here'), rows=[dict(seed=0, fid=float(sys.argv[1]), "
                      "minutes=9.0)], accuracy=0.95, n=1035), open(sys.argv[2], 'w'))\n")
    write_result(root / "benchmarks/results/quick.json",
                 dict(rows=[dict(seed=0, fid=fid, minutes=4.6)], accuracy=accuracy, n=1035),
                 inputs=[root / "recipe.yaml"], device="a test machine, 2 threads",
                 argv=["python", "measure.py", str(fid), "{output}"], root=root)
    (root / "README.md").write_text("FID [50.9](benchmarks/results/quick.json#rows.seed=0.fid) in "
                                    "[4.6 min](benchmarks/results/quick.json#rows.0.minutes), "
                                    "[95%](benchmarks/results/quick.json#accuracy*100) read right, "
                                    "n = [1,035](benchmarks/results/quick.json#n).\n")
    (root / "docs" / "lab.md").write_text("Relative to the doc: [50.9](../benchmarks/results/quick.json#rows.0.fid); "
                                          "an example, not a quote: `[1](x.json#y)`.\n")
    return root


def test_quotes_agree_with_their_results(tmp_path):
    root = make_course(tmp_path)
    assert len(numbers.find_quotes(root)) == 5  # the backticked example is not a quote
    assert numbers.check_quotes(root) == []


def test_a_number_that_differs_from_its_result_fails_and_write_renders_it(tmp_path):
    root = make_course(tmp_path, fid=52.26, accuracy=0.913)
    problems = numbers.check_quotes(root)
    assert len(problems) == 3 and all("says" in p for p in problems)
    assert any("'52.3'" in p for p in problems) and any("'91%'" in p for p in problems)
    assert numbers.check_quotes(root, write=True) == []
    assert "FID [52.3](benchmarks" in (root / "README.md").read_text()
    assert "[91%](benchmarks" in (root / "README.md").read_text()
    assert "[52.3](../benchmarks" in (root / "docs" / "lab.md").read_text()
    assert numbers.check_quotes(root) == []


def test_a_recipe_s_comments_can_change_its_values_cannot(tmp_path):
    """A YAML recipe is recorded by its parsed content: correcting what its comments say keeps the results measured
    on it current; a changed value (or key) makes them stale. A result recorded before, with the recipe's bytes,
    stays current while those bytes do."""
    root = make_course(tmp_path)
    recipe = root / "recipe.yaml"
    recipe.write_text("# 3 epochs: 6.9 min on a slow laptop, 3.9 on a fast one\nnum_epochs:   3   # the bundled digits\n")
    assert numbers.check_quotes(root) == []
    recipe.write_text("num_epochs: 3\nlearning_rate: 0.001\n")
    assert all("recipe.yaml (changed)" in p for p in numbers.check_quotes(root))
    recipe.write_text("num_epochs: 3\n")
    result = root / "benchmarks/results/quick.json"
    record = json.loads(result.read_text())
    record["provenance"]["inputs"]["recipe.yaml"] = file_sha256(recipe)  # as results were recorded before
    result.write_text(json.dumps(record))
    assert numbers.check_quotes(root) == []
    recipe.write_text("# a comment\nnum_epochs: 3\n")  # an old byte hash cannot tell: stale until re-recorded
    assert all("recipe.yaml (changed)" in p for p in numbers.check_quotes(root))


def test_a_result_measured_on_a_changed_file_is_stale(tmp_path):
    root = make_course(tmp_path)
    (root / "recipe.yaml").write_text("num_epochs: 4\n")
    problems = numbers.check_quotes(root)
    assert problems and all("stale" in p and "recipe.yaml (changed)" in p for p in problems)
    assert problems[0].endswith("sd-course results rerun quick")
    (root / "recipe.yaml").unlink()
    assert "recipe.yaml (no longer there)" in numbers.check_quotes(root)[0]


def test_broken_quotes_are_named(tmp_path):
    root = make_course(tmp_path)
    readme = root / "README.md"
    readme.write_text("[1.0](benchmarks/results/quick.json#rows.seed=7.fid) [2](benchmarks/results/gone.json#a) "
                      "[x](benchmarks/results/quick.json#n) [3](benchmarks/results/quick.json#rows)\n")
    problems = numbers.check_quotes(root)
    assert len(problems) == 4
    assert "no element with seed=7" in problems[0]
    assert "does not exist" in problems[1]
    assert "does not start with a number" in problems[2]
    assert "not a number" in problems[3]


@pytest.mark.parametrize("text, value, rendered", [("12.8", 12.83, "12.8"), ("1,035", 1034.6, "1,035"),
                                                    ("95%", 0.951 * 100, "95%"), ("−0.5", -0.46, "−0.5"),
                                                    ("6.2e-4", 6.24e-4, "6.2e-4"), ("5.8e-02", 0.0581, "5.8e-02"),
                                                    ("9.2e-6", 9.96e-6, "1.0e-5"), ("3e+3 x", 2950.0, "3e+3 x")])
def test_a_number_is_rendered_as_the_text_writes_it(text, value, rendered):
    assert numbers.render(text, value) == rendered


def test_a_name_with_a_space_is_written_as_a_link_writes_it(tmp_path):
    root = make_course(tmp_path)
    write_result(root / "benchmarks/results/speed.json", dict(rows={"ours bf16": dict(spread=[152.1, 158.5])}),
                 inputs=[], device="a test machine, 2 threads", argv=None, root=root)
    (root / "README.md").write_text("[152.1](benchmarks/results/speed.json#rows.ours%20bf16.spread.0)-"
                                    "[158.0](benchmarks/results/speed.json#rows.ours%20bf16.spread.1)\n")
    problems = numbers.check_quotes(root)
    assert len(problems) == 1 and "'158.5'" in problems[0]


def test_a_result_without_provenance_is_refused(tmp_path):
    root = make_course(tmp_path)
    (root / "benchmarks/results/quick.json").write_text(json.dumps(dict(rows=[dict(seed=0, fid=50.9, minutes=4.6)],
                                                                        accuracy=0.95, n=1035)))
    assert all("no provenance block" in p for p in numbers.check_quotes(root))


def test_write_result_records_command_inputs_device_and_date(tmp_path):
    root = make_course(tmp_path)
    record = json.loads((root / "benchmarks/results/quick.json").read_text())
    prov = record["provenance"]
    assert prov["argv"][-1] == "{output}" and prov["id"] == "quick"
    assert prov["inputs"] == {"recipe.yaml": input_sha256(root / "recipe.yaml")}
    assert prov["device"] == "a test machine, 2 threads" and len(prov["date"]) == 10 and "torch" in prov["software"]
    assert not (root / "benchmarks/results/quick.json.partial").exists()


def test_a_library_call_records_no_command_a_script_its_own(tmp_path):
    """Written from inside pytest (a library call), a result has no command: pytest's would not make it again. A
    script run as `python script.py` records itself, with {output} where the result goes."""
    assert json.loads(write_result(tmp_path / "r.json", dict(n=1)).read_text())["provenance"]["argv"] is None
    script = tmp_path / "measure.py"
    script.write_text("import sys\nfrom sd_course.core.provenance import write_result\n"
                      "write_result(sys.argv[2], dict(n=int(sys.argv[1])))\n")
    subprocess.run([sys.executable, str(script), "7", str(tmp_path / "s.json")], check=True, capture_output=True)
    argv = json.loads((tmp_path / "s.json").read_text())["provenance"]["argv"]
    assert argv[0] == "python" and argv[1].endswith("measure.py") and argv[2:] == ["7", "{output}"]


def test_rerun_runs_the_recorded_command_and_judges_each_quoted_number(tmp_path, monkeypatch):
    root = make_course(tmp_path)
    holds, lines = numbers.rerun("quick", root=root)  # measure.py writes the same FID again: it holds
    assert holds, lines
    assert any(line.startswith("rows.seed=0.fid: 50.94 -> 50.94 (holds") for line in lines)
    assert any("machine-dependent: not judged" in line for line in lines if "minutes" in line)
    # the same command now measures something else: the re-run says so
    record = json.loads((root / "benchmarks/results/quick.json").read_text())
    record["provenance"]["argv"][2] = "60.0"
    (root / "benchmarks/results/quick.json").write_text(json.dumps(record))
    holds, lines = numbers.rerun("quick", root=root)
    assert not holds and any("50.94 -> 60 (differs" in line for line in lines)


def test_rerun_of_a_command_that_writes_a_folder_runs_it_into_a_new_one(tmp_path):
    root = make_course(tmp_path)
    (root / "draw.py").write_text("import json, pathlib, sys\n"
                                  "out = pathlib.Path(sys.argv[2]); out.mkdir(parents=True, exist_ok=True)\n"
                                  "json.dump(dict(provenance=dict(device='here'), n=1035),\n"
                                  "          open(out / 'drawn.json', 'w'))\n")
    folder = root / "docs" / "figures" / "drawn"
    write_result(folder / "drawn.json", dict(n=1035), device="a test machine, 2 threads",
                 argv=["python", "draw.py", "--output_dir", str(folder)], root=root)
    written = (folder / "drawn.json").read_text()
    assert json.loads(written)["provenance"]["argv"][-2:] == ["--output_dir", "{output_dir}"]
    (root / "README.md").write_text("[1,035](docs/figures/drawn/drawn.json#n)\n")
    holds, lines = numbers.rerun("docs/figures/drawn/drawn", root=root)
    assert holds and lines == ["n: 1035 -> 1035 (holds, tolerance 5%)"]
    assert (folder / "drawn.json").read_text() == written  # the re-run wrote into a folder of its own


def test_an_sd_course_result_reruns_from_its_recorded_command(tmp_path):
    """Part 1's real command writes its metrics.json with provenance; the re-run runs it again (this interpreter's
    sd-course, into a folder of its own) and every quoted number holds: training is seeded."""
    root = make_course(tmp_path)
    folder = root / "docs" / "figures" / "inversion"
    subprocess.run([sys.executable, "-m", "sd_course", "inversion", "--output_dir", str(folder), "--epochs", "30",
                    "--seeds", "0", "--num_samples", "200"], cwd=root, check=True, capture_output=True)
    prov = json.loads((folder / "metrics.json").read_text())["provenance"]
    assert prov["argv"][:2] == ["sd-course", "inversion"] and prov["argv"][2:4] == ["--output_dir", "{output_dir}"]
    (root / "docs" / "inversion.md").write_text(
        "[0.3](figures/inversion/metrics.json#architectures.1-3-3-1%20relu.per_seed.seed=0.mse_in_range)\n")
    assert numbers.check_quotes(root, write=True) == []
    holds, lines = numbers.rerun("docs/figures/inversion/metrics", root=root)
    assert holds and len(lines) == 1 and "(holds" in lines[0], lines


def test_a_rerun_whose_command_fails_says_so_in_one_line_and_keeps_the_result(tmp_path):
    """A recorded command that fails now (here: it refuses to write into a folder that holds another run, as the
    training loop does) ends the re-run with one line naming the result and the exit code, not a traceback."""
    root = make_course(tmp_path)
    record = json.loads((root / "benchmarks/results/quick.json").read_text())
    record["provenance"]["argv"] = ["python", "-c", "raise SystemExit(3)"]
    (root / "benchmarks/results/quick.json").write_text(json.dumps(record))
    with pytest.raises(numbers.QuoteError, match=r"re-running quick failed \(exit 3\).*nothing was written"):
        numbers.rerun("quick", root=root)
    assert json.loads((root / "benchmarks/results/quick.json").read_text()) == record


def test_rerun_of_an_unknown_id_names_the_known_ones(tmp_path):
    root = make_course(tmp_path)
    with pytest.raises(numbers.QuoteError, match="no result 'nope'; the results are: quick"):
        numbers.rerun("nope", root=root)


def test_the_course_quotes_its_numbers_from_current_results(capsys):
    """The repository's own prose: every quoted number equals its result, and no result is stale."""
    assert len(numbers.find_quotes(SOURCE_ROOT)) >= 10
    assert numbers.check_quotes(SOURCE_ROOT) == []
    assert cli(["results", "check"]) == 0
    assert "quoted numbers agree with their results" in capsys.readouterr().out


def test_every_result_in_the_repository_says_where_it_comes_from():
    files = numbers.result_files(SOURCE_ROOT)
    assert len(files) >= 10
    for path in files:
        prov = json.loads(path.read_text())["provenance"]
        assert prov["date"] and prov["device"] and "inputs" in prov, path
        assert prov.get("argv") or prov.get("note"), f"{path}: neither a command nor why there is none"
        if prov.get("argv"):
            assert {"{output}", "{output_dir}"} & set(prov["argv"]), f"{path}: the command does not say where it writes"


def test_results_cli_lists_and_refuses_a_rerun_without_an_id(capsys):
    assert cli(["results", "list"]) == 0
    assert "mini_sd_quick:" in capsys.readouterr().out
    assert cli(["results", "rerun"]) == 2
    assert "rerun needs a result id" in capsys.readouterr().err


def test_a_retired_result_keeps_its_numbers_and_is_never_stale(tmp_path, capsys):
    """`sd-course results retire`: a copy of a result about a model that is about to be replaced (the "before" of a
    lesson), marked with why it is kept. Its quotes still check, the changed weights do not make it stale, it cannot
    be re-run, and the original stays where it was."""
    root = make_course(tmp_path)
    original = (root / "benchmarks/results/quick.json").read_text()
    with pytest.raises(numbers.QuoteError, match="--reason is empty"):
        numbers.retire("quick", "benchmarks/results/first_quick.json", " ", root=root)
    with pytest.raises(numbers.QuoteError, match="a .json file under benchmarks/results"):
        numbers.retire("quick", "notes/first_quick.json", "the first recipe", root=root)
    with pytest.raises(numbers.QuoteError, match="exists already"):
        numbers.retire("quick", "benchmarks/results/quick.json", "the first recipe", root=root)
    retired = numbers.retire("quick", "benchmarks/results/first_quick.json", "the first recipe, replaced", root=root)
    assert (root / "benchmarks/results/quick.json").read_text() == original  # nothing deleted or changed
    record = json.loads(retired.read_text())
    assert record["provenance"]["retired"] == "the first recipe, replaced"
    assert record["rows"] == json.loads(original)["rows"] and record["provenance"]["inputs"]  # hashes kept

    # the model changes; the quotes pointed at the retired copy still check, those at the original go stale
    (root / "docs" / "history.md").write_text("It was [50.9](../benchmarks/results/first_quick.json#rows.0.fid).\n")
    (root / "recipe.yaml").write_text("num_epochs: 4\n")
    problems = numbers.check_quotes(root)
    assert problems and not any("first_quick" in p for p in problems) and all("quick.json is stale" in p for p in problems)
    status = {row["id"]: row["status"] for row in numbers.list_results(root)}
    assert status == {"first_quick": "retired: the first recipe, replaced", "quick": "stale: recipe.yaml (changed)"}
    with pytest.raises(numbers.QuoteError, match="first_quick is retired .*cannot be re-run"):
        numbers.rerun("first_quick", root=root)
    assert cli(["results", "retire", "quick"]) == 2
    assert "retire needs a result id and --to" in capsys.readouterr().err
