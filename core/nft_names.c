// SPDX-License-Identifier: MIT
/* The nftables vocabulary: names of families, hooks, states and types. */
#include "nft.h"

#include <errno.h>
#include <string.h>

#include <linux/netfilter.h>

const struct zm_nft_name zm_nft_families[] = {
	{ "inet", ZM_NFT_INET },
	{ "ip", ZM_NFT_IP },
	{ "ip6", ZM_NFT_IP6 },
	{ NULL, 0 },
};

const struct zm_nft_name zm_nft_chain_types[] = {
	{ "filter", ZM_NFT_FILTER },
	{ "nat", ZM_NFT_NAT },
	{ NULL, 0 },
};

const struct zm_nft_name zm_nft_hooks[] = {
	{ "prerouting", NF_INET_PRE_ROUTING },
	{ "input", NF_INET_LOCAL_IN },
	{ "forward", NF_INET_FORWARD },
	{ "output", NF_INET_LOCAL_OUT },
	{ "postrouting", NF_INET_POST_ROUTING },
	{ NULL, 0 },
};

const struct zm_nft_name zm_nft_ct_states[] = {
	{ "invalid", ZM_NFT_CT_INVALID },
	{ "established", ZM_NFT_CT_ESTABLISHED },
	{ "related", ZM_NFT_CT_RELATED },
	{ "new", ZM_NFT_CT_NEW },
	{ "untracked", ZM_NFT_CT_UNTRACKED },
	{ NULL, 0 },
};

const struct zm_nft_name zm_nft_l4protos[] = {
	{ "icmp", 1 },
	{ "tcp", 6 },
	{ "udp", 17 },
	{ "icmpv6", 58 },
	{ NULL, 0 },
};

const struct zm_nft_name zm_nft_icmp_types[] = {
	{ "echo-reply", 0 },
	{ "destination-unreachable", 3 },
	{ "redirect", 5 },
	{ "echo-request", 8 },
	{ "router-advertisement", 9 },
	{ "router-solicitation", 10 },
	{ "time-exceeded", 11 },
	{ "parameter-problem", 12 },
	{ NULL, 0 },
};

const struct zm_nft_name zm_nft_icmpv6_types[] = {
	{ "destination-unreachable", 1 },
	{ "packet-too-big", 2 },
	{ "time-exceeded", 3 },
	{ "parameter-problem", 4 },
	{ "echo-request", 128 },
	{ "echo-reply", 129 },
	{ "mld-listener-query", 130 },
	{ "mld-listener-report", 131 },
	{ "mld-listener-done", 132 },
	{ "nd-router-solicit", 133 },
	{ "nd-router-advert", 134 },
	{ "nd-neighbor-solicit", 135 },
	{ "nd-neighbor-advert", 136 },
	{ "nd-redirect", 137 },
	{ "mld2-listener-report", 143 },
	{ NULL, 0 },
};

const char *const zm_nft_key_names[ZM_NFT_KEY_COUNT + 1] = {
	[ZM_NFT_IIFNAME] = "iifname",
	[ZM_NFT_OIFNAME] = "oifname",
	[ZM_NFT_CT_STATE] = "ct_state",
	[ZM_NFT_IP_SADDR] = "ip_saddr",
	[ZM_NFT_IP_DADDR] = "ip_daddr",
	[ZM_NFT_IP6_SADDR] = "ip6_saddr",
	[ZM_NFT_IP6_DADDR] = "ip6_daddr",
	[ZM_NFT_L4PROTO] = "l4proto",
	[ZM_NFT_TCP_SPORT] = "tcp_sport",
	[ZM_NFT_TCP_DPORT] = "tcp_dport",
	[ZM_NFT_UDP_SPORT] = "udp_sport",
	[ZM_NFT_UDP_DPORT] = "udp_dport",
	[ZM_NFT_ICMP_TYPE] = "icmp_type",
	[ZM_NFT_ICMPV6_TYPE] = "icmpv6_type",
	[ZM_NFT_KEY_COUNT] = NULL,
};

int zm_nft_name_lookup(const struct zm_nft_name *names, const char *name,
		       uint32_t *value)
{
	for (; names->name; names++)
		if (!strcmp(names->name, name)) {
			*value = names->value;
			return 0;
		}
	return -ENOENT;
}

const char *zm_nft_name_of(const struct zm_nft_name *names, uint32_t value)
{
	for (; names->name; names++)
		if (names->value == value)
			return names->name;
	return NULL;
}

uint8_t zm_nft_nfproto(enum zm_nft_family f)
{
	switch (f) {
	case ZM_NFT_IP:
		return NFPROTO_IPV4;
	case ZM_NFT_IP6:
		return NFPROTO_IPV6;
	default:
		return NFPROTO_INET;
	}
}
