# A config others can write names files and devices root hands to a VM.
chmod g+w "$1/etc/writable.conf"
chown 65534 "$1/etc/foreign.conf"
