import sys

from nimbus.cluster.cli import main

sys.exit(main())
