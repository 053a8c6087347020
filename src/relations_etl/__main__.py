"""`python -m relations_etl`: the same command as the `relations-etl` console script."""

import sys

from relations_etl_flows.cli import main

sys.exit(main())
