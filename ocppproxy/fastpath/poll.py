"""
Twisted's epoll reactor handling each I/O event without its legacy log context: see
L{lean_do_poll}. The names of the reactor it uses are listed in
L{ocppproxy.fastpath.check} (C{EPOLL_DO_POLL_NAMES}) and checked at start-up.
"""

from __future__ import annotations

import errno
import sys
import types
from errno import EWOULDBLOCK

from twisted.internet import main, tcp
from twisted.python import log as legacy_log

try:
    from twisted.internet.epollreactor import EPollReactor
except ImportError:  # not Linux: no epoll reactor, nothing of it to replace
    EPollReactor = None

# The event of nearly every I/O event the proxy handles: a TCP connection readable
# (EPOLLIN), and nothing else; read by L{read_connection}.
_READABLE = getattr(EPollReactor, "_POLL_IN", None)
CONNECTIONS = (tcp.Server, tcp.Client)


def lean_do_poll(reactor, timeout: float | None) -> None:
    """
    Twisted's C{EPollReactor.doPoll} without C{callWithLogger} around each I/O event.

    That wrapper (twisted/python/log.py, C{callWithLogger}) gives every event a legacy
    log context (a dict built and pushed on a stack, the connection's C{logPrefix}
    asked), used only by C{twisted.python.log} lines written while the event is handled:
    about a sixth of the proxy's Python time per relayed CALL. ocppproxy logs through
    C{twisted.logger}, which does not read it. An exception escaping the event handler
    is still logged (C{log.err}), as the wrapper did; Twisted's own C{_doReadOrWrite}
    already logs what the protocol raises and drops the connection. The only
    difference: such legacy lines carry no C{system} (the connection's log prefix).

    The body is C{doPoll}'s own (twisted/internet/epollreactor.py) but for that call:
    C{_poller} (the epoll object), C{_selectables} (file descriptor to reader or writer)
    and C{_doReadOrWrite} are the reactor's.
    """
    if timeout is None:
        timeout = -1  # wait indefinitely
    try:
        events = reactor._poller.poll(timeout, len(reactor._selectables))
    except OSError as error:
        if error.errno == errno.EINTR:
            return
        raise
    selectables = reactor._selectables
    handle = reactor._doReadOrWrite
    for fd, event in events:
        selectable = selectables.get(fd)
        if selectable is not None:
            try:
                if event == _READABLE and type(selectable) in CONNECTIONS and selectable.fileno() != -1:
                    read_connection(reactor, selectable)
                else:
                    handle(selectable, fd, event)
            except KeyboardInterrupt:
                raise
            except BaseException:
                legacy_log.err()


def read_connection(reactor, connection) -> None:
    """
    What Twisted's C{_doReadOrWrite} (twisted/internet/posixbase.py, C{_PollLikeMixin})
    does when a TCP C{connection} (whose descriptor is still open) is readable and
    nothing else, with C{Connection.doRead} and C{_dataReceived}
    (twisted/internet/tcp.py) written into it: three Python calls less per read, a
    third of a relayed CALL's reads and writes. Read up to C{bufferSize} bytes and give
    them to the protocol; a connection closed by the peer, a failed read or an
    exception from the protocol is disconnected as C{_doReadOrWrite} disconnects it
    (the exception logged). The names used are checked at start-up
    (L{ocppproxy.fastpath.check}, C{READ_PATH_NAMES}).
    """
    try:
        try:
            data = connection.socket.recv(connection.bufferSize)
        except OSError as error:
            why = None if error.args[0] == EWOULDBLOCK else main.CONNECTION_LOST
        else:
            if data:
                connection.protocol.dataReceived(data)
                return
            why = main.CONNECTION_DONE
    except BaseException:  # noqa: BLE001 (as _doReadOrWrite: whatever the protocol raises drops its connection)
        why = sys.exc_info()[1]
        legacy_log.err()
    if why:
        reactor._disconnectSelectable(connection, why, True)


def use_lean_poll(reactor) -> bool:
    """
    Where C{reactor} is Twisted's epoll reactor (as C{twistd} installs on Linux), have it
    poll with L{lean_do_poll}; True if it now does. Other reactors (asyncio's in the
    tests, select, kqueue, a test's clock) are left as they are.
    """
    if EPollReactor is None or type(reactor) is not EPollReactor:
        return False
    # The reactor's main loop calls self.doIteration (which EPollReactor sets to doPoll)
    # once per turn: an instance attribute takes its place for this reactor alone.
    if "doIteration" not in vars(reactor):
        reactor.doIteration = types.MethodType(lean_do_poll, reactor)
    return True
