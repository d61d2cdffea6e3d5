-- diff: desired resources against an inventory, pure.
local diff = require "zmesh.reconcile.diff"
local apply = require "zmesh.reconcile.apply"

local function inv(ns)
  return { netns = { x = true }, ns = ns, sysctl = {}, wg = {} }
end

local function ops(actions)
  local out = {}
  for i, a in ipairs(actions) do out[i] = a.op end
  return out
end

describe("reconcile.diff", function()
  it("creates what is missing, in dependency order", function()
    local want = {
      { kind = "addr", ns = "y", dev = "br", addr = "10.0.0.1/24" },
      { kind = "link", ns = "y", name = "v", type = "veth", peer = "p", peer_ns = "x", master = "br", up = true },
      { kind = "link", ns = "y", name = "br", type = "bridge", up = true },
      { kind = "netns", name = "y" },
    }
    local actions = diff.compute(want, inv({ x = { links = {}, addrs = {}, routes = {} } }))
    assert.same({ "netns_create", "link_bridge", "link_set", "link_veth", "link_set", "addr_add" }, ops(actions))
    assert.equal("create veth v@y <-> p@x", actions[4].text)
    assert.equal("set v@y master br, up", actions[5].text)
  end)

  it("replaces a link of the wrong kind", function()
    local want = { { kind = "link", ns = "x", name = "br", type = "bridge" } }
    local actions = diff.compute(want, inv({ x = { links = { br = { name = "br", kind = "veth", up = false, mtu = 1500 } },
      addrs = {}, routes = {} } }))
    assert.same({ "link_delete", "link_bridge" }, ops(actions))
    assert.matches("a veth, not a bridge", actions[1].text)
  end)

  it("re-addresses a link old address first, and puts back the IPv4 routes the old one took", function()
    local st = {
      links = { eth0 = { name = "eth0", kind = "veth", up = true, mtu = 1500 } },
      addrs = { eth0 = { { dev = "eth0", addr = "10.0.0.20/24", scope = "global" } } },
      routes = { { dst = "default", via = "10.0.0.1", dev = "eth0", family = 4, protocol = "static" },
        { dst = "10.0.0.0/24", dev = "eth0", family = 4, protocol = "kernel" } },
    }
    local want = {
      { kind = "link", ns = "c", name = "eth0", type = "veth", up = true },
      { kind = "addr", ns = "c", dev = "eth0", addr = "10.0.0.21/24" },
      { kind = "route", ns = "c", family = 4, dst = "default", via = "10.0.0.1", dev = "eth0" },
    }
    local actions = diff.compute(want, inv({ c = st }))
    assert.same({ "addr_delete", "addr_add", "route_replace" }, ops(actions))
    assert.equal("10.0.0.20/24", actions[1].addr)
    assert.equal("10.0.0.21/24", actions[2].addr)
  end)

  it("prunes addresses on managed links and routes in owned namespaces only", function()
    local st = {
      links = { br = { name = "br", kind = "bridge", up = true, mtu = 1500 },
        other = { name = "other", kind = "veth", up = true, mtu = 1500 } },
      addrs = { br = { { dev = "br", addr = "10.0.0.1/24", scope = "global" },
          { dev = "br", addr = "10.9.9.9/24", scope = "global" },
          { dev = "br", addr = "fe80::1/64", scope = "link" } },
        other = { { dev = "other", addr = "192.0.2.1/24", scope = "global" } } },
      routes = { { dst = "default", via = "10.0.0.254", dev = "br", family = 4, protocol = "static" },
        { dst = "10.0.0.0/24", dev = "br", family = 4, protocol = "kernel" },
        { dst = "10.5.0.0/16", dev = "br", family = 4, protocol = "static" } },
    }
    local want = {
      { kind = "link", ns = "x", name = "br", type = "bridge", up = true },
      { kind = "addr", ns = "x", dev = "br", addr = "10.0.0.1/24" },
      { kind = "route", ns = "x", family = 4, dst = "default", via = "10.0.0.254", dev = "br" },
    }
    local actions = diff.compute(want, inv({ x = st }), { own_routes = { "x" } })
    assert.same({ "addr_delete", "route_delete" }, ops(actions))
    assert.equal("10.9.9.9/24", actions[1].addr)
    assert.equal("10.5.0.0/16", actions[2].dst)
    -- Without ownership, foreign routes stay.
    assert.same({ "addr_delete" }, ops(diff.compute(want, inv({ x = st }))))
  end)

  it("keeps IPv4 and IPv6 defaults apart, and says which in the plan", function()
    local st = { links = {}, addrs = {}, routes = { { dst = "default", via = "10.0.0.1", family = 4,
      protocol = "static" } } }
    local want = {
      { kind = "route", ns = "x", family = 4, dst = "default", via = "10.0.0.1" },
      { kind = "route", ns = "x", family = 6, dst = "default", via = "fe80::1", dev = "up" },
    }
    local actions = diff.compute(want, inv({ x = st }), { own_routes = { "x" } })
    assert.same({ "route_replace" }, ops(actions))
    assert.equal(6, actions[1].family)
    assert.equal("route default (IPv6) via fe80::1 dev up in x", actions[1].text)
    -- Without a family, a default route is a mistake, not a guess.
    assert.has_error(function()
      diff.compute({ { kind = "route", ns = "x", dst = "default", via = "10.0.0.1" } }, inv({ x = st }))
    end, "route default in x has no family")
  end)

  it("replaces a route whose gateway changed", function()
    local st = { links = {}, addrs = {}, routes = { { dst = "default", via = "10.0.0.254", family = 4, protocol = "static" } } }
    local actions = diff.compute({ { kind = "route", ns = "x", family = 4, dst = "default", via = "10.0.0.1" } }, inv({ x = st }))
    assert.same({ "route_replace" }, ops(actions))
  end)

  it("changes only the WireGuard peers that differ", function()
    local have = { public_key = "OWN", listen_port = 51820, peers = {
      { public_key = "A", allowed_ips = { "10.0.1.0/24" }, endpoint = "192.0.2.1:1", persistent_keepalive = 0 },
      { public_key = "B", allowed_ips = { "10.0.2.0/24" }, persistent_keepalive = 0 },
      { public_key = "C", allowed_ips = { "10.0.3.0/24" }, persistent_keepalive = 0 } } }
    local want = { { kind = "wg", ns = "x", name = "w", public_key = "OWN", listen_port = 51820, peers = {
      { public_key = "A", allowed_ips = { "10.0.1.0/24" }, endpoint = "192.0.2.1:1" },
      { public_key = "B", allowed_ips = { "10.0.2.0/24", "10.0.9.0/24" } },
      { public_key = "D", allowed_ips = { "10.0.4.0/24" } } } } }
    local i = inv({ x = { links = {}, addrs = {}, routes = {} } })
    i.wg["wg x w"] = have
    local actions = diff.compute(want, i)
    assert.equal(1, #actions)
    local peers = {}
    for _, p in ipairs(actions[1].peers) do peers[p.public_key] = p end
    assert.is_nil(peers.A)
    assert.same({ "10.0.2.0/24", "10.0.9.0/24" }, peers.B.allowed_ips)
    assert.is_true(peers.B.replace_allowed_ips)
    assert.is_true(peers.C.remove)
    assert.truthy(peers.D)
    assert.is_nil(actions[1].private_key)
    assert.is_nil(actions[1].listen_port)
  end)

  it("recreates a WireGuard link whose daemon no longer answers", function()
    local st = { links = { w = { name = "w", kind = "tun", up = true, mtu = 1420 } }, addrs = {}, routes = {} }
    local i = inv({ x = st })
    i.wg["wg x w"] = false
    local want = {
      { kind = "link", ns = "x", name = "w", type = "wireguard", birth_ns = "b", up = true },
      { kind = "wg", ns = "x", name = "w", public_key = "OWN", listen_port = 1,
        peers = { { public_key = "A", allowed_ips = { "10.0.1.0/24" } } } },
    }
    local actions = diff.compute(want, i)
    assert.same({ "wg_create", "link_set", "wg_set" }, ops(actions))
    assert.is_true(actions[1].replace_stale)
    assert.matches("does not answer", actions[1].text)
    assert.equal(1, #actions[3].peers)
    -- Answering, it is left alone.
    i.wg["wg x w"] = { public_key = "OWN", listen_port = 1,
      peers = { { public_key = "A", allowed_ips = { "10.0.1.0/24" } } } }
    assert.same({}, diff.compute(want, i))
  end)

  it("puts addresses and routes back on a link it makes again, though the inventory still saw them", function()
    -- Read while the dead daemon's TUN was still being unregistered.
    local st = { links = { w = { name = "w", kind = "tun", up = true, mtu = 1420 },
        br = { name = "br", kind = "veth", up = true, mtu = 1500 } },
      addrs = { w = { { dev = "w", addr = "100.64.1.1/16", scope = "global" } },
        br = { { dev = "br", addr = "10.0.0.1/24", scope = "global" } } },
      routes = { { dst = "10.1.0.0/16", dev = "w", family = 4, protocol = "static" },
        { dst = "10.2.0.0/16", dev = "w", family = 4, protocol = "static" } } }
    local i = inv({ x = st })
    i.wg["wg x w"] = false
    local want = {
      { kind = "link", ns = "x", name = "w", type = "wireguard", birth_ns = "b", up = true },
      { kind = "link", ns = "x", name = "br", type = "bridge", up = true },
      { kind = "addr", ns = "x", dev = "w", addr = "100.64.1.1/16" },
      { kind = "addr", ns = "x", dev = "br", addr = "10.0.0.1/24" },
      { kind = "route", ns = "x", family = 4, dst = "10.1.0.0/16", dev = "w" },
    }
    local actions = diff.compute(want, i, { own_routes = { "x" } })
    assert.same({ "link_delete", "link_bridge", "link_set", "wg_create", "link_set", "addr_add", "addr_add",
      "route_replace" }, ops(actions))
    local added = {}
    for _, a in ipairs(actions) do if a.op == "addr_add" then added[a.dev] = a.addr end end
    assert.same({ w = "100.64.1.1/16", br = "10.0.0.1/24" }, added)
    assert.equal("10.1.0.0/16", actions[8].dst)
  end)

  it("does nothing when all is as desired", function()
    local st = { links = { br = { name = "br", kind = "bridge", up = true, mtu = 1500 } },
      addrs = { br = { { dev = "br", addr = "10.0.0.1/24", scope = "global" } } }, routes = {} }
    local want = { { kind = "netns", name = "x" }, { kind = "link", ns = "x", name = "br", type = "bridge", up = true },
      { kind = "addr", ns = "x", dev = "br", addr = "10.0.0.1/24" } }
    assert.same({}, diff.compute(want, inv({ x = st }), { own_routes = { "x" } }))
  end)
end)

describe("reconcile.apply", function()
  it("stops at the first failure and says what was done", function()
    local calls = {}
    local core = { netns = {
      create = function(n) calls[#calls + 1] = n; if n == "b" then return nil, "EPERM: no" end return true end } }
    local report = apply.run(core, {
      { op = "netns_create", name = "a", text = "create namespace a" },
      { op = "netns_create", name = "b", text = "create namespace b" },
      { op = "netns_create", name = "c", text = "create namespace c" } })
    assert.is_false(report.ok)
    assert.same({ "create namespace a" }, report.done)
    assert.equal("create namespace b", report.failed)
    assert.equal("EPERM: no", report.error)
    assert.same({ "a", "b" }, calls)
  end)
end)

describe("reconcile.inventory", function()
  local fake_core = require "fake_core"
  local inventory = require "zmesh.reconcile.inventory"
  local reconcile = require "zmesh.reconcile"

  -- A shared namespace "sh" with a bridge and 30 other NRs' ports, and
  -- a namespace "own" that the desired state owns; dumps counted by ns.
  local function node()
    local core = fake_core.new().core
    assert(core.netns.create("sh"))
    assert(core.netns.create("own"))
    assert(core.link.bridge { ns = "sh", name = "br" })
    for i = 1, 30 do
      assert(core.link.veth { ns = "sh", name = "p" .. i, peer = "q" .. i })
      assert(core.link.set { ns = "sh", name = "p" .. i, master = "br", up = true })
    end
    local dumps = {}
    for _, mod in ipairs({ "link", "addr", "route" }) do
      local dump = core[mod].dump
      core[mod].dump = function(ns, ...)
        local key = mod .. " " .. tostring(ns) .. (select("#", ...) > 0 and (" " .. tostring(...)) or "")
        dumps[key] = (dumps[key] or 0) + 1
        return dump(ns, ...)
      end
    end
    return core, dumps
  end

  local want = {
    { kind = "netns", name = "own" },
    { kind = "link", ns = "sh", name = "port", type = "veth", peer = "public", peer_ns = "own",
      master = "br", up = true },
    { kind = "link", ns = "own", name = "public", type = "veth_end", up = true },
  }

  it("reads only the named links of a namespace it shares, the owned one whole", function()
    local core, dumps = node()
    assert(core.link.veth { ns = "sh", name = "port", peer = "public", peer_ns = "own" })
    assert(core.link.set { ns = "sh", name = "port", master = "br", up = true })
    assert(core.link.set { ns = "own", name = "public", up = true })
    local inv = inventory.read(core, want)
    assert.is_nil(dumps["link sh"], "the shared namespace's links were dumped")
    assert.is_nil(dumps["addr sh"], "the shared namespace's addresses were dumped")
    assert.is_nil(dumps["route sh"], "the shared namespace's routes were dumped (no route is desired there)")
    assert.same({ "br", "port" }, (function()
      local names = {}
      for name in pairs(inv.ns.sh.links) do names[#names + 1] = name end
      table.sort(names)
      return names
    end)())
    assert.equal("br", inv.ns.sh.links.port.master)
    assert.equal(1, dumps["addr sh port"])
    assert.equal(1, dumps["link own"])
    assert.same({}, reconcile.actions(core, want))
  end)

  it("still sees a named link's drift there: its master, its state, its absence", function()
    local core = node()
    assert(core.link.veth { ns = "sh", name = "port", peer = "public", peer_ns = "own" })
    assert(core.link.set { ns = "sh", name = "port", master = false, up = false })
    assert(core.link.set { ns = "own", name = "public", up = true })
    local actions = reconcile.actions(core, want)
    assert.equal(1, #actions)
    assert.equal("set port@sh master br, up", actions[1].text)
    assert(core.link.delete { ns = "sh", name = "port" })
    actions = reconcile.actions(core, want)
    assert.equal("create veth port@sh <-> public@own", actions[1].text)
  end)
end)
