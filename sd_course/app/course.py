"""The course around the code: its questions and their index, the student handout, and the derivations document.

    sd-course questions                                  # every question of the lab, where it is answered
    sd-course questions --check                          # docs/questions.md and docs/derivations.md are up to date
    sd-course questions --write                          # regenerate both (after editing code: line numbers move)
    sd-course handout --output_dir handout/              # the project with every answer removed, questions kept
    sd-course derivations --output derivations.docx      # docs/derivations.md as a Word document, real equations

The package is the answer key. Each question of the lab and of the assignment is answered where its concept is
implemented, in a block of a docstring or of ``#`` comments: a line that starts with ``Q:`` holds the question (it
may go on over the lines indented under it); the next line starts with ``A:`` and the answer runs, indented under
it, up to the first blank line; then, optionally, lines starting with ``Cmd:`` (one or more: the command that
reproduces its figure or number, run from the repository root) and ``Fig:`` (the figure; a path under docs/ is
checked to exist). The last block of this docstring is one.

``docs/questions.md`` is generated from these blocks (question -> file:line -> command -> figure) and a test checks
that it agrees with the code. ``docs/derivations.md`` quotes the code lines that implement each equation as
``[path:line](../path#Lline) `code` ``; the line (and the file) are looked up from the quoted code, so the same
``--write`` keeps them right when code moves.

The handout replaces every answer by ``A: (your answer here)`` followed by as many empty lines as the answer had
(so every ``file:line`` of docs/questions.md still holds in the handout), in the code and in docs/*.md (a question
there is a ``**Q: ...**`` line or a heading ``## Q: ...`` / ``## 1. Q: ...``; its answer runs to the next
heading or question, and only its fenced code blocks, the commands, are kept). A doc marked
``<!-- handout: keep -->`` is copied as it is, one marked ``<!-- handout: leave out -->`` is left out. Code that
writes answers (Part 1's report.md) sits between ``# handout: replace with: CODE`` and ``# handout: end`` comments,
and the handout runs CODE instead.

Prose that answers a question outside a Q: block (README.md, docs/*.md, any other .md, also a "keep" doc) sits
between ``<!-- handout: answer -->`` and ``<!-- handout: end -->``: the handout leaves the passage out, or puts TEXT in
its place when it opens with ``<!-- handout: replace with: TEXT -->``. A marker on a line of its own takes whole lines
out; markers inside a line take out a clause. In the teacher's copy the markers are HTML comments: nothing renders.

Q: Final reflection: what makes diffusion models work, what do they cost, and where do they fall short?
A: They turn generation into many small regression problems. Each step only has to undo a little Gaussian noise,
   and the best possible answer to that is a conditional mean, which an MSE-trained network learns reliably (Part 1:
   a one-shot MSE inverse of a many-to-one map returns the blurry average; many nearly one-to-one steps do not).
   Training is therefore stable and covers the data: the shipped model reaches recall 0.91 (real digits: 0.89) and
   every one of the 10 classes (docs/evaluation.md), where GANs are known to drop modes. The same network serves any sampler
   (15 schedulers, one trained model: docs/sampling.md) and, without retraining, new tasks such as inpainting
   (sd_course/pixel/pipeline.py, the shipped model: [71.0%](benchmarks/results/inpaint_ddpm50.json#inpainted.accuracy*100) of half-hidden test digits read back
   correctly, [50.0%](benchmarks/results/inpaint_ddpm50.json#blank.accuracy*100) with the half left blank).
   The price is sampling time and training compute: 25 to 1000 network calls per image where a GAN makes one
   (DPM-Solver++ 25 calls: [9.0](benchmarks/results/sample_speed_cpu.json#rows.scheduler=dpm++.images_per_s) images/s on 2 CPU cores, DDPM's 1000 calls
   [0.22](benchmarks/results/sample_speed_cpu.json#rows.scheduler=ddpm.images_per_s)), and training
   compute: the earlier 16-epoch CPU run (benchmarks/README.md section 13, its table; measured before results were
   files) spent 281 minutes of 2 CPU cores for FID 12.9 with DPM-Solver++ 2M SDE 25 steps (22.0 on the ODE; FID 160
   after 21 minutes, 64 after 57, 26 after 192), where 5.8 minutes of an H100 at batch 1,024 bought
   [7.5](pipelines/ddpm-mnist/metrics.json#fid_mnist_classifier) ([12.8](pipelines/ddpm-mnist/samplers.json#rows.scheduler=dpm++.fid) on the ODE, [5.3](pipelines/ddpm-mnist/samplers.json#rows.scheduler=euler-a.fid) with Euler-ancestral 50 steps: the sampler is part of
   the generator); the real-data floor is [6.9](benchmarks/results/metric_floor.json#rows.n=1000.fid). Latent diffusion cuts the cost by running
   the chain on a small latent instead of pixels. The limits seen here: quality numbers depend on the feature extractor, the
   reference set and n (compare only like with like); a model memorises when it can fit its training set too well
   (analytic:mnist returns its 16 stored digits); and inpainting with an unconditional model only matches the
   known pixels, it does not know which digit was meant (the top of a 2 is also the top of a 3).
Cmd: sd-course questions
"""

from __future__ import annotations

import difflib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import diffusers

from sd_course.core.device import resolve_device
from sd_course.core.errors import InputError

ROOT = Path(__file__).resolve().parents[2]  # the source checkout (setup.cfg, sd_course/, training/, docs/)
QUESTIONS_MD = "docs/questions.md"
DERIVATIONS_MD = "docs/derivations.md"
PLACEHOLDER = "A: (your answer here)"
# Files searched for Q:/A: blocks, and the order of the index: the lab's order, then any other file by name.
CODE_GLOBS = ("sd_course/**/*.py", "training/**/*.py")
FILE_ORDER = (
    "sd_course/inversion/arcsin.py",
    "sd_course/pixel/analytic.py", "sd_course/core/schedulers.py", "sd_course/core/models.py",
    "sd_course/pixel/diffusion.py", "sd_course/train/loop.py", "sd_course/pixel/pipeline.py", "sd_course/pixel/inpaint.py",
    "sd_course/latent/autoencoder.py", "sd_course/latent/text_to_image.py", "sd_course/latent/guidance.py",
    "sd_course/latent/latent_space.py",
    "sd_course/evaluate/metrics.py", "sd_course/gan/dcgan.py", "sd_course/app/course.py",
)

# ----------------------------------------------------------------------------------------------------------------
# 1. Finding the Q:/A: blocks
# ----------------------------------------------------------------------------------------------------------------

_LINE = re.compile(r"^(?P<lead>\s*(?:#\s?)?\s*)(?P<content>.*?)\s*$")


@dataclass
class Question:
    """One ``Q:`` / ``A:`` block: where it is, its question, its answer lines and its optional Cmd:/Fig: lines."""

    path: str  # relative to the root, with forward slashes
    line: int  # 1-based line of "Q:"
    question: str
    answer_lines: list[int] = field(default_factory=list)  # 0-based indices of the lines holding the answer
    answer: str = ""
    commands: list[str] = field(default_factory=list)
    figures: list[str] = field(default_factory=list)

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


def _split(line: str) -> tuple[str, str, bool]:
    """(indentation and comment mark, content, is a comment line)."""
    m = _LINE.match(line.rstrip("\n"))
    return m["lead"], m["content"], "#" in m["lead"]


def parse_questions(text: str, path: str) -> tuple[list[Question], list[str]]:
    """The Q:/A: blocks of one Python file, and the problems found (a question with no answer)."""
    lines = text.splitlines()
    found, problems = [], []
    i = 0
    while i < len(lines):
        lead, content, comment = _split(lines[i])
        if not content.startswith("Q: "):
            i += 1
            continue
        q = Question(path, i + 1, content[3:].strip())
        j = i + 1
        while j < len(lines):  # the question may wrap
            _, c, cm = _split(lines[j])
            if not c or cm != comment or c.startswith(("A:", "Q: ", "Cmd:", "Fig:", '"""')):
                break
            q.question += " " + c
            j += 1
        _, c, cm = _split(lines[j]) if j < len(lines) else ("", "", comment)
        if not c.startswith("A:") or cm != comment:
            problems.append(f"{q.where}: the question {q.question!r} has no answer (an 'A:' line right after it)")
            i = j
            continue
        answer = [c[2:].strip()]
        q.answer_lines.append(j)
        j += 1
        while j < len(lines):
            _, c, cm = _split(lines[j])
            if not c or cm != comment or c.startswith(("Q: ", "Cmd:", "Fig:", '"""')):
                break
            answer.append(c)
            q.answer_lines.append(j)
            j += 1
        while j < len(lines):
            _, c, cm = _split(lines[j])
            if cm == comment and c.startswith("Cmd:"):
                q.commands.append(c[4:].strip())
            elif cm == comment and c.startswith("Fig:"):
                q.figures.append(c[4:].strip())
            else:
                break
            j += 1
        q.answer = " ".join(a for a in answer if a)
        if not q.answer:
            problems.append(f"{q.where}: the question {q.question!r} has an empty answer")
        found.append(q)
        i = j
    return found, problems


def code_files(root: Path = ROOT) -> list[Path]:
    files = {p for pattern in CODE_GLOBS for p in root.glob(pattern) if "__pycache__" not in p.parts}
    return sorted(files, key=lambda p: _order_key(p.relative_to(root).as_posix()))


def _order_key(rel: str):
    return (FILE_ORDER.index(rel), rel) if rel in FILE_ORDER else (len(FILE_ORDER), rel)


def find_questions(root: Path = ROOT) -> tuple[list[Question], list[str]]:
    """Every Q:/A: block of the package and training/, in the lab's order, and the problems found (no answer, a
    question asked twice)."""
    questions, problems = [], []
    for file in code_files(root):
        found, bad = parse_questions(file.read_text(encoding="utf-8"), file.relative_to(root).as_posix())
        questions += found
        problems += bad
    seen = {}
    for q in questions:
        if q.question in seen:
            problems.append(f"{q.where}: the question {q.question!r} is also asked at {seen[q.question]}; "
                            "answer each question once, where its concept lives")
        seen.setdefault(q.question, q.where)
    return questions, problems


# ----------------------------------------------------------------------------------------------------------------
# 2. The index, docs/questions.md, and the code references of docs/derivations.md
# ----------------------------------------------------------------------------------------------------------------


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _module_title(root: Path, rel: str) -> str:
    """The first line of a module's docstring (its one-line summary)."""
    text = (root / rel).read_text(encoding="utf-8")
    m = re.match(r'\s*(?:#.*\n\s*)*[rub]*"""(.*)', text)
    return m[1].strip().rstrip(".") if m else ""


def render_index(questions: list[Question], root: Path = ROOT) -> str:
    """docs/questions.md: one table per file, in the lab's order."""
    out = [
        "<!-- Generated by `sd-course questions --write` from the Q:/A: blocks of the code: do not edit by hand. -->",
        "<!-- handout: keep -->",
        "# The course's questions, and where each is answered",
        "",
        "Every question of the lab and of the assignment is answered in the file that implements its concept, in a",
        "`Q:` / `A:` block at the line given here, with the command that reproduces its figure or number (run it from",
        "the repository root) and the figure it draws. The student handout (`sd-course handout --output_dir DIR`)",
        "keeps the questions and replaces the answers by `A: (your answer here)` on the same lines, so this index",
        "holds for it too. The walk-through of the 4-hour lab is docs/lab.md; the derivations are docs/derivations.md.",
        "",
        f"{len(questions)} questions. `sd-course questions --check` (a test) fails when this file is stale;",
        "`sd-course questions --write` regenerates it.",
    ]
    by_file: dict[str, list[Question]] = {}
    for q in questions:
        by_file.setdefault(q.path, []).append(q)
    number = 0
    for rel, items in by_file.items():
        title = _module_title(root, rel)
        out += ["", f"## `{rel}`" + (f": {title}" if title else ""), "",
                "| # | question | answered at | reproduce | figure |", "|---:|---|---|---|---|"]
        for q in items:
            number += 1
            cmds = "<br>".join(f"`{_cell(c)}`" for c in q.commands) or "—"
            figs = "<br>".join(_figure_cell(f, root) for f in q.figures) or "—"
            out.append(f"| {number} | {_cell(q.question)} | [{q.where}](../{q.path}#L{q.line}) | {cmds} | {figs} |")
    return "\n".join(out) + "\n"


def _figure_cell(figure: str, root: Path) -> str:
    if figure.startswith("docs/"):  # a committed figure: link it (relative to docs/)
        return f"[{figure}]({figure[len('docs/'):]})"
    return f"`{_cell(figure)}`"


# A code reference in docs/derivations.md: [path:line](../path#Lline) `the code on that line`
_REF = re.compile(r"\[(?P<path>[\w./-]+?):(?P<line>\d+)\]\((?P<href>[^)\s]*)\) `(?P<code>[^`]+)`")


def _diffusers_root() -> Path:
    return Path(diffusers.__file__).resolve().parent.parent  # so that "diffusers/..." paths resolve


def locate_code(code: str, preferred: str, root: Path = ROOT) -> tuple[str, int] | None:
    """(path, 1-based line) of the first line containing ``code``: in ``preferred`` first, then anywhere in the
    package and training/ (code moves between files), or in the installed diffusers for ``diffusers/...`` paths."""
    if preferred.startswith("diffusers/"):
        base, candidates = _diffusers_root(), [_diffusers_root() / preferred]
    else:
        base, candidates = root, [root / preferred] + code_files(root)
    for file in candidates:
        if not file.is_file():
            continue
        for n, line in enumerate(file.read_text(encoding="utf-8").splitlines(), 1):
            if code in line:
                return file.relative_to(base).as_posix(), n
    return None


def refresh_references(text: str, root: Path = ROOT) -> tuple[str, list[str]]:
    """``text`` with every code reference's path:line looked up again from its quoted code; and the problems."""
    problems = []

    def fix(m):
        found = locate_code(m["code"], m["path"], root)
        if found is None:
            problems.append(f"the code `{m['code']}` (referenced as {m['path']}:{m['line']}) is not in "
                            f"{m['path']} or anywhere in the package: update the quote in {DERIVATIONS_MD}")
            return m[0]
        path, line = found
        if path.startswith("diffusers/"):
            href = f"https://github.com/huggingface/diffusers/blob/v{diffusers.__version__}/src/{path}#L{line}"
        else:
            href = f"../{path}#L{line}"
        return f"[{path}:{line}]({href}) `{m['code']}`"

    return _REF.sub(fix, text), problems


def check_or_write(write: bool = False, root: Path = ROOT) -> list[str]:
    """``sd-course questions --check`` / ``--write``: the problems found (an empty list: all is well).

    --check: every question has an answer, none is asked twice, docs/questions.md is what the code gives, every
    code reference of docs/derivations.md points at the line that holds its code, every docs/ figure exists.
    --write: regenerate both files first (problems that need a person, such as a missing answer, remain).
    """
    _need_checkout(root)
    questions, problems = find_questions(root)
    for q in questions:
        problems += [f"{q.where}: Fig: {f} does not exist" for f in q.figures
                     if f.startswith("docs/") and not (root / f).is_file()]
    index_path = root / QUESTIONS_MD
    expected = render_index(questions, root)
    current = index_path.read_text(encoding="utf-8") if index_path.is_file() else ""
    if write and current != expected:
        index_path.write_text(expected, encoding="utf-8")
    elif current != expected:
        diff = list(difflib.unified_diff(current.splitlines(), expected.splitlines(), QUESTIONS_MD, "the code", n=0,
                                         lineterm=""))
        shown = "\n".join(diff[:30]) + ("\n..." if len(diff) > 30 else "")
        problems.append(f"{QUESTIONS_MD} is stale (run `sd-course questions --write`):\n{shown}")
    derivations = root / DERIVATIONS_MD
    if derivations.is_file():
        text = derivations.read_text(encoding="utf-8")
        refreshed, bad = refresh_references(text, root)
        problems += bad
        if write and refreshed != text:
            derivations.write_text(refreshed, encoding="utf-8")
        elif refreshed != text:
            stale = sorted(set(_REF.findall(text)) - set(_REF.findall(refreshed)))
            problems.append(f"{DERIVATIONS_MD} has {len(stale)} stale code references (run `sd-course questions "
                            f"--write`), e.g. {stale[0][0]}:{stale[0][1]} `{stale[0][3]}`")
    return problems


def format_questions(questions: list[Question]) -> str:
    """``sd-course questions``: one line per question."""
    return "\n".join(f"{q.where:<32} {q.question}" for q in questions)


def _need_checkout(root: Path) -> None:
    if not (root / "setup.cfg").is_file() or not (root / "sd_course").is_dir():
        raise InputError(f"{root} is not the sd_course source checkout (setup.cfg beside sd_course/); the questions "
                         "index, the handout and the derivations need the source: run this from a git clone")


# ----------------------------------------------------------------------------------------------------------------
# 3. The student handout: the project with every answer removed
# ----------------------------------------------------------------------------------------------------------------

HANDOUT_FILES = ("setup.cfg", "pyproject.toml", "MANIFEST.in", "README.md")
HANDOUT_DIRS = ("sd_course", "training", "docs", "model_cards", "benchmarks", "notebooks")
HANDOUT_SKIP = ("benchmarks/README.md",)  # our measured numbers: the students measure their own
HANDOUT_NOTE = """\
# Student handout

This is the `sd_course` project with the answers taken out. Every question of the lab is still there, in the file
that implements its concept, as a `Q:` block followed by `A: (your answer here)` and empty lines to write in;
docs/questions.md lists them all with the command that produces the figure or number each one needs. Install it as
the README says (`pip install -e .`) and run `sd-course --help`.
{pipelines}
"""
_MD_QUESTION = re.compile(r"^(\*\*Q: .*|#{1,6} (\d+\.\s+)?Q: .*)$")
_MD_HEADING = re.compile(r"^#{1,6} ")


_REPLACE = re.compile(r"^(?P<indent>\s*)# handout: replace with: (?P<code>.+?)\s*$")
_END = re.compile(r"^\s*# handout: end\s*$")


def strip_python_answers(text: str, path: str = "") -> str:
    """Every answer of the Q:/A: blocks replaced by ``A: (your answer here)`` and empty lines (same line count).

    Code that *writes* answers (a report) is marked in the source by a comment ``# handout: replace with: CODE``
    before it and ``# handout: end`` after it; the handout gets CODE instead (and empty lines: same line count).
    """
    questions, _ = parse_questions(text, path)
    lines = text.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        start = _REPLACE.match(lines[i])
        if start:
            end = next((j for j in range(i + 1, len(lines)) if _END.match(lines[j])), None)
            if end is None:
                raise InputError(f"{path}:{i + 1}: '# handout: replace with:' has no '# handout: end' after it")
            lines[i:end + 1] = [start["indent"] + start["code"] + "\n"] + ["\n"] * (end - i)
            i = end
        i += 1
    for q in questions:
        for k, index in enumerate(q.answer_lines):
            lead, content, _ = _split(lines[index])
            newline = "\n" if lines[index].endswith("\n") else ""
            closing = content[-3:] if content.endswith(('"""', "'''")) else ""  # a docstring ending on this line
            lines[index] = (lead + PLACEHOLDER + closing if k == 0 else (lead + closing).rstrip()) + newline
    return "".join(lines)


def markdown_answers(text: str) -> list[tuple[str, list[str]]]:
    """(question line, answer prose lines) of a markdown document (fenced code blocks are not answer prose)."""
    return [(q, prose) for q, prose, _ in _markdown_blocks(text.splitlines())]


def _markdown_blocks(lines: list[str]):
    """Yield (question, prose lines, (start, end) of the answer) for each question of a markdown document."""
    i = 0
    while i < len(lines):
        if not _MD_QUESTION.match(lines[i]) or lines[i].startswith("<!--"):
            i += 1
            continue
        j, prose, fenced = i + 1, [], False
        while j < len(lines):
            line = lines[j]
            if line.startswith("```"):
                fenced = not fenced
            elif not fenced and (_MD_HEADING.match(line) or _MD_QUESTION.match(line)):
                break
            elif not fenced and line.strip():
                prose.append(line)
            j += 1
        yield lines[i], prose, (i + 1, j)
        i = j


def strip_markdown_answers(text: str) -> str:
    """Each answer of a markdown document replaced by ``A: (your answer here)``, its fenced code blocks kept."""
    lines = text.splitlines()
    out, last = [], 0
    for _, _, (start, end) in _markdown_blocks(lines):
        out += lines[last:start]
        kept, fenced = [], False
        for line in lines[start:end]:
            if line.startswith("```"):
                fenced = not fenced
                kept.append(line)
            elif fenced:
                kept.append(line)
        out += ["", PLACEHOLDER, ""] + kept + ([""] if kept else [])
        last = end
    out += lines[last:]
    return "\n".join(out) + ("\n" if text.endswith("\n") else "")


_MARK = re.compile(r"(?<!`)<!-- handout: (?:(?P<answer>answer)|replace with: (?P<text>.*?)|(?P<end>end)) -->(?!`)")


def _marked_passages(text: str, path: str = ""):
    """Yield (start, end, replacement, passage) for each ``<!-- handout: answer -->`` (or ``replace with: TEXT``) ...
    ``<!-- handout: end -->`` pair of a markdown text; whole lines when the markers stand on lines of their own."""
    opened = None
    for m in _MARK.finditer(text):
        where = f"{path}:{text.count(chr(10), 0, m.start()) + 1}"
        if m["end"] is None:
            if opened is not None:
                raise InputError(f"{where}: a handout marker opens inside the answer opened at line "
                                 f"{text.count(chr(10), 0, opened.start()) + 1}; close it with '<!-- handout: end -->'")
            opened = m
            continue
        if opened is None:
            raise InputError(f"{where}: '<!-- handout: end -->' has no '<!-- handout: answer -->' before it")
        start, end, replacement = opened.start(), m.end(), opened["text"] or ""
        passage = text[opened.end():m.start()]
        line_start = text.rfind("\n", 0, start) + 1
        line_end = text.find("\n", end)
        line_end = len(text) if line_end < 0 else line_end
        if not text[line_start:start].strip() and not text[end:line_end].strip():  # markers on lines of their own
            start, end = line_start, min(line_end + 1, len(text))
            replacement = replacement + "\n" if replacement else ""
        yield start, end, replacement, passage
        opened = None
    if opened is not None:
        raise InputError(f"{path}:{text.count(chr(10), 0, opened.start()) + 1}: '<!-- handout: answer -->' has no "
                         "'<!-- handout: end -->' after it")


def marked_answers(text: str, path: str = "") -> list[str]:
    """The passages of a markdown text marked ``<!-- handout: answer -->`` ... ``<!-- handout: end -->``."""
    return [passage for *_, passage in _marked_passages(text, path)]


def strip_marked_answers(text: str, path: str = "") -> tuple[str, int]:
    """A markdown text with its marked answer passages left out (or replaced by their TEXT); (text, passages)."""
    out, last, removed = [], 0, 0
    for start, end, replacement, _ in _marked_passages(text, path):
        out += [text[last:start], replacement]
        last, removed = end, removed + 1
    return "".join(out) + text[last:], removed


def _handout_markdown(text: str, path: str = "") -> tuple[str | None, int]:
    """What the handout gets for a doc: as is, without its answers, or None (left out); and the answers removed."""
    head = text[:500]
    if "<!-- handout: leave out -->" in head:
        return None, 0
    text, removed = strip_marked_answers(text, path)
    if "<!-- handout: keep -->" in head:
        return text, removed
    return strip_markdown_answers(text), removed + len(markdown_answers(text))


def _without_pipelines(setup_cfg: str) -> str:
    """setup.cfg without the data_files entries of pipelines/ (setuptools refuses a glob that matches nothing)."""
    return "".join(line for line in setup_cfg.splitlines(keepends=True)
                   if not re.match(r"\s*share/sd_course/pipelines", line))


NOTEBOOK_ANSWER = "# **A:**"  # a markdown cell of a jupytext percent notebook that holds an answer starts so


def strip_notebook_answers(text: str) -> tuple[str, int]:
    """A jupytext percent notebook with the body of every answer cell (a markdown cell whose first line is
    ``# **A:** ...``) replaced by ``# **A:** (your answer here)``; questions, code and outputs-to-be stay.
    Returns (text, answers removed)."""
    lines, out, removed, i = text.splitlines(keepends=True), [], 0, 0
    while i < len(lines):
        line = lines[i]
        out.append(line)
        i += 1
        if line.startswith("# %% [markdown]") and i < len(lines) and lines[i].startswith(NOTEBOOK_ANSWER):
            out.append(f"{NOTEBOOK_ANSWER} (your answer here)\n")
            removed += 1
            while i < len(lines) and not lines[i].startswith("# %%"):  # the rest of the cell goes
                i += 1
            out.append("\n")
    return "".join(out), removed


def write_handout(output_dir, pipelines: bool = True, overwrite: bool = False, root: Path = ROOT) -> dict:
    """``sd-course handout``: copy the project into ``output_dir`` with every answer removed; returns a summary.

    ``pipelines=False`` leaves out the shipped pretrained pipelines (31 MB) and their lines in setup.cfg, so the
    handout still installs; its `sd-course sample` then needs --model.
    """
    _need_checkout(root)
    out = Path(output_dir).expanduser()
    if out.resolve() == root or root in out.resolve().parents and out.resolve().parts[len(root.parts)] in (
            HANDOUT_DIRS + ("pipelines",)):
        raise InputError(f"--output_dir {str(out)!r} is inside the project's own sources; write the handout "
                         "elsewhere, e.g. --output_dir ../handout")
    if out.exists() and any(out.iterdir()):
        if not (out / "HANDOUT.md").is_file():  # only ever replace what an earlier `sd-course handout` wrote
            raise InputError(f"--output_dir {str(out)!r} holds files that `sd-course handout` did not write; it never "
                             "deletes them (not even with --overwrite): choose an empty or new folder")
        if not overwrite:
            raise InputError(f"--output_dir {str(out)!r} holds an earlier handout; pass --overwrite to replace it, or "
                             "another folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = dict(output_dir=str(out), files=0, answers_removed=0, docs_left_out=[], pipelines=pipelines)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    for name in HANDOUT_FILES:
        text = (root / name).read_text(encoding="utf-8")
        if name == "setup.cfg" and not pipelines:
            text = _without_pipelines(text)
        if name == "README.md":
            note = HANDOUT_NOTE.format(pipelines="" if pipelines else (
                "\nThe pretrained pipelines (pipelines/, 31 MB) are not in this copy: get them from your teacher and\n"
                "put them in pipelines/, or pass `--model` to every command.\n"))
            (out / "HANDOUT.md").write_text(note, encoding="utf-8")
            text, removed = strip_marked_answers(text, name)
            summary["answers_removed"] += removed
            text = "> **Student handout**: the answers are taken out; see HANDOUT.md.\n\n" + text
        (out / name).write_text(text, encoding="utf-8")
        summary["files"] += 1
    copied = [d for d in HANDOUT_DIRS if (root / d).is_dir()] + (["pipelines"] if pipelines else [])
    for d in copied:
        shutil.copytree(root / d, out / d, ignore=ignore)
    for file in sorted(p for d in copied if d != "pipelines" for p in (out / d).rglob("*") if p.is_file()):
        rel = file.relative_to(out).as_posix()
        summary["files"] += 1
        if rel in HANDOUT_SKIP:
            file.unlink()
            summary["docs_left_out"].append(rel)
        elif file.suffix == ".py" and rel.startswith("notebooks/"):
            text = file.read_text(encoding="utf-8")
            stripped, removed = strip_notebook_answers(text)
            summary["answers_removed"] += removed
            file.write_text(stripped, encoding="utf-8")
        elif file.suffix == ".py":
            text = file.read_text(encoding="utf-8")
            stripped = strip_python_answers(text, rel)
            summary["answers_removed"] += len(parse_questions(text, rel)[0])
            file.write_text(stripped, encoding="utf-8")
        elif file.suffix == ".md" and rel.startswith("docs/"):
            result, removed = _handout_markdown(file.read_text(encoding="utf-8"), rel)
            if result is None:
                file.unlink()
                summary["docs_left_out"].append(rel)
            else:
                summary["answers_removed"] += removed
                file.write_text(result, encoding="utf-8")
        elif file.suffix == ".md":  # notebooks/README.md, model_cards/, ...: only their marked passages go
            stripped, removed = strip_marked_answers(file.read_text(encoding="utf-8"), rel)
            summary["answers_removed"] += removed
            file.write_text(stripped, encoding="utf-8")
    return summary


# ----------------------------------------------------------------------------------------------------------------
# 4. The derivations as a Word document (pandoc, through the pypandoc-binary package)
# ----------------------------------------------------------------------------------------------------------------


def pandoc_path() -> str | None:
    """The pandoc executable: the one bundled with ``pypandoc-binary`` (``pip install 'sd_course[docs]'``), else one
    on the PATH; None when there is neither."""
    try:
        import pypandoc

        return pypandoc.get_pandoc_path()
    except (ImportError, OSError):
        return shutil.which("pandoc")


def build_derivations(output="derivations.docx", source=None, root: Path = ROOT) -> dict:
    """``sd-course derivations``: ``docs/derivations.md`` -> a Word document whose equations are real Word equations
    (pandoc turns the TeX math into OMML). The code references are looked up first, so the document cites the lines
    of the code it was built from. PDF is not offered: it needs a LaTeX engine, which a course machine rarely has."""
    output = Path(output).expanduser()
    if output.suffix.lower() != ".docx":
        raise InputError(f"--output {str(output)!r} must end in .docx (a Word document); PDF needs a LaTeX engine: "
                         "open the .docx in Word or LibreOffice and export it")
    source = Path(source).expanduser() if source else root / DERIVATIONS_MD
    if not source.is_file():
        raise InputError(f"{source} does not exist; pass --source docs/derivations.md of the source checkout")
    pandoc = pandoc_path()
    if pandoc is None:
        raise InputError("pandoc is not installed; `pip install 'sd_course[docs]'` (the pypandoc-binary package "
                         "bundles it) or install pandoc")
    text, problems = refresh_references(source.read_text(encoding="utf-8"), root)
    if problems:
        raise InputError("; ".join(problems))
    # links to ../sd_course/... mean nothing inside a .docx: show "path:line" as plain code instead
    text = _REF.sub(lambda m: f"`{m['path']}:{m['line']}` `{m['code']}`", text)
    if output.parent and not output.parent.exists():
        output.parent.mkdir(parents=True)
    result = subprocess.run([pandoc, "--from", "markdown+tex_math_dollars", "--to", "docx", "--output", str(output),
                             "--resource-path", str(source.parent)],
                            input=text, capture_output=True, text=True, encoding="utf-8")
    if result.returncode != 0:
        raise InputError(f"pandoc failed ({result.returncode}): {result.stderr.strip()[:500]}")
    return dict(output=str(output), pandoc=pandoc)


__all__ = ["Question", "find_questions", "parse_questions", "render_index", "check_or_write", "write_handout",
           "strip_python_answers", "strip_markdown_answers", "markdown_answers", "strip_marked_answers", "marked_answers",
           "build_derivations", "pandoc_path", "refresh_references", "format_questions"]


if __name__ == "__main__":  # python -m sd_course.app.course: the same as `sd-course questions --check`
    found = check_or_write()
    print("\n".join(found) or "docs/questions.md and docs/derivations.md agree with the code")
    sys.exit(1 if found else 0)


# ----------------------------------------------------------------------------------------------------------------
# 5. The notebooks' first step (notebooks/*.py)
# ----------------------------------------------------------------------------------------------------------------


def open_lab(output_dir: str = "lab", device: str | None = None) -> Path:
    """What each notebook of notebooks/ does after its install cell: work from the course folder (the lab's paths,
    training/configs/, pipelines/ and lab/, are relative to it), make ``output_dir`` and say where models will run.
    Returns ``output_dir`` as a Path."""
    os.chdir(ROOT)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    where = f" | models run on: {resolve_device(device)}" if device is not None else ""
    print(f"course folder: {ROOT}{where}")
    return out
