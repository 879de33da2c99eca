#!/bin/sh
# Build kiln's guest kernel (x86-64) from Debian's linux-source-6.1 package,
# once per (source version, kiln.config, patches, this script), and cache it.
#
# Usage: images/kernel/build.sh [--print-dir]
#
# Prints the path of the cached, unstripped vmlinux on stdout (its only
# line), or with --print-dir the cache entry's directory, which also holds
# bzImage, System.map and config. Progress and errors go to stderr.
#
# Cache: ${KILN_CACHE:-$HOME/.cache/kiln}/kernel/<key>/ where <key> is a
# sha256 over the inputs above. An entry appears only by an atomic rename of
# a complete directory, so concurrent runs and failed builds never leave a
# half-written entry. KILN_KEEP_BUILD=1 keeps a failed build's tree.
set -eu

LC_ALL=C
export LC_ALL

here=$(cd "$(dirname "$0")" && pwd)
self="$here/$(basename "$0")"
tarball=/usr/src/linux-source-6.1.tar.xz
fragment="$here/kiln.config"

print_dir=0
for arg in "$@"; do
	case "$arg" in
	--print-dir) print_dir=1 ;;
	-h | --help)
		sed -n '2,14p' "$self" | sed 's/^# \{0,1\}//'
		exit 0
		;;
	*)
		echo "build.sh: unknown argument: $arg" >&2
		exit 2
		;;
	esac
done

die() {
	echo "build.sh: error: $*" >&2
	exit 1
}

[ -r "$tarball" ] || die "$tarball not found (apt-get install linux-source-6.1)"
[ -r "$fragment" ] || die "$fragment not found"
version=$(dpkg-query -W -f='${Version}' linux-source-6.1 2>/dev/null) ||
	die "cannot get the version of linux-source-6.1 (is it installed?)"

# --- cache key ---------------------------------------------------------------
key=$(
	{
		printf 'linux-source-6.1 %s\n' "$version"
		printf 'kiln.config %s\n' "$(sha256sum <"$fragment" | cut -d' ' -f1)"
		for p in "$here"/patches/*.patch; do
			[ -e "$p" ] || continue
			printf 'patch %s %s\n' "$(basename "$p")" \
				"$(sha256sum <"$p" | cut -d' ' -f1)"
		done
		printf 'build.sh %s\n' "$(sha256sum <"$self" | cut -d' ' -f1)"
	} | sha256sum | cut -d' ' -f1
)

cache="${KILN_CACHE:-$HOME/.cache/kiln}/kernel"
entry="$cache/$key"

done_out() {
	if [ "$print_dir" = 1 ]; then
		echo "$entry"
	else
		echo "$entry/vmlinux"
	fi
	exit 0
}

[ -f "$entry/vmlinux" ] && done_out

# --- build -------------------------------------------------------------------
echo "kiln: building the guest kernel once (linux-source $version); this takes several minutes..." >&2

mkdir -p "$cache"
# Leftovers of builds that were killed (no trap ran) more than a day ago.
find "$cache" -mindepth 1 -maxdepth 1 -name '.build.*' -mmin +1440 \
	-exec rm -rf {} + 2>/dev/null || true

tmp=$(mktemp -d "$cache/.build.XXXXXX")
# shellcheck disable=SC2317 # invoked by trap
cleanup() {
	status=$?
	if [ "$status" != 0 ] && [ "${KILN_KEEP_BUILD:-0}" = 1 ]; then
		echo "build.sh: failed build kept in $tmp" >&2
	else
		rm -rf "$tmp"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM HUP

echo "kiln: extracting $tarball" >&2
tar -xf "$tarball" -C "$tmp"
src=$(find "$tmp" -mindepth 1 -maxdepth 1 -type d -name 'linux-source-*' | head -n 1)
[ -n "$src" ] || die "no linux-source-* directory in $tarball"

for p in "$here"/patches/*.patch; do
	[ -e "$p" ] || continue
	echo "kiln: applying $(basename "$p")" >&2
	patch -p1 -N -s -d "$src" <"$p" >&2 ||
		die "patch $(basename "$p") does not apply to linux-source $version"
done

# Reproducible build stamp: the source tarball's date, not the build's.
stamp=$(date -u -r "$tarball" '+%a %b %e %H:%M:%S UTC %Y')
kmake() {
	make -C "$src" ARCH=x86_64 KBUILD_BUILD_USER=kiln KBUILD_BUILD_HOST=kiln \
		KBUILD_BUILD_TIMESTAMP="$stamp" "$@"
}

# Configuration steps are chatty (merge warnings): log, show on failure.
configure() {
	kmake tinyconfig || return 1
	# merge_config.sh makes its temporary files in the current directory.
	(cd "$src" && scripts/kconfig/merge_config.sh -m .config "$fragment") || return 1
	kmake olddefconfig
}
echo "kiln: configuring (tinyconfig + kiln.config)" >&2
configure >"$tmp/config.log" 2>&1 || {
	cat "$tmp/config.log" >&2
	die "configuration failed"
}

# Every value the fragment asks for must have survived olddefconfig: this
# catches typos and options whose dependencies are missing.
missing=$(
	sed -n -e 's/^\(CONFIG_[A-Za-z0-9_]*\)=\(.*\)$/\1 \2/p' \
		-e 's/^# \(CONFIG_[A-Za-z0-9_]*\) is not set$/\1 n/p' "$fragment" |
		while read -r sym val; do
			if [ "$val" = n ]; then
				# Not set, or absent because its dependencies are off.
				if grep -q "^$sym=" "$src/.config"; then
					echo "  $sym=n wanted, got: $(grep "^$sym=" "$src/.config")"
				fi
			elif ! grep -qxF "$sym=$val" "$src/.config"; then
				got=$(grep "^$sym=" "$src/.config" || echo "not set")
				echo "  $sym=$val wanted, got: $got"
			fi
		done
)
if [ -n "$missing" ]; then
	echo "build.sh: kiln.config options that did not survive olddefconfig:" >&2
	echo "$missing" >&2
	die "fix kiln.config (typo or missing dependency)"
fi

# The compiler's lines go to a log file kept beside the cache entry; the
# terminal gets one live line (stage, files compiled, elapsed time), or on a
# non-terminal a line a minute. On failure the log's tail and path are shown.
jobs=$(nproc 2>/dev/null || echo 2)
log="$cache/build-$key.log"
echo "kiln: compiling with -j$jobs (log: $log)" >&2
kmake -j"$jobs" vmlinux bzImage >"$log" 2>&1 &
kpid=$!
start=$(date +%s)
last=0
while kill -0 "$kpid" 2>/dev/null; do
	now=$(date +%s)
	files=$(grep -c '^  CC' "$log" 2>/dev/null || true)
	line=$(printf 'kiln: kernel: compiling, %s files, %dm%02ds' "${files:-0}" \
		$(((now - start) / 60)) $(((now - start) % 60)))
	if [ -t 2 ]; then
		printf '\r%s\033[K' "$line" >&2
	elif [ $((now - last)) -ge 60 ]; then
		echo "$line" >&2
		last=$now
	fi
	sleep 1
done
if ! wait "$kpid"; then
	[ -t 2 ] && printf '\n' >&2
	tail -n 40 "$log" >&2
	die "kernel build failed; full log: $log"
fi
[ -t 2 ] && printf '\r\033[K' >&2
echo "kiln: compiled in $(($(date +%s) - start)) s" >&2

out="$tmp/out"
mkdir "$out"
cp "$src/vmlinux" "$out/vmlinux"
cp "$src/arch/x86/boot/bzImage" "$out/bzImage"
cp "$src/System.map" "$out/System.map"
cp "$src/.config" "$out/config"
rm -rf "$src"

# Publish atomically. If another run renamed its entry first, ours fails
# (the target exists and is not empty) and we use the winner's.
if ! mv -T "$out" "$entry" 2>/dev/null; then
	[ -f "$entry/vmlinux" ] || die "cannot create $entry"
fi
echo "kiln: guest kernel ready in $entry" >&2
done_out
