#!/bin/sh
# certbot deploy hook for ocppproxy: copies a renewed certificate where the service
# reads it (station_tls in /etc/ocppproxy/tls, see docs/howto/certificates.rst)
# and reloads it; no station is dropped. Install:
#   install -m 755 etc/certbot-deploy-hook.sh /etc/letsencrypt/renewal-hooks/deploy/ocppproxy.sh
# certbot sets RENEWED_LINEAGE (/etc/letsencrypt/live/<name>) for each renewed lineage.
# Each file is written beside its target, then renamed over it (atomic); the key goes
# first. The proxy checks that key and certificate match before using them, and reads
# them again 5 s later if they do not yet (a hook still copying).
set -eu
TARGET=${OCPPPROXY_TLS_DIR:-/etc/ocppproxy/tls}
GROUP=${OCPPPROXY_TLS_GROUP:-ocppproxy-tls}
: "${RENEWED_LINEAGE:?certbot sets RENEWED_LINEAGE}"

put() {  # put SOURCE NAME MODE
    tmp=$(mktemp "$TARGET/.$2.XXXXXX")
    cat "$1" > "$tmp"
    chgrp "$GROUP" "$tmp"
    chmod "$3" "$tmp"
    mv -f "$tmp" "$TARGET/$2"
}

put "$RENEWED_LINEAGE/privkey.pem" key.pem 0640
put "$RENEWED_LINEAGE/fullchain.pem" cert.pem 0644
systemctl reload ocppproxy
