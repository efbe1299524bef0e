"""``python -m hpm.cli ...`` (and ``torchrun ... -m hpm.cli ...``): the ``hpm`` command."""

import sys

from hpm.cli.main import main

sys.exit(main())
