-- The node side through a fake core: node.start, nr.apply (idempotent,
-- changes only what differs), plan, rollback, remove, containers.
local fake_core = require "fake_core"

local tmpdir = require "tmpdir"

describe("node side (fake core)", function()
  local fake, ctx, node, nr, container, dir, node_key

  local function nr_config(over)
    local key = fake_core.make_key("nrsecret")
    local c = {
      net_id = "abc", network = "demo", node_id = "n1", ip_range = "10.1.0.0/16",
      subnet = "10.1.1.0/24", wireguard_private_key = key:seal(node_key),
      wireguard_listen_port = 51820,
      peers = {
        { subnet = "10.1.2.0/24", wireguard_public_key = string.rep("B", 42) .. "A=",
          allowed_ips = { "10.1.2.0/24", "100.64.1.2/32" }, endpoint = "203.0.113.12:51820" },
      },
    }
    for k, v in pairs(over or {}) do c[k] = v end
    return c
  end

  before_each(function()
    dir = tmpdir()
    fake = fake_core.new()
    local req = fake_core.loader(fake)
    local path = fake_core.node_config(dir)
    ctx = req("zmesh.node.context").load({ config = path })
    node, nr, container = req("zmesh.node"), req("zmesh.nr"), req("zmesh.container")
    local started = node.start(ctx)
    node_key = started.public_key
  end)

  after_each(function() os.execute("rm -rf '" .. dir .. "'") end)

  it("builds the ndmz and is idempotent", function()
    assert.is_true(fake.core.netns.exists("ndmz"))
    local links = {}
    for _, l in ipairs(fake.core.link.dump("ndmz")) do links[l.name] = l end
    assert.equal("macvlan", links.public.kind)
    assert.equal("bridge", links.tonrs.kind)
    assert.is_true(links.tonrs.up)
    assert.same({}, node.plan(ctx))
  end)

  it("applies an NR, then a second apply changes nothing", function()
    local res = nr.apply(ctx, nr_config())
    assert.equal("n-abc", res.namespace)
    assert.equal("100.64.1.1/16", res.mesh_address)
    assert.equal("100.127.0.2/16", res.uplink_address)
    local wg = fake.core.wg.get { ns = "n-abc", name = "w-abc" }
    assert.equal(fake_core.make_key("nrsecret"):public(), wg.public_key)
    assert.equal(1, #wg.peers)
    fake.reset_calls()
    assert.same({}, nr.plan(ctx, nr_config()))
    nr.apply(ctx, nr_config())
    assert.same({}, fake.calls)
  end)

  it("changes only the peer that differs", function()
    nr.apply(ctx, nr_config())
    local cfg = nr_config()
    cfg.peers[2] = { subnet = "10.1.3.0/24", wireguard_public_key = string.rep("C", 42) .. "A=",
      allowed_ips = { "10.1.3.0/24", "100.64.1.3/32" }, endpoint = "203.0.113.13:51820" }
    local plan = nr.plan(ctx, cfg)
    assert.equal(1, #plan)
    assert.matches("add peer CCCCCCCC", plan[1])
    assert.not_matches("BBBBBBBB", plan[1])
    fake.reset_calls()
    nr.apply(ctx, cfg)
    assert.same({ "wg.set w-abc" }, fake.calls)
    table.remove(cfg.peers, 1)
    plan = nr.plan(ctx, cfg)
    assert.same(1, #plan)
    assert.matches("remove peer BBBBBBBB", plan[1])
  end)

  it("routes everything into the tunnel when the exit is the mesh", function()
    local cfg = nr_config()
    cfg.exit = "mesh"
    cfg.peers[1].allowed_ips = { "0.0.0.0/0" }
    nr.apply(ctx, cfg)
    local default
    for _, r in ipairs(fake.core.route.dump("n-abc")) do
      if r.dst == "default" then default = r end
    end
    assert.equal("w-abc", default.dev)
    assert.is_nil(default.via)
  end)

  it("rolls a new NR back when the apply fails half-way", function()
    fake.fail["wg.set"] = "EADDRINUSE"
    local ok, err = pcall(nr.apply, ctx, nr_config())
    assert.is_false(ok)
    assert.matches("apply failed at 'wireguard w%-abc@n%-abc", err)
    assert.matches("EADDRINUSE", err)
    assert.matches("rolled back", err)
    assert.is_false(fake.core.netns.exists("n-abc"))
    assert.is_nil(fake.core.wg.pid("w-abc"))
  end)

  it("rejects a key sealed for another node, changing nothing", function()
    local cfg = nr_config({ wireguard_private_key = fake_core.make_key("x"):seal(string.rep("Z", 42) .. "A=") })
    fake.reset_calls()
    local ok, err = pcall(nr.apply, ctx, cfg)
    assert.is_false(ok)
    assert.matches("wireguard_private_key: does not open with this node's key", err)
    assert.same({}, fake.calls)
  end)

  it("refuses a config for another node, in apply and in plan, changing nothing", function()
    fake.reset_calls()
    for _, fn in ipairs({ nr.apply, nr.plan }) do
      local ok, err = pcall(fn, ctx, nr_config({ node_id = "n2" }))
      assert.is_false(ok)
      assert.matches("node_id 'n2': this NR config is for another node; this node is n1", err, 1, true)
    end
    assert.same({}, fake.calls)
    assert.is_nil(fake.core.netns.exists("n-abc") or nil)
  end)

  it("refuses a listen port outside the node's range or used by another NR", function()
    local ok, err = pcall(nr.apply, ctx, nr_config({ wireguard_listen_port = 80 }))
    assert.is_false(ok)
    assert.matches("wireguard_listen_port 80: outside this node's range 51820..52819", err, 1, true)
    nr.apply(ctx, nr_config())
    ok, err = pcall(nr.apply, ctx, nr_config({ net_id = "other", subnet = "10.1.5.0/24" }))
    assert.is_false(ok)
    assert.matches("already used by NR abc", err, 1, true)
  end)

  it("gives a second NR the next uplink address and keeps the first's", function()
    nr.apply(ctx, nr_config())
    local res = nr.apply(ctx, nr_config({ net_id = "def", wireguard_listen_port = 51821 }))
    assert.equal("100.127.0.3/16", res.uplink_address)
    assert.equal("100.127.0.2/16", nr.apply(ctx, nr_config()).uplink_address)
  end)

  it("attaches and detaches a container", function()
    nr.apply(ctx, nr_config())
    local res = container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", create = true })
    assert.equal(res.port, require("zmesh.node.names").container_port("c1"))
    assert.truthy(fake.core.link.get("n-abc", res.port))
    local eth0 = fake.core.link.get("c1", "eth0")
    assert.is_true(eth0.up)
    -- The global addresses: the kernel adds lo's and the link-local ones.
    local global = {}
    for _, a in ipairs(fake.core.addr.dump("c1")) do
      if a.scope == "global" then global[#global + 1] = { dev = a.dev, addr = a.addr, family = a.family } end
    end
    assert.same({ { dev = "eth0", addr = "10.1.1.10/24", family = 4 } }, global)
    -- An NR re-apply leaves the container's link alone.
    assert.same({}, nr.plan(ctx, nr_config()))
    local ok, err = pcall(container.attach, ctx, { net_id = "abc", netns = "c2", ip = "10.1.2.10", create = true })
    assert.is_false(ok)
    assert.matches("ip '10.1.2.10': is not in the NR's subnet 10.1.1.0/24", err, 1, true)
    ok, err = pcall(container.attach, ctx, { net_id = "abc", netns = "c2", ip = "10.1.1.1", create = true })
    assert.is_false(ok)
    assert.matches("gateway", err)
    assert.is_true(container.detach(ctx, { net_id = "abc", netns = "c1", delete = true }).detached)
    assert.is_false(fake.core.netns.exists("c1"))
  end)

  it("takes its containers' links to a new MTU in the same apply", function()
    nr.apply(ctx, nr_config())
    local res = container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", create = true })
    local before = fake.core.link.get("c1", "eth0").mtu
    local plan = nr.plan(ctx, nr_config({ mtu = 1300 }))
    local joined = table.concat(plan, "\n")
    assert.matches(res.port, joined, 1, true)
    assert.matches("eth0@c1", joined, 1, true)
    nr.apply(ctx, nr_config({ mtu = 1300 }))
    assert.is_true(before > 1300)
    assert.equal(1300, fake.core.link.get("c1", "eth0").mtu)
    assert.equal(1300, fake.core.link.get("n-abc", res.port).mtu)
    assert.same({}, nr.plan(ctx, nr_config({ mtu = 1300 })))
  end)

  it("refuses to move an NR's subnet away from an attached container, changing nothing", function()
    nr.apply(ctx, nr_config())
    container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", create = true })
    fake.reset_calls()
    for _, fn in ipairs({ nr.apply, nr.plan }) do
      local ok, err = pcall(fn, ctx, nr_config({ subnet = "10.1.3.0/24", mesh_address = "100.64.1.3/16" }))
      assert.is_false(ok)
      assert.matches("subnet '10.1.3.0/24': container c1 is attached at 10.1.1.10, outside it", err, 1, true)
    end
    assert.same({}, fake.calls)
    container.detach(ctx, { net_id = "abc", netns = "c1" })
    assert.truthy(nr.apply(ctx, nr_config({ subnet = "10.1.3.0/24", mesh_address = "100.64.1.3/16" })))
  end)

  it("takes over a container's link when its record was lost, instead of making a second", function()
    local context = require "zmesh.node.context"
    nr.apply(ctx, nr_config())
    local first = container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", create = true })
    context.save_attachments(ctx, "abc", {})
    local again = container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10" })
    assert.equal(first.port, again.port)
    assert.equal(first.port, context.attachments(ctx, "abc").c1.port)
    local ports = 0
    for _, l in ipairs(fake.core.link.dump("n-abc")) do
      if l.name:match("^c%-") then ports = ports + 1 end
    end
    assert.equal(1, ports)
    -- Another namespace whose eth0 is not that link's peer gets a link of its own.
    fake.core.netns.create("c2")
    fake.core.link.veth { ns = "c2", name = "eth0", peer = "x0" }
    local ok, err = pcall(container.attach, ctx, { net_id = "abc", netns = "c2", ip = "10.1.1.11" })
    assert.is_false(ok)
    assert.matches("netns 'c2': has an eth0 whose peer is no link of NR abc", err, 1, true)
    assert.is_nil(context.attachments(ctx, "abc").c2)
  end)

  it("restarts an NR whose daemon died, from its saved config", function()
    nr.apply(ctx, nr_config())
    fake.core.wg.delete { ns = "n-abc", name = "w-abc" }
    local res = nr.check(ctx)
    assert.same({ "abc" }, res.restarted)
    assert.equal(1, #fake.core.wg.get({ ns = "n-abc", name = "w-abc" }).peers)
    assert.same({ "abc" }, nr.check(ctx).healthy)
  end)

  it("stops: every NR and the ndmz go", function()
    nr.apply(ctx, nr_config())
    local res = node.stop(ctx)
    assert.same({ "abc" }, res.nrs_removed)
    assert.is_true(res.ndmz_removed)
    assert.same({}, fake.core.netns.list())
    assert.same({}, nr.list(ctx))
    -- Stopped stays stopped: a converge (the daemon's loop) starts nothing.
    local report = node.converge(ctx)
    assert.is_true(report.stopped)
    assert.same({}, fake.core.netns.list())
    -- Until node.start.
    node.start(ctx)
    assert.is_nil(node.converge(ctx).stopped)
    assert.is_true(fake.core.netns.exists("ndmz"))
  end)

  it("gives every NR and the ndmz the firewall policy's table, re-applied only on change", function()
    nr.apply(ctx, nr_config())
    local t = fake.core.nft.dump("n-abc")
    assert.equal("zmesh", t.table)
    local names = {}
    for _, c in ipairs(t.chains) do names[#names + 1] = c.name end
    assert.same({ "input", "forward", "postrouting" }, names)
    assert.truthy(fake.core.nft.dump("ndmz"))
    -- Flushed behind our back: the next plan puts it back.
    local st = fake.core.nft.dump("n-abc")
    local input_rules = #st.chains[1].rules
    st.chains[1].rules = {}
    table.remove(st.chains[2].rules, 1)
    fake.core.nft.apply("n-abc", { family = "inet", table = "zmesh", chains = st.chains })
    local plan = nr.plan(ctx, nr_config())
    assert.equal(1, #plan)
    assert.matches("firewall table inet zmesh in n%-abc: chains%[1%]%.rules%[1%]: missing, want", plan[1])
    -- Every chain that differs is named, with how many of its rules do.
    assert.matches(string.format("(%d rules of chains[1] differ); chains[2].rules[1]: missing, want", input_rules),
      plan[1], 1, true)
    assert.not_matches("chains%[3%]", plan[1])
    nr.apply(ctx, nr_config())
    assert.same({}, nr.plan(ctx, nr_config()))
  end)

  it("re-applies the firewall when a farmer's policy changes it", function()
    local function farmer_policy(sub, priority)
      local pdir = dir .. "/" .. sub
      os.execute("mkdir -p " .. pdir)
      local f = assert(io.open(pdir .. "/firewall.lua", "w"))
      local text = ([[
local function table_of() return { family = "inet", table = "zmesh", chains = {
  { name = "input", type = "filter", hook = "input", priority = PRIO, policy = "accept",
    rules = { { match = { iifname = "public" }, verdict = "drop", comment = "all" } } } } } end
return { name = "firewall", version = 1, nr = table_of, ndmz = table_of }
]]):gsub("PRIO", tostring(priority))
      f:write(text)
      f:close()
      return pdir
    end
    local function ctx_with(pdir)
      local req = fake_core.loader(fake)
      local path = fake_core.node_config(dir, { policy_dirs = { pdir } })
      return req("zmesh.node.context").load({ config = path }), req("zmesh.nr")
    end
    local c1, nr1 = ctx_with(farmer_policy("p1", 0))
    nr1.apply(c1, nr_config())
    assert.same({}, nr1.plan(c1, nr_config()))
    local c2, nr2 = ctx_with(farmer_policy("p2", 10))
    local plan = nr2.plan(c2, nr_config())
    assert.equal(1, #plan)
    assert.equal("firewall table inet zmesh in n-abc: chains[1] priority: kernel 0, want 10", plan[1])
    local c3, nr3 = ctx_with("tests/fixtures/nft/policies/broken")
    local ok, err = pcall(nr3.plan, c3, nr_config())
    assert.is_false(ok)
    assert.matches("tests/fixtures/nft/policies/broken/firewall.lua:%d+", err)
  end)

  it("takes a second NIC over as the uplink and gives it back on stop", function()
    node.stop(ctx)
    local req = fake_core.loader(fake)
    local path = fake_core.node_config(dir, { uplink = { mode = "move", nic = "eth0",
      addresses = { "203.0.113.11/24" }, gateway = "203.0.113.254" } })
    local c2 = req("zmesh.node.context").load({ config = path })
    local n2 = req("zmesh.node")
    n2.start(c2)
    assert.is_nil(fake.core.link.get(nil, "eth0"))
    assert.truthy(fake.core.link.get("ndmz", "public"))
    assert.same({}, n2.plan(c2))
    n2.stop(c2)
    assert.truthy(fake.core.link.get(nil, "eth0"))
    assert.is_false(fake.core.netns.exists("ndmz"))
  end)

  it("converges over a dead namespace name a kill left, and removes one", function()
    fake.stale["n-abc"] = true
    local plan = nr.plan(ctx, nr_config())
    assert.matches("remove dead namespace name n%-abc", plan[1])
    assert.equal("create namespace n-abc", plan[2])
    nr.apply(ctx, nr_config())
    assert.is_true(fake.core.netns.exists("n-abc"))
    assert.same({}, nr.plan(ctx, nr_config()))
    fake.stale["n-zz"] = true
    assert.same({ "abc", "zz" }, (function()
      local ids = {}
      for i, n in ipairs(nr.list(ctx)) do ids[i] = n.net_id end
      return ids
    end)())
    assert.is_true((nr.remove(ctx, "zz")))
    assert.is_nil(fake.stale["n-zz"])
    assert.is_false((nr.remove(ctx, "zz")))
  end)

  it("leaves an NR whose stored config was found bad running, and says so at every converge", function()
    nr.apply(ctx, nr_config())
    container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", create = true })
    local f = assert(io.open(ctx.nr_dir .. "/abc.json", "w"))
    f:write('{"format": 1, "kind": "nr", "da')
    f:close()
    for _ = 1, 2 do
      local r = node.converge(ctx)
      assert.same({}, r.removed)
      assert.same({ "abc" }, r.unmanaged)
      local said
      for _, line in ipairs(r.problems) do
        if line:find("abc.json.corrupt: a stored file found bad and set aside; its NR is left running", 1, true) then
          said = true
        end
      end
      assert.is_true(said, table.concat(r.problems, "\n"))
      assert.is_true(fake.core.netns.exists("n-abc"))
      assert.truthy(fake.core.link.get("c1", "eth0"))
      assert.truthy(io.open(ctx.containers_dir .. "/abc.json"))
    end
    assert.same({ "abc" }, nr.check(ctx).healthy)
    -- Applied again: managed, and the old file is only history.
    nr.apply(ctx, nr_config())
    local r = node.converge(ctx)
    assert.same({}, r.unmanaged)
    assert.matches("its NR's config was applied again since", table.concat(r.problems, "\n"))
    -- Removed: nothing of it is left, the set-aside file neither.
    nr.remove(ctx, "abc")
    assert.is_nil(io.open(ctx.nr_dir .. "/abc.json.corrupt"))
  end)

  it("replaces a WireGuard left half-made in the ndmz by a killed apply", function()
    -- The daemon started in the ndmz; the kill came before the move.
    assert(fake.core.wg.create { name = "w-abc", birth_ns = "ndmz", ns = "ndmz" })
    local half_made = fake.core.link.get("ndmz", "w-abc").index
    local plan = nr.plan(ctx, nr_config())
    local found
    for _, line in ipairs(plan) do
      if line:match("remove half%-made wireguard w%-abc@ndmz") then found = true end
    end
    assert.is_true(found, table.concat(plan, "\n"))
    nr.apply(ctx, nr_config())
    -- What the ndmz holds of that name now is the new daemon's placeholder.
    local left = fake.core.link.get("ndmz", "w-abc")
    assert.not_equal(half_made, left and left.index)
    assert.is_false(left.up)
    assert.truthy(fake.core.link.get("n-abc", "w-abc"))
    assert.same({}, nr.plan(ctx, nr_config()))
  end)

  it("removes through a plan, everything the NR owned, and the same NR applies again", function()
    nr.apply(ctx, nr_config())
    container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", create = true })
    local plan = nr.plan_remove(ctx, "abc")
    assert.truthy(#plan >= 4)
    assert.is_true(fake.core.netns.exists("n-abc"))
    fake.reset_calls()
    local removed, done = nr.remove(ctx, "abc")
    assert.is_true(removed)
    assert.same(plan, done)
    assert.is_nil(fake.core.link.get("ndmz", "n-abc"))
    assert.is_nil(fake.core.link.get("c1", "eth0"))
    assert.is_true(fake.core.netns.exists("c1"))
    assert.same({}, nr.list(ctx))
    assert.same({}, fake.core.fs.list(dir .. "/state/nrs"))
    assert.same({}, fake.core.fs.list(dir .. "/state/containers"))
    nr.apply(ctx, nr_config())
  end)

  it("gives attached containers their routed address when the NR gets a routed /64, in the same apply", function()
    local base = { ipv6_range = "fd00:1::/48", ipv6_subnet = "fd00:1:0:1::/64" }
    nr.apply(ctx, nr_config(base))
    container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", ip6 = "fd00:1:0:1::10", create = true })
    local routed = nr_config({ ipv6_range = "fd00:1::/48", ipv6_subnet = "fd00:1:0:1::/64",
      routed_ipv6 = "2001:db8:100::/48", routed_ipv6_subnet = "2001:db8:100:1::/64",
      exit = "local", exit_for_network = true })
    routed.peers[1].allowed_ips = { "10.1.2.0/24", "100.64.1.2/32", "2001:db8:100:2::/64" }
    local function global6()
      local out = {}
      for _, a in ipairs(fake.core.addr.dump("c1")) do
        if a.family == 6 and a.scope == "global" then out[#out + 1] = a.addr end
      end
      table.sort(out)
      return out
    end
    assert.same({ "fd00:1:0:1::10/64" }, global6())
    nr.apply(ctx, routed)
    assert.same({ "2001:db8:100:1::10/64", "fd00:1:0:1::10/64" }, global6())
    assert.same({}, nr.plan(ctx, routed))
    -- And away again with the prefix.
    nr.apply(ctx, nr_config(base))
    assert.same({ "fd00:1:0:1::10/64" }, global6())
  end)

  it("removes the ndmz's route into an entry NR with the NR, and only that route", function()
    local cfg = nr_config({
      ipv6_range = "fd00:1::/48", ipv6_subnet = "fd00:1:0:1::/64",
      routed_ipv6 = "2001:db8:100::/48", routed_ipv6_subnet = "2001:db8:100:1::/64",
      exit = "local", exit_for_network = true,
    })
    cfg.peers[1].allowed_ips = { "10.1.2.0/24", "100.64.1.2/32", "2001:db8:100:2::/64" }
    nr.apply(ctx, cfg)
    local function ndmz_routes()
      local out = {}
      for _, r in ipairs(fake.core.route.dump("ndmz")) do
        if r.dst == "2001:db8:100::/48" then out[#out + 1] = r.via end
      end
      return out
    end
    assert.same({ require("zmesh.node.names").nr_uplink6("abc") }, ndmz_routes())
    local plan = nr.plan_remove(ctx, "abc")
    local said = false
    for _, line in ipairs(plan) do
      if line:find("remove route 2001:db8:100::/48", 1, true) then said = true end
    end
    assert.is_true(said, "the plan does not remove the route: " .. table.concat(plan, "; "))
    nr.remove(ctx, "abc")
    assert.same({}, ndmz_routes())
  end)

  it("removes what an interrupted first apply left on nr.check", function()
    assert(fake.core.netns.create("n-half"))
    local res = nr.check(ctx)
    assert.same({ "half" }, res.removed)
    assert.is_false(fake.core.netns.exists("n-half"))
  end)

  it("gives colliding containers distinct links; a detach touches only its own", function()
    local names = require "zmesh.node.names"
    assert.equal(names.container_port("c8906"), names.container_port("cc10a0"))
    nr.apply(ctx, nr_config())
    local a = container.attach(ctx, { net_id = "abc", netns = "c8906", ip = "10.1.1.10", create = true })
    local b = container.attach(ctx, { net_id = "abc", netns = "cc10a0", ip = "10.1.1.11", create = true })
    assert.not_equal(a.port, b.port)
    -- Attached again: the same link, nothing changes.
    assert.same({}, container.attach(ctx, { net_id = "abc", netns = "cc10a0", ip = "10.1.1.11" }).changes)
    assert.is_true(container.detach(ctx, { net_id = "abc", netns = "cc10a0" }).detached)
    assert.truthy(fake.core.link.get("n-abc", a.port))
    assert.truthy(fake.core.link.get("c8906", "eth0"))
    assert.is_nil(fake.core.link.get("cc10a0", "eth0"))
    -- Not attached: nothing to detach, nothing touched.
    fake.reset_calls()
    assert.is_false(container.detach(ctx, { net_id = "abc", netns = "cc10a0" }).detached)
    assert.same({}, fake.calls)
  end)

  it("refuses a second container at an address the NR's containers have, and a create that is not a boolean", function()
    nr.apply(ctx, nr_config())
    container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10", create = true })
    fake.reset_calls()
    for _, dry in ipairs({ false, true }) do
      local ok, err = pcall(container.attach, ctx, { net_id = "abc", netns = "c2", ip = "10.1.1.10", create = true,
        dry_run = dry })
      assert.is_false(ok)
      assert.matches("ip '10.1.1.10': already used by container c1 of this NR", err, 1, true)
    end
    for _, v in ipairs({ "yes", 0 }) do
      local ok, err = pcall(container.attach, ctx, { net_id = "abc", netns = "c3", ip = "10.1.1.13", create = v })
      assert.is_false(ok)
      assert.matches("^create .*: must be true or false", err)
    end
    assert.same({}, fake.calls)
    assert.is_nil(fake.core.netns.exists("c2") or nil)
    -- c1 into another NR while this one holds it: 409 naming netns, nothing touched.
    nr.apply(ctx, nr_config({ net_id = "def", wireguard_listen_port = 51821 }))
    fake.reset_calls()
    local ok, err = pcall(container.attach, ctx, { net_id = "def", netns = "c1", ip = "10.1.1.20" })
    assert.is_false(ok)
    assert.matches("netns 'c1': is attached to NR abc: detach it there first", err, 1, true)
    assert.equal("conflict", require("zmesh.check").classify(err).kind)
    assert.same({}, fake.calls)
    -- The same container again, at its own address: fine.
    assert.same({}, container.attach(ctx, { net_id = "abc", netns = "c1", ip = "10.1.1.10" }).changes)
    -- Its runtime removed c1 without a detach: its address is free.
    assert(fake.core.netns.delete("c1"))
    assert.equal("10.1.1.10", container.attach(ctx, { net_id = "abc", netns = "c2", ip = "10.1.1.10",
      create = true }).ip)
  end)

  it("plans an attach without making it", function()
    nr.apply(ctx, nr_config())
    fake.reset_calls()
    local res = container.attach(ctx, { net_id = "abc", netns = "c5", ip = "10.1.1.10", create = true,
      dry_run = true })
    assert.equal("create namespace c5", res.changes[1])
    assert.same({}, fake.calls)
    assert.is_false(fake.core.netns.exists("c5"))
  end)

  it("removes a namespace it made when the attach fails", function()
    nr.apply(ctx, nr_config())
    fake.fail["addr.add"] = "EINVAL"
    local ok, err = pcall(container.attach, ctx, { net_id = "abc", netns = "c9", ip = "10.1.1.10",
      create = true })
    assert.is_false(ok)
    assert.matches("rolled back", err)
    assert.is_false(fake.core.netns.exists("c9"))
  end)

  it("holds the node lock around every change, re-entrantly", function()
    local lock = require "zmesh.node.lock"
    local other <close> = assert(fake.core.fs.lock(lock.path(ctx)))
    local ok, err = pcall(nr.apply, ctx, nr_config())
    assert.is_false(ok)
    assert.matches("this node is busy", err)
    ok, err = pcall(node.stop, ctx)
    assert.is_false(ok)
    assert.matches("this node is busy", err)
    other:close()
    nr.apply(ctx, nr_config())
    -- nr.check applies under the lock it holds.
    fake.core.wg.delete { ns = "n-abc", name = "w-abc" }
    assert.same({ "abc" }, nr.check(ctx).restarted)
    assert.is_false(lock.holding())
  end)

  it("publishes facts with the node key and uplink addresses", function()
    local facts = node.facts(ctx)
    assert.equal("n1", facts.node_id)
    assert.equal(node_key, facts.public_key)
    assert.same({ "203.0.113.11/24" }, facts.addresses)
    assert.same({ min = 51820, max = 52819 }, facts.listen_ports)
  end)

  it("publishes the configured addresses while the ndmz is still being built", function()
    -- The daemon's boot restore runs beside a facts read (the control
    -- plane's, an API GET): the kernel has not the address yet.
    assert(fake.core.addr.delete { ns = "ndmz", dev = "public", addr = "203.0.113.11/24" })
    for _, a in ipairs(fake.core.addr.dump("ndmz", "public")) do assert.equal("link", a.scope) end
    assert.same({ "203.0.113.11/24" }, node.facts(ctx).addresses)
  end)
end)
