"""
The expiry watch: every hour and after each reload, the certificates the proxy presents
or trusts are checked against the clock; 14, 7 and 1 days before one expires a warning
line and a C{certificate_expiring} alert, once it has expired an error line and a
C{certificate_expired} alert (see L{ocppproxy.core.expiry}).
"""

from __future__ import annotations

from twisted.application.internet import TimerService

from ..core.expiry import DAY, WARNING_DAYS, expiry_notices
from ..logs import proxy_logger
from ..notify.service import NotifierService
from ..wire.certificates import CertificateInfo, utc_date
from ..wire.tls_files import TLSFiles

CHECK_INTERVAL = 3600.0
"""Seconds between two checks of the certificates' expiry."""
# A claim outlives its tier (the widest is 14 days), so a cluster sends each tier once.
_CLAIM_HOLD = (max(WARNING_DAYS) + 1) * DAY


class CertificateWatch(TimerService):
    """
    Checks C{tls}'s certificates at start, every C{interval} seconds on C{clock}, and at
    each L{check}; what is due goes to C{notifier}. What was told is remembered for the
    life of the process (across a cluster, the notifier's claims say who tells).
    """

    _log = proxy_logger()

    def __init__(self, tls: TLSFiles, notifier: NotifierService, clock, interval: float = CHECK_INTERVAL) -> None:
        super().__init__(interval, self.check)
        self.clock = clock
        self._tls = tls
        self._notifier = notifier
        self._sent: set[tuple[str, int]] = set()

    def check(self) -> None:
        """Tell what is due now about the certificates in force."""
        by_fingerprint: dict[str, CertificateInfo] = {}
        for info in self._tls.certificates:
            by_fingerprint.setdefault(info.fingerprint, info)
        now = self.clock.seconds()
        expiries = ((fingerprint, info.not_after) for fingerprint, info in by_fingerprint.items())
        for notice in expiry_notices(expiries, now, self._sent):
            info = by_fingerprint[notice.fingerprint]
            details = {
                "role": info.role,
                "subject": info.subject,
                "file": info.file,
                "expires": utc_date(info.not_after),
                "fingerprint": info.fingerprint,
            }
            if notice.expired:
                self._log.error(
                    "certificate expired: the {role} certificate {subject} in {file} expired on {expires}",
                    **details,
                )
                self._notifier.certificate_expiry("certificate_expired", notice.fingerprint, _CLAIM_HOLD, details)
                continue
            days = max(1, round(notice.left / DAY))
            self._log.warn(
                "certificate expires soon: the {role} certificate {subject} in {file} expires in {days_left} days,"
                " on {expires}",
                days_left=days,
                **details,
            )
            claim = f"{notice.fingerprint}:{notice.tier}"
            details["days_left"] = days
            self._notifier.certificate_expiry("certificate_expiring", claim, _CLAIM_HOLD, details)
