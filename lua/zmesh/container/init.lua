-- Containers on an NR: a veth from the NR's bridge to eth0 in the
-- container's namespace, with the user's address in the NR's subnet.
local check = require "zmesh.check"
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local desired = require "zmesh.nr.desired"
local ip = require "zmesh.ip"
local names = require "zmesh.node.names"
local nr_config = require "zmesh.nr.config"
local reconcile = require "zmesh.reconcile"

local container = {}

local function nr_of(ctx, net_id)
  if not names.valid_net_id(net_id) then check.fail("net_id", net_id, "must be 1..12 of a-z 0-9") end
  local raw = context.saved_nrs(ctx)[net_id]
  if not raw or not core.netns.exists(names.nr_ns(net_id)) then
    check.fail("net_id", net_id, "no such NR on this node")
  end
  return nr_config.validate(raw)
end

local function check_netns(netns)
  if type(netns) ~= "string" or not netns:match("^[%w_.-]+$") or #netns > 64
     or netns == "." or netns == ".." then
    check.fail("netns", netns, "not a namespace name")
  end
  if netns == names.NDMZ or netns:match("^n%-") then
    check.fail("netns", netns, "is Zero-Mesh's own namespace")
  end
end

-- P: {net_id, netns, ip, ip6, create}. create makes the namespace when
-- absent (prototyping and tests; a container runtime makes its own).
function container.attach(ctx, p)
  check.known_fields(p, { "net_id", "netns", "ip", "ip6", "create" })
  local cfg = nr_of(ctx, p.net_id)
  check_netns(p.netns)
  local addr_text, addr = check.address(p.ip, "ip", 4)
  local subnet = ip.parse_cidr(cfg.subnet)
  if not ip.contains(subnet, addr) then
    check.fail("ip", addr_text, "is not in the NR's subnet " .. cfg.subnet)
  end
  local last = ip.subnet_count(subnet, 32) - 1
  local index = addr.bytes[4] - subnet.bytes[4]
  if index == 0 or index == 1 or index == last then
    check.fail("ip", addr_text, "is the subnet's network, gateway or broadcast address")
  end
  local ip6_text
  if p.ip6 ~= nil then
    if not cfg.ipv6_subnet then check.fail("ip6", p.ip6, "the NR has no IPv6 subnet") end
    local a6
    ip6_text, a6 = check.address(p.ip6, "ip6", 6)
    local v6 = ip.parse_cidr(cfg.ipv6_subnet)
    if not ip.contains(v6, a6) then
      check.fail("ip6", ip6_text, "is not in the NR's IPv6 subnet " .. cfg.ipv6_subnet)
    end
    if ip.equal(a6, ip.host(v6, 0)) or ip.equal(a6, ip.host(v6, 1)) then
      check.fail("ip6", ip6_text, "is the subnet's network or gateway address")
    end
  end
  local want = desired.container(cfg, { netns = p.netns, ip = addr_text, ip6 = ip6_text })
  if p.create then
    table.insert(want, 1, { kind = "netns", name = p.netns })
  elseif not core.netns.exists(p.netns) then
    check.fail("netns", p.netns, "does not exist (pass create = true to make it)")
  end
  local report = reconcile.apply(core, want, {})
  if not report.ok then
    error(string.format("attach failed at '%s': %s", report.failed, tostring(report.error)), 0)
  end
  return { net_id = cfg.net_id, netns = p.netns, ip = addr_text, ip6 = ip6_text,
    port = names.container_port(p.netns), changes = report.done }
end

-- P: {net_id, netns, delete}. Removes the container's link (its veth pair
-- goes as a whole); delete also removes the namespace.
function container.detach(ctx, p)
  check.known_fields(p, { "net_id", "netns", "delete" })
  nr_of(ctx, p.net_id)
  check_netns(p.netns)
  local ns, port = names.nr_ns(p.net_id), names.container_port(p.netns)
  local detached = false
  if core.link.get(ns, port) then
    local ok, err = core.link.delete { ns = ns, name = port }
    if not ok then error(err, 0) end
    detached = true
  end
  if p.delete and core.netns.exists(p.netns) then
    local ok, err = core.netns.delete(p.netns)
    if not ok then error(err, 0) end
  end
  return { net_id = p.net_id, netns = p.netns, detached = detached }
end

return container
