"""`python -m resflex.cli …` runs the `resflex` command."""

from .main import main

raise SystemExit(main())
