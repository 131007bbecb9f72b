"""training/ship_mini_sd.sh: the script that trains, measures and exports the 100-epoch mini-SD runs for hours, so a
flag renamed in one of the tools it calls would surface only then. Here: it parses, and every flag it passes to each
tool is one that tool's ``--help`` lists. (Its stages were run end to end with ``SMOKE=1``; that takes minutes.)

    python -m pytest tests/test_ship_script.py -q
"""

from __future__ import annotations

import json
import re
import subprocess
import sys

from conftest import REPO

SCRIPT = REPO / "training" / "ship_mini_sd.sh"
# how the script calls each tool -> the argv that prints that tool's flags (all read in one process: one import of torch)
TOOLS = {
    r"training/train_vae\.py": ["training/train_vae.py", "--help"],
    r"training/train_text_to_image\.py": ["training/train_text_to_image.py", "--help"],
    r"benchmarks/vae_quality\.py": ["benchmarks/vae_quality.py", "--help"],
    r"benchmarks/guidance_sweep\.py": ["benchmarks/guidance_sweep.py", "--help"],
    r"benchmarks/prompt_robustness\.py": ["benchmarks/prompt_robustness.py", "--help"],
    r"sd-course evaluate": ["sd_course/__main__.py", "evaluate", "--help"],
    r"sd-course compare": ["sd_course/__main__.py", "compare", "--help"],
    r"sd-course export": ["sd_course/__main__.py", "export", "--help"],
}
HELP_OF_EACH = """
import contextlib, io, json, runpy, sys
helps = {}
for key, argv in json.loads(sys.argv[1]).items():
    sys.argv, out = argv, io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        runpy.run_path(argv[0], run_name="__main__")
    helps[key] = out.getvalue()
print(json.dumps(helps))
"""


def calls(text: str) -> dict[str, set[str]]:
    """The flags the script passes to each tool: its commands with their continuation lines joined, and the flags
    of the arrays (VAE_FLAGS, SD_FLAGS, COMMON) it expands into them."""
    joined = re.sub(r"\\\n\s*", " ", text)
    arrays = {name: set(re.findall(r"--\w+", body))
              for name, body in re.findall(r"(\w+)=\(([^)]*)\)", joined, flags=re.S)}
    found = {}
    for line in joined.splitlines():
        for tool in TOOLS:
            if match := re.search(tool, line):
                after = line[match.end():]
                flags = set(re.findall(r"(?<![\w-])--\w+", after))
                for name, array_flags in arrays.items():
                    if "${" + name + "[@]}" in after:
                        flags |= array_flags
                found.setdefault(tool, set()).update(flags)
    return found


def test_the_script_parses_and_calls_each_tool_with_flags_it_has():
    assert subprocess.run(["bash", "-n", str(SCRIPT)], capture_output=True).returncode == 0
    used = calls(SCRIPT.read_text())
    assert set(used) == set(TOOLS), f"the script no longer calls {set(TOOLS) - set(used)}"
    shown = subprocess.run([sys.executable, "-c", HELP_OF_EACH, json.dumps(TOOLS)], cwd=REPO, capture_output=True,
                           text=True, timeout=300)
    assert shown.returncode == 0, shown.stderr[-2000:]
    helps = json.loads(shown.stdout.splitlines()[-1])
    for tool, flags in used.items():
        known = set(re.findall(r"--\w+", helps[tool]))
        assert flags and flags <= known, f"{tool}: {sorted(flags - known)} not among its flags"
