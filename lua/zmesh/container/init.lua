-- Containers on an NR: a veth from the NR's bridge to eth0 in the
-- container's namespace, with the user's address in the NR's subnet.
local check = require "zmesh.check"
local context = require "zmesh.node.context"
local core = require "zmesh.core"
local desired = require "zmesh.nr.desired"
local ip = require "zmesh.ip"
local json = require "zmesh.json"
local lock = require "zmesh.node.lock"
local names = require "zmesh.node.names"
local nr_config = require "zmesh.nr.config"
local reconcile = require "zmesh.reconcile"
local uplink = require "zmesh.nr.uplink"

local container = {}

local function nr_of(ctx, net_id)
  if not names.valid_net_id(net_id) then check.fail("net_id", net_id, "must be 1..12 of a-z 0-9") end
  local raw = context.saved_nr(ctx, net_id)
  if not raw or not core.netns.exists(names.nr_ns(net_id)) then
    check.not_found("net_id", net_id, "no such NR on this node")
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

-- The NR end of NETNS's veth: the one recorded for it; else the one that
-- is already the peer of NETNS's eth0 (attached before, its record lost:
-- taken over, not made twice); else the first candidate name that no
-- other container of the NR has (recorded, or a link of that name found
-- in the NR).
local function allocate_port(net_id, records, netns)
  if records[netns] then return records[netns].port end
  local eth0 = core.netns.exists(netns) and core.link.get(netns, names.CONTAINER_IF)
  if eth0 and eth0.kind ~= "veth" then
    check.conflict("netns", netns, "has an eth0 that is not a veth: not a link Zero-Mesh made")
  end
  local recorded, taken, links = {}, {}, {}
  for other, rec in pairs(records) do if other ~= netns then recorded[rec.port] = true end end
  for _, l in ipairs(core.link.dump(names.nr_ns(net_id)) or {}) do links[l.name] = l end
  for try = 0, 99 do
    local port = names.container_port(netns, try)
    local l = links[port]
    if eth0 and l and not recorded[port] and l.kind == "veth"
        and l.link_index == eth0.index and eth0.link_index == l.index then
      return port
    end
  end
  if eth0 then
    check.conflict("netns", netns, "has an eth0 whose peer is no link of NR " .. net_id
      .. ": another network's, or not Zero-Mesh's")
  end
  for name in pairs(recorded) do taken[name] = true end
  for name in pairs(links) do taken[name] = true end
  for try = 0, 99 do
    local port = names.container_port(netns, try)
    if not taken[port] then return port end
  end
  error("no free link name for container " .. netns .. " in NR " .. net_id, 0)
end

-- P: {net_id, netns, ip, ip6, create, dry_run}. create makes the
-- namespace when absent (prototyping and tests; a container runtime makes
-- its own); dry_run gives the plan instead.
function container.attach(ctx, p)
  check.known_fields(p, { "net_id", "netns", "ip", "ip6", "create", "dry_run" })
  check.boolean(p, "dry_run", true)
  check.boolean(p, "create", true)
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
  return lock.hold(ctx, function()
    -- One namespace has one eth0: attached to another NR, it is that one's.
    for other_nr, attached in pairs(context.attached_sets(ctx)) do
      if other_nr ~= cfg.net_id and attached[p.netns] then
        check.conflict("netns", p.netns, "is attached to NR " .. other_nr .. ": detach it there first")
      end
    end
    local records = context.attachments(ctx, cfg.net_id)
    -- Two containers of one NR with one address would each lose packets;
    -- a record whose namespace its runtime removed holds nothing.
    for other, rec in pairs(records) do
      local live = other ~= p.netns and core.netns.exists(other)
      if live and rec.ip == addr_text then
        check.conflict("ip", addr_text, "already used by container " .. other .. " of this NR")
      end
      if live and ip6_text and rec.ip6 == ip6_text then
        check.conflict("ip6", ip6_text, "already used by container " .. other .. " of this NR")
      end
    end
    local port = allocate_port(cfg.net_id, records, p.netns)
    local want = desired.container(cfg, { netns = p.netns, ip = addr_text, ip6 = ip6_text,
      port = port, uplink = uplink.node_link(core) })
    local created = false
    if p.dry_run then
      if p.create and not core.netns.exists(p.netns) then
        table.insert(want, 1, { kind = "netns", name = p.netns })
      end
      return { net_id = cfg.net_id, netns = p.netns, port = port,
        changes = json.array(reconcile.plan(core, want, {})) }
    end
    if p.create and not core.netns.exists(p.netns) then
      table.insert(want, 1, { kind = "netns", name = p.netns })
      created = true
    elseif not core.netns.exists(p.netns) then
      check.fail("netns", p.netns, "does not exist (pass create = true to make it)")
    end
    local report = reconcile.apply(core, want, {})
    if not report.ok then
      local rolled = ""
      if created then
        -- A namespace this call made goes again with its failure.
        reconcile.apply(core, { { kind = "netns", name = p.netns, veths_first = true, absent = true } })
        rolled = " (rolled back)"
      end
      error(string.format("attach failed at '%s': %s%s", report.failed, tostring(report.error),
        rolled), 0)
    end
    records[p.netns] = { netns = p.netns, ip = addr_text, ip6 = ip6_text, port = port }
    context.save_attachments(ctx, cfg.net_id, records)
    return { net_id = cfg.net_id, netns = p.netns, ip = addr_text, ip6 = ip6_text,
      port = port, changes = report.done }
  end)
end

-- What detaching NETNS from NET_ID's NR removes: its own link only (the
-- veth pair goes as a whole), and with DELETE its namespace.
local function detach_removal(net_id, rec, netns, delete)
  local want = {}
  if rec then
    want[#want + 1] = { kind = "link", ns = names.nr_ns(net_id), name = rec.port, absent = true }
  end
  if delete then want[#want + 1] = { kind = "netns", name = netns, absent = true } end
  return want
end

-- P: {net_id, netns, delete, dry_run}. Removes the container's link (its
-- veth pair goes as a whole); delete also removes the namespace; dry_run
-- gives the plan instead.
function container.detach(ctx, p)
  check.known_fields(p, { "net_id", "netns", "delete", "dry_run" })
  nr_of(ctx, p.net_id)
  check_netns(p.netns)
  check.boolean(p, "delete", true)
  check.boolean(p, "dry_run", true)
  if p.dry_run then
    local rec = context.attachments(ctx, p.net_id)[p.netns]
    return { net_id = p.net_id, netns = p.netns, attached = rec ~= nil,
      changes = json.array(reconcile.plan(core, detach_removal(p.net_id, rec, p.netns, p.delete))) }
  end
  return lock.hold(ctx, function()
    local records = context.attachments(ctx, p.net_id)
    local rec = records[p.netns]
    local report = reconcile.apply(core, detach_removal(p.net_id, rec, p.netns, p.delete))
    if not report.ok then
      error(string.format("detach failed at '%s': %s", report.failed, tostring(report.error)), 0)
    end
    records[p.netns] = nil
    context.save_attachments(ctx, p.net_id, records)
    return { net_id = p.net_id, netns = p.netns, detached = rec ~= nil,
      changes = json.array(report.done) }
  end)
end

return container
