"""``python -m xaibench ...`` works like ``xaibench ...`` (and under ``torchrun -m xaibench``)."""

import sys

from xaibench.cli import main

sys.exit(main())
