"""
The fast frame path, behind one seam: a L{FastPath} value that the daemon makes at
start-up (L{check_at_start_up}) and hands to the station and upstream factories, the TLS
layer and the write-buffer watch. Without one (None) they all run on the stock Autobahn
and Twisted paths, which is how they read first; with one, it plugs in:

  - C{check}: the inventory of the private Autobahn and Twisted names used here, and the
    start-up check that the installed releases have them all;
  - C{seam}: L{FastPath}, the one value, and what each of its methods stands in for;
  - C{frames}: the Autobahn protocol hooks (L{frames.LeanFrames}) and the options shared by class;
  - C{wsframes}: whole text frames up to 64 KiB read and written without Autobahn (pure);
  - C{nvx}: Autobahn's C masker;
  - C{transport}: direct socket writes and reads, the read size the write-buffer watch raises;
  - C{poll}: Twisted's epoll reactor without a log context per event.

May import: Twisted, Autobahn, L{ocppproxy.logs}; nothing else of ocppproxy (the wire
layer takes a L{FastPath} as a value and never imports this package at run time).
"""

from .check import check_at_start_up
from .seam import FastPath

__all__ = ["FastPath", "check_at_start_up"]
