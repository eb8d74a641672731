"""``python -m serbench.cli``: the ``serbench`` command."""

import sys

from serbench.cli.main import main

sys.exit(main())
