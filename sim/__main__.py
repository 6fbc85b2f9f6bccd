"""``python -m sim SCENARIO.toml ...``"""

import sys

from sim.cli import main

sys.exit(main())
