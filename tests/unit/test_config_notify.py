"""The notify section and client_names of the YAML configuration."""

from __future__ import annotations

import os
import sys
from unittest import mock

from twisted.trial.unittest import SynchronousTestCase

from ocppproxy.config.load import load_config
from ocppproxy.config.model import (
    AppriseSettings,
    ConfigError,
    EmailSettings,
    NotifyConfig,
    PushoverSettings,
    SmtpSettings,
    WebhookSettings,
)
from ocppproxy.config.parse import config_from_mapping
from ocppproxy.notify.keys import EVENT_KEYS

PRIMARY = "ws://csms.example.com/ocpp/"
PASSWORD = "Sm7p-pa55-W0rd"
USER_KEY = "uQiRzpo4DXghDmr9QzzfQu27cmVRsG"
APP_TOKEN = "azGDORePK8gMaC0QOYAMyEEuzJnyUi"
SECRETS = (PASSWORD, USER_KEY, APP_TOKEN)


def smtp(**changes):
    section = {"host": "smtp.example.com", "username": "alerts", "password": PASSWORD}
    section.update(changes)
    return {key: value for key, value in section.items() if value is not None}


def email(**changes):
    section = {"from": "alerts@example.com", "to": ["ops@example.com"], "smtp": smtp()}
    section.update(changes)
    return {key: value for key, value in section.items() if value is not None}


def pushover(**changes):
    section = {"user_key": USER_KEY, "app_token": APP_TOKEN}
    section.update(changes)
    return {key: value for key, value in section.items() if value is not None}


def notify_config(notify, base_dir: str = ".") -> NotifyConfig:
    return config_from_mapping({"primary_url": PRIMARY, "notify": notify}, base_dir).notify


def notify_error(notify) -> ConfigError:
    try:
        notify_config(notify)
    except ConfigError as error:
        return error
    raise AssertionError("no ConfigError raised")


class ClientNamesTests(SynchronousTestCase):
    """client_names: a path relative to the configuration file, never fatal."""

    def test_absent(self):
        """Without client_names, Config.client_names is None."""
        self.assertIsNone(config_from_mapping({"primary_url": PRIMARY}).client_names)

    def test_relative_to_base_dir(self):
        """A relative path is taken from the configuration file's directory and made absolute."""
        config = config_from_mapping({"primary_url": PRIMARY, "client_names": "names.yaml"}, "/etc/ocppproxy")
        self.assertEqual(config.client_names, "/etc/ocppproxy/names.yaml")

    def test_relative_base_dir_made_absolute(self):
        """Even with a relative base directory the stored path is absolute."""
        config = config_from_mapping({"primary_url": PRIMARY, "client_names": "names.yaml"}, "etc")
        self.assertEqual(config.client_names, os.path.abspath("etc/names.yaml"))

    def test_absolute_path_kept(self):
        """An absolute path is kept as is."""
        config = config_from_mapping({"primary_url": PRIMARY, "client_names": "/srv/names.json"}, "/etc/ocppproxy")
        self.assertEqual(config.client_names, "/srv/names.json")

    def test_missing_file_is_not_an_error(self):
        """A names file that does not exist is accepted: the notifier warns and uses raw ids."""
        directory = self.mktemp()
        os.makedirs(directory)
        config = config_from_mapping({"primary_url": PRIMARY, "client_names": "nowhere.yaml"}, directory)
        self.assertEqual(config.client_names, os.path.abspath(os.path.join(directory, "nowhere.yaml")))

    def test_not_a_string(self):
        """A client_names that is not a string is a config error naming client_names."""
        error = self.assertRaises(ConfigError, config_from_mapping, {"primary_url": PRIMARY, "client_names": 3})
        self.assertEqual(error.key, "client_names")

    def test_load_config_resolves_from_the_file(self):
        """load_config resolves client_names from the configuration file's own directory."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        path = os.path.join(directory, "ocppproxy.yaml")
        with open(path, "w") as out:
            out.write(f"primary_url: {PRIMARY}\nclient_names: names.yaml\n")
        self.assertEqual(load_config(path).client_names, os.path.join(directory, "names.yaml"))


class NotifySectionTests(SynchronousTestCase):
    """The notify section's own settings."""

    def test_absent_is_all_defaults(self):
        """Without notify, the notifier has its defaults: no event, no channel, no problem."""
        self.assertEqual(config_from_mapping({"primary_url": PRIMARY}).notify, NotifyConfig())

    def test_empty_is_all_defaults(self):
        """An empty notify section (YAML null) is the same as none."""
        self.assertEqual(notify_config(None), NotifyConfig())

    def test_defaults(self):
        """
        flap_window 30, upstream_down_after 120, queue_limit 100, max_attempts 5, retry_delay 10, flush_timeout 5,
        delivery_timeout 30.
        """
        settings = notify_config({})
        self.assertEqual(
            (
                settings.events,
                settings.log,
                settings.email,
                settings.pushover,
                settings.channel_problems,
                settings.flap_window,
                settings.upstream_down_after,
                settings.queue_limit,
                settings.max_attempts,
                settings.retry_delay,
                settings.flush_timeout,
                settings.delivery_timeout,
            ),
            (frozenset(), False, None, None, (), 30.0, 120.0, 100, 5, 10.0, 5.0, 30.0),
        )

    def test_settings_are_read(self):
        """Every setting given is taken."""
        settings = notify_config(
            {
                "log": True,
                "flap_window": 0,
                "upstream_down_after": 45.5,
                "queue_limit": 7,
                "max_attempts": 1,
                "retry_delay": 0.5,
                "flush_timeout": 0,
                "delivery_timeout": 2.5,
            }
        )
        self.assertEqual(
            (
                settings.log,
                settings.flap_window,
                settings.upstream_down_after,
                settings.queue_limit,
                settings.max_attempts,
                settings.retry_delay,
                settings.flush_timeout,
                settings.delivery_timeout,
            ),
            (True, 0, 45.5, 7, 1, 0.5, 0, 2.5),
        )

    def test_not_a_mapping(self):
        """A notify that is not a mapping is a config error naming notify."""
        self.assertEqual(notify_error(["email"]).key, "notify")

    def test_unknown_key(self):
        """An unknown key inside notify is a config error naming notify.<key>."""
        self.assertEqual(notify_error({"flapwindow": 3}).key, "notify.flapwindow")

    def test_log_must_be_boolean(self):
        """notify.log must be true or false."""
        self.assertEqual(notify_error({"log": "yes please"}).key, "notify.log")

    def test_flap_window_not_negative(self):
        """flap_window may be 0 but not negative."""
        self.assertEqual(notify_error({"flap_window": -1}).key, "notify.flap_window")

    def test_upstream_down_after_above_zero(self):
        """upstream_down_after must be more than 0 seconds."""
        self.assertEqual(notify_error({"upstream_down_after": 0}).key, "notify.upstream_down_after")

    def test_queue_limit_at_least_one(self):
        """queue_limit must be at least 1."""
        self.assertEqual(notify_error({"queue_limit": 0}).key, "notify.queue_limit")

    def test_queue_limit_whole(self):
        """queue_limit must be a whole number."""
        self.assertEqual(notify_error({"queue_limit": 2.5}).key, "notify.queue_limit")

    def test_max_attempts_at_least_one(self):
        """max_attempts must be at least 1."""
        self.assertEqual(notify_error({"max_attempts": 0}).key, "notify.max_attempts")

    def test_max_attempts_whole(self):
        """max_attempts must be a whole number."""
        self.assertEqual(notify_error({"max_attempts": 1.5}).key, "notify.max_attempts")

    def test_retry_delay_not_negative(self):
        """retry_delay may be 0 but not negative."""
        self.assertEqual(notify_error({"retry_delay": -0.1}).key, "notify.retry_delay")

    def test_flush_timeout_not_negative(self):
        """flush_timeout may be 0 but not negative."""
        self.assertEqual(notify_error({"flush_timeout": -5}).key, "notify.flush_timeout")

    def test_delivery_timeout_above_zero(self):
        """delivery_timeout must be more than 0 seconds: an attempt with no time at all could never succeed."""
        self.assertEqual(
            str(notify_error({"delivery_timeout": 0})), "notify.delivery_timeout: must be a number of seconds above 0"
        )

    def test_attempt_deadline_is_the_channels_own_timeout_or_delivery_timeout(self):
        """A channel's timeout, where the file sets one, is its deadline; otherwise notify.delivery_timeout."""
        own = notify_config(
            {
                "delivery_timeout": 12,
                "email": email(smtp=smtp(timeout=4)),
                "webhook": {"url": "https://hooks.example.com/a", "timeout": 5},
                "apprise": {"urls": ["json://127.0.0.1:1/a", "json://127.0.0.1:1/b"], "timeout": 6},
            }
        )
        channels = ("email", "webhook", "apprise[0]", "apprise[1]", "pushover")
        self.assertEqual([own.attempt_deadline(name) for name in channels], [4.0, 5.0, 6.0, 6.0, 12.0])
        unset = notify_config(
            {
                "delivery_timeout": 12,
                "email": email(),
                "webhook": {"url": "https://hooks.example.com/a"},
                "apprise": {"urls": ["json://127.0.0.1:1/a"]},
            }
        )
        self.assertEqual((unset.email.smtp.timeout, unset.webhook.timeout, unset.apprise.timeout), (None, None, None))
        self.assertEqual([unset.attempt_deadline(name) for name in channels[:3]], [12.0, 12.0, 12.0])
        self.assertEqual(notify_config({}).attempt_deadline("webhook"), 30.0)

    def test_booleans_are_not_numbers(self):
        """true is not taken for 1 in a number setting."""
        self.assertEqual(notify_error({"queue_limit": True}).key, "notify.queue_limit")

    def test_number_as_text(self):
        """A number written as text is a config error."""
        self.assertEqual(notify_error({"flap_window": "30"}).key, "notify.flap_window")


class EventsTests(SynchronousTestCase):
    """notify.events: which event keys are switched on."""

    def test_enabled_keys(self):
        """NotifyConfig.events holds exactly the keys set to true."""
        settings = notify_config({"events": {"cp_status_faulted": True, "con_status_charging": False}})
        self.assertEqual(settings.events, frozenset({"cp_status_faulted"}))

    def test_every_key_accepted(self):
        """Every key of EVENT_KEYS can be switched on."""
        settings = notify_config({"events": dict.fromkeys(EVENT_KEYS, True)})
        self.assertEqual(settings.events, frozenset(EVENT_KEYS))

    def test_empty(self):
        """An empty events section switches nothing on."""
        self.assertEqual(notify_config({"events": None}).events, frozenset())

    def test_unknown_key(self):
        """An unknown event key is a config error naming notify.events.<key>."""
        error = notify_error({"events": {"cp_status_exploded": True}})
        self.assertEqual(error.key, "notify.events.cp_status_exploded")

    def test_unknown_key_suggestion(self):
        """A near miss is answered with the key meant."""
        error = notify_error({"events": {"con_status_faulty": True}})
        self.assertIn("did you mean con_status_faulted?", error.reason)

    def test_node_name_is_unknown_in_yaml(self):
        """The Node tool's camelCase names are not event keys of the YAML file."""
        error = notify_error({"events": {"cpStatusFaulted": True}})
        self.assertEqual(error.key, "notify.events.cpStatusFaulted")

    def test_value_must_be_boolean(self):
        """An event's value must be true or false, not 1 or a string."""
        for value in (1, "true", None):
            error = notify_error({"events": {"cp_status_faulted": value}})
            self.assertEqual(error.key, "notify.events.cp_status_faulted")

    def test_not_a_mapping(self):
        """events given as a list is a config error naming notify.events."""
        self.assertEqual(notify_error({"events": ["cp_status_faulted"]}).key, "notify.events")


class EmailTests(SynchronousTestCase):
    """notify.email and its smtp server."""

    def problems(self, section):
        settings = notify_config({"email": section})
        self.assertIsNone(settings.email)
        return settings.channel_problems

    def assertProblem(self, section, text):
        self.assertEqual(self.problems(section), (("email", text),))

    def test_full(self):
        """Every key is read into EmailSettings and SmtpSettings."""
        settings = notify_config(
            {
                "email": {
                    "from": "OCPP alerts <alerts@example.com>",
                    "to": ["ops@example.com", "oncall@example.com"],
                    "smtp": smtp(port=2525, tls="ssl", timeout=12.5),
                }
            }
        )
        self.assertEqual(
            settings.email,
            EmailSettings(
                sender="OCPP alerts <alerts@example.com>",
                recipients=("ops@example.com", "oncall@example.com"),
                smtp=SmtpSettings(
                    host="smtp.example.com", port=2525, tls="ssl", username="alerts", password=PASSWORD, timeout=12.5
                ),
            ),
        )
        self.assertEqual(settings.channel_problems, ())

    def test_one_recipient_as_string(self):
        """to may be a single address."""
        self.assertEqual(notify_config({"email": email(to="ops@example.com")}).email.recipients, ("ops@example.com",))

    def test_tls_defaults_to_starttls(self):
        """Without tls, STARTTLS on port 587."""
        server = notify_config({"email": email()}).email.smtp
        self.assertEqual((server.tls, server.port), ("starttls", 587))

    def test_default_port_follows_tls(self):
        """Without a port: 587 for starttls, 465 for ssl, 25 for none."""
        ports = {
            tls: notify_config({"email": email(smtp=smtp(tls=tls))}).email.smtp.port
            for tls in ("starttls", "ssl", "none")
        }
        self.assertEqual(ports, {"starttls": 587, "ssl": 465, "none": 25})

    def test_explicit_port(self):
        """A port given wins over the default of its tls mode."""
        self.assertEqual(notify_config({"email": email(smtp=smtp(tls="ssl", port=2465))}).email.smtp.port, 2465)

    def test_no_credentials(self):
        """Without username and password the server is used without AUTH."""
        server = notify_config({"email": email(smtp={"host": "localhost", "tls": "none"})}).email.smtp
        self.assertEqual((server.username, server.password), (None, None))

    def test_timeout_default(self):
        """Without smtp.timeout the e-mail channel's deadline is notify.delivery_timeout (30 seconds)."""
        settings = notify_config({"email": email()})
        self.assertEqual((settings.email.smtp.timeout, settings.attempt_deadline("email")), (None, 30.0))

    def test_ca_file_relative_to_config(self):
        """smtp.ca_file is taken from the configuration file's directory."""
        directory = os.path.abspath(self.mktemp())
        os.makedirs(directory)
        with open(os.path.join(directory, "smtp-ca.pem"), "w") as out:
            out.write("")
        settings = notify_config({"email": email(smtp=smtp(ca_file="smtp-ca.pem"))}, directory)
        self.assertEqual(settings.email.smtp.ca_file, os.path.join(directory, "smtp-ca.pem"))

    def test_null_is_absent(self):
        """An email key with nothing under it is an absent channel, not a problem."""
        settings = notify_config({"email": None})
        self.assertEqual((settings.email, settings.channel_problems), (None, ()))

    def test_not_a_mapping(self):
        """An email section that is not a mapping disables the channel."""
        self.assertProblem("ops@example.com", "notify.email: must be a mapping, got a string")

    def test_missing_from(self):
        """A missing from disables the channel."""
        self.assertProblem(email(**{"from": None}), "notify.email.from: is mandatory")

    def test_missing_to(self):
        """A missing to disables the channel."""
        self.assertProblem(email(to=None), "notify.email.to: is mandatory")

    def test_empty_to(self):
        """An empty list of recipients disables the channel."""
        self.assertProblem(email(to=[]), "notify.email.to: must be an address or a list of addresses, got a list")

    def test_recipient_not_a_string(self):
        """A recipient that is not a string disables the channel, naming its position."""
        self.assertProblem(
            email(to=["ops@example.com", 7]), "notify.email.to[1]: must be a non-empty string, got a number"
        )

    def test_not_an_address(self):
        """A sender without @ disables the channel."""
        self.assertProblem(
            email(**{"from": "alerts"}),
            "notify.email.from: is not an e-mail address (user@domain or Name <user@domain>)",
        )

    def test_missing_smtp(self):
        """A missing smtp section disables the channel."""
        self.assertProblem(email(smtp=None), "notify.email.smtp: is mandatory")

    def test_smtp_not_a_mapping(self):
        """An smtp section that is not a mapping disables the channel."""
        self.assertProblem(email(smtp="smtp.example.com"), "notify.email.smtp: must be a mapping, got a string")

    def test_missing_host(self):
        """An smtp section without host disables the channel."""
        self.assertProblem(email(smtp=smtp(host=None)), "notify.email.smtp.host: is mandatory")

    def test_bad_tls(self):
        """A tls other than starttls, ssl or none disables the channel."""
        self.assertProblem(email(smtp=smtp(tls="tls")), "notify.email.smtp.tls: must be one of starttls, ssl, none")

    def test_port_out_of_range(self):
        """A port beyond 65535 disables the channel."""
        self.assertProblem(email(smtp=smtp(port=70000)), "notify.email.smtp.port: must be from 1 to 65535")

    def test_port_as_text(self):
        """A port written as text disables the channel."""
        self.assertProblem(
            email(smtp=smtp(port="587")), "notify.email.smtp.port: must be a whole number from 1 to 65535, got a string"
        )

    def test_username_without_password(self):
        """A username without password disables the channel rather than sending without AUTH."""
        self.assertProblem(
            email(smtp=smtp(password=None)),
            "notify.email.smtp.password: is mandatory when notify.email.smtp.username is set",
        )

    def test_password_without_username(self):
        """A password without username disables the channel."""
        self.assertProblem(
            email(smtp=smtp(username=None)),
            "notify.email.smtp.username: is mandatory when notify.email.smtp.password is set",
        )

    def test_bad_timeout(self):
        """A timeout of 0 disables the channel."""
        self.assertProblem(
            email(smtp=smtp(timeout=0)), "notify.email.smtp.timeout: must be a number of seconds above 0"
        )

    def test_missing_ca_file(self):
        """A ca_file that does not exist disables the channel."""
        directory = os.path.abspath(self.mktemp())
        settings = notify_config({"email": email(smtp=smtp(ca_file="ca.pem"))}, directory)
        self.assertEqual(
            settings.channel_problems,
            (("email", f"notify.email.smtp.ca_file: no such file: {os.path.join(directory, 'ca.pem')}"),),
        )

    def test_unknown_key_in_email(self):
        """An unknown key in the email section disables the channel, naming the key."""
        self.assertProblem(
            email(cc="boss@example.com"), "notify.email.cc: unknown key (expected one of: from, to, smtp)"
        )

    def test_unknown_key_in_smtp(self):
        """An unknown key in the smtp section disables the channel, naming the key."""
        (problem,) = self.problems(email(smtp=smtp(secure=True)))
        self.assertEqual(problem[0], "email")
        self.assertTrue(problem[1].startswith("notify.email.smtp.secure: unknown key"))

    def test_problem_does_not_stop_other_channels(self):
        """A broken e-mail channel leaves Pushover and the events on."""
        settings = notify_config(
            {"events": {"cp_status_faulted": True}, "email": email(smtp=None), "pushover": pushover()}
        )
        self.assertEqual(
            (settings.email, settings.pushover is not None, settings.events),
            (None, True, frozenset({"cp_status_faulted"})),
        )


class PushoverTests(SynchronousTestCase):
    """notify.pushover."""

    def assertProblem(self, section, text):
        settings = notify_config({"pushover": section})
        self.assertEqual((settings.pushover, settings.channel_problems), (None, (("pushover", text),)))

    def test_full(self):
        """Every key is read into PushoverSettings."""
        section = pushover(api_url="http://127.0.0.1:8080/1/messages.json", priority=-2)
        self.assertEqual(
            notify_config({"pushover": section}).pushover,
            PushoverSettings(
                user_key=USER_KEY, app_token=APP_TOKEN, api_url="http://127.0.0.1:8080/1/messages.json", priority=-2
            ),
        )

    def test_defaults(self):
        """The API URL defaults to Pushover's, the priority to 0."""
        settings = notify_config({"pushover": pushover()}).pushover
        self.assertEqual((settings.api_url, settings.priority), ("https://api.pushover.net/1/messages.json", 0))

    def test_priorities(self):
        """Priorities -2 to 2 are accepted."""
        for priority in (-2, -1, 0, 1, 2):
            self.assertEqual(notify_config({"pushover": pushover(priority=priority)}).pushover.priority, priority)

    def test_priority_out_of_range(self):
        """A priority of 3 disables the channel."""
        self.assertProblem(pushover(priority=3), "notify.pushover.priority: must be from -2 to 2")

    def test_priority_not_whole(self):
        """A priority that is not a whole number disables the channel."""
        self.assertProblem(
            pushover(priority=True), "notify.pushover.priority: must be a whole number from -2 to 2, got true/false"
        )

    def test_api_url_must_be_http(self):
        """An api_url that is not http(s) disables the channel."""
        self.assertProblem(
            pushover(api_url="ftp://example.com/"), "notify.pushover.api_url: must be an http:// or https:// URL"
        )

    def test_missing_user_key(self):
        """A missing user_key disables the channel."""
        self.assertProblem(pushover(user_key=None), "notify.pushover.user_key: is mandatory")

    def test_missing_app_token(self):
        """A missing app_token disables the channel."""
        self.assertProblem(pushover(app_token=None), "notify.pushover.app_token: is mandatory")

    def test_placeholder_key(self):
        """With Pushover's own API, a key that is not 30 letters and digits disables the channel."""
        self.assertProblem(
            pushover(user_key="YOUR_USER_KEY"),
            "notify.pushover.user_key: is not a Pushover key (30 letters and digits)",
        )

    def test_relay_keys_not_checked(self):
        """With another api_url (a relay), keys of any form are accepted."""
        section = pushover(user_key="u", app_token="t", api_url="https://relay.example.com/push")
        self.assertEqual(notify_config({"pushover": section}).pushover.user_key, "u")

    def test_unknown_key(self):
        """An unknown key disables the channel, naming the key."""
        self.assertProblem(
            pushover(sound="siren"),
            "notify.pushover.sound: unknown key (expected one of: user_key, app_token, api_url, priority)",
        )

    def test_not_a_mapping(self):
        """A pushover section that is not a mapping disables the channel."""
        self.assertProblem(APP_TOKEN, "notify.pushover: must be a mapping, got a string")


class SecretTests(SynchronousTestCase):
    """No password, token or user key ever appears in an error or a channel problem."""

    def assertNoSecret(self, text):
        for secret in SECRETS:
            self.assertNotIn(secret, text)

    def test_channel_problems(self):
        """Secrets in the wrong place, or beside a mistake, never reach a channel problem."""
        cases = [
            {"email": email(smtp=smtp(password=12345678, username=PASSWORD))},
            {"email": email(to=[PASSWORD])},
            {"email": email(**{"from": PASSWORD})},
            {"email": email(smtp=smtp(tls=PASSWORD))},
            {"email": email(smtp=smtp(port=PASSWORD))},
            {"email": email(smtp=smtp(timeout=PASSWORD))},
            {"email": email(smtp=PASSWORD)},
            {"email": PASSWORD},
            {"email": email(smtp=smtp(host=None))},
            {"pushover": pushover(priority=APP_TOKEN)},
            {"pushover": pushover(api_url=USER_KEY)},
            {"pushover": pushover(user_key=PASSWORD)},
            {"pushover": pushover(app_token=PASSWORD)},
            {"pushover": pushover(sound=APP_TOKEN)},
            {"pushover": USER_KEY},
        ]
        for notify in cases:
            settings = notify_config(notify)
            self.assertNotEqual(settings.channel_problems, ())
            for _, problem in settings.channel_problems:
                self.assertNoSecret(problem)

    def test_config_errors(self):
        """Secrets in the wrong place never reach a ConfigError."""
        cases = [
            {"events": {"cp_status_faulted": PASSWORD}},
            {"events": PASSWORD},
            {"log": APP_TOKEN},
            {"flap_window": USER_KEY},
            {"email": email(), "pushover": pushover(), "bogus": True},
        ]
        for notify in cases:
            self.assertNoSecret(str(notify_error(notify)))
        self.assertNoSecret(str(notify_error(USER_KEY)))

    def test_repr(self):
        """The repr of a whole Config (as a debugger or a log line would show it) holds no secret."""
        self.assertNoSecret(
            repr(config_from_mapping({"primary_url": PRIMARY, "notify": {"email": email(), "pushover": pushover()}}))
        )


HOOK_TOKEN = "Bearer whk-6f1c0b7e9a2d4c55"
HOOK_URL = "https://hooks.example.com/services/T0123/xoxb-secret-path"
TELEGRAM = "tgram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw/-100987654"


class WebhookTests(SynchronousTestCase):
    """notify.webhook."""

    def assertProblem(self, section, text):
        settings = notify_config({"webhook": section})
        self.assertEqual((settings.webhook, settings.channel_problems), (None, (("webhook", text),)))
        self.assertNotIn("xoxb-secret-path", text)
        self.assertNotIn("whk-6f1c0b7e9a2d4c55", text)

    def test_full(self):
        """URL, headers (in their order) and timeout are read."""
        section = {"url": HOOK_URL, "headers": {"Authorization": HOOK_TOKEN, "X-Team": "ops"}, "timeout": 5}
        self.assertEqual(
            notify_config({"webhook": section}).webhook,
            WebhookSettings(url=HOOK_URL, headers=(("Authorization", HOOK_TOKEN), ("X-Team", "ops")), timeout=5.0),
        )

    def test_defaults(self):
        """No headers, 30 s per request."""
        self.assertEqual(notify_config({"webhook": {"url": HOOK_URL}}).webhook, WebhookSettings(url=HOOK_URL))

    def test_url_mandatory_and_http(self):
        """The URL is mandatory and must be http:// or https://, and is not quoted back."""
        self.assertProblem({}, "notify.webhook.url: is mandatory")
        self.assertProblem(
            {"url": "ftp://hooks.example.com/xoxb-secret-path"},
            "notify.webhook.url: must be an http:// or https:// URL",
        )

    def test_headers(self):
        """Headers must be a mapping of header names to one-line texts."""
        self.assertProblem(
            {"url": HOOK_URL, "headers": [HOOK_TOKEN]},
            "notify.webhook.headers: must be a mapping of header names to values, got a list",
        )
        self.assertProblem(
            {"url": HOOK_URL, "headers": {"Bad Name": "x"}},
            "notify.webhook.headers: has a name that is not an HTTP header name",
        )
        self.assertProblem(
            {"url": HOOK_URL, "headers": {"Authorization": HOOK_TOKEN + "\r\nX-Evil: 1"}},
            "notify.webhook.headers.Authorization: must be one line",
        )

    def test_timeout_above_zero(self):
        self.assertProblem(
            {"url": HOOK_URL, "timeout": 0}, "notify.webhook.timeout: must be a number of seconds above 0"
        )

    def test_unknown_key(self):
        self.assertProblem(
            {"url": HOOK_URL, "method": "PUT"},
            "notify.webhook.method: unknown key (expected one of: url, headers, timeout)",
        )

    def test_repr_holds_no_secret(self):
        """Neither the URL nor the header values appear in the settings' repr."""
        text = repr(notify_config({"webhook": {"url": HOOK_URL, "headers": {"Authorization": HOOK_TOKEN}}}))
        self.assertNotIn("xoxb-secret-path", text)
        self.assertNotIn("whk-6f1c0b7e9a2d4c55", text)


class AppriseTests(SynchronousTestCase):
    """notify.apprise."""

    def assertProblem(self, section, text):
        settings = notify_config({"apprise": section})
        self.assertEqual((settings.apprise, settings.channel_problems), (None, (("apprise", text),)))
        self.assertNotIn("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", text)

    def test_full(self):
        """One URL or a list, and the timeout, are read."""
        section = {"urls": [TELEGRAM, "ntfy://ntfy.sh/ocpp-alerts"], "timeout": 12}
        self.assertEqual(
            notify_config({"apprise": section}).apprise,
            AppriseSettings(urls=(TELEGRAM, "ntfy://ntfy.sh/ocpp-alerts"), timeout=12.0),
        )
        self.assertEqual(notify_config({"apprise": {"urls": TELEGRAM}}).apprise, AppriseSettings(urls=(TELEGRAM,)))

    def test_urls_mandatory(self):
        self.assertProblem({}, "notify.apprise.urls: is mandatory")
        self.assertProblem({"urls": []}, "notify.apprise.urls: must be an Apprise URL or a list of them, got a list")

    def test_url_apprise_does_not_accept(self):
        """A URL Apprise refuses (unknown scheme, a token missing) is named by its position only."""
        self.assertProblem(
            {"urls": [TELEGRAM, "tgram://AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"]},
            "notify.apprise.urls[1]: is not a URL Apprise accepts (unknown scheme or missing part)",
        )
        self.assertProblem(
            {"urls": ["nosuchservice://AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw"]},
            "notify.apprise.urls[0]: is not a URL Apprise accepts (unknown scheme or missing part)",
        )

    def test_missing_library_stops_start_up(self):
        """Without the apprise library, asking for it is a configuration error naming the key and the pip extra."""
        with mock.patch.dict(sys.modules, {"apprise": None}):
            error = notify_error({"apprise": {"urls": [TELEGRAM]}})
        self.assertEqual(str(error), "notify.apprise: needs the apprise library: pip install 'ocppproxy[apprise]'")

    def test_missing_library_is_no_matter_without_apprise(self):
        """The other channels do not need the library."""
        with mock.patch.dict(sys.modules, {"apprise": None}):
            self.assertEqual(notify_config({"webhook": {"url": HOOK_URL}}).channel_problems, ())

    def test_repr_holds_no_token(self):
        self.assertNotIn("AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw", repr(notify_config({"apprise": {"urls": [TELEGRAM]}})))
