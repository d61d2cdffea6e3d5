#!/bin/sh
# One whole NR built by hand, as an operator would, with ip, wg,
# wireguard-go and nft: the ndmz (what `zmesh node start` makes), the NR
# with its WireGuard and peers (`zmesh node apply`), and one container
# (`container.attach`): the same names, addresses, routes, sysctls,
# WireGuard configuration and nftables tables. tests/bench/nr_whole.lua
# runs it inside a simulated node, times it against Zero-Mesh and checks
# that both builds are identical (tests/bench/lib/describe.lua).
#
#   nr_by_hand.sh up      build it all
#
# Everything comes from the environment, as the variables at the top of
# an operator's script would:
#   NIC UPLINK_ADDR GATEWAY              the node's NIC and its address
#   NET_ID RANGE SUBNET_GW MESH_ADDR NR_UPLINK
#                                        the NR: id, user range, bridge
#                                        address, wg mesh address, uplink
#   WG_PORT WG_KEY WG_PEERS              listen port, private key file,
#                                        a wg(8) config file of [Peer]s
#   NFT_NDMZ NFT_NR                      nft -f files (the rulesets)
#   CONTAINER CPORT CIP                  the container namespace, the
#                                        NR end of its veth, its address
#   WG_BACKEND                           userspace (wireguard-go, default)
#                                        or kernel
#   MTU                                  the NR's MTU: its WireGuard, bridge
#                                        and container links (optional)
#   TONRS_ADDR6                          the ndmz bridge's IPv6 (optional)
set -e
[ "$1" = up ] || { echo "usage: $0 up" >&2; exit 2; }
: "${WG_BACKEND:=userspace}"
nr=n-$NET_ID
wg_if=w-$NET_ID
br=b-$NET_ID
gw=${SUBNET_GW%/*}
mtu=${MTU:+mtu $MTU}

# The ndmz: uplink, bridge towards the NRs, forwarding, the diode.
ip netns add ndmz
ip netns exec ndmz sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1
ip -n ndmz link set lo up
ip -n ndmz link add tonrs type bridge
ip -n ndmz link set tonrs up
ip -n ndmz addr add 100.127.0.1/16 dev tonrs
[ -z "$TONRS_ADDR6" ] || ip -n ndmz addr add "$TONRS_ADDR6" dev tonrs nodad
ip link add link "$NIC" name public netns ndmz type macvlan mode bridge
ip -n ndmz link set public up
ip -n ndmz addr add "$UPLINK_ADDR" dev public
ip -n ndmz route add default via "$GATEWAY" dev public proto static
ip netns exec ndmz nft -f "$NFT_NDMZ"

# The NR: its namespace, uplink veth, WireGuard born in the ndmz.
ip netns add "$nr"
ip netns exec "$nr" sysctl -q -w net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1 \
	net.ipv6.conf.default.accept_dad=0 net.ipv4.conf.all.send_redirects=0
ip -n "$nr" link set lo up
ip -n ndmz link add "$nr" type veth peer name public netns "$nr"
ip -n ndmz link set "$nr" master tonrs up
ip -n "$nr" link set public up
if [ "$WG_BACKEND" = kernel ]; then
	ip -n ndmz link add "$wg_if" type wireguard
	ip -n ndmz link set "$wg_if" netns "$nr"
else
	# It daemonizes once its API socket is there; its child then opens
	# the TUN device again by name in the ndmz, so the link may only move
	# once the child answers on that socket.
	ip netns exec ndmz wireguard-go "$wg_if" 2>/dev/null
	until wg show "$wg_if" listen-port >/dev/null 2>&1; do sleep 0.005; done
	ip -n ndmz link set "$wg_if" netns "$nr"
fi
ip netns exec "$nr" wg set "$wg_if" private-key "$WG_KEY" listen-port "$WG_PORT"
ip netns exec "$nr" wg addconf "$wg_if" "$WG_PEERS"
ip -n "$nr" link set "$wg_if" $mtu up
ip -n "$nr" addr add "$NR_UPLINK" dev public
ip -n "$nr" addr add "$MESH_ADDR" dev "$wg_if"
ip -n "$nr" route add "$RANGE" dev "$wg_if" proto static
ip -n "$nr" link add "$br" $mtu type bridge
ip -n "$nr" link set "$br" up
ip -n "$nr" addr add "$SUBNET_GW" dev "$br"
ip -n "$nr" route add default via 100.127.0.1 dev public proto static
ip netns exec "$nr" nft -f "$NFT_NR"

# One container on the NR's bridge.
ip netns add "$CONTAINER"
ip netns exec "$CONTAINER" sysctl -q -w net.ipv6.conf.default.accept_dad=0
ip -n "$CONTAINER" link set lo up
ip -n "$nr" link add "$CPORT" $mtu type veth peer name eth0 $mtu netns "$CONTAINER"
ip -n "$nr" link set "$CPORT" master "$br" up
ip -n "$CONTAINER" link set eth0 up
ip -n "$CONTAINER" addr add "$CIP" dev eth0
ip -n "$CONTAINER" route add default via "$gw" dev eth0 proto static
