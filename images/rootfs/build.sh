#!/bin/sh
# images/rootfs/build.sh BUILD_DIR - kiln's minimal guest root file system.
#
# From Debian's busybox-static (/bin/busybox, or $BUSYBOX) and
# BUILD_DIR/kiln-init, builds:
#   BUILD_DIR/rootfs/          the staging tree: /init and /sbin/kiln-init
#                              (one file, hard-linked), /bin/busybox and a
#                              symlink per applet, empty /dev /proc /sys /tmp
#                              /run /root /etc, /etc/passwd and /etc/group,
#                              /etc/resolv.conf -> /run/kiln/resolv.conf,
#                              the runtime bootstraps in /usr/lib/kiln/runtimes;
#   BUILD_DIR/initramfs.cpio   that tree as an uncompressed newc archive, plus
#                              a /dev/console node (5,1) so that the kernel
#                              has a console before devtmpfs is mounted;
#   BUILD_DIR/rootfs.ext4      that tree as an ext4 image (read-only use).
# No mounts, no loop devices, no mknod: the console node is written as a
# second cpio archive, which the kernel unpacks after the first.
# Every output is built in a temporary directory and renamed into place.
# The cpio is reproducible (fixed timestamps, renumbered inodes, owner 0);
# the ext4 image (fixed UUID and hash seed) is kept as it is while the tree
# does not change. Files in the ext4 image are owned by whoever runs this
# (mkfs.ext4 -d copies owners): run it as root, as `make rootfs` does here.
# Prints the paths it made.
set -eu

die() {
	echo "rootfs/build.sh: $*" >&2
	exit 1
}

[ $# -eq 1 ] || die "usage: $0 BUILD_DIR"
build=$1
busybox=${BUSYBOX:-/bin/busybox}
init=$build/kiln-init
# All mtimes in the images (seconds since the epoch).
epoch=${SOURCE_DATE_EPOCH:-0}
# Fixed identity of the ext4 image.
fs_uuid=6b696c6e-726f-6f74-6673-000000000001

[ -d "$build" ] || die "$build: no such directory"
[ -x "$init" ] || die "$init: missing (make $init first)"
[ -x "$busybox" ] || die "$busybox: missing (apt-get install busybox-static)"
for tool in cpio mkfs.ext4; do
	command -v $tool >/dev/null 2>&1 || die "$tool not found (apt-get install cpio e2fsprogs)"
done

tmp=$(mktemp -d "$build/.rootfs.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
root=$tmp/rootfs
umask 022

# ---- the tree -------------------------------------------------------------
mkdir -p "$root"
for d in bin sbin dev proc sys tmp run root etc; do
	mkdir "$root/$d"
done
chmod 1777 "$root/tmp"
chmod 0700 "$root/root"

cp "$init" "$root/sbin/kiln-init"
# Symbols are of no use in the guest and cost unpacking time.
strip --strip-all "$root/sbin/kiln-init" 2>/dev/null || true
chmod 0755 "$root/sbin/kiln-init"
ln "$root/sbin/kiln-init" "$root/init"
# For an ext4 root booted without init=: the kernel tries /sbin/init first.
ln -s kiln-init "$root/sbin/init"

cp "$busybox" "$root/bin/busybox"
chmod 0755 "$root/bin/busybox"
applets=$("$busybox" --list) || die "$busybox --list failed"
[ -n "$applets" ] || die "$busybox --list printed nothing"
for a in $applets; do
	case $a in
	*/* | . | .. | busybox) continue ;;
	esac
	[ -e "$root/bin/$a" ] || ln -s busybox "$root/bin/$a"
done

# kiln's runtime bootstraps (runtimes/<name>/...) where kiln-init looks for
# them: /usr/lib/kiln/runtimes/python/bootstrap.py, ... (docs/protocol.md).
runtimes=$(cd "$(dirname "$0")/../../runtimes" && pwd) || die "runtimes/ not found"
mkdir -p "$root/usr/lib/kiln/runtimes"
(cd "$runtimes" && find . -type f \( -name '*.py' -o -name 'bootstrap' \) | LC_ALL=C sort) |
	while read -r f; do
		mkdir -p "$root/usr/lib/kiln/runtimes/$(dirname "$f")"
		cp "$runtimes/$f" "$root/usr/lib/kiln/runtimes/$f"
		case $f in
		*/bootstrap) chmod 0755 "$root/usr/lib/kiln/runtimes/$f" ;;
		*) chmod 0644 "$root/usr/lib/kiln/runtimes/$f" ;;
		esac
	done

# The resolver's settings are the function's (its deploy's "dns"), written by
# kiln-init into the writable /run when a restored VM is given its network.
ln -s /run/kiln/resolv.conf "$root/etc/resolv.conf"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
chmod 0644 "$root/etc/passwd" "$root/etc/group"

find "$root" -exec touch -h -d "@$epoch" {} +

# ---- initramfs.cpio -------------------------------------------------------
# newc header: magic and 13 eight-digit hex fields (ino, mode, uid, gid,
# nlink, mtime, filesize, devmajor, devminor, rdevmajor, rdevminor, namesize,
# check); header + name is padded with NULs to a multiple of 4 bytes.
newc_entry() { # name mode rdevmajor rdevminor ino
	namesize=$((${#1} + 1))
	printf '070701%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%s\0' \
		"$5" "$2" 0 0 1 "$epoch" 0 0 0 "$3" "$4" "$namesize" 0 "$1"
	pad=$(((4 - (110 + namesize) % 4) % 4))
	while [ $pad -gt 0 ]; do
		printf '\0'
		pad=$((pad - 1))
	done
}

(
	cd "$root"
	find . -mindepth 1 | sed 's|^\./||' | LC_ALL=C sort |
		cpio --quiet -o -H newc --reproducible --owner=0:0
) >"$tmp/initramfs.cpio"
{
	# crw------- root root 5,1 dev/console; inode far from cpio's renumbered ones.
	newc_entry dev/console $((0020600)) 5 1 $((0x7fffff00))
	newc_entry 'TRAILER!!!' 0 0 0 0
} >>"$tmp/initramfs.cpio"

# ---- rootfs.ext4 ------------------------------------------------------------
# mke2fs 1.47.0 stamps the superblock with the current time whatever we do,
# so the image is only rebuilt when the tree (all of it is in the cpio) or
# this script changed: its bytes, and caches keyed by them, stay the same.
key=$(cat "$tmp/initramfs.cpio" "$0" | sha256sum | cut -d' ' -f1)
if [ -f "$build/rootfs.ext4" ] && [ "$(cat "$build/.rootfs.ext4.key" 2>/dev/null)" = "$key" ]; then
	cp -p "$build/rootfs.ext4" "$tmp/rootfs.ext4"
else
	# Content in KiB, 4 KiB per file for metadata, a quarter more and 4 MiB of headroom.
	content_kib=$(du -s -k --apparent-size "$root" | cut -f1)
	files=$(find "$root" | wc -l)
	size_kib=$(((content_kib + files * 4) * 5 / 4 + 4096))
	size_mib=$(((size_kib + 1023) / 1024))
	truncate -s "${size_mib}M" "$tmp/rootfs.ext4"
	mkfs.ext4 -q -F -d "$root" -E root_owner=0:0,hash_seed=$fs_uuid -U $fs_uuid -I 256 \
		-O ^has_journal -b 4096 -L kiln-root "$tmp/rootfs.ext4"
fi
echo "$key" >"$tmp/rootfs.ext4.key"

# ---- into place -----------------------------------------------------------
mv -f "$tmp/initramfs.cpio" "$build/initramfs.cpio"
mv -f "$tmp/rootfs.ext4" "$build/rootfs.ext4"
mv -f "$tmp/rootfs.ext4.key" "$build/.rootfs.ext4.key"
rm -rf "$build/rootfs"
mv "$root" "$build/rootfs"

echo "$build/rootfs"
echo "$build/initramfs.cpio"
echo "$build/rootfs.ext4"
