"""python -m ocppproxy.config.convert: the Node tool's config.json as YAML that loads to the same configuration."""

from __future__ import annotations

import io
import json
import os
import shutil

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.convert import convert, main
from ocppproxy.config.load import load_config

TESTS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NODE_TOOL = os.path.join(TESTS, "fixtures", "node-config")
NODE_EXAMPLE = os.path.join(os.path.dirname(TESTS), "etc", "node-config.example.json")


class ConvertTests(SynchronousTestCase):
    def copy(self, *paths: str) -> str:
        """The files at C{paths} copied into a fresh directory; the directory."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        for path in paths:
            shutil.copy(path, directory)
        return directory

    def assertSameConfig(self, json_path: str) -> str:
        """The YAML converted from C{json_path}, written beside it, loads to the JSON file's configuration."""
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main([json_path], out, err), 0, err.getvalue())
        yaml_path = os.path.join(os.path.dirname(json_path), "ocppproxy.yaml")
        with open(yaml_path, "w", encoding="utf-8") as stream:
            stream.write(out.getvalue())
        self.assertEqual(load_config(yaml_path), load_config(json_path))
        return out.getvalue()

    def test_node_tool_config(self):
        """A config.json in the Node tool's format (its clientIdToHuman.json beside it) converts to an equal configuration."""
        directory = self.copy(*(os.path.join(NODE_TOOL, name) for name in ("config.json", "clientIdToHuman.json")))
        text = self.assertSameConfig(os.path.join(directory, "config.json"))
        self.assertIn("primary_url: ws://csms-a.example.com/ocpp/\n", text)
        self.assertIn("client_names: clientIdToHuman.json\n", text)
        config = load_config(os.path.join(directory, "ocppproxy.yaml"))
        self.assertEqual(config.client_names, os.path.join(directory, "clientIdToHuman.json"))

    def test_channels_and_events(self):
        """The example with e-mail, Pushover and events converts to an equal configuration (channels included)."""
        directory = self.copy(NODE_EXAMPLE)
        self.assertSameConfig(os.path.join(directory, os.path.basename(NODE_EXAMPLE)))
        config = load_config(os.path.join(directory, "ocppproxy.yaml"))
        self.assertIsNotNone(config.notify.email)
        self.assertIsNotNone(config.notify.pushover)

    def test_refused_file_is_one_error_line(self):
        """A config.json start-up refuses gives the start-up error line, naming the Node key, and status 2."""
        directory = self.copy()
        path = os.path.join(directory, "config.json")
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"primaryUrl": "ftp://a.example/"}, stream)
        out, err = io.StringIO(), io.StringIO()
        self.assertEqual(main([path], out, err), 2)
        self.assertEqual(out.getvalue(), "")
        self.assertRegex(err.getvalue(), rf"^ocppproxy: configuration error in {path}: primaryUrl: .*\n$")

    def test_untranslatable_transporter_left_out_with_a_warning(self):
        """An e-mail transporter with no translation is left out, as reading the JSON switches it off, and named."""
        directory = self.copy()
        path = os.path.join(directory, "config.json")
        email = {"from": "a@example.com", "to": "b@example.com", "transporter": {"sendmail": True}}
        with open(path, "w", encoding="utf-8") as stream:
            json.dump({"primaryUrl": "ws://a.example/", "notify": {"email": email}}, stream)
        text, problems = convert(path)
        self.assertNotIn("email", text)
        self.assertEqual(len(problems), 1)
        self.assertIn("notify.email.transporter.sendmail", problems[0])
        err = io.StringIO()
        self.assertEqual(main([path], io.StringIO(), err), 0)
        self.assertIn("the channel is left out", err.getvalue())

    def test_our_own_yaml_is_not_converted(self):
        """A file already in ocppproxy's format is refused: there is nothing to convert."""
        directory = self.copy(os.path.join(os.path.dirname(TESTS), "etc", "ocppproxy.yaml"))
        err = io.StringIO()
        self.assertEqual(main([os.path.join(directory, "ocppproxy.yaml")], io.StringIO(), err), 2)
        self.assertIn("is not the Node tool's config.json", err.getvalue())

    def test_usage(self):
        """Without exactly one file, the usage line and status 2."""
        err = io.StringIO()
        self.assertEqual(main([], io.StringIO(), err), 2)
        self.assertIn("usage: python -m ocppproxy.config.convert config.json", err.getvalue())
