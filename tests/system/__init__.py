"""The system tier: real processes, servers and sockets on 127.0.0.1, bounded waits."""
