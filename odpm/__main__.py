"""``python -m odpm`` is the same as the ``odpm`` console script."""

from odpm.cli import main

raise SystemExit(main())
