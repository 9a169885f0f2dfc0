"""
Alerts: connection, OCPP and upstream events turned into messages and delivered.

L{service} (the notifier, a Twisted service observing the proxy) applies the rules of
L{policies} (flapping, bursts, summaries, upstreams down) to the events of L{events},
writes them with L{messages} and L{names}, and hands them to L{dispatch}, which keeps
one L{delivery} queue per channel: e-mail (L{email}, twisted.mail), Pushover
(L{pushover}, treq), a webhook (L{webhook}, treq) and Apprise (L{apprise_channel}, in
threads), built by L{channels};
L{httpbody} reads an HTTP answer bounded in size and cancellable at the deadline.
L{sharing} lets a cluster decide which instance sends an alert, and L{statuses} reads a
station's last statuses from it before its frames are judged.
"""
