"""Which modules an import loads, asked of a fresh interpreter.

Run outside the checkout (:data:`tests.conftest.OUTSIDE`), so under CI the installed
package is the one imported; the tests process's own ``sys.modules`` says nothing,
since other tests have imported everything already.
"""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import OUTSIDE


def loaded_by(imports: str, watched: tuple[str, ...]) -> list[str]:
    """The names in ``watched`` found in ``sys.modules`` after ``import <imports>``."""
    code = f"import sys, {imports}; print('\\n'.join(m for m in {watched!r} if m in sys.modules))"
    run = subprocess.run([sys.executable, "-c", code], cwd=OUTSIDE, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    return run.stdout.split()
