"""``python -m initlab`` (also under ``torchrun -m initlab``)."""

import sys

from initlab.cli import main

sys.exit(main())
