"""`python -m pipeline ...` runs the command-line interface."""

import os

# pydantic looks for plugins by scanning every installed distribution's entry points on the
# first model it builds (~50 ms of a ~300 ms synth). This CLI uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

from pipeline.cli import main  # noqa: E402

raise SystemExit(main())
