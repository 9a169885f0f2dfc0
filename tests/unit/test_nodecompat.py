"""The Node tool's config.json (OCPP-Proxy-Alert), read unchanged."""

from __future__ import annotations

import copy
import json
import os

from twisted.internet.endpoints import serverFromString
from twisted.internet.protocol import Factory
from twisted.internet.testing import MemoryReactor
from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.load import load_config
from ocppproxy.config.model import Config, ConfigError, EmailSettings, PushoverSettings, SmtpSettings
from ocppproxy.config.nodecompat import (
    NODE_EVENTS,
    WELL_KNOWN_SERVICES,
    config_from_node,
    is_node_config,
    node_event_name,
    translate_node_config,
    well_known_service,
)
from ocppproxy.notify.keys import EVENT_KEYS

EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))), "etc", "node-config.example.json")
PASSWORD = "Sm7p-pa55-W0rd"
USER_KEY = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
APP_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
SECRETS = (PASSWORD, USER_KEY, APP_TOKEN)

# The Node tool's 18 event names and the keys they stand for.
NODE_TOOL_EVENTS = {
    "connectedToProxy": "connected_to_proxy",
    "disconnectedFromProxy": "disconnected_from_proxy",
    "connectedToUpstream": "connected_to_upstream",
    "disconnectedFromUpstream": "disconnected_from_upstream",
    "cpStatusAvailable": "cp_status_available",
    "cpStatusUnavailable": "cp_status_unavailable",
    "cpStatusFaulted": "cp_status_faulted",
    "conStatusAvailable": "con_status_available",
    "conStatusPreparing": "con_status_preparing",
    "conStatusCharging": "con_status_charging",
    "conStatusSuspendedEVSE": "con_status_suspended_evse",
    "conStatusSuspendedEV": "con_status_suspended_ev",
    "conStatusFinishing": "con_status_finishing",
    "conStatusReserved": "con_status_reserved",
    "conStatusUnavailable": "con_status_unavailable",
    "conStatusFaulted": "con_status_faulted",
    "conStartTransaction": "con_start_transaction",
    "conStopTransaction": "con_stop_transaction",
}

# Host, port and tls mode of the services every Node user may rely on.
SERVICES = {
    "Gmail": ("smtp.gmail.com", 465, "ssl"),
    "Outlook365": ("smtp.office365.com", 587, "starttls"),
    "Yahoo": ("smtp.mail.yahoo.com", 465, "ssl"),
    "Zoho": ("smtp.zoho.com", 465, "ssl"),
    "SendGrid": ("smtp.sendgrid.net", 587, "starttls"),
    "Mailgun": ("smtp.mailgun.org", 465, "ssl"),
    "OVH": ("ssl0.ovh.net", 465, "ssl"),
    "Orange": ("smtp.orange.fr", 465, "ssl"),
}


def node(**changes):
    """A minimal Node tool config, changed by keyword (None removes a key)."""
    raw = {"logLevel": "info", "primaryUrl": "ws://ws1.ocpp.fr/", "proxy": {"host": "0.0.0.0", "port": 9000}}
    raw.update(changes)
    return {key: value for key, value in raw.items() if value is not None}


def transporter(**changes):
    options = {"host": "smtp.example.com", "port": 587, "secure": False, "auth": {"user": "alerts", "pass": PASSWORD}}
    options.update(changes)
    return {key: value for key, value in options.items() if value is not None}


def node_email(**changes):
    section = {"from": "alerts@example.com", "to": "ops@example.com", "transporter": transporter()}
    section.update(changes)
    return {key: value for key, value in section.items() if value is not None}


def node_pushover(**changes):
    section = {"userKey": USER_KEY, "appToken": APP_TOKEN}
    section.update(changes)
    return {key: value for key, value in section.items() if value is not None}


def load(raw, base_dir: str = "/nonexistent") -> Config:
    return config_from_node(raw, base_dir)


def node_error(raw) -> ConfigError:
    try:
        load(raw)
    except ConfigError as error:
        return error
    raise AssertionError("no ConfigError raised")


def smtp_of(options) -> SmtpSettings:
    return load(node(notify={"email": node_email(transporter=options)})).notify.email.smtp


class DetectionTests(SynchronousTestCase):
    """is_node_config tells the Node tool's config from ours."""

    def test_node_keys(self):
        """primaryUrl, proxy or logLevel at the top make a Node tool config."""
        for key in ("primaryUrl", "secondaryUrl", "proxy", "logLevel"):
            self.assertTrue(is_node_config({key: "x"}), key)

    def test_our_keys(self):
        """Our own configuration is not taken for the Node tool's."""
        self.assertFalse(is_node_config({"primary_url": "ws://a/", "notify": {"events": {}}}))

    def test_mixed_keys_are_ours(self):
        """With any of our own keys the file is ours, so a stray Node key is reported as unknown."""
        self.assertFalse(is_node_config({"primary_url": "ws://a/", "logLevel": "info"}))

    def test_json_path(self):
        """A .json file without our keys is the Node tool's, even without its distinctive keys."""
        self.assertEqual(
            (is_node_config({"notify": {}}, "config.json"), is_node_config({"notify": {}}, "config.yaml")),
            (True, False),
        )

    def test_not_a_mapping(self):
        """A document that is not a mapping is not the Node tool's."""
        self.assertFalse(is_node_config(["primaryUrl"]))


class TopLevelTests(SynchronousTestCase):
    """logLevel, primaryUrl, secondaryUrl and proxy."""

    def test_translation_is_our_shape(self):
        """translate_node_config gives the mapping our YAML file would hold."""
        self.assertEqual(
            translate_node_config(node(secondaryUrl="ws://ws2.ocpp.fr/", notify={"cpStatusFaulted": True})),
            {
                "log_level": "info",
                "primary_url": "ws://ws1.ocpp.fr/",
                "secondary_url": "ws://ws2.ocpp.fr/",
                "listen": "tcp:port=9000:interface=0.0.0.0:backlog=1024",
                "notify": {"events": {"cp_status_faulted": True}},
            },
        )

    def test_translation_leaves_input_alone(self):
        """translate_node_config does not change what it is given."""
        raw = node(notify={"email": node_email(), "pushover": node_pushover()})
        before = copy.deepcopy(raw)
        translate_node_config(raw)
        self.assertEqual(raw, before)

    def test_winston_levels(self):
        """winston's levels map to ours; http, verbose and silly become debug."""
        levels = {
            level: load(node(logLevel=level)).log_level
            for level in ("error", "warn", "info", "http", "verbose", "debug", "silly")
        }
        self.assertEqual(
            levels,
            {
                "error": "error",
                "warn": "warn",
                "info": "info",
                "http": "debug",
                "verbose": "debug",
                "debug": "debug",
                "silly": "debug",
            },
        )

    def test_no_log_level(self):
        """Without logLevel (or with an empty one) the level is info, as in the Node tool."""
        self.assertEqual((load(node(logLevel=None)).log_level, load(node(logLevel="")).log_level), ("info", "info"))

    def test_unknown_log_level(self):
        """An unknown logLevel is a config error naming logLevel."""
        self.assertEqual(node_error(node(logLevel="loud")).key, "logLevel")

    def test_urls(self):
        """primaryUrl and secondaryUrl become the upstream URLs, unchanged."""
        config = load(node(primaryUrl="wss://a.example/ocpp/", secondaryUrl="ws://b.example:8080/"))
        self.assertEqual(
            config.upstream_urls(), {"primary": "wss://a.example/ocpp/", "secondary": "ws://b.example:8080/"}
        )

    def test_url_without_trailing_slash_kept(self):
        """A URL without a trailing slash is kept: the station id is appended to it as the Node tool does."""
        self.assertEqual(load(node(primaryUrl="ws://a.example/ocpp")).primary_url, "ws://a.example/ocpp")

    def test_http_urls(self):
        """http:// and https:// (which the Node tool's client accepts) become ws:// and wss://."""
        config = load(node(primaryUrl="http://a.example/", secondaryUrl="HTTPS://b.example/"))
        self.assertEqual((config.primary_url, config.secondary_url), ("ws://a.example/", "wss://b.example/"))

    def test_empty_secondary(self):
        """An empty secondaryUrl means no secondary, as in the Node tool."""
        self.assertIsNone(load(node(secondaryUrl="")).secondary_url)

    def test_missing_primary(self):
        """A missing primaryUrl is a config error naming primaryUrl."""
        self.assertEqual(node_error(node(primaryUrl=None)).key, "primaryUrl")

    def test_invalid_primary_named_in_node_terms(self):
        """Our validation's errors name the Node key."""
        self.assertEqual(node_error(node(primaryUrl="ftp://a.example/")).key, "primaryUrl")

    def test_unknown_top_key(self):
        """An unknown top-level key is a config error naming it."""
        self.assertEqual(node_error(node(primary_url="ws://a/")).key, "primary_url")

    def test_not_an_object(self):
        """A config.json that is not an object is a config error."""
        self.assertRaises(ConfigError, load, ["primaryUrl"])

    def test_listen(self):
        """proxy.host and proxy.port become a tcp: endpoint with a large backlog."""
        self.assertEqual(
            load(node(proxy={"host": "192.0.2.7", "port": 9100})).listen,
            "tcp:port=9100:interface=192.0.2.7:backlog=1024",
        )

    def test_listen_host_default(self):
        """Without proxy.host the proxy listens on every IPv4 interface."""
        self.assertEqual(load(node(proxy={"port": 9000})).listen, "tcp:port=9000:interface=0.0.0.0:backlog=1024")

    def test_listen_port_as_text(self):
        """A port written as text works, as in Node."""
        self.assertEqual(load(node(proxy={"host": "127.0.0.1", "port": "9000"})).listen.split(":")[1], "port=9000")

    def test_no_proxy(self):
        """Without proxy the default listen address is used."""
        self.assertEqual(load(node(proxy=None)).listen, Config(primary_url="ws://a/").listen)

    def test_ipv6_host_escaped(self):
        """An IPv6 host has its colons escaped for the endpoint string."""
        self.assertEqual(
            load(node(proxy={"host": "::", "port": 9000})).listen, r"tcp:port=9000:interface=\:\::backlog=1024"
        )

    def test_ipv6_brackets(self):
        """A bracketed IPv6 host loses its brackets."""
        self.assertEqual(
            load(node(proxy={"host": "[::1]", "port": 9000})).listen, r"tcp:port=9000:interface=\:\:1:backlog=1024"
        )

    def test_ipv6_endpoint_listens_there(self):
        """The escaped endpoint string makes Twisted listen on the IPv6 address itself."""
        reactor = MemoryReactor()
        listen = load(node(proxy={"host": "::", "port": 9000})).listen
        serverFromString(reactor, listen).listen(Factory())
        port, _, backlog, interface = reactor.tcpServers[0]
        self.assertEqual((port, backlog, interface), (9000, 1024, "::"))

    def test_bad_port(self):
        """A port that is no port number is a config error naming proxy.port."""
        for port in (70000, "ninety", True):
            self.assertEqual(node_error(node(proxy={"host": "0.0.0.0", "port": port})).key, "proxy.port")

    def test_unknown_proxy_key(self):
        """An unknown key under proxy is a config error naming it."""
        self.assertEqual(node_error(node(proxy={"host": "0.0.0.0", "port": 9000, "tls": True})).key, "proxy.tls")


class EventTests(SynchronousTestCase):
    """notify.<camelCaseEvent>."""

    def test_every_node_event(self):
        """Each of the Node tool's 18 event names switches on its key."""
        for name, key in NODE_TOOL_EVENTS.items():
            self.assertEqual(load(node(notify={name: True})).notify.events, frozenset({key}), name)

    def test_false_events_off(self):
        """Events set to false stay off."""
        notify = dict.fromkeys(NODE_TOOL_EVENTS, False)
        notify["cpStatusFaulted"] = True
        self.assertEqual(load(node(notify=notify)).notify.events, frozenset({"cp_status_faulted"}))

    def test_every_key_has_a_node_name(self):
        """Our keys beyond the Node tool's have camelCase names too (stationBoot, upstreamDown...)."""
        self.assertEqual({NODE_EVENTS[node_event_name(key)] for key in EVENT_KEYS}, set(EVENT_KEYS))
        self.assertEqual(load(node(notify={"stationBoot": True})).notify.events, frozenset({"station_boot"}))

    def test_unknown_event(self):
        """An unknown Node event name is a config error naming notify.<name>, with the name meant."""
        error = node_error(node(notify={"cpStatusFaulty": True}))
        self.assertEqual(error.key, "notify.cpStatusFaulty")
        self.assertIn("did you mean cpStatusFaulted?", error.reason)

    def test_snake_case_is_unknown(self):
        """Our snake_case keys are not Node event names."""
        self.assertEqual(node_error(node(notify={"cp_status_faulted": True})).key, "notify.cp_status_faulted")

    def test_value_must_be_boolean(self):
        """A value other than true or false is a config error naming the Node key."""
        self.assertEqual(node_error(node(notify={"cpStatusFaulted": "false"})).key, "notify.cpStatusFaulted")

    def test_log_off(self):
        """A Node config does not write alerts to the log."""
        self.assertFalse(load(node(notify={"cpStatusFaulted": True})).notify.log)

    def test_our_settings_in_camel_case(self):
        """Our notify settings are accepted in camelCase, e.g. flapWindow: 0 for the Node tool's immediacy."""
        notify = {
            "log": True,
            "flapWindow": 0,
            "upstreamDownAfter": 60,
            "queueLimit": 10,
            "maxAttempts": 2,
            "retryDelay": 1,
            "flushTimeout": 2,
        }
        settings = load(node(notify=notify)).notify
        self.assertEqual(
            (
                settings.log,
                settings.flap_window,
                settings.upstream_down_after,
                settings.queue_limit,
                settings.max_attempts,
                settings.retry_delay,
                settings.flush_timeout,
            ),
            (True, 0, 60, 10, 2, 1, 2),
        )

    def test_setting_error_in_node_terms(self):
        """A bad camelCase setting is reported under its Node name."""
        self.assertEqual(node_error(node(notify={"flapWindow": -1})).key, "notify.flapWindow")

    def test_no_notify(self):
        """Without notify nothing is switched on."""
        self.assertEqual(load(node(notify=None)).notify.events, frozenset())


class EmailTests(SynchronousTestCase):
    """notify.email: from, to and a Nodemailer transporter."""

    def problems(self, email):
        settings = load(node(notify={"email": email})).notify
        self.assertIsNone(settings.email)
        return settings.channel_problems

    def assertProblem(self, email, text):
        self.assertEqual(self.problems(email), (("email", text),))

    def test_full(self):
        """from, to, host, port, secure and auth become our e-mail settings."""
        settings = load(node(notify={"email": node_email(to="ops@example.com, oncall@example.com")})).notify
        self.assertEqual(
            settings.email,
            EmailSettings(
                sender="alerts@example.com",
                recipients=("ops@example.com, oncall@example.com",),
                smtp=SmtpSettings(
                    host="smtp.example.com", port=587, tls="starttls", username="alerts", password=PASSWORD
                ),
            ),
        )

    def test_recipient_list(self):
        """to as a list gives one recipient each."""
        email = node_email(to=["ops@example.com", "oncall@example.com"])
        self.assertEqual(
            load(node(notify={"email": email})).notify.email.recipients, ("ops@example.com", "oncall@example.com")
        )

    def test_address_objects(self):
        """Nodemailer's {name, address} objects become "Name <address>"."""
        email = node_email(
            **{"from": {"name": "OCPP alerts", "address": "alerts@example.com"}},
            to=[{"name": "Ops", "address": "ops@example.com"}, "oncall@example.com"],
        )
        settings = load(node(notify={"email": email})).notify.email
        self.assertEqual(
            (settings.sender, settings.recipients),
            ("OCPP alerts <alerts@example.com>", ("Ops <ops@example.com>", "oncall@example.com")),
        )

    def test_secure_true_is_implicit_tls(self):
        """secure: true is TLS from the first byte, on port 465 by default."""
        server = smtp_of(transporter(secure=True, port=None))
        self.assertEqual((server.tls, server.port), ("ssl", 465))

    def test_secure_false_is_starttls(self):
        """secure: false is STARTTLS, on port 587 by default."""
        server = smtp_of(transporter(secure=False, port=None))
        self.assertEqual((server.tls, server.port), ("starttls", 587))

    def test_port_465_alone_is_implicit_tls(self):
        """Without secure, port 465 means implicit TLS, as in Nodemailer."""
        self.assertEqual(smtp_of(transporter(secure=None, port=465)).tls, "ssl")

    def test_no_port_no_secure(self):
        """With neither port nor secure, STARTTLS on 587."""
        server = smtp_of(transporter(secure=None, port=None))
        self.assertEqual((server.tls, server.port), ("starttls", 587))

    def test_port_as_text(self):
        """A port written as text works, as in Nodemailer."""
        self.assertEqual(smtp_of(transporter(port="2525")).port, 2525)

    def test_ignore_tls(self):
        """ignoreTLS: true (without secure) sends without TLS."""
        self.assertEqual(smtp_of(transporter(port=25, ignoreTLS=True)).tls, "none")

    def test_no_host_is_localhost(self):
        """Without host or service the server is localhost, as in Nodemailer."""
        self.assertEqual(smtp_of(transporter(host=None)).host, "localhost")

    def test_no_auth(self):
        """Without auth, no AUTH."""
        server = smtp_of(transporter(auth=None))
        self.assertEqual((server.username, server.password), (None, None))

    def test_other_options_ignored(self):
        """Nodemailer options with no meaning here (pool, name, tls...) are ignored."""
        server = smtp_of(transporter(pool=True, name="proxy.example.com", tls={"rejectUnauthorized": True}))
        self.assertEqual(server.host, "smtp.example.com")

    def test_well_known_services(self):
        """Gmail, Outlook365, Yahoo, Zoho, SendGrid, Mailgun, OVH and Orange give their server."""
        for name, expected in SERVICES.items():
            server = smtp_of({"service": name, "auth": {"user": "u", "pass": PASSWORD}})
            self.assertEqual((server.host, server.port, server.tls), expected, name)

    def test_service_table(self):
        """Every service of the table resolves to its own server, whatever the case of its name."""
        for name, service in WELL_KNOWN_SERVICES.items():
            self.assertEqual(well_known_service(name.upper()), service, name)
            self.assertEqual(well_known_service(name.lower()), service, name)

    def test_service_aliases(self):
        """Service aliases and addresses resolve as in Nodemailer."""
        gmail = WELL_KNOWN_SERVICES["Gmail"]
        self.assertEqual(
            [well_known_service(name) for name in ("Google Mail", "googlemail.com", "someone@gmail.com", " gmail ")],
            [gmail] * 4,
        )

    def test_explicit_options_override_service(self):
        """host, port and secure given beside service win over the service's."""
        server = smtp_of({"service": "Gmail", "port": 587, "secure": False})
        self.assertEqual((server.host, server.port, server.tls), ("smtp.gmail.com", 587, "starttls"))

    def test_unknown_service(self):
        """An unknown service disables the channel, naming the Node key."""
        self.assertProblem(
            node_email(transporter={"service": "Pigeon"}),
            "notify.email.transporter.service: not a well-known service ocppproxy knows: give host, port and secure",
        )

    def test_sendmail(self):
        """A sendmail transport disables the channel: only SMTP is supported."""
        self.assertProblem(
            node_email(transporter={"sendmail": True}),
            "notify.email.transporter.sendmail: only SMTP transports are supported",
        )

    def test_connection_url(self):
        """A transporter given as a URL string disables the channel, as the Node tool does."""
        (problem,) = self.problems(node_email(transporter=f"smtps://alerts:{PASSWORD}@smtp.example.com"))
        self.assertTrue(problem[1].startswith("notify.email.transporter: must be an object"))

    def test_oauth2(self):
        """OAuth2 authentication disables the channel."""
        self.assertProblem(
            node_email(transporter=transporter(auth={"type": "OAuth2", "user": "u", "accessToken": PASSWORD})),
            "notify.email.transporter.auth.type: only user and password authentication is supported",
        )

    def test_missing_transporter(self):
        """A missing transporter disables the channel, naming notify.email.transporter."""
        self.assertProblem(node_email(transporter=None), "notify.email.transporter: is mandatory")

    def test_missing_from(self):
        """A missing from disables the channel."""
        self.assertProblem(node_email(**{"from": None}), "notify.email.from: is mandatory")

    def test_missing_pass(self):
        """auth.user without auth.pass disables the channel, naming auth.pass."""
        self.assertProblem(
            node_email(transporter=transporter(auth={"user": "alerts"})),
            "notify.email.transporter.auth.pass: is mandatory when notify.email.transporter.auth.user is set",
        )

    def test_bad_secure(self):
        """A secure that is not true or false disables the channel."""
        self.assertProblem(
            node_email(transporter=transporter(secure="yes")), "notify.email.transporter.secure: must be true or false"
        )

    def test_bad_port_named_in_node_terms(self):
        """Our validation's problems name the Node key."""
        self.assertProblem(
            node_email(transporter=transporter(port=0.5)),
            "notify.email.transporter.port: must be a whole number from 1 to 65535, got a number",
        )

    def test_problem_leaves_pushover_on(self):
        """A broken e-mail channel leaves Pushover on."""
        settings = load(
            node(notify={"email": node_email(transporter={"service": "Pigeon"}), "pushover": node_pushover()})
        ).notify
        self.assertIsNotNone(settings.pushover)


class PushoverTests(SynchronousTestCase):
    """notify.pushover: userKey and appToken."""

    def test_keys(self):
        """userKey and appToken become the Pushover settings, with Pushover's API."""
        self.assertEqual(
            load(node(notify={"pushover": node_pushover()})).notify.pushover,
            PushoverSettings(user_key=USER_KEY, app_token=APP_TOKEN),
        )

    def test_our_settings_in_camel_case(self):
        """apiUrl and priority may be added."""
        pushover = node_pushover(apiUrl="http://127.0.0.1:8080/1/messages.json", priority=1)
        settings = load(node(notify={"pushover": pushover})).notify.pushover
        self.assertEqual((settings.api_url, settings.priority), ("http://127.0.0.1:8080/1/messages.json", 1))

    def test_other_keys_ignored(self):
        """Keys the Node tool ignores are ignored."""
        self.assertIsNotNone(load(node(notify={"pushover": node_pushover(sound="siren")})).notify.pushover)

    def test_placeholder(self):
        """The Node README's placeholders disable the channel, naming the Node key."""
        settings = load(node(notify={"pushover": node_pushover(userKey="YOUR_USER_KEY")})).notify
        self.assertEqual(
            (settings.pushover, settings.channel_problems),
            (None, (("pushover", "notify.pushover.userKey: is not a Pushover key (30 letters and digits)"),)),
        )

    def test_missing_token(self):
        """A missing appToken disables the channel, naming appToken."""
        settings = load(node(notify={"pushover": node_pushover(appToken=None)})).notify
        self.assertEqual(settings.channel_problems, (("pushover", "notify.pushover.appToken: is mandatory"),))


class SecretTests(SynchronousTestCase):
    """No password, token or user key appears in an error or a channel problem of a Node config."""

    def assertNoSecret(self, text):
        for secret in SECRETS:
            self.assertNotIn(secret, text)

    def test_channel_problems(self):
        """Misconfigured channels around secrets report without them."""
        cases = [
            {"email": node_email(transporter={"service": "Pigeon", "auth": {"user": "u", "pass": PASSWORD}})},
            {"email": node_email(transporter=f"smtp://u:{PASSWORD}@host")},
            {"email": node_email(transporter=transporter(auth={"user": "u", "pass": 1234}))},
            {"email": node_email(transporter=transporter(auth={"type": PASSWORD}))},
            {"email": node_email(transporter=transporter(secure=PASSWORD))},
            {"email": node_email(transporter=transporter(port=PASSWORD))},
            {"email": node_email(to=PASSWORD)},
            {"pushover": node_pushover(userKey=APP_TOKEN + "x")},
            {"pushover": node_pushover(appToken=PASSWORD)},
            {"pushover": node_pushover(priority=USER_KEY)},
            {"pushover": APP_TOKEN},
        ]
        for notify in cases:
            settings = load(node(notify=notify)).notify
            self.assertNotEqual(settings.channel_problems, ())
            for _, problem in settings.channel_problems:
                self.assertNoSecret(problem)

    def test_config_errors(self):
        """Fatal errors beside secrets, or with secrets in the wrong place, report without them."""
        channels = {"email": node_email(), "pushover": node_pushover()}
        cases = [
            node(notify={**channels, "cpStatusFaulted": APP_TOKEN}),
            node(notify={**channels, "flapWindow": USER_KEY}),
            node(notify={**channels, "bogus": True}),
            node(logLevel=PASSWORD, notify=channels),
            node(proxy={"host": "::", "port": PASSWORD}),
            node(notify=PASSWORD),
        ]
        for raw in cases:
            self.assertNoSecret(str(node_error(raw)))


class LoadConfigTests(SynchronousTestCase):
    """load_config reads the Node tool's files as they are."""

    def write(self, name: str, content) -> str:
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as out:
            out.write(content if isinstance(content, str) else json.dumps(content))
        return path

    def test_example_loads_unchanged(self):
        """etc/node-config.example.json, a complete Node tool config.json, loads with no problem."""
        config = load_config(EXAMPLE)
        self.assertEqual(
            (config.primary_url, config.secondary_url, config.listen, config.log_level),
            (
                "ws://csms1.example.com/ocpp/",
                "ws://csms2.example.com/ocpp/",
                "tcp:port=9000:interface=0.0.0.0:backlog=1024",
                "info",
            ),
        )
        with open(EXAMPLE, encoding="utf-8") as example:
            notify = json.load(example)["notify"]
        enabled = {NODE_TOOL_EVENTS[name] for name, on in notify.items() if name in NODE_TOOL_EVENTS and on}
        self.assertEqual(config.notify.events, frozenset(enabled))
        self.assertEqual(config.notify.channel_problems, ())
        self.assertEqual(
            (config.notify.email.smtp.host, config.notify.email.smtp.tls, config.notify.pushover.user_key),
            ("smtp.example.com", "starttls", USER_KEY),
        )

    def test_example_has_every_node_key(self):
        """The example shows every key of the Node tool's config.json."""
        with open(EXAMPLE, encoding="utf-8") as example:
            raw = json.load(example)
        self.assertEqual(set(raw), {"logLevel", "primaryUrl", "secondaryUrl", "proxy", "notify"})
        self.assertEqual(set(raw["notify"]), set(NODE_TOOL_EVENTS) | {"email", "pushover"})

    def test_docs_example_is_the_example_file(self):
        """The config.json the docs show Node users is etc/node-config.example.json, which loads unchanged."""
        guide = os.path.join(os.path.dirname(os.path.dirname(EXAMPLE)), "docs", "howto", "node.rst")
        with open(guide, encoding="utf-8") as stream:
            text = stream.read()
        section = text[text.index("Coming from the Node tool") :]
        block = section[section.index("::\n\n") + 3 : section.index("\n.. list-table::")]
        with open(EXAMPLE, encoding="utf-8") as example:
            self.assertEqual(json.loads(block), json.load(example))

    def test_json_file_detected(self):
        """A config.json with the Node tool's keys is translated."""
        path = self.write("config.json", node(notify={"cpStatusFaulted": True}))
        self.assertEqual(load_config(path).notify.events, frozenset({"cp_status_faulted"}))

    def test_yaml_file_with_node_keys(self):
        """The Node tool's keys in a YAML file are translated too."""
        path = self.write("config.yaml", "primaryUrl: ws://ws1.ocpp.fr/\nproxy: {host: 0.0.0.0, port: 9000}\n")
        self.assertEqual(load_config(path).primary_url, "ws://ws1.ocpp.fr/")

    def test_json_in_our_format(self):
        """A .json file with our keys is read as ours."""
        path = self.write(
            "ocppproxy.json", {"primary_url": "ws://a.example/", "notify": {"events": {"station_boot": True}}}
        )
        self.assertEqual(load_config(path).notify.events, frozenset({"station_boot"}))

    def test_empty_json_object_is_node(self):
        """An empty .json object is read as the Node tool's, whose primaryUrl is then missing."""
        self.assertEqual(self.assertRaises(ConfigError, load_config, self.write("config.json", {})).key, "primaryUrl")

    def test_invalid_json(self):
        """Invalid JSON is one config error with the line, and no content."""
        path = self.write("config.json", '{\n  "primaryUrl": "ws://a/",\n  "pass": "' + PASSWORD + '"\n  "x": 1\n}\n')
        error = self.assertRaises(ConfigError, load_config, path)
        self.assertIn("is not valid JSON at line 4", str(error))
        self.assertNotIn(PASSWORD, str(error))

    def test_client_names_beside(self):
        """clientIdToHuman.json beside config.json names the stations."""
        path = self.write("config.json", node())
        names = os.path.join(os.path.dirname(path), "clientIdToHuman.json")
        with open(names, "w") as out:
            json.dump({"CP_1": "Depot Nord"}, out)
        self.assertEqual(load_config(path).client_names, names)

    def test_no_client_names(self):
        """Without clientIdToHuman.json, stations are named by their ids."""
        self.assertIsNone(load_config(self.write("config.json", node())).client_names)
