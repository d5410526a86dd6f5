"""`python -m streamalert` runs the command line."""

from streamalert.cli import main

raise SystemExit(main())
