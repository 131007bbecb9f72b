"""``python -m sd_course ...`` is ``sd-course ...``."""

import sys

from sd_course.app.cli import main

sys.exit(main())
