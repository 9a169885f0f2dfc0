"""Sphinx configuration of ocppproxy's documentation: built by ``make docs``."""

project = "ocppproxy"
author = "ocppproxy's authors"
copyright = "ocppproxy's authors"

# Nothing fetched at build time: no intersphinx, and alabaster (Sphinx's default theme)
# ships its assets with Sphinx.
extensions: list[str] = []
html_theme = "alabaster"
html_theme_options = {"description": "OCPP-J WebSocket proxy with alerts", "fixed_sidebar": True}
html_sidebars = {"**": ["about.html", "navigation.html", "searchbox.html"]}
exclude_patterns = ["_build"]
# Literal blocks are configuration files, shell sessions and log lines: no highlighting
# guessed from them (a guess that fails would be a warning).
highlight_language = "none"
# The OCPP and HTTP texts quote "..." as they are.
smartquotes = False
