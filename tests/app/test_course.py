"""sd_course/app/course.py: the questions index agrees with the code, the handout has no answers and still installs, the
derivations build into a Word document with real equations, and docs/lab.md's quick commands run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from conftest import REPO

from sd_course.app import course
from sd_course.core.errors import InputError

BLOCKS = textwrap.dedent('''\
    """A module.

    Q: What is it,
       really?
    A: A test module.
       It has two lines of answer.
    Cmd: sd-course schedules --output s.png
    Fig: s.png
    """

    def f():
        # Q: Why a comment block?
        # A: Because code comments can hold answers too.
        #    Even over two lines.
        return 1
    ''')


def test_parse_docstring_and_comment_blocks():
    found, problems = course.parse_questions(BLOCKS, "x.py")
    assert problems == []
    assert [q.question for q in found] == ["What is it, really?", "Why a comment block?"]
    assert [q.line for q in found] == [3, 12]
    assert found[0].answer == "A test module. It has two lines of answer."
    assert found[0].commands == ["sd-course schedules --output s.png"] and found[0].figures == ["s.png"]
    assert found[1].answer_lines == [12, 13]  # 0-based: the A: line and its continuation


def test_a_question_without_answer_is_a_problem():
    _, problems = course.parse_questions('"""\nQ: Unanswered?\n\nA: too late\n"""\n', "y.py")
    assert len(problems) == 1 and "y.py:2" in problems[0] and "no answer" in problems[0]


def test_the_index_agrees_with_the_code():
    """Every question answered once, docs/questions.md up to date, derivations' code references not stale."""
    problems = course.check_or_write()
    assert problems == [], "\n".join(problems) + "\n(fix: sd-course questions --write)"


def test_the_index_lists_every_question_with_a_live_line():
    questions, _ = course.find_questions()
    index = (REPO / "docs" / "questions.md").read_text()
    assert len(questions) >= 25
    for q in questions:
        assert f"[{q.where}](../{q.path}#L{q.line})" in index
        assert (REPO / q.path).read_text().splitlines()[q.line - 1].lstrip(" #").startswith("Q: ")
    linked = re.findall(r"\]\(\.\./([\w/.]+)#L(\d+)\)", index)
    assert len(linked) == len(questions)  # no index entry without a block


def _fake_project(tmp_path: Path) -> Path:
    (tmp_path / "setup.cfg").write_text("[metadata]\nname = x\n")
    (tmp_path / "sd_course").mkdir()
    (tmp_path / "sd_course" / "a.py").write_text(BLOCKS)
    (tmp_path / "docs").mkdir()
    return tmp_path


def test_check_catches_a_stale_line_and_write_fixes_it(tmp_path):
    root = _fake_project(tmp_path)
    assert course.check_or_write(write=True, root=root) == []
    assert "[sd_course/a.py:3](../sd_course/a.py#L3)" in (root / "docs/questions.md").read_text()
    (root / "sd_course" / "a.py").write_text("# a new first line\n" + BLOCKS)
    problems = course.check_or_write(root=root)
    assert len(problems) == 1 and "stale" in problems[0] and "a.py:4" in problems[0]
    assert course.check_or_write(write=True, root=root) == []
    assert course.check_or_write(root=root) == []


def test_derivation_references_follow_the_code(tmp_path):
    root = _fake_project(tmp_path)
    (root / "docs" / "derivations.md").write_text("- [sd_course/a.py:1](../sd_course/a.py#L1) `return 1`\n")
    assert course.check_or_write(write=True, root=root) == []
    assert "[sd_course/a.py:15](../sd_course/a.py#L15) `return 1`" in (root / "docs/derivations.md").read_text()
    (root / "docs" / "derivations.md").write_text("- [sd_course/a.py:1](../sd_course/a.py#L1) `return 2`\n")
    problems = course.check_or_write(root=root)
    assert any("`return 2`" in p and "not in" in p for p in problems)


def test_markdown_answers_are_stripped_and_commands_kept():
    text = ("# T\n\nIntro stays.\n\n**Q: Why?**\nBecause of this long answer.\n\n```bash\nsd-course x\n```\n\n"
            "| a | table |\n\n## Q: Next?\n\nA: Another answer.\n\n## Plain heading\n\nStays too.\n")
    out = course.strip_markdown_answers(text)
    for kept in ("Intro stays.", "**Q: Why?**", "sd-course x", "## Q: Next?", "Stays too.", course.PLACEHOLDER):
        assert kept in out
    for gone in ("Because of this long answer.", "| a | table |", "Another answer."):
        assert gone not in out


@pytest.fixture(scope="module")
def handout(tmp_path_factory):
    out = tmp_path_factory.mktemp("handout") / "course"
    summary = course.write_handout(out, pipelines=False)
    return out, summary


def _answer_fragments() -> list[str]:
    """Every line of every answer in the code and in docs/*.md, long enough to be unmistakable."""
    fragments = []
    for q in course.find_questions()[0]:
        lines = (REPO / q.path).read_text().splitlines()
        for k, i in enumerate(q.answer_lines):
            text = lines[i].strip().lstrip("#").strip()
            text = text[2:].strip() if k == 0 else text  # the "A:"
            fragments.append(text)
    for doc in sorted((REPO / "docs").glob("*.md")):
        if "<!-- handout: keep -->" in doc.read_text()[:500]:
            continue
        for _, prose in course.markdown_answers(doc.read_text()):
            fragments += [line.strip() for line in prose]
    for notebook in sorted((REPO / "notebooks").glob("*.py")):  # the answer cells of the lab's notebooks
        cells = notebook.read_text().split("# %%")
        for cell in cells:
            lines = cell.splitlines()[1:]
            if lines and lines[0].startswith(course.NOTEBOOK_ANSWER):
                fragments += [line.removeprefix("# ").removeprefix("**A:**").strip() for line in lines]
    return [f for f in fragments if len(f) >= 40]


def test_handout_keeps_every_question_and_no_answer(handout):
    out, summary = handout
    questions = course.find_questions()[0]
    assert summary["answers_removed"] >= len(questions)
    text = "\n".join(p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file()
                     and p.suffix in (".py", ".md", ".cfg", ".toml", ".in", ".yaml"))
    fragments = _answer_fragments()
    assert len(fragments) > 100
    survived = [f for f in fragments if f in text]
    assert survived == [], f"{len(survived)} answer lines survive in the handout, e.g. {survived[:3]}"
    # the same questions at the same lines, each with the placeholder: docs/questions.md holds for the handout too
    in_handout = course.find_questions(out)[0]
    assert [(q.where, q.question) for q in in_handout] == [(q.where, q.question) for q in questions]
    assert all(q.answer == "(your answer here)" for q in in_handout)
    assert not (out / "docs" / "derivations.md").exists() and not (out / "pipelines").exists()
    # code that writes answers (Part 1's report.md) is replaced too, and the handout's file still compiles
    report = (out / "sd_course" / "inversion" / "arcsin.py").read_text()
    assert "is the function a diffusion model inverts" not in report and "Your answers to the four" in report
    compile(report, "inversion.py", "exec")
    assert (out / "docs" / "questions.md").read_text() == (REPO / "docs" / "questions.md").read_text()


# ------------------------------------------------------------------------------------------------------------------
# No sentence of any answer anywhere in the handout (issue #28 item 5). The answers are collected from the answer key
# (the A: parts of the code's Q/A blocks, the answers of docs/*.md, the marked passages of every .md, the notebooks'
# answer cells, and docs/derivations.md, which the students write themselves), cut into sentences, and searched in
# every text file of the handout. A sentence is found when any run of WINDOW of its words is there, so a README that
# words an answer its own way but copies the clause that matters is caught as well as a copied sentence.
# ------------------------------------------------------------------------------------------------------------------

WINDOW = 8  # words; shorter runs ("the shipped model", "DPM-Solver++ 25 steps") are the course's vocabulary
# Docstrings of the code that restate an answer while they explain the code they sit in: the handout keeps the code,
# and these with it. Each entry: a file -> its passages; no run of words of them is a leak in that file.
EXPLAINED_IN_THE_CODE = {
    "sd_course/pixel/pipeline.py": [  # _edm_model_call (docs/sampling.md's answer on DDPMPipeline)
        "Our network was trained on ``x_t = x / sqrt(1 + sigma^2)`` at the training timestep with the same sigma"],
    "sd_course/core/schedulers.py": [  # with_noise_schedule (docs/sampling.md: "which betas does the new scheduler get?")
        "``X.from_config(config)`` passes on only the keys that were *set* in ``config``"],
    "benchmarks/fid_vs_steps.py": [  # what the benchmark's one-call row shows (diffusion.py's and pipeline.py's answers)
        "the Part 1 lesson (an MSE-trained inverse of a many-to-one map predicts an average; sd_course/inversion/arcsin.py)"],
    "pipelines/mini-sd-mnist/README.md": [  # a model card must say what its model was trained on (text.py's answer)
        "50% with 1-12 random filler words around the digit's (and as many of the empty ones filler only)"],
}


def _words(text: str) -> list[str | None]:
    """The words of a text as prose: lower case, without comment, heading and emphasis marks; code spans, formulas,
    paths, flags and symbols become None, which no run of words crosses."""
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"`+[^`]*`+|\$[^$]*\$", " | ", text)  # code spans and TeX: not prose
    text = re.sub(r"(?m)^\s*#+\s?", " ", text).replace("*", "")
    words = []
    for token in text.lower().split():
        core = token.strip("\"'(),.;:!?")
        words.append(core if re.fullmatch(r"[a-z0-9]+(?:['.,+-][a-z0-9]+)*%?", core) else None)
    return words


def _prose_runs(words: list[str | None]) -> set[tuple[str, ...]]:
    """Every run of WINDOW words with no code in it and at most two numbers."""
    return {tuple(words[i:i + WINDOW]) for i in range(len(words) - WINDOW + 1)
            if None not in words[i:i + WINDOW] and sum(w.isalpha() for w in words[i:i + WINDOW]) >= WINDOW - 2}


def _sentences(text: str) -> list[str]:
    """The sentences of a passage that hold prose (a run of WINDOW words); commands and formulas fall out."""
    text = re.sub(r"```.*?```", " ", text, flags=re.S)  # fenced code: commands, not answers
    sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z(*`])", re.sub(r"\s+", " ", text))
    return [sentence.strip() for sentence in sentences if _prose_runs(_words(sentence))]


def _answer_key() -> list[tuple[str, str]]:
    """(where, sentence) for every sentence of every answer of the answer key."""
    passages = [(q.where, q.answer) for q in course.find_questions()[0]]
    docs = [REPO / "README.md"] + sorted(p for d in course.HANDOUT_DIRS for p in (REPO / d).rglob("*.md"))
    for doc in docs:
        rel, text = doc.relative_to(REPO).as_posix(), doc.read_text(encoding="utf-8")
        if rel in course.HANDOUT_SKIP:
            continue
        if "<!-- handout: leave out -->" in text[:500]:  # docs/derivations.md: all of it is theirs to write
            passages.append((rel, text))
            continue
        passages += [(rel, passage) for passage in course.marked_answers(text, rel)]
        if rel.startswith("docs/") and "<!-- handout: keep -->" not in text[:500]:
            passages += [(rel, "\n".join(prose)) for _, prose in course.markdown_answers(text)]
    for notebook in sorted((REPO / "notebooks").glob("*.py")):
        for cell in notebook.read_text(encoding="utf-8").split("# %%")[1:]:
            lines = cell.splitlines()[1:]
            if lines and lines[0].startswith(course.NOTEBOOK_ANSWER):
                answer = "\n".join(line.removeprefix("#").strip() for line in lines).replace("**A:**", "")
                passages.append((notebook.relative_to(REPO).as_posix(), answer))
    return [(where, sentence) for where, passage in passages for sentence in _sentences(passage)]


def _questions() -> str:
    """Every question, as words: the handout keeps the questions, so what a question shares with its answer is no
    leak."""
    asked = [q.question for q in course.find_questions()[0]]
    for doc in sorted((REPO / "docs").glob("*.md")):
        asked += [q for q, _ in course.markdown_answers(doc.read_text(encoding="utf-8"))]
    for notebook in sorted((REPO / "notebooks").glob("*.py")):
        asked += re.findall(r"^# \*\*Q:\*\*.*$", notebook.read_text(encoding="utf-8"), flags=re.M)
    return " | ".join(" ".join(w or "|" for w in _words(q)) for q in asked)


def test_no_sentence_of_any_answer_is_in_the_handout(handout):
    out, _ = handout
    runs = {}  # run of WINDOW words -> the handout files that hold it
    for file in sorted(p for p in out.rglob("*") if p.is_file()):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # a binary file: images, weights, parquet
        for run in _prose_runs(_words(text)):
            runs.setdefault(run, []).append(file.relative_to(out).as_posix())
    for card in sorted(REPO.glob("pipelines/**/README.md")):  # the cards, which the default handout copies as they are
        for run in _prose_runs(_words(card.read_text(encoding="utf-8"))):
            runs.setdefault(run, []).append(card.relative_to(REPO).as_posix())
    answers, asked = _answer_key(), _questions()
    assert len(answers) > 300
    explained = set()  # (run, file) pairs the code may hold
    for rel, passages in EXPLAINED_IN_THE_CODE.items():
        for passage in passages:
            source = out / rel if (out / rel).is_file() else REPO / rel  # a card: not in this handout's copy
            held = " ".join(source.read_text(encoding="utf-8").split())
            assert passage in held, f"{rel} no longer says {passage!r}: drop it from EXPLAINED_IN_THE_CODE"
            explained |= {(run, rel) for run in _prose_runs(_words(passage))}
    leaks = []
    for where, sentence in answers:
        for run in sorted(_prose_runs(_words(sentence))):
            phrase = " ".join(run)
            files = [f for f in runs.get(run, []) if (run, f) not in explained]
            if files and phrase not in asked:
                leaks.append(f"{files[0]}: '{phrase}' (of the answer at {where}: {sentence[:100]!r})")
                break
    assert leaks == [], f"{len(leaks)} sentences of answers are in the handout:\n" + "\n".join(leaks)


def test_marked_answers_leave_the_markdown_and_their_replacement_stays():
    text = ("Intro stays.\n<!-- handout: answer -->\nThe secret reason.\n<!-- handout: end -->\n"
            "Usage stays, <!-- handout: answer -->and a secret clause,<!-- handout: end --> and so does this.\n"
            "<!-- handout: replace with: Measure it yourself: `python benchmarks/x.py`. -->\nIt is 71%.\n"
            "<!-- handout: end -->\nThe convention is `<!-- handout: answer -->` (in backticks: documentation).\n")
    stripped, removed = course.strip_marked_answers(text, "x.md")
    assert removed == 3
    assert course.marked_answers(text) == ["\nThe secret reason.\n", "and a secret clause,", "\nIt is 71%.\n"]
    assert stripped == ("Intro stays.\nUsage stays,  and so does this.\nMeasure it yourself: `python benchmarks/x.py`.\n"
                        "The convention is `<!-- handout: answer -->` (in backticks: documentation).\n")
    for bad, message in (("<!-- handout: answer -->\nno end\n", "x.md:1: .* no '<!-- handout: end -->' after it"),
                         ("a\n<!-- handout: end -->\n", "x.md:2: .* no '<!-- handout: answer -->' before it"),
                         ("<!-- handout: answer -->\n<!-- handout: answer -->\n", "x.md:2: .* opens inside")):
        with pytest.raises(InputError, match=message):
            course.strip_marked_answers(bad, "x.md")


def test_handout_installs_imports_and_runs_its_cli(handout, tmp_path):
    out, _ = handout
    target = tmp_path / "site"
    pip = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation", "-q",
                          "--target", str(target), str(out)], capture_output=True, text=True, timeout=300)
    assert pip.returncode == 0, pip.stderr[-2000:]
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = "import sd_course, sd_course.pixel.pipeline, sd_course.app.course; print(sd_course.__file__)"
    imported = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=tmp_path,
                              timeout=300)
    assert imported.returncode == 0, imported.stderr[-2000:]
    assert imported.stdout.strip().startswith(str(target))
    cli = subprocess.run([str(target / "bin" / "sd-course"), "--help"], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=300)
    assert cli.returncode == 0 and "inpaint" in cli.stdout and "handout" in cli.stdout, cli.stderr[-2000:]


def test_handout_with_pipelines_keeps_them_and_their_install_lines(tmp_path):
    out = tmp_path / "full"
    course.write_handout(out)
    assert (out / "pipelines" / "ddpm-mnist" / "model_index.json").is_file()
    assert (out / "setup.cfg").read_text() == (REPO / "setup.cfg").read_text()
    assert "share/sd_course/pipelines" not in (course._without_pipelines((REPO / "setup.cfg").read_text()))


def test_handout_refuses_a_non_empty_folder(tmp_path):
    (tmp_path / "x").write_text("mine")
    with pytest.raises(InputError, match="--overwrite"):
        course.write_handout(tmp_path)


def test_derivations_docx_has_equations_and_headings(tmp_path):
    if course.pandoc_path() is None:
        pytest.skip("pandoc is not installed: pip install -e '.[docs]' (pypandoc-binary bundles it)")
    docx = pytest.importorskip("docx", reason="python-docx reads the .docx back: pip install -e '.[dev]'")
    source = (REPO / "docs" / "derivations.md").read_text()
    display = re.findall(r"\$\$.+?\$\$", source, flags=re.S)
    inline = re.findall(r"(?<![$\\])\$(?!\$)[^$\n]+?\$", re.sub(r"\$\$.+?\$\$", "", source, flags=re.S))
    headings = re.findall(r"^#{1,6} ", re.sub(r"```.*?```", "", source, flags=re.S), flags=re.M)
    output = course.build_derivations(tmp_path / "derivations.docx")["output"]
    document = docx.Document(output)
    math = "{http://schemas.openxmlformats.org/officeDocument/2006/math}oMath"
    equations = sum(1 for _ in document.element.body.iter(math))
    assert equations == len(display) + len(inline) and equations >= 50
    assert sum(p.style.name.startswith("Heading") for p in document.paragraphs) == len(headings) >= 8
    assert any("pipeline.py:" in p.text for p in document.paragraphs)  # the code references, resolved


def test_derivations_errors_name_the_fix(tmp_path):
    with pytest.raises(InputError, match=r"\.docx"):
        course.build_derivations(tmp_path / "d.pdf")
    with pytest.raises(InputError, match="does not exist"):
        course.build_derivations(tmp_path / "d.docx", source=tmp_path / "missing.md")


def _quick_lab_commands() -> list[str]:
    """The commands of docs/lab.md marked ``<!-- quick -->`` (the fenced block right after the marker)."""
    text = (REPO / "docs" / "lab.md").read_text()
    blocks = re.findall(r"<!-- quick -->\s*```bash\n(.*?)```", text, flags=re.S)
    commands = []
    for block in blocks:
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split("  #")[0].strip()
            if line and not line.startswith("#"):
                commands.append(line)
    return commands


def test_lab_quick_commands_run_as_written(tmp_path):
    """Run from a scratch folder that sees the repository's pipelines/ and benchmarks/ (what a student's clone has),
    so the figures do not land in the checkout."""
    commands = _quick_lab_commands()
    assert len(commands) >= 4
    for name in ("pipelines", "benchmarks", "training", "docs"):
        (tmp_path / name).symlink_to(REPO / name)
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}", "OMP_NUM_THREADS": "1"}
    for command in commands:
        args = shlex.split(command)
        if args[0] == "python":
            args[0] = sys.executable
        result = subprocess.run(args, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
        assert result.returncode == 0, f"{command}\n{result.stderr[-2000:]}"


def test_notebook_answers_are_stripped_and_questions_kept():
    notebook = ("# %% [markdown]\n# **Q:** Why many small steps?\n\n# %% [markdown]\n# **A:** Because a one-shot "
                "denoiser predicts the mean.\n# More of the answer.\n\n# %%\nprint('code stays')\n")
    stripped, removed = course.strip_notebook_answers(notebook)
    assert removed == 1
    assert "**Q:** Why many small steps?" in stripped and "print('code stays')" in stripped
    assert "predicts the mean" not in stripped and "More of the answer" not in stripped
    assert "# **A:** (your answer here)" in stripped


def test_handout_never_deletes_a_folder_it_did_not_write(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.md").write_text("my notes")
    for overwrite in (False, True):
        with pytest.raises(InputError, match="did not write"):
            course.write_handout(mine, pipelines=False, overwrite=overwrite)
    assert (mine / "notes.md").read_text() == "my notes"
