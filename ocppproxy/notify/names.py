"""
Human names for station ids, from the operator's C{client_names} file: a YAML or JSON
mapping C{stationId: "Human name"} (the Node tool's C{clientIdToHuman.json} as is).
"""

from __future__ import annotations

from collections.abc import KeysView, Mapping

import yaml


def load_client_names(path: str | None) -> tuple[dict[str, str], str | None]:
    """
    Read a names file; returns C{(mapping, problem)}.

    Never raises: a missing, unreadable or invalid file gives an empty mapping and a
    one-line C{problem} for the caller to log once (None when all is well, and when
    C{path} is None). Keys and values are made strings; entries without a name are left out.
    """
    if path is None:
        return {}, None
    try:
        with open(path, encoding="utf-8") as names_file:
            content = yaml.safe_load(names_file)
    except FileNotFoundError:
        return {}, f"{path}: no such file"
    except OSError as error:
        return {}, f"{path}: cannot be read ({error.strerror or error})"
    except UnicodeDecodeError:
        return {}, f"{path}: not UTF-8 text"
    except yaml.YAMLError as error:
        return {}, f"{path}: not valid YAML or JSON ({_one_line(str(error))})"
    if content is None:
        return {}, None
    if not isinstance(content, dict):
        return {}, f"{path}: not a mapping of station ids to names"
    return {str(station_id): str(name) for station_id, name in content.items() if name is not None}, None


class StationNames:
    """Station ids to human names; a station without a name is called by its id."""

    def __init__(self, mapping: Mapping[str, str]) -> None:
        self._names = {station_id: name.strip() for station_id, name in mapping.items() if name.strip()}

    def name(self, station_id: str) -> str:
        """The station's human name, or its id when it has none."""
        return self._names.get(station_id, station_id)

    def station_ids(self) -> KeysView[str]:
        """The ids that have a human name (a view: C{in} is a dictionary look-up)."""
        return self._names.keys()

    def label(self, station_id: str) -> str:
        """C{"Human name (CP_1)"}, or just C{"CP_1"} when the station has no name."""
        name = self._names.get(station_id)
        if name is None or name == station_id:
            return station_id
        return f"{name} ({station_id})"


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit] + "..."
