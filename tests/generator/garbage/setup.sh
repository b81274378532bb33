# File names git should not hold: bytes that are not UTF-8, a newline.
in=$1
cp "$in/etc/plain.conf" "$in/etc/$(printf 'vm\xff\xfe')".conf
cp "$in/etc/plain.conf" "$in/etc/$(printf 'new\nline')".conf
