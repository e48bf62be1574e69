"""``python -m taoskills.engine`` == ``tao-skills-engine``."""

import sys

from taoskills.engine.cli import main

sys.exit(main())
