"""The client names file and StationNames."""

from __future__ import annotations

import os

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.notify.names import StationNames, load_client_names


class LoadClientNamesTests(SynchronousTestCase):
    """load_client_names reads YAML or JSON and reports problems instead of raising."""

    def write(self, content: bytes) -> str:
        path = self.mktemp()
        with open(path, "wb") as names_file:
            names_file.write(content)
        return path

    def test_yaml(self):
        """A YAML mapping gives station ids to names."""
        path = self.write('CP_1: Depot Nord\nCP_2: "Hall 2, bay 3"\nCP_3: Gare de l\'Est – quai\n'.encode())
        self.assertEqual(
            load_client_names(path),
            ({"CP_1": "Depot Nord", "CP_2": "Hall 2, bay 3", "CP_3": "Gare de l'Est – quai"}, None),
        )

    def test_json(self):
        """The Node tool's clientIdToHuman.json is read as is."""
        path = self.write(b'{"CP_1": "Depot Nord", "CP_2": "Hall 2"}')
        self.assertEqual(load_client_names(path), ({"CP_1": "Depot Nord", "CP_2": "Hall 2"}, None))

    def test_no_path(self):
        """No file configured: no names and no problem."""
        self.assertEqual(load_client_names(None), ({}, None))

    def test_missing(self):
        """A missing file gives no names and a problem naming the file."""
        path = self.mktemp()
        names, problem = load_client_names(path)
        self.assertEqual(names, {})
        self.assertIn(path, problem)
        self.assertIn("no such file", problem)

    def test_invalid(self):
        """A file that is neither YAML nor JSON gives no names and a one-line problem."""
        names, problem = load_client_names(self.write(b'{"CP_1": "Depot Nord",\n  "CP_2": [\n'))
        self.assertEqual(names, {})
        self.assertIn("not valid YAML or JSON", problem)
        self.assertNotIn("\n", problem)

    def test_not_a_mapping(self):
        """A list is not a names file."""
        names, problem = load_client_names(self.write(b"- CP_1\n- CP_2\n"))
        self.assertEqual(names, {})
        self.assertIn("not a mapping", problem)

    def test_not_utf8(self):
        """A file that is not UTF-8 is reported, not raised."""
        names, problem = load_client_names(self.write(b"CP_1: D\xe9p\xf4t\n"))
        self.assertEqual(names, {})
        self.assertIn("not UTF-8", problem)

    def test_unreadable(self):
        """A path that cannot be read (here a directory) is reported, not raised."""
        path = self.mktemp()
        os.mkdir(path)
        names, problem = load_client_names(path)
        self.assertEqual(names, {})
        self.assertIn("cannot be read", problem)

    def test_empty(self):
        """An empty file is an empty mapping, not a problem."""
        self.assertEqual(load_client_names(self.write(b"")), ({}, None))

    def test_non_strings(self):
        """Numbers as ids or names become strings; an id without a name is left out."""
        path = self.write(b"1234: 42\nCP_1:\nCP_2: 3.5\n")
        self.assertEqual(load_client_names(path), ({"1234": "42", "CP_2": "3.5"}, None))


class StationNamesTests(SynchronousTestCase):
    """StationNames names stations, falling back to their ids."""

    def setUp(self):
        self.names = StationNames({"CP_1": "Depot Nord", "CP_2": "  ", "CP_3": "CP_3"})

    def test_name(self):
        """A named station is called by its name."""
        self.assertEqual(self.names.name("CP_1"), "Depot Nord")

    def test_name_fallback(self):
        """A station without a name is called by its id."""
        self.assertEqual(self.names.name("CP_9"), "CP_9")

    def test_blank_name(self):
        """A blank name counts as no name."""
        self.assertEqual(self.names.label("CP_2"), "CP_2")

    def test_label(self):
        """The label gives the name and the id."""
        self.assertEqual(self.names.label("CP_1"), "Depot Nord (CP_1)")

    def test_label_without_name(self):
        """The label of a station without a name is its id alone."""
        self.assertEqual(self.names.label("CP_9"), "CP_9")

    def test_label_name_is_id(self):
        """A name equal to the id is not repeated."""
        self.assertEqual(self.names.label("CP_3"), "CP_3")
