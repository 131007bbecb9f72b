"""Every number in the course's prose, rendered from the result that measured it.

    sd-course results check          # fail when a quoted number differs from its result, or its result is stale
    sd-course results write          # re-render every quoted number from its result
    sd-course results list           # each result: when, where, on what, how often quoted, current or stale
    sd-course results rerun mini_sd_quick_lean_no_native_bf16   # run its command again: does each quote still hold?
    sd-course results retire pipelines/mini-sd-mnist-epoch10/prompt_robustness.json \
        --to benchmarks/results/first_mini_sd_prompt_robustness.json --reason "the first mini-SD, no longer shipped"

A quote is a Markdown link whose text is the number and whose target is a result file and a key:

    the latent run scores FID `[50.9](../benchmarks/results/mini_sd_quick.json#rows.variant=shipped.fid)`

(A link written in backticks, as here, is an example, not a quote.) The path is relative to the quoting file (as
Markdown renders it), or to the checkout's root (in Python docstrings).
The key is a dotted path into the JSON: names, list indices (``rows.3``) or a selector (``rows.seed=0`` or
``rows.precision=bf16&seed=0``: the first element whose fields have those values; numbers compare as numbers; a space
or a dot inside a name is percent-encoded, as in any link: ``%20``, ``%2E``), and an optional scale at the end
(``#prompt_accuracy*100`` for a percentage). The number is rendered with as many decimals as the text shows, with
thousands separators if the text has them, in scientific notation if it is written so (``6.2e-4``); what follows it
in the link text (``%``, ``x``, `` min``) is kept.

A result is *stale* when a file it was measured on (its ``provenance.inputs``: weights, recipe, classifier) has
changed since: the number may still be right, but nothing shows it any more (``sd-course results rerun ID``).
A result about a model the course no longer ships (the "before" of a lesson) is *retired* instead: a copy that says
why (``provenance.retired``), keeps the hashes of what it was measured on, and is never stale and never re-run.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import tempfile
import urllib.parse
from dataclasses import dataclass
from pathlib import Path

from sd_course.core.provenance import MACHINE_KEYS, describe_device, format_argv, input_unchanged
from sd_course.core.shipped import SOURCE_ROOT

QUOTING_GLOBS = ("README.md", "docs/*.md", "benchmarks/README.md", "model_cards/*.md", "pipelines/README.md",
                 "pipelines/*/README.md",
                 "notebooks/*.py", "notebooks/README.md", "sd_course/**/*.py", "training/**/*.py")
RESULT_DIRS = ("benchmarks/results", "pipelines", "docs/figures")
QUOTE = re.compile(r"\[(?P<text>[^\[\]\n]+)\]\((?P<path>[^()\s#]+\.json)#(?P<key>[^()\s]+)\)")
NUMBER = re.compile(r"^(?P<lead>[~≈<>=≤≥ ]*)(?P<number>[-−]?\d[\d,]*(?:\.\d+)?(?:e[-+]\d+)?)(?P<tail>.*)$")
SCALE = re.compile(r"^(?P<key>.*?)(?:(?P<op>[*/])(?P<factor>\d+(?:\.\d+)?))?$")


@dataclass
class Quote:
    file: Path  # the quoting file
    line: int
    text: str  # the link text, e.g. "95.0%"
    path: str  # the result file as written in the link
    key: str  # the fragment
    span: tuple[int, int]  # where the link text sits in the file

    def where(self, root: Path) -> str:
        return f"{self.file.relative_to(root).as_posix()}:{self.line}"

    def result_file(self, root: Path) -> Path:
        near = (self.file.parent / self.path).resolve()
        return near if near.exists() else (root / self.path).resolve()


class QuoteError(ValueError):
    pass


def quoting_files(root: Path = SOURCE_ROOT) -> list[Path]:
    files = []
    for pattern in QUOTING_GLOBS:
        files += [p for p in sorted(root.glob(pattern)) if p.is_file() and p not in files]
    return files


def find_quotes(root: Path = SOURCE_ROOT) -> list[Quote]:
    quotes = []
    for path in quoting_files(root):
        text = path.read_text(encoding="utf-8")
        for m in QUOTE.finditer(text):
            if m.start() > 0 and text[m.start() - 1] == "`":
                continue  # an example in inline code, not a quote
            quotes.append(Quote(path, text.count("\n", 0, m.start()) + 1, m.group("text"), m.group("path"),
                                m.group("key"), m.span("text")))
    return quotes


def _equal(field, wanted: str) -> bool:
    """A selector's value against a field: as text, or as numbers (``guidance=2`` selects 2.0)."""
    if str(field) == wanted:
        return True
    try:
        return isinstance(field, (int, float)) and float(wanted) == field
    except ValueError:
        return False


def lookup(record, key: str):
    """The value at ``key`` (see the module docstring), scaled."""
    m = SCALE.match(key)
    value = record
    for part in m.group("key").split("."):
        part = urllib.parse.unquote(part)  # a name's space or dot, percent-encoded as in any link (%20, %2E)
        if isinstance(value, list):
            if "=" in part:
                wanted = dict(c.split("=", 1) for c in part.split("&"))
                matches = [v for v in value if isinstance(v, dict) and all(_equal(v.get(k), w) for k, w in wanted.items())]
                if not matches:
                    raise QuoteError(f"no element with {part}")
                value = matches[0]
            elif part.lstrip("-").isdigit() and -len(value) <= int(part) < len(value):
                value = value[int(part)]
            else:
                raise QuoteError(f"no element {part!r} in a list of {len(value)}")
        elif isinstance(value, dict) and part in value:
            value = value[part]
        else:
            raise QuoteError(f"no key {part!r}")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise QuoteError(f"the value is {value!r}, not a number")
    if m.group("op"):
        factor = float(m.group("factor"))
        value = value * factor if m.group("op") == "*" else value / factor
    return value


def render(text: str, value: float) -> str:
    """``text`` with its number replaced by ``value`` at the same precision and style."""
    m = NUMBER.match(text)
    if m is None:
        raise QuoteError(f"the link text {text!r} does not start with a number")
    number, exponent = m.group("number").partition("e")[::2]
    decimals = len(number.split(".")[1]) if "." in number else 0
    if exponent:  # scientific, with as many exponent digits as the text: 6.2e-4 or 6.2e-04
        mantissa, power = f"{value:.{decimals}e}".split("e")
        rendered = f"{mantissa}e{'-' if int(power) < 0 else '+'}{abs(int(power)):0{len(exponent) - 1}d}"
    else:
        rendered = f"{value:,.{decimals}f}" if "," in number else f"{value:.{decimals}f}"
    if number.startswith("−"):
        rendered = "−" + rendered[1:]
    if rendered in ("-0", "-0.0") or re.fullmatch(r"-0\.0+", rendered):
        rendered = rendered[1:]
    return m.group("lead") + rendered + m.group("tail")


def load_result(path: Path) -> dict:
    if not path.is_file():
        raise QuoteError(f"the result file {path} does not exist")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise QuoteError(f"{path} is not JSON ({e})") from e


def stale_inputs(record: dict, root: Path = SOURCE_ROOT) -> list[str]:
    """The inputs of a result that changed (or disappeared) since it was measured (none for a retired result)."""
    if (record.get("provenance") or {}).get("retired"):
        return []
    changed = []
    for rel, digest in (record.get("provenance") or {}).get("inputs", {}).items():
        path = root / rel
        if not path.is_file():
            changed.append(f"{rel} (no longer there)")
        elif not input_unchanged(path, digest):
            changed.append(f"{rel} (changed)")
    return changed


def check_quotes(root: Path = SOURCE_ROOT, write: bool = False) -> list[str]:
    """Problems with the quoted numbers (empty: all current); ``write=True`` re-renders them first."""
    problems, cache, stale_cache = [], {}, {}
    edits: dict[Path, list[tuple[tuple[int, int], str]]] = {}
    for q in find_quotes(root):
        result_path = q.result_file(root)
        try:
            if result_path not in cache:
                cache[result_path] = load_result(result_path)
            record = cache[result_path]
            value = lookup(record, q.key)
            if not math.isfinite(value):
                raise QuoteError(f"the value is {value}")
            expected = render(q.text, value)
        except QuoteError as e:
            problems.append(f"{q.where(root)}: [{q.text}]({q.path}#{q.key}): {e}")
            continue
        if "provenance" not in record:
            problems.append(f"{q.where(root)}: {q.path} has no provenance block (command, inputs, device, date)")
        elif result_path not in stale_cache:
            stale_cache[result_path] = stale_inputs(record, root)
            if stale_cache[result_path]:
                problems.append(f"{q.where(root)}: {q.path} is stale: measured on {', '.join(stale_cache[result_path])}"
                                f"; re-run it: sd-course results rerun {result_id(result_path, root)}")
        if expected != q.text:
            if write:
                edits.setdefault(q.file, []).append((q.span, expected))
            else:
                problems.append(f"{q.where(root)}: says {q.text!r}, {q.path}#{q.key} says {expected!r} "
                                "(sd-course results write renders it)")
    for path, changes in edits.items():
        text = path.read_text(encoding="utf-8")
        for (start, end), new in sorted(changes, reverse=True):
            text = text[:start] + new + text[end:]
        path.write_text(text, encoding="utf-8")
    return problems


def result_files(root: Path = SOURCE_ROOT) -> list[Path]:
    files = []
    for folder in RESULT_DIRS:
        for path in sorted((root / folder).rglob("*.json")):
            try:
                record = json.loads(path.read_text(encoding="utf-8"))
            except (json.JSONDecodeError, UnicodeDecodeError):
                continue
            if isinstance(record, dict) and "provenance" in record:
                files.append(path)
    return files


def result_id(path: Path, root: Path = SOURCE_ROOT) -> str:
    rel = path.resolve().relative_to(root).with_suffix("")
    return rel.name if rel.parent.as_posix() == "benchmarks/results" else rel.as_posix()


def find_result(result: str, root: Path = SOURCE_ROOT) -> Path:
    for path in result_files(root):
        if result in (result_id(path, root), path.relative_to(root).as_posix(), path.stem):
            return path
    known = ", ".join(result_id(p, root) for p in result_files(root))
    raise QuoteError(f"no result {result!r}; the results are: {known}")


def list_results(root: Path = SOURCE_ROOT) -> list[dict]:
    quotes = find_quotes(root)
    rows = []
    for path in result_files(root):
        record = json.loads(path.read_text(encoding="utf-8"))
        prov = record["provenance"]
        stale = stale_inputs(record, root)
        status = f"retired: {prov['retired']}" if prov.get("retired") else "stale: " + ", ".join(stale) if stale \
            else "current"
        rows.append(dict(id=result_id(path, root), date=prov.get("date"), device=prov.get("device"),
                         quoted=sum(q.result_file(root) == path.resolve() for q in quotes), status=status,
                         command=format_argv(prov["argv"]) if prov.get("argv") else None))
    return rows


def _is_machine_key(key: str, varies: list[str]) -> bool:
    last = SCALE.match(key).group("key").split(".")[-1]
    return last in varies


def rerun(result: str, root: Path = SOURCE_ROOT, keep: str | None = None) -> tuple[bool, list[str]]:
    """Run a result's recorded command again (into a new file) and compare every number the prose quotes from it.

    Returns (holds, lines). Keys that vary by machine (minutes, images/s) are compared only when the device is the
    same one; the others must agree within the result's relative ``tolerance``."""
    path = find_result(result, root)
    record = json.loads(path.read_text(encoding="utf-8"))
    prov = record["provenance"]
    if prov.get("retired"):
        raise QuoteError(f"{result_id(path, root)} is retired ({prov['retired']}): what it measured is no longer "
                         "shipped, so it cannot be re-run; quote a current result instead")
    if not prov.get("argv"):
        raise QuoteError(f"{result_id(path, root)} records no command to re-run")
    keys = sorted({q.key for q in find_quotes(root) if q.result_file(root) == path.resolve()})
    with tempfile.TemporaryDirectory() as tmp:
        output = Path(keep) if keep else Path(tmp) / path.name
        argv = [{"{output}": str(output), "{output_dir}": str(output.parent)}.get(a, a) for a in prov["argv"]]
        if argv[0] == "python":
            argv[0] = sys.executable
        elif argv[0] == "sd-course":  # this interpreter's, whether or not its environment is on PATH
            argv[:1] = [sys.executable, "-m", "sd_course"]
        print(f"re-running {result_id(path, root)}: {format_argv(argv)}", flush=True)
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
        finished = subprocess.run(argv, cwd=root, env=env)
        if finished.returncode != 0:  # the command has said why, above; one line here, not a traceback
            raise QuoteError(f"re-running {result_id(path, root)} failed (exit {finished.returncode}): see the "
                             "command's own message above; nothing was written")
        fresh = load_result(output)
    same_machine = (fresh.get("provenance") or {}).get("device", describe_device()) == prov.get("device")
    tolerance = float(prov.get("tolerance", 0.05))
    varies = prov.get("varies_by_machine", list(MACHINE_KEYS))
    holds, lines = True, []
    for key in keys or []:
        try:
            old, new = lookup(record, key), lookup(fresh, key)
        except QuoteError as e:
            holds = False
            lines.append(f"{key}: {e}")
            continue
        close = abs(new - old) <= tolerance * max(abs(old), 1e-12)
        if _is_machine_key(key, varies) and not same_machine:
            lines.append(f"{key}: {old:g} on {prov.get('device')}, {new:g} here (machine-dependent: not judged)")
            continue
        holds &= close
        lines.append(f"{key}: {old:g} -> {new:g} ({'holds' if close else 'differs'}, tolerance {tolerance:.0%})")
    if not keys:
        lines.append("no number of it is quoted anywhere")
    return holds, lines


def retire(result: str, to: str | Path, reason: str, root: Path = SOURCE_ROOT) -> Path:
    """Copy a result to ``to`` (a new JSON file among the results) as *retired*: ``provenance.retired = reason``.

    For the numbers a lesson quotes about a model that is about to be replaced (the first mini-SD's unseen-word
    failure, say): the copy keeps every number and the hashes of the weights it was measured on, is never stale
    (those weights are gone by design) and cannot be re-run. Nothing is deleted: the original stays where it is, for
    the new model's export to replace. Re-point the quotes of the old model to the copy."""
    source = find_result(result, root)
    if not reason or not reason.strip():
        raise QuoteError("--reason is empty: say what the result measured and why it is kept, e.g. \"the first "
                         "mini-SD (14 epochs), replaced by the 100-epoch one\"")
    target = Path(to) if Path(to).is_absolute() else root / to
    if target.suffix != ".json" or not any(target.resolve().is_relative_to((root / d).resolve())
                                           for d in RESULT_DIRS):
        raise QuoteError(f"--to {to}: a retired result is a .json file under {', '.join(RESULT_DIRS)}, e.g. "
                         f"benchmarks/results/first_{source.stem}.json")
    if target.exists():
        raise QuoteError(f"--to {to} exists already; choose a new name (nothing was written)")
    record = load_result(source)
    record["provenance"]["retired"] = reason.strip()
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(json.dumps(record, indent=2) + "\n", encoding="utf-8")
    return target
