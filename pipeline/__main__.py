"""`python -m pipeline ...` runs the command-line interface."""

import gc
import os
import sys
import types

# Importing the CLI (pydantic, the config's models, PyYAML) makes ~23k objects the cyclic collector
# tracks, all living as long as the process; it ran ~90 times over them during a synth, ~15 ms of
# CPU. Collect nothing while importing, then freeze what was imported so later collections (on
# again for every command) skip it.
gc.disable()

# pydantic looks for plugins by scanning every installed distribution's entry points on the
# first model it builds (~50 ms of a ~300 ms synth). This CLI uses none.
os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__")

if os.environ["PYDANTIC_DISABLE_PLUGINS"] in ("__all__", "1", "true"):
    # Even with plugins off, pydantic's plugin loader imports importlib.metadata at its top (and
    # with it email, zipfile, tempfile, socket, ...: ~30 ms of make bench's 0.3 s), only for its
    # get_plugins() to return () without using it. This stands in for that loader: the same
    # answer, nothing imported. tests/test_cli.py checks the pinned pydantic still asks only this.
    _loader = types.ModuleType("pydantic.plugin._loader", "pydantic's plugin loader with plugins disabled")
    _loader.get_plugins = lambda: ()  # type: ignore[attr-defined]
    sys.modules.setdefault("pydantic.plugin._loader", _loader)

from pipeline.cli import main  # noqa: E402

gc.freeze()
gc.enable()

raise SystemExit(main())
