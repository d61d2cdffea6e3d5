-- Desired state is a list of resources; each kind has an identity and a
-- phase that orders creation (deletion runs the other way).
--
--   netns  {name}
--   sysctl {ns, key, value}
--   link   {ns, name, type = bridge|veth|veth_end|macvlan|moved|wireguard|
--           existing, mtu, up,
--           master, peer, peer_ns (veth), parent, parent_ns (macvlan),
--           from, from_ns (moved: an existing link taken over and renamed),
--           birth_ns, log, backend (wireguard),
--           optional (moved: nothing to do when the source is gone),
--           keep_addrs (addresses on it are not ours to prune)}
--   addr   {ns, dev, addr}
--   route  {ns, family = 4|6, dst = "default"|prefix, via, dev}
--   wg     {ns, name, private_key (core.key object), public_key,
--           listen_port, peers = {{public_key, allowed_ips, endpoint,
--           persistent_keepalive}}}
--   nft    {ns, ruleset (validated description)}
--   file   {path} (only absent: a file that must be gone)
--
-- A resource with absent = true must not exist: a removal is desired
-- state too (nothing under the names it owns), diffed into deletions and
-- carried out by the same apply step. Absent links, namespaces and files
-- are deleted in the reverse order of creation; "already gone" is fine.
-- An absent route goes only where it runs through its VIA.
-- An absent netns with veths_first = true has every veth inside it
-- deleted first: a veth deleted from one side is gone from both at once,
-- while a namespace's links die asynchronously after its name is removed.
local resources = {}

resources.phase = { netns = 1, sysctl = 2, link = 3, wg = 4, addr = 5, route = 6, nft = 7,
  file = 8 }

-- Every namespace field is a name, or "host" for the caller's own
-- namespace (the node's root namespace). core calls take nil for that.
resources.HOST = "host"
function resources.core_ns(ns)
  if ns == resources.HOST then return nil end
  return ns
end

function resources.key(r)
  local ns = r.ns
  if r.kind == "netns" then return "netns " .. r.name end
  if r.kind == "sysctl" then return "sysctl " .. ns .. " " .. r.key end
  if r.kind == "link" then return "link " .. ns .. " " .. r.name end
  if r.kind == "addr" then return "addr " .. ns .. " " .. r.dev .. " " .. r.addr end
  if r.kind == "route" then return "route " .. ns .. " " .. tostring(r.family) .. " " .. r.dst end
  if r.kind == "wg" then return "wg " .. ns .. " " .. r.name end
  if r.kind == "nft" then return "nft " .. ns end
  if r.kind == "file" then return "file " .. r.path end
  error("unknown resource kind " .. tostring(r.kind), 2)
end

-- Sort so that every resource comes after what it needs.
function resources.sort(list)
  local link_rank = { existing = 0, bridge = 1, moved = 2, macvlan = 2, veth = 3,
    veth_end = 4, wireguard = 5 }
  table.sort(list, function(a, b)
    local pa, pb = resources.phase[a.kind], resources.phase[b.kind]
    if pa ~= pb then return pa < pb end
    if a.kind == "link" then
      local ra, rb = link_rank[a.type] or 9, link_rank[b.type] or 9
      if ra ~= rb then return ra < rb end
    end
    return resources.key(a) < resources.key(b)
  end)
  return list
end

return resources
