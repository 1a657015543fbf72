"""`python -m nimbus.cli` runs the CLI, like the `nimbus` console script."""

import sys

from nimbus.cli.main import main

sys.exit(main())
