"""``python -m dard_plugin`` is the ``dard`` command."""

import sys

from dard_plugin.cli.main import main

sys.exit(main())
