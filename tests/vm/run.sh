#!/usr/bin/env bash
# Run one test script inside a QEMU VM with Debian's kernel (which has the
# WireGuard module), to test what needs a real kernel feature this host
# lacks. Full emulation (TCG): no KVM needed, no network device at all.
#
#   tests/vm/run.sh [--timeout SECONDS] SCRIPT [ARGS…]
#   tests/vm/run.sh --prepare        (fetch the kernel, build the initramfs)
#
# SCRIPT is a file of this tree (usually tests/vm/NAME.lua or .sh). Inside the
# VM the tree's lua/, policies/ and tests/ are at /zmesh, the zmesh binary
# at /zmesh/build/zmesh (and on PATH), with wg, ip and ping from the host.
# A .lua script runs with `zmesh run`, anything else with sh. Its output
# is printed and its exit status is ours.
#
# Exit status: the script's; 77 when the VM cannot run here (the output
# then has a line "ZMESH-VM-UNAVAILABLE: why"); 125 when the VM ran but
# gave no result (crash, timeout: "ZMESH-VM-ERROR: why").
#
# Cached in vm/ beside the zmesh binary (ZMESH_VM_DIR): the kernel, fetched once
# with apt-get download, and the base initramfs, rebuilt when any binary in
# it changes. Environment: ZMESH_BIN (the zmesh binary, default
# build/zmesh), ZMESH_VM_TIMEOUT (seconds, default 300), ZMESH_VM_VERBOSE=1
# (print the whole console), ZMESH_VM_KERNEL_PKG (a linux-image package
# other than linux-image-amd64's dependency), ZMESH_VM_QEMU (the emulator,
# default qemu-system-x86_64).
set -u
# Host tools must not inherit an ASan preload meant for lua5.4 (make asan).
unset LD_PRELOAD

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
zmesh_bin=${ZMESH_BIN:-$root/build/zmesh}
vmdir=${ZMESH_VM_DIR:-$(dirname "$zmesh_bin")/vm}
qemu=${ZMESH_VM_QEMU:-qemu-system-x86_64}
timeout_s=${ZMESH_VM_TIMEOUT:-300}
prepare=
modules=(wireguard veth dummy)

unavailable() {
	echo "ZMESH-VM-UNAVAILABLE: $*"
	echo "ZMESH-VM-UNAVAILABLE: $*" >&2
	exit 77
}

vm_error() {
	echo "ZMESH-VM-ERROR: $*"
	echo "ZMESH-VM-ERROR: $*" >&2
	exit 125
}

log() { [ "${ZMESH_VM_QUIET:-}" = 1 ] || echo "vm: $*" >&2; }

while [ $# -gt 0 ]; do
	case $1 in
	--timeout) timeout_s=$2; shift 2 ;;
	--prepare) prepare=1; shift ;;
	--) shift; break ;;
	-*) echo "usage: $0 [--timeout SECONDS] SCRIPT [ARGS…]" >&2; exit 2 ;;
	*) break ;;
	esac
done
if [ -z "$prepare" ]; then
	[ $# -ge 1 ] || { echo "usage: $0 [--timeout SECONDS] SCRIPT [ARGS…]" >&2; exit 2; }
	script=$1
	shift
	[ -f "$script" ] || { echo "$0: no such script: $script" >&2; exit 2; }
	script_abs=$(cd "$(dirname "$script")" && pwd)/$(basename "$script")
	case $script_abs in
	"$root"/*) script_rel=${script_abs#"$root"/} ;;
	*) echo "$0: $script is not inside $root" >&2; exit 2 ;;
	esac
fi

# --- what the host must have -------------------------------------------------
need() {
	command -v "$1" >/dev/null 2>&1 ||
		unavailable "'$1' not found (install $2; make deps does)"
}
need "$qemu" qemu-system-x86
need busybox busybox-static
need cpio cpio
need depmod kmod
need dpkg-deb dpkg
need wg wireguard-tools
need ip iproute2
need ping iputils-ping
need ldd libc-bin
need sha256sum coreutils
need timeout coreutils
need flock util-linux
[ -x "$zmesh_bin" ] || unavailable "no zmesh binary at $zmesh_bin (run make)"

mkdir -p "$vmdir" || unavailable "cannot create $vmdir"
exec 9>"$vmdir/.lock"
flock 9

# --- the kernel --------------------------------------------------------------
# $vmdir/kernel/<version>/{vmlinuz,modules/…}, complete once "ok" exists.
find_cached_kernel() {
	local d
	for d in $(ls -1d "$vmdir"/kernel/*/ 2>/dev/null | sort -rV); do
		[ -f "$d/ok" ] && { echo "${d%/}"; return 0; }
	done
	return 1
}

# The versioned image package that linux-image-amd64 points to.
kernel_package() {
	if [ -n "${ZMESH_VM_KERNEL_PKG:-}" ]; then
		echo "$ZMESH_VM_KERNEL_PKG"
		return
	fi
	apt-cache depends linux-image-amd64 2>/dev/null |
		awk '/Depends: linux-image-[0-9]/ { print $2; exit }'
}

download() { (cd "$1" && apt-get download -q "$2" >download.log 2>&1); }

fetch_kernel() {
	local pkg tmp deb kver dir
	command -v apt-get >/dev/null || unavailable "no cached kernel and no apt-get to fetch one"
	tmp=$(mktemp -d "$vmdir/fetch.XXXXXX")
	pkg=$(kernel_package)
	if [ -z "$pkg" ] || ! download "$tmp" "$pkg"; then
		# Old package lists name a kernel the archive no longer has.
		if [ "$(id -u)" = 0 ]; then
			log "refreshing the package lists"
			apt-get update -q >"$tmp/update.log" 2>&1
			pkg=$(kernel_package)
		fi
		if [ -z "$pkg" ]; then
			rm -rf "$tmp"
			unavailable "cannot resolve linux-image-amd64 (apt-get update?)"
		fi
		if ! download "$tmp" "$pkg"; then
			cat "$tmp/download.log" >&2
			rm -rf "$tmp"
			unavailable "cannot download $pkg"
		fi
	fi
	log "fetched $pkg"
	deb=$(ls "$tmp"/*.deb 2>/dev/null | head -1)
	dpkg-deb -x "$deb" "$tmp/x" || { rm -rf "$tmp"; unavailable "cannot unpack $deb"; }
	kver=$(ls "$tmp/x/lib/modules" 2>/dev/null | head -1)
	[ -n "$kver" ] && [ -f "$tmp/x/boot/vmlinuz-$kver" ] ||
		{ rm -rf "$tmp"; unavailable "$pkg has no kernel image"; }
	dir=$vmdir/kernel/$kver
	rm -rf "$dir"
	mkdir -p "$dir"
	cp "$tmp/x/boot/vmlinuz-$kver" "$dir/vmlinuz"
	mkdir -p "$dir/modules"
	mv "$tmp/x/lib/modules/$kver" "$dir/modules/$kver"
	# Only virtual networking can matter here: keep a tenth of it.
	(cd "$dir/modules/$kver/kernel" && rm -rf sound fs &&
		find drivers -mindepth 1 -maxdepth 1 ! -name net -exec rm -rf {} + &&
		rm -rf drivers/net/wireless drivers/net/ethernet)
	echo "$pkg" >"$dir/package"
	touch "$dir/ok"
	rm -rf "$tmp"
	kdir=$dir
}

# depmod -b wants BASE/lib/modules/KVER: keep that shape.
layout_kernel() {
	local dir=$1 kver
	kver=$(ls "$dir/modules" | head -1)
	if [ ! -d "$dir/base/lib/modules/$kver" ]; then
		mkdir -p "$dir/base/lib/modules"
		ln -sfn "../../../modules/$kver" "$dir/base/lib/modules/$kver"
	fi
	[ -f "$dir/modules/$kver/modules.dep" ] ||
		depmod -b "$dir/base" "$kver" || unavailable "depmod failed for $kver"
}

kdir=$(find_cached_kernel) || fetch_kernel
layout_kernel "$kdir"
kver=$(ls "$kdir/modules" | head -1)
kmods=$kdir/modules/$kver

# --- the base initramfs --------------------------------------------------------
# Binaries from the host, their libraries (by ldd), the modules we need with
# their dependencies, busybox and /init. Rebuilt when any input changes.
host_bins=("$(command -v busybox)" "$(command -v wg)" "$(command -v ip)"
	"$(command -v ping)" "$zmesh_bin")
# zmesh.json needs cjson; its place is in liblua5.4's default cpath.
cjson_so=/usr/lib/x86_64-linux-gnu/lua/5.4/cjson.so
extra=()
[ -f "$cjson_so" ] && extra+=("$cjson_so")

# The modules with everything they depend on (modules.dep lists it all).
module_lines=()
for m in "${modules[@]}"; do
	line=$(grep -E "(^|/)$m\.ko(\.[a-z]+)?:" "$kmods/modules.dep" | head -1)
	[ -n "$line" ] || unavailable "kernel $kver has no module $m"
	module_lines+=("${line/:/}")
done
module_files() {
	printf '%s\n' ${module_lines[@]} | awk '!seen[$0]++'
}

key=$( {
	echo "$kver"
	sha256sum "$0" "${host_bins[@]}" "${extra[@]}"
	printf '%s\n' "${modules[@]}"
} | sha256sum | cut -c1-16)
base=$vmdir/initramfs-$key.cpio

make_base() {
	local stage lib f m out
	stage=$(mktemp -d "$vmdir/stage.XXXXXX")
	mkdir -p "$stage"/{bin,sbin,usr/bin,usr/sbin,opt/host/bin,proc,sys,dev,run,tmp,etc,root,zmesh/build,lib/modules/$kver}
	cp "$(command -v busybox)" "$stage/bin/busybox"
	ln -s busybox "$stage/bin/sh"
	for f in wg ip ping; do cp -L "$(command -v $f)" "$stage/opt/host/bin/$f"; done
	cp -L "$zmesh_bin" "$stage/zmesh/build/zmesh"
	if [ -f "$cjson_so" ]; then
		mkdir -p "$stage$(dirname "$cjson_so")"
		cp -L "$cjson_so" "$stage$cjson_so"
	fi
	# Shared libraries, at the paths the loader asks for.
	for f in "${host_bins[@]}" "${extra[@]}"; do
		ldd "$f" 2>/dev/null | awk '/=> \// { print $3 } /^\t\// { print $1 }'
	done | sort -u | while read -r lib; do
		mkdir -p "$stage$(dirname "$lib")"
		cp -L "$lib" "$stage$lib"
	done
	# Modules (uncompressed, so that busybox modprobe can load them).
	for m in $(module_files); do
		mkdir -p "$stage/lib/modules/$kver/$(dirname "$m")"
		case $m in
		*.ko) cp "$kmods/$m" "$stage/lib/modules/$kver/$m" ;;
		*.ko.xz) xz -dc "$kmods/$m" >"$stage/lib/modules/$kver/${m%.xz}" ;;
		*.ko.zst) zstd -qdc "$kmods/$m" >"$stage/lib/modules/$kver/${m%.zst}" ;;
		*.ko.gz) gzip -dc "$kmods/$m" >"$stage/lib/modules/$kver/${m%.gz}" ;;
		esac
	done
	for f in modules.builtin modules.builtin.modinfo modules.order; do
		[ -f "$kmods/$f" ] && cp "$kmods/$f" "$stage/lib/modules/$kver/"
	done
	depmod -b "$stage" "$kver" || { rm -rf "$stage"; unavailable "depmod failed"; }
	cat >"$stage/init" <<'EOF'
#!/bin/sh
# PID 1 of the test VM: mount, run the test, report, power off.
/bin/busybox --install -s
export PATH=/opt/host/bin:/zmesh/build:/bin:/sbin:/usr/bin:/usr/sbin
export ZMESH_VM_TOOLS=/opt/host/bin WG_COLOR_MODE=never HOME=/root LD_LIBRARY_PATH=/lib/x86_64-linux-gnu:/usr/lib/x86_64-linux-gnu
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mount -t tmpfs run /run
mount -t tmpfs tmp /tmp
/opt/host/bin/ip link set lo up
# Kernel messages would cut into the test's lines on the console; they go
# to the log, shown below when the test fails.
echo 1 >/proc/sys/kernel/printk
cd /zmesh
echo "ZMESH-VM-BEGIN $(uname -r)"
rc=1
if [ -f /zmesh/vm-cmd ]; then
	. /zmesh/vm-cmd
	rc=$?
else
	echo "no /zmesh/vm-cmd"
fi
if [ "$rc" != 0 ]; then
	echo "--- kernel log (last 40 lines) ---"
	dmesg | tail -n 40
fi
echo "ZMESH-VM-RESULT $rc"
sync
poweroff -f
EOF
	chmod 755 "$stage/init"
	out=$(mktemp "$vmdir/initramfs.XXXXXX")
	(cd "$stage" && find . -print0 | LC_ALL=C sort -z |
		cpio --null -o -H newc --quiet -R 0:0) >"$out" ||
		{ rm -rf "$stage" "$out"; unavailable "cpio failed"; }
	rm -rf "$stage"
	rm -f "$vmdir"/initramfs-*.cpio
	mv "$out" "$base"
}

if [ ! -f "$base" ]; then
	log "building initramfs ($kver)"
	make_base
fi
if [ -n "$prepare" ]; then
	echo "vm ready: kernel $kver, $base"
	exit 0
fi

# --- this run: the tree's Lua, tests and the command ---------------------------
run=$(mktemp -d "$vmdir/run.XXXXXX")
trap 'rm -rf "$run"' EXIT
mkdir -p "$run/stage/zmesh"
(cd "$root" && cp -R lua policies "$run/stage/zmesh/" 2>/dev/null)
mkdir -p "$run/stage/zmesh/tests"
(cd "$root" && cp -R tests/vm tests/lib "$run/stage/zmesh/tests/" 2>/dev/null)
mkdir -p "$run/stage/zmesh/$(dirname "$script_rel")"
cp "$script_abs" "$run/stage/zmesh/$script_rel"
{
	printf 'set -- '
	printf '%q ' "$@"
	printf '\n'
	case $script_rel in
	*.lua) printf '/zmesh/build/zmesh run %q "$@"\n' "$script_rel" ;;
	*) printf 'sh %q "$@"\n' "$script_rel" ;;
	esac
} >"$run/stage/zmesh/vm-cmd"
(cd "$run/stage" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --quiet -R 0:0) >"$run/overlay.cpio" ||
	vm_error "cannot build the overlay"
cat "$base" "$run/overlay.cpio" >"$run/initrd"
flock -u 9

# --- boot -------------------------------------------------------------------
console=$run/console.log
log "booting $kver for $script_rel (timeout ${timeout_s}s)"
start=$(date +%s)
timeout -k 5 "$timeout_s" "$qemu" \
	-accel tcg -nodefaults -nic none -no-reboot \
	-m 512M -smp 1 -display none -monitor none \
	-serial "file:$console" \
	-kernel "$kdir/vmlinuz" -initrd "$run/initrd" \
	-append "console=ttyS0 quiet panic=-1 mitigations=off" </dev/null
qrc=$?
elapsed=$(( $(date +%s) - start ))
tr -d '\r' <"$console" >"$run/console"
cp "$run/console" "$vmdir/last-console.log" 2>/dev/null

if [ "${ZMESH_VM_VERBOSE:-}" = 1 ]; then
	cat "$run/console"
else
	# The script's part: between the markers.
	awk '/^ZMESH-VM-BEGIN/ { on = 1; next } /^ZMESH-VM-RESULT/ { on = 0 } on' "$run/console"
fi
result=$(awk '/^ZMESH-VM-RESULT [0-9]+$/ { r = $2 } END { print r }' "$run/console")
log "VM done in ${elapsed}s"
if [ -z "$result" ]; then
	echo "--- last console lines ---"
	tail -n 30 "$run/console"
	if [ "$qrc" = 124 ] || [ "$qrc" = 137 ]; then
		vm_error "timed out after ${timeout_s}s"
	fi
	vm_error "no result from the VM (qemu exit $qrc)"
fi
echo "ZMESH-VM-RESULT $result (${elapsed}s)"
exit "$result"
