"""python -m tui [STORE_DIR]"""

import sys

from tui.app import run

sys.exit(run(sys.argv[1] if len(sys.argv) > 1 else None))
