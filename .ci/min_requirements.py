"""Print setup.cfg's install_requires with every floor pinned (``pkg>=X`` -> ``pkg==X``), for the minimum-versions
job of .ci/run: what the package declares it works with is installed exactly, and tested.

    python .ci/min_requirements.py > min.txt && pip install -r min.txt
"""

import configparser
import re
from pathlib import Path

config = configparser.ConfigParser()
config.read(Path(__file__).resolve().parents[1] / "setup.cfg")
for line in config["options"]["install_requires"].strip().splitlines():
    line = line.split("#")[0].strip()
    if line:
        print(re.sub(r">=\s*", "==", line))
