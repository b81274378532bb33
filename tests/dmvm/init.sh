#!/bin/sh
# dmvm guest init, run by busybox sh.  See dmvm-run for the host side.
#
# Stage 1 is /init in the initramfs: load the modules listed in /modules/order
# (already in dependency order), mount the host's / (9p "root", read-only)
# under an overlay with a tmpfs upper, mount the per-run 9p share "xfer" at
# /run/dmvm/xfer and switch_root into the overlay.
# Stage 2 runs as PID 1 in that real root: finish the mounts, optionally start
# systemd-udevd, run xfer/cmd.sh with stdout/stderr on the virtio ports "out"
# and "err", write its exit status to xfer/status and power off.
#
# /tmp is deliberately not a fresh tmpfs: the host's /tmp (where builds and
# test binaries may live) stays visible and guest writes land in the overlay's
# tmpfs upper, never on the host.  /run, /dev/shm and /dev/pts are fresh.
#
# Any failure before the command starts powers the guest off without writing
# xfer/started; dmvm-run turns that into "dmvm: SKIP: ..." (it greps the
# console log for the last "dmvm-init:" line).

P9='trans=virtio,version=9p2000.L,msize=512000'

fail() {
	echo "dmvm-init: $*" >&2
	poweroff -f
	exit 1
}

stage1() {
	/bin/busybox --install -s /bin
	export PATH=/bin
	mount -t devtmpfs devtmpfs /dev
	# The kernel's built-in initramfs provides /dev/console; reopen it on devtmpfs.
	exec </dev/console >/dev/console 2>&1
	mount -t proc proc /proc
	mount -t sysfs sysfs /sys
	while read -r m; do
		insmod "/modules/$m" || fail "insmod $m failed"
	done </modules/order

	mkdir -p /lower /rw /newroot
	mount -t 9p -o "$P9,ro,cache=loose" root /lower || fail "cannot mount 9p root"
	mount -t tmpfs -o mode=0755 rw /rw
	mkdir -p /rw/upper /rw/work
	mount -t overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work \
		overlay /newroot || fail "cannot mount overlay"
	# Fresh /run: the host's runtime state (e.g. /run/udev) must not leak in.
	mount -t tmpfs -o mode=0755,nosuid,nodev tmpfs /newroot/run
	mkdir -p /newroot/run/dmvm/xfer /newroot/run/dmvm/bin
	mount -t 9p -o "$P9,cache=none" xfer /newroot/run/dmvm/xfer || fail "cannot mount 9p xfer"
	cp /bin/busybox /init /newroot/run/dmvm/
	for d in dev proc sys; do mount --move "/$d" "/newroot/$d"; done
	exec switch_root /newroot /run/dmvm/busybox sh /run/dmvm/init stage2
	fail "switch_root failed"
}

stage2() {
	/run/dmvm/busybox --install -s /run/dmvm/bin
	export PATH=/run/dmvm/bin:/usr/sbin:/usr/bin:/sbin:/bin
	x=/run/dmvm/xfer
	. "$x/config" || fail "no $x/config"	# DMVM_KVER DMVM_KDIR DMVM_UDEV[DIR]

	mkdir -p /dev/pts /dev/shm
	mount -t devpts -o gid=5,mode=620,ptmxmode=666 devpts /dev/pts
	mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm
	ln -sf /proc/self/fd /dev/fd
	ln -sf /proc/self/fd/0 /dev/stdin
	ln -sf /proc/self/fd/1 /dev/stdout
	ln -sf /proc/self/fd/2 /dev/stderr
	hostname dmvm

	# Make the guest kernel's modules visible where modprobe looks, and let the
	# kernel autoload (e.g. "dmsetup create" with a crypt target) through
	# busybox modprobe (the host userland has no kmod).
	mkdir -p /lib/modules
	ln -sfn "$DMVM_KDIR/lib/modules/$DMVM_KVER" "/lib/modules/$DMVM_KVER"
	echo /run/dmvm/bin/modprobe >/proc/sys/kernel/modprobe

	if [ "$DMVM_UDEV" = 1 ]; then
		# "Install" the unpacked udev package (if the host has none) into the
		# overlay, merging each top-level dir ("/lib/" follows merged-/usr
		# symlinks to usr/lib).
		for d in ${DMVM_UDEVDIR:+"$DMVM_UDEVDIR"/*}; do
			mkdir -p "/${d##*/}/" && cp -a "$d/." "/${d##*/}/"
		done
		/lib/systemd/systemd-udevd --daemon || fail "systemd-udevd failed"
		# Coldplug only block devices: a full trigger costs ~1.5 s under TCG.
		udevadm trigger --action=add --subsystem-match=block
		udevadm settle --timeout=60
	fi

	out=$x/stdout err=$x/stderr	# fallback: collected, printed at the end
	for p in /sys/class/virtio-ports/*; do
		case $(cat "$p/name" 2>/dev/null) in
		out) out=/dev/${p##*/} ;;
		err) err=/dev/${p##*/} ;;
		esac
	done

	cat /proc/uptime >"$x/started"
	env -i HOME=/root LANG=C.UTF-8 TERM=dumb MICROVM_IN_DMVM=1 \
		PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
		/bin/bash "$x/cmd.sh" </dev/null >"$out" 2>"$err"
	echo $? >"$x/status"
	poweroff -f
}

case ${1-} in
stage2) stage2 ;;
*) stage1 ;;
esac
