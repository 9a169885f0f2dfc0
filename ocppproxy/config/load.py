"""
Reading the configuration file: YAML (or the Node tool's C{config.json}, see
L{ocppproxy.config.nodecompat}) turned into one frozen, validated L{Config}.
"""

from __future__ import annotations

import json
import os
from typing import Any

import yaml

from . import nodecompat
from .model import Config, ConfigError
from .parse import config_from_mapping


def load_config(path: str) -> Config:
    """
    Read and validate the configuration file at C{path}; raises L{ConfigError}.

    A C{.json} file is read as JSON, anything else as YAML. The Node tool's
    C{config.json} (see L{ocppproxy.config.nodecompat.is_node_config}) is translated first.
    """
    raw = read_document(path)
    base_dir = os.path.dirname(os.path.abspath(path))
    if nodecompat.is_node_config(raw, path):
        return nodecompat.config_from_node(raw, base_dir)
    return config_from_mapping(raw, base_dir)


def read_document(path: str) -> Any:
    """The parsed content of the file at C{path}: JSON for a C{.json} file, YAML otherwise; a L{ConfigError} if unreadable."""
    return _read_json(path) if path.lower().endswith(".json") else _read_yaml(path)


def _read_yaml(path: str) -> Any:
    try:
        with open(path, encoding="utf-8") as stream:
            return yaml.safe_load(stream)
    except OSError as error:
        raise ConfigError("", f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not UTF-8 text") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise ConfigError("", f"{path} is not valid YAML{where}") from None


def _read_json(path: str) -> Any:
    try:
        with open(path, encoding="utf-8-sig") as stream:
            return json.load(stream)
    except OSError as error:
        raise ConfigError("", f"cannot read config file {path}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("", f"{path} is not UTF-8 text") from None
    except json.JSONDecodeError as error:
        raise ConfigError("", f"{path} is not valid JSON at line {error.lineno}, column {error.colno}") from None
