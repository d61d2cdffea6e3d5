# The VM itself: its kernel has WireGuard (loaded on demand) and the tools
# work. tests/vm/run.sh tests/vm/smoke.sh
set -e
ip=$ZMESH_VM_TOOLS/ip	# busybox's own ip applet would win over PATH
echo "kernel $(uname -r)"
$ip link add wgsmoke type wireguard
wg set wgsmoke listen-port 51820
wg show wgsmoke
grep -q '^wireguard ' /proc/modules
zmesh version
echo "smoke ok"
