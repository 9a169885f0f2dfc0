"""
twistd glue: ``twistd -n ocppproxy -c config.yaml`` parses the options, validates the
configuration and builds the service tree.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Callable

from twisted.application.service import IService
from twisted.python import usage

from ..api.build import ApiParts
from ..status.tokens import TokenGate
from ..config.load import load_config
from ..config.model import Config, ConfigError
from ..core.api_auth import Tokens
from ..core.observer import FrameObserver, ProxyObserver
from ..core.redact import Redactor
from ..core.routes import Route
from ..fastpath import FastPath, check_at_start_up
from ..logs import filter_twistd_observers, proxy_logger, set_log_level
from ..notify.channels import build_channels, load_station_names
from ..notify.service import NotifierService
from ..notify.sharing import AlertSharing
from ..relay.observers import Observers
from ..relay.outbox_service import OutboxService
from ..relay.proxy import ProxyService
from ..relay.registry import StationSessions, close_replaced
from ..relay.service_tree import ServiceTree
from ..status.activity import StationActivity
from ..status.alerts import RecentAlerts
from ..status.service import StatusService
from ..wire.slots import share_tcp_attribute_keys
from ..wire.tls_files import TLSFiles, read_tls_files
from .certificate_watch import CertificateWatch
from .collector import CollectorPolicy, CollectorService
from .reload import Reloader
from .systemd import SystemdService
from .trafficlog import TrafficLog

_log = proxy_logger(__name__)


class Options(usage.Options):
    """Command line of the ocppproxy plugin."""

    optParameters = [
        ["config", "c", "/etc/ocppproxy/ocppproxy.yaml", "Path to the YAML configuration file."],
    ]

    def postOptions(self) -> None:
        # twistd prints its whole usage text for a UsageError; a config error deserves one line.
        try:
            self["parsed_config"] = load_config(self["config"])
            # The certificates are read now: a bad file (or an expired certificate) stops
            # start-up with one line. (No reactor yet: the wall clock says what now is.)
            self["tls"] = read_tls_files(self["parsed_config"], time.time())
        except ConfigError as error:
            sys.stderr.write(f"ocppproxy: configuration error in {self['config']}: {error}\n")
            raise SystemExit(2) from None


def install_shutdown_signals(reactor) -> None:
    """
    SIGTERM and SIGINT drain the stations and exit 0 (twistd's own handler would
    re-raise the signal).
    """

    def stop(signum, frame) -> None:
        _log.info("received {signal}, shutting down", signal=signal.Signals(signum).name)
        reactor.callFromThread(_stop_once, reactor)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def install_reload_signal(reactor, reload: Callable[[], object]) -> None:
    """
    SIGHUP calls C{reload} in the reactor thread (it returns at once: see
    L{Reloader.reload}, whose blocking work runs in a thread). The reactor leaves
    SIGHUP alone, so this is installed before it runs: a reload sent as soon as the
    daemon listens (and told systemd it is ready) is then applied, never fatal.
    """

    def hangup(signum, frame) -> None:
        reactor.callFromThread(reload)

    signal.signal(signal.SIGHUP, hangup)


def _stop_once(reactor) -> None:
    if reactor.running:
        reactor.stop()


def makeService(options: Options, reactor=None) -> IService:
    """
    The service tree of L{build_services} plus the systemd notifications (stopped first),
    SIGHUP reloading, and our shutdown signal handlers once the reactor runs. The fast
    path is decided here, once (see L{ocppproxy.fastpath}), and handed to the tree.
    """
    if reactor is None:
        from twisted.internet import reactor
    config: Config = options["parsed_config"]
    set_log_level(config.log_level)
    fast_path = check_at_start_up()  # None (with one warning naming what is missing): the stock paths
    if fast_path is not None:
        fast_path.install_poll(reactor)
    top = build_services(config, reactor, TLSFiles(options["tls"]), fast_path)
    proxy, notifier = top.getServiceNamed("proxy"), top.getServiceNamed("notifier")
    # Before any connection: each then keeps its attributes without a dictionary of its own.
    share_tcp_attribute_keys()
    # The stations' objects out of the garbage collector's automatic full collections.
    CollectorService(CollectorPolicy(reactor), reactor).setServiceParent(top)
    SystemdService(proxy.listening, reactor).setServiceParent(top)
    watch = top.namedServices.get("certificates")
    checked = watch.check if watch is not None else None
    reloader = Reloader(
        options["config"], config, notifier, reactor, tls=proxy.tls, tls_swapped=checked, reroute=proxy.reroute
    )
    install_reload_signal(reactor, reloader.reload)
    reactor.callWhenRunning(install_shutdown_signals, reactor)
    reactor.callWhenRunning(filter_twisted_lines)
    return top


def filter_twisted_lines() -> None:
    """
    C{log_level} for Twisted's and Autobahn's own lines too, once twistd's observers are
    attached (they are when the reactor runs); one warning if that cannot be done.
    """
    if not filter_twistd_observers():
        _log.warn("log_level cannot filter Twisted's own log lines with this Twisted release; they are all shown")


def build_services(
    config: Config, reactor, tls: TLSFiles | None = None, fast_path: FastPath | None = None
) -> ServiceTree:
    """
    A L{ServiceTree} (a MultiService that reports a child's failure to stop) with the
    named services C{notifier}, C{traffic_log} and C{status} (when configured),
    C{cluster} (cluster mode), C{proxy} and C{certificates} (the expiry watch, with station_tls
    or a wss:// upstream), started in that order. Each service gets what it talks to in
    its constructor; nothing is set on one after it is built. The proxy's observers (the
    notifier, the status page's activity, the traffic log) are isolated from each other
    (see L{Observers}). C{tls} holds the TLS files read at start-up; without it the proxy
    reads them. C{fast_path} goes to the proxy (None: the stock Autobahn and Twisted paths).
    """
    top = ServiceTree()
    # One masker of secrets for every place a frame or a value from it is shown.
    redactor = Redactor(config.redact)
    cluster = sharing = None
    if config.cluster is not None:
        cluster, sharing = build_cluster(config, reactor)
    # The proxy's sessions, built first: the notifier counts their open links.
    sessions = StationSessions()
    alerts = RecentAlerts(reactor) if config.status_listen else None
    notifier = build_notifier(
        config,
        reactor,
        redactor,
        sessions.connected_links,
        alerts,
        sharing,
        stations_of=sessions.stations_of,
        route_of=sessions.route_of,
    )
    notifier.setServiceParent(top)
    observers: list[ProxyObserver | FrameObserver] = [notifier]
    traffic_log = None
    if config.traffic_log_directory:
        traffic_log = TrafficLog(
            config.traffic_log_directory, reactor, max_pending=config.traffic_log_max_pending, redactor=redactor
        )
        traffic_log.setName("traffic_log")
        traffic_log.setServiceParent(top)
        observers.append(traffic_log)
    api = None
    if config.api is not None and config.api.listen:
        api = ApiParts(config, reactor, redactor)
        api.audit.setServiceParent(top)
        observers.extend((api.trace, api.events))
    activity = None
    if config.status_listen or api is not None:
        activity = StationActivity(
            reactor, redactor, fleet_record=cluster.fleet if cluster is not None else None, route_of=sessions.route_of
        )
        observers.append(activity)
    outbox = None
    if config.outbox is not None and cluster is not None:
        # Cluster mode: the outbox lives in Redis and follows the station (a child of the
        # cluster service: it stops before the Redis connections do).
        outbox = build_cluster_outbox(config, reactor, cluster, sessions.current, lambda: proxy.drains)
        outbox.outbox.on_alert = notifier.outbox_dropped
    elif config.outbox is not None:
        outbox = OutboxService(config.outbox, reactor)
        outbox.outbox.on_alert = notifier.outbox_dropped
        outbox.setName("outbox")
        outbox.setServiceParent(top)
    # Cluster mode with mirrors: their transaction ids are the cluster's.
    share_transactions = cluster.share_transactions if cluster is not None and len(config.named_upstreams) > 1 else None
    proxy = ProxyService(
        config,
        reactor,
        tls,
        Observers(*observers),
        redactor,
        sessions=sessions,
        ownership=cluster,
        share_transactions=share_transactions,
        fast_path=fast_path,
        outbox=outbox.outbox if outbox is not None else None,
    )
    status = None
    if config.status_listen:
        status = StatusService(
            config.status_listen,
            reactor,
            proxy,
            activity,
            notifier,
            traffic_log,
            alerts,
            cluster_fleet=cluster.fleet if cluster is not None else None,
            token_gate=TokenGate(Tokens(config.api.tokens), reactor) if config.status_require_token else None,
        )
        status.setName("status")
        status.setServiceParent(top)
    if api is not None:
        api.service(proxy, sessions, activity, notifier, status).setServiceParent(top)
    if cluster is not None:
        cluster.setServiceParent(top)
    proxy.setName("proxy")
    proxy.setServiceParent(top)
    if config.station_tls is not None or any(url.startswith("wss:") for url in config.upstream_urls().values()):
        watch = CertificateWatch(proxy.tls, notifier, reactor)
        watch.setName("certificates")
        watch.setServiceParent(top)
    return top


def build_cluster(config: Config, reactor):
    """
    Cluster mode: the C{cluster} service (the proxy's ownership hook, and with a secondary
    the keeper of its shared transaction ids) and the notifier's alert sharing through it
    (a child of C{cluster}). Imported only here: txredisapi imports the global reactor.
    """
    from ..cluster.alerts import ClusterAlerts
    from ..cluster.service import ClusterService

    cluster = ClusterService(config.cluster, reactor, close_replaced)
    cluster.setName("cluster")
    sharing = ClusterAlerts(cluster, reactor)
    sharing.setServiceParent(cluster)
    return cluster, sharing


def build_cluster_outbox(config: Config, reactor, cluster, sessions, drains):
    """
    Cluster mode's outbox (in Redis, following the station), a child of C{cluster}; it
    looks for absent stations' backlogs every third of C{ownership_ttl}, and not before
    Redis has been reachable that long (the claims are written back first).
    """
    from ..cluster.outbox_follow import ClusterOutboxService

    ttl = config.cluster.ownership_ttl
    outbox = ClusterOutboxService(config.outbox, reactor, cluster, sessions, drains, ttl / 3, ttl)
    outbox.setName("outbox")
    outbox.setServiceParent(cluster)
    return outbox


def build_notifier(
    config: Config,
    reactor,
    redactor: Redactor | None = None,
    links_connected: Callable[[str], int] = lambda upstream: 0,
    alerts: RecentAlerts | None = None,
    sharing: AlertSharing | None = None,
    stations_of: Callable[[str], int] | None = None,
    route_of: Callable[[str], Route | None] = lambda station_id: None,
) -> NotifierService:
    """
    The C{notifier} with the channels the configuration enables; C{redactor} masks what its
    alerts quote, C{links_connected} counts a central system's open links, C{alerts} hears
    of each alert (the status page), C{sharing} shares them across a cluster,
    C{stations_of} counts the stations with a central system on their route, C{route_of}
    gives a connected station's route (whose primary's answers the alerts learn from).
    """
    built = build_channels(config.notify, reactor)
    notifier = NotifierService(
        config.notify,
        load_station_names(config.client_names),
        reactor,
        built.channels,
        config.upstream_urls(),
        links_connected=links_connected,
        stations_of=stations_of,
        route_of=route_of,
        closers=built.closers,
        starters=built.starters,
        redactor=redactor,
        alert_observer=alerts,
        sharing=sharing,
    )
    notifier.setName("notifier")
    return notifier
