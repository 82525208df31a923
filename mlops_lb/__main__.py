"""``python -m mlops_lb`` is ``mlops-lb``."""

import sys

from .cli import main

sys.exit(main())
