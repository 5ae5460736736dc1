"""`python -m fsmde_ros ...` is the `fsmde` command (e.g. under `torchrun -m fsmde_ros distill ...`)."""
import sys

from fsmde_ros.app.cli import main

sys.exit(main())
