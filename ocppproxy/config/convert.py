"""
The Node tool's C{config.json} as ocppproxy's YAML:

    python -m ocppproxy.config.convert config.json > ocppproxy.yaml

The YAML, put beside C{config.json}, loads to the same configuration as the JSON file
does (its relative paths, C{clientIdToHuman.json}, are the same). The file is checked
first: an error stops with the start-up error line and exit status 2. An e-mail
transporter that has no translation is left out with a warning on standard error, as
reading the JSON switches that channel off.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from typing import Any, TextIO

import yaml

from . import nodecompat
from .load import read_document
from .model import ConfigError

_HEADER = """\
# ocppproxy configuration, converted from the Node tool's {source}
# by python -m ocppproxy.config.convert. Every other key, with its default, is in
# etc/ocppproxy.yaml and the configuration reference.
"""


def convert(path: str) -> tuple[str, list[str]]:
    """
    The YAML text equivalent to the Node tool's file at C{path}, and the problems the
    JSON file has that the YAML leaves out (a channel that is off either way).
    Raises L{ConfigError} (naming the Node tool's keys) for a file start-up refuses.
    """
    raw = read_document(path)
    if not nodecompat.is_node_config(raw, path):
        raise ConfigError("", f"{path} is not the Node tool's config.json")
    base_dir = os.path.dirname(os.path.abspath(path))
    config = nodecompat.config_from_node(raw, base_dir)
    mapping: dict[str, Any] = dict(nodecompat.translate_node_config(raw))
    if config.client_names is not None:
        mapping["client_names"] = nodecompat.NODE_NAMES_FILE
    text = _HEADER.format(source=os.path.basename(path)) + yaml.safe_dump(
        mapping, sort_keys=False, allow_unicode=True, default_flow_style=False
    )
    return text, [f"{channel}: {problem}" for channel, problem in config.notify.channel_problems]


def main(argv: Sequence[str] | None = None, out: TextIO = sys.stdout, err: TextIO = sys.stderr) -> int:
    """The command line: the YAML on C{out}, warnings and errors on C{err}; the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        err.write("usage: python -m ocppproxy.config.convert config.json > ocppproxy.yaml\n")
        return 2
    try:
        text, problems = convert(args[0])
    except ConfigError as error:
        err.write(f"ocppproxy: configuration error in {args[0]}: {error}\n")
        return 2
    for problem in problems:
        err.write(f"ocppproxy: warning: {problem}; the channel is left out\n")
    out.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
