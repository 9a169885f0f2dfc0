"""
Cluster mode (issue 15): several ocppproxy instances, behind a load balancer, that share
one Redis and act as one proxy.

This package owns what the instances agree on through Redis, and only that:

- L{ocppproxy.cluster.claims}: pure rules, no I/O: the Redis key and pub/sub channel
  names, the claim an instance writes for a station it holds (instance, connection
  serial, and the order Redis gave it), and whether a claim heard from another instance
  replaces a local connection.
- L{ocppproxy.cluster.redis}: the edge: two connections to Redis (commands, and the
  subscription to claim announcements) through C{txredisapi}, kept up by
  C{ClientService}s, and whether Redis is reachable.
- L{ocppproxy.cluster.service}: L{ClusterService}, the hook the proxy calls when a
  station connects or leaves: it claims and announces stations, refreshes the claims in
  batches, closes local connections that another instance replaced, and writes the
  local claims back when Redis returns.
- L{ocppproxy.cluster.fleet}: the cluster's record of the stations seen (connected and
  left, by instance) that the status page reads to list the whole cluster's fleet.
- L{ocppproxy.cluster.alerts}: L{ClusterAlerts}, the notifier's view of the cluster
  (L{ocppproxy.notify.sharing.AlertSharing}): alerts claimed once for the cluster,
  stations seen on other instances, their last statuses, bursts counted cluster-wide.

Redis never sits on the relaying path: claims, refreshes and releases are sent and
forgotten (their outcome logged); with Redis away, every instance relays on with its
local state. Without a C{cluster} section, nothing here that talks to Redis is imported
(the status page imports the fleet record's plain types).
"""
