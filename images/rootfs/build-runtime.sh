#!/bin/sh
# images/rootfs/build-runtime.sh BUILD_DIR RUNTIME - a runtime's root file system.
#
# RUNTIME is `python` or `node` (add others as a packages + stage function pair, see
# "Runtimes" below). Builds BUILD_DIR/rootfs-RUNTIME.ext4, a read-only ext4
# root for the guest holding:
#   - everything in BUILD_DIR/rootfs/ (busybox, kiln-init as /init,
#     /sbin/init and /sbin/kiln-init), made first by images/rootfs/build.sh
#     when it is missing or older than BUILD_DIR/kiln-init;
#   - the repository's runtimes/RUNTIME/ in /usr/lib/kiln/runtimes/RUNTIME/;
#   - the runtime itself, taken from Debian .debs with `dpkg-deb -x` (never
#     installed on the host), trimmed, and for Python precompiled to .pyc.
#
# Cache: ${KILN_CACHE:-$HOME/.cache/kiln}/
#   debs/                    downloaded .debs (apt-get download), reused
#   debs/resolved-<h>.txt    the package versions apt picked, for one state of
#                            /var/lib/apt/lists (so a cache hit runs no apt)
#   rootfs/<key>/            rootfs-RUNTIME.ext4 + manifest.txt
# <key> = sha256 of (runtime, the .debs' names, versions and sha256s, the
# BUILD_DIR/rootfs tree, runtimes/RUNTIME/, this script). A hit hard-links
# (or copies) the cached image to BUILD_DIR. Every output appears by rename
# of a complete file or directory: a failed build leaves nothing behind.
#
# Prints the image's path on stdout (its only line); progress on stderr.
set -eu

LC_ALL=C
export LC_ALL
umask 022

# Only the final path goes to the real stdout (fd 3).
exec 3>&1 1>&2

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
repo=$(cd "$here/../.." && pwd)
cache=${KILN_CACHE:-$HOME/.cache/kiln}
debs=$cache/debs
# All mtimes in the image (seconds since the epoch), as in build.sh.
epoch=${SOURCE_DATE_EPOCH:-0}
multiarch=x86_64-linux-gnu

die() {
	echo "build-runtime.sh: error: $*" >&2
	exit 1
}
note() {
	echo "build-runtime.sh: $*" >&2
}

[ $# -eq 2 ] || die "usage: $0 BUILD_DIR RUNTIME (python, node, builder)"
build=$1
runtime=$2
[ -d "$build" ] || die "$build: no such directory"
build=$(cd "$build" && pwd)

# ---- Runtimes ---------------------------------------------------------------
# Each runtime defines:
#   <rt>_packages   the Debian packages to unpack: the interpreter and the
#                   closure of shared libraries it needs at run time (checked
#                   after staging: every DT_NEEDED must resolve in the image);
#   <rt>_stage DIR  trims and completes the unpacked tree in DIR;
# and gets a line in each of the two `case $runtime` below.

# Python 3.11 from bookworm. Left out on purpose (and the extension modules
# that need them removed): libdb5.3 (_dbm), libncursesw6/libtinfo6 (_curses),
# libreadline8 (readline: only for the interactive prompt), libnsl2/libtirpc3
# (nis), libgdbm6 (_gdbm is not even in libpython3.11-stdlib).
python_packages="python3.11-minimal libpython3.11-minimal libpython3.11-stdlib
libc6 libgcc-s1 zlib1g libexpat1 libssl3 libffi8 libbz2-1.0 liblzma5
libsqlite3-0 libuuid1 libcrypt1 ca-certificates"

python_stage() { # STAGE
	py=$1/usr/lib/python3.11
	[ -x "$1/usr/bin/python3.11" ] || die "python3.11 missing from the .debs"
	ln -s python3.11 "$1/usr/bin/python3"

	# What a function never needs: the test package and test suites inside
	# other packages, help() topics, turtle (needs tkinter), and extension
	# modules whose libraries are not in the image or that only test CPython.
	# (idlelib, tkinter, ensurepip, lib2to3 live in other Debian packages.)
	rm -rf "$py/test" "$py/pydoc_data" "$py/turtle.py" "$py/idlelib" \
		"$py/tkinter" "$py/turtledemo" "$py/ensurepip" "$py/lib2to3"
	find "$py" -depth -type d \( -name test -o -name tests -o -name idle_test \) \
		-exec rm -rf {} +
	for m in _dbm _gdbm _curses _curses_panel readline nis _ctypes_test _testbuffer \
		_testcapi _testclinic _testimportmultiple _testinternalcapi _testmultiphase \
		_xxtestfuzz xxlimited xxlimited_35; do
		rm -f "$py/lib-dynload/$m.cpython-311-$multiarch.so"
	done

	# Debian's sitecustomize looks for apport on every start-up (a failed
	# import is a stat per sys.path entry, and system calls are what a guest
	# pays for): replace it with an empty one.
	printf '# kiln: intentionally empty (Debian'"'"'s tries to import apport)\n' \
		>"$1/etc/python3.11/sitecustomize.py"

	# Precompile everything with the interpreter of the image itself (run on
	# the host through the image's own dynamic loader and libraries, so the
	# magic number and the libc are exactly the guest's). Unchecked-hash
	# .pyc files are used without looking at the source's mtime or hash;
	# the guest's root is read-only, so nothing could be written at run time.
	# -B: the compiler's own imports write nothing, compileall -f writes all.
	"$1/lib/$multiarch/ld-linux-x86-64.so.2" \
		--library-path "$1/lib/$multiarch:$1/usr/lib/$multiarch" \
		"$1/usr/bin/python3.11" -I -B -m compileall -q -f -j0 \
		--invalidation-mode unchecked-hash -s "$1" -p / \
		"$py" "$1/usr/lib/kiln/runtimes/python" >&2 ||
		die "compileall failed"
}

# Node.js 18 from bookworm: nodejs is only the launcher, libnode108 is
# node itself; the libraries it links (ICU is most of the size: V8 needs it
# for Intl), and the JavaScript packages Debian unbundled from node that it
# loads at run time: cjs-module-lexer (an ES module importing CommonJS),
# acorn (+ xtend) and undici (+ busboy: fetch()). npm is not in: functions
# bring their node_modules/ in their archive.
node_packages="nodejs libnode108 libc6 libgcc-s1 libstdc++6 libicu72 libuv1
libc-ares2 libbrotli1 libnghttp2-14 libssl3 zlib1g node-acorn node-xtend
node-cjs-module-lexer node-undici node-busboy ca-certificates"

node_stage() { # STAGE
	[ -x "$1/usr/bin/node" ] || die "node missing from the .debs"
	# The headers are for native add-ons built against this node (node-gyp
	# is not here to build them); acorn's command line, gdb's and libstdc++'s
	# pretty printers, systemtap probes and shell completion serve no function.
	rm -rf "$1/usr/include" "$1/usr/bin/acorn" "$1/usr/share/nodejs/acorn/bin" \
		"$1/usr/share/gdb" "$1/usr/share/gcc" "$1/usr/share/systemtap" \
		"$1/usr/share/bash-completion" "$1/usr/lib/$multiarch/pkgconfig"
	find "$1/usr/share/nodejs" "$1/usr/lib/nodejs" -depth \( -name '*.md' \
		-o -name '*.markdown' -o -name '*.d.ts' -o -name '*.map' -o -name test \
		-o -name tests -o -name LICENSE -o -name 'CHANGELOG*' \) -exec rm -rf {} + \
		2>/dev/null || true
}

# The builder: the image of the microVM in which kilnd compiles `c` and
# `rust` functions (never on the host), with gcc 12, binutils, glibc's
# static libraries and headers, and rustc 1.63 with its standard library
# (which needs LLVM 14). cargo is not in: a build has no network, so only a
# single-crate program compiles (runtimes/builder/build says what it runs).
builder_packages="gcc-12 gcc cpp-12 cpp gcc-12-base libgcc-12-dev libcc1-0 binutils
binutils-common binutils-x86-64-linux-gnu libbinutils libctf0 libctf-nobfd0
libgprofng0 libjansson4 libgmp10 libisl23 libmpfr6 libmpc3 libzstd1 zlib1g libgomp1
libitm1 libatomic1 libasan8 liblsan0 libtsan2 libubsan1 libquadmath0 libc6 libc6-dev
libc-dev-bin linux-libc-dev libcrypt1 libcrypt-dev libtirpc3 libtirpc-common
libtirpc-dev libnsl2 libnsl-dev libgssapi-krb5-2 libkrb5-3 libkrb5support0
libk5crypto3 libkeyutils1 libcom-err2 libssl3 libgcc-s1 libstdc++6 rustc
libstd-rust-1.63 libstd-rust-dev libllvm14 libedit2 libbsd0 libmd0 libffi8
libtinfo6 libxml2 libicu72 liblzma5 libz3-4"

builder_stage() { # STAGE
	[ -x "$1/usr/bin/gcc-12" ] && [ -x "$1/usr/bin/rustc" ] ||
		die "gcc-12 or rustc missing from the .debs"
	# What update-alternatives makes at install time: rustc links with `cc`.
	ln -sf gcc "$1/usr/bin/cc"
	# Debuggers' helpers, the sanitizers' suppressions, rust-gdb and
	# rust-lldb, and the compilers' translations serve no build.
	rm -rf "$1/usr/share/gdb" "$1/usr/share/rust" "$1/usr/bin/rust-gdb" \
		"$1/usr/bin/rust-gdbgui" "$1/usr/bin/rust-lldb" "$1/usr/share/bash-completion" \
		"$1/usr/bin/rustdoc" "$1/usr/bin/lto-dump-12" "$1/usr/bin/$multiarch-lto-dump-12"
}

# One line per runtime: its packages, its image's label and fixed UUID.
case $runtime in
python)
	packages=$python_packages
	fs_label=kiln-python
	fs_uuid=6b696c6e-726f-6f74-6673-000000000011
	;;
node)
	packages=$node_packages
	fs_label=kiln-node
	fs_uuid=6b696c6e-726f-6f74-6673-000000000012
	;;
builder)
	packages=$builder_packages
	fs_label=kiln-builder
	fs_uuid=6b696c6e-726f-6f74-6673-000000000013
	;;
*) die "unknown runtime '$runtime' (known: python, node, builder)" ;;
esac
image_name=rootfs-$runtime.ext4
image=$build/$image_name

for tool in apt-get apt-cache dpkg-deb mkfs.ext4 debugfs e2fsck readelf sha256sum tar; do
	command -v $tool >/dev/null 2>&1 || die "$tool not found"
done

# ---- the base tree ------------------------------------------------------------
base=$build/rootfs
basekey=$build/.rootfs.ext4.key
newer() { # FILE REF: is FILE newer than REF?
	[ -n "$(find "$1" -prune -newer "$2" 2>/dev/null)" ]
}
if [ ! -x "$base/sbin/kiln-init" ] || [ ! -f "$basekey" ] ||
	newer "$build/kiln-init" "$basekey" || newer "$here/build.sh" "$basekey"; then
	note "building $base first"
	"$here/build.sh" "$build" >&2
fi
[ -x "$base/sbin/kiln-init" ] || die "$base/sbin/kiln-init missing after build.sh"

# sha256 of a directory tree: names, modes, link targets, contents (not
# owners or mtimes; no __pycache__). Prints "none" for a missing directory.
tree_hash() {
	if [ -d "$1" ]; then
		tar -C "$1" --sort=name --owner=0 --group=0 --numeric-owner --mtime=@0 \
			--exclude=__pycache__ --exclude='*.pyc' -cf - . | sha256sum | cut -d' ' -f1
	else
		echo none
	fi
}

# ---- which .debs ---------------------------------------------------------------
# One line per package: name version arch sha256 file. apt-cache takes about
# a second here (no pkgcache.bin), so its answer is kept for as long as the
# apt lists it read stay the same. dpkg's status is hidden from apt-cache:
# the versions are the archive's candidates whatever the host has installed
# (a host's own nodejs from elsewhere has no .deb to download, or a newer
# one than Debian's).
apt_resolve() {
	# shellcheck disable=SC2086 # word splitting of the package list is meant
	apt-cache -o Dir::State::status=/dev/null show --no-all-versions $packages 2>/dev/null |
		awk '
		/^Package: /      { p = $2 }
		/^Version: /      { v = $2 }
		/^Architecture: / { a = $2 }
		/^SHA256: /       { s = $2 }
		/^$/ { if (p != "") { f = p "_" v "_" a ".deb"; gsub(":", "%3a", f)
		                      print p, v, a, s, f }
		       p = v = a = s = "" }
		END  { if (p != "") { f = p "_" v "_" a ".deb"; gsub(":", "%3a", f)
		                      print p, v, a, s, f } }'
}

apt_update() {
	note "apt-get update"
	apt-get -q update >&2 || die "apt-get update failed"
	updated=1
}

# Sets $resolved, the file of package lines for the current apt lists.
resolve_packages() {
	lists_state=$(
		{
			echo "$packages"
			dpkg --print-architecture
			stat -c '%n %s %Y' /var/lib/apt/lists/*_Packages* 2>/dev/null || true
		} | sha256sum | cut -d' ' -f1
	)
	resolved=$debs/resolved-$lists_state.txt
	[ -s "$resolved" ] && return 0
	mkdir -p "$debs"
	npackages=$(printf '%s\n' "$packages" | wc -w)
	out=$(apt_resolve) || out=
	n=$(printf '%s\n' "$out" | grep -c . || true)
	if [ "$n" -ne "$npackages" ]; then
		[ -z "${updated:-}" ] || die "apt-cache cannot find all of: $packages"
		note "apt does not know all the packages"
		apt_update
		resolve_packages
		return 0
	fi
	printf '%s\n' "$out" >"$resolved.$$"
	mv -f "$resolved.$$" "$resolved"
}

# ---- the cache key ---------------------------------------------------------------
# Sets $key and $entry; publishes and exits on a cache hit.
lookup() {
	key=$(
		{
			echo "runtime $runtime"
			cat "$resolved"
			echo "base $(tree_hash "$base")"
			echo "runtime-files $(tree_hash "$repo/runtimes/$runtime")"
			echo "script $(sha256sum <"$self" | cut -d' ' -f1)"
		} | sha256sum | cut -d' ' -f1
	)
	entry=$cache/rootfs/$key
	if [ -f "$entry/$image_name" ]; then
		publish
	fi
}

publish() { # hard link (or copy) the cached image to BUILD_DIR, atomically
	if [ "$(stat -c %d:%i "$image" 2>/dev/null)" != "$(stat -c %d:%i "$entry/$image_name")" ]; then
		rm -f "$image.tmp.$$"
		ln "$entry/$image_name" "$image.tmp.$$" 2>/dev/null ||
			cp "$entry/$image_name" "$image.tmp.$$"
		mv -f "$image.tmp.$$" "$image"
	fi
	echo "$image" >&3
	exit 0
}

resolve_packages
lookup

# ---- cold build ----------------------------------------------------------------------
start=$(date +%s)
mkdir -p "$cache/rootfs" "$debs"
tmp=$(mktemp -d "$cache/rootfs/.tmp-$runtime.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
trap 'exit 130' INT TERM HUP

# Downloads what is missing (one apt-get for all: each run costs a second),
# then checks every .deb against apt's sha256. Returns 1 if apt-get fails.
download() {
	want=
	while read -r pkg ver _arch _sum file; do
		[ -f "$debs/$file" ] || want="$want $pkg=$ver"
	done <"$resolved"
	if [ -n "$want" ]; then
		note "downloading:$want"
		rm -rf "$tmp/dl"
		mkdir "$tmp/dl"
		# As root, apt would try to drop to _apt, who cannot write here.
		# shellcheck disable=SC2086 # one word per package
		(cd "$tmp/dl" && apt-get -q -o APT::Sandbox::User=root download $want) >&2 ||
			return 1
	fi
	while read -r pkg ver _arch sum file; do
		if [ ! -f "$debs/$file" ]; then
			[ -f "$tmp/dl/$file" ] || die "apt-get download $pkg=$ver made no $file"
			mv -f "$tmp/dl/$file" "$debs/$file"
		fi
		[ "$(sha256sum <"$debs/$file" | cut -d' ' -f1)" = "$sum" ] ||
			die "$debs/$file: sha256 differs from apt's ($sum): delete it and retry"
	done <"$resolved"
}

if ! download; then
	# Stale lists name versions the archive no longer has: refresh, resolve
	# again (a new version is a new key, perhaps already cached) and retry.
	note "download failed; refreshing apt's lists"
	apt_update
	resolve_packages
	lookup
	download || die "apt-get download failed"
fi
note "building the $runtime root file system (cache key ${key%"${key#????????????}"})"

stage=$tmp/root
mkdir "$stage"
cp -a "$base/." "$stage/"
while read -r _pkg _ver _arch _sum file; do
	dpkg-deb -x "$debs/$file" "$stage"
done <"$resolved"
chmod 0755 "$stage"

# The runtime's in-guest bootstrap, from the repository.
mkdir -p "$stage/usr/lib/kiln/runtimes/$runtime"
if [ -d "$repo/runtimes/$runtime" ]; then
	tar -C "$repo/runtimes/$runtime" --exclude=__pycache__ --exclude='*.pyc' \
		--owner=0 --group=0 -cf - . | tar -C "$stage/usr/lib/kiln/runtimes/$runtime" -xf -
else
	note "warning: $repo/runtimes/$runtime does not exist yet"
fi

# Common trimming: documentation, man pages, locales, package-maintenance
# tools, the iconv modules (8 MB; CPython has its own codecs), OpenSSL
# engines.
rm -rf "$stage/usr/share/doc" "$stage/usr/share/man" "$stage/usr/share/info" \
	"$stage/usr/share/lintian" "$stage/usr/share/locale" "$stage/usr/share/binfmts" \
	"$stage/usr/lib/binfmt.d" "$stage/usr/lib/$multiarch/gconv" \
	"$stage/usr/lib/$multiarch/engines-3" "$stage/usr/libexec" \
	"$stage/usr/sbin/update-ca-certificates" "$stage/etc/ca-certificates"

# CA certificates as one bundle where OpenSSL looks by default (what
# update-ca-certificates would make at install time).
if [ -d "$stage/usr/share/ca-certificates" ]; then
	mkdir -p "$stage/etc/ssl/certs" "$stage/usr/lib/ssl"
	find "$stage/usr/share/ca-certificates" -name '*.crt' | sort |
		xargs cat >"$stage/etc/ssl/certs/ca-certificates.crt"
	rm -rf "$stage/usr/share/ca-certificates"
	ln -s /etc/ssl/certs/ca-certificates.crt "$stage/usr/lib/ssl/cert.pem"
	ln -s /etc/ssl/certs "$stage/usr/lib/ssl/certs"
fi

# Name resolution without a network: localhost from /etc/hosts.
[ -e "$stage/etc/hosts" ] ||
	printf '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n' \
		>"$stage/etc/hosts"
[ -e "$stage/etc/nsswitch.conf" ] ||
	printf 'passwd: files\ngroup: files\nhosts: files dns\n' >"$stage/etc/nsswitch.conf"

case $runtime in
python) python_stage "$stage" ;;
node) node_stage "$stage" ;;
builder) builder_stage "$stage" ;;
esac

# Every shared library an ELF file in the image needs must be in the image.
missing=
find "$stage" -type f \( -name '*.so' -o -name '*.so.*' -o -perm -u+x \) >"$tmp/elves"
while read -r f; do
	needed=$(readelf -d "$f" 2>/dev/null | sed -n 's/.*(NEEDED).*\[\(.*\)\]$/\1/p')
	for lib in $needed; do
		[ -e "$stage/lib/$multiarch/$lib" ] || [ -e "$stage/usr/lib/$multiarch/$lib" ] ||
			missing="$missing ${f#"$stage"}:$lib"
	done
done <"$tmp/elves"
[ -z "$missing" ] || die "libraries missing from the image:$missing"

# A loader cache: the guest's ld.so then opens each library at once rather
# than probing every directory (each failed open costs emulated kernel time).
printf 'include /etc/ld.so.conf.d/*.conf\n' >"$stage/etc/ld.so.conf"
if ! ldconfig -X -r "$stage" 2>"$tmp/ldconfig.err"; then
	note "warning: no ld.so.cache ($(head -n1 "$tmp/ldconfig.err"))"
fi

find "$stage" -exec touch -h -d "@$epoch" {} +

# ---- the image -------------------------------------------------------------------------
# Blocks the files take (4 KiB each at least), 256-byte inodes, a fifth more
# and 4 MiB of headroom; as many inodes as files plus a fifth.
files=$(find "$stage" | wc -l)
data_kib=$(($(du -s -B4096 "$stage" | cut -f1) * 4))
size_kib=$(((data_kib + files / 4) * 6 / 5 + 4096))
size_mib=$(((size_kib + 1023) / 1024))
inodes=$(((files * 6 / 5 + 255) / 256 * 256))
out=$tmp/entry
mkdir "$out"
truncate -s "${size_mib}M" "$out/$image_name"
# mkfs.ext4 stamps the superblock and every inode's ctime with the clock:
# E2FSPROGS_FAKE_TIME makes it the epoch (0 means "unset" to it, hence 1),
# so the same inputs give a byte-identical image.
E2FSPROGS_FAKE_TIME=$((epoch > 0 ? epoch : 1)) mkfs.ext4 -q -F -d "$stage" -E root_owner=0:0,hash_seed=$fs_uuid -U $fs_uuid -I 256 \
	-N $inodes -m 0 -O ^has_journal -b 4096 -L $fs_label "$out/$image_name" ||
	die "mkfs.ext4 failed"
# It copies each file's ctime and atime from the staging tree, where they are
# the time of this build: set them to the epoch too (inodes 2 and 11 on).
stamp=$(date -u -d "@$epoch" +%Y%m%d%H%M%S)
awk -v n="$files" -v t="$stamp" 'BEGIN { for (i = 2; i <= n + 10; i += (i == 2 ? 9 : 1))
	printf "sif <%d> atime %s\nsif <%d> ctime %s\nsif <%d> atime_extra 0\nsif <%d> ctime_extra 0\n",
		i, t, i, t, i, i }' >"$tmp/times.debugfs"
E2FSPROGS_FAKE_TIME=$((epoch > 0 ? epoch : 1)) debugfs -w -f "$tmp/times.debugfs" \
	"$out/$image_name" >"$tmp/debugfs.log" 2>&1 || die "debugfs failed: $(tail -n3 "$tmp/debugfs.log")"
e2fsck -f -n "$out/$image_name" >"$tmp/fsck.log" 2>&1 ||
	die "e2fsck found problems in the new image: $(tail -n3 "$tmp/fsck.log")"
chmod 0444 "$out/$image_name"

{
	echo "kiln $runtime root file system"
	echo "key $key"
	echo "built $(date -u +%Y-%m-%dT%H:%M:%SZ) in $(($(date +%s) - start)) s"
	echo "image ${size_mib} MiB, content ${data_kib} KiB, $files files"
	echo "packages (name version arch sha256 file):"
	cat "$resolved"
} >"$out/manifest.txt"

# Into the cache (a concurrent build of the same key may have won: keep its).
if ! mv -T "$out" "$entry" 2>/dev/null; then
	[ -f "$entry/$image_name" ] || die "cannot create $entry"
fi
note "done in $(($(date +%s) - start)) s: ${size_mib} MiB, $files files"
publish
