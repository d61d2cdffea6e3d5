-- zmesh.nr.paths over whole rendered networks: packets are walked from NR
-- to NR through the AllowedIPs each node's choice gives (longest match to
-- pick the peer, and the receiving end must accept the packet's source
-- from that peer, as WireGuard's cryptokey routing does). With nothing
-- known, the paths are the rendered ones; with an aggregator dead, a
-- hidden node's path to it broken, or an exit gone, every pair still
-- reaches every other, both ways, in a few hops.
local fake = require("fake_keys").install()
local ip = require "zmesh.ip"
local net = require "zmesh.net"
local nr_config = require "zmesh.nr.config"
local paths = require "zmesh.nr.paths"
local build = dofile("tests/fixtures/net/build.lua")

local seed = tonumber(os.getenv("ZMESH_TEST_SEED")) or os.time()
math.randomseed(seed)

local function parsed(list)
  local out = {}
  for i, p in ipairs(list) do out[i] = ip.parse_cidr(p) end
  return out
end

-- Each node's resolved config under CHOICES[id] (a function of the id).
local function resolved(configs, choice_of)
  local out = {}
  for id, c in pairs(configs) do
    local cfg = nr_config.validate(c)
    local r = paths.resolve(cfg, choice_of(id, cfg))
    local peers = {}
    for _, p in ipairs(r.peers) do
      peers[#peers + 1] = { id = p.node_id, allowed = parsed(p.allowed_ips), text = p.allowed_ips }
    end
    out[id] = { cfg = cfg, peers = peers, subnet = ip.parse_cidr(cfg.subnet), exit = r.exit,
      exit_for_network = r.exit_for_network,
      routed = cfg.routed_ipv6_subnet and ip.parse_cidr(cfg.routed_ipv6_subnet) }
  end
  return out
end

local function best_peer(node, addr)
  local best, len
  for _, p in ipairs(node.peers) do
    for _, a in ipairs(p.allowed) do
      if ip.contains(a, addr) and (not len or a.len > len) then best, len = p, a.len end
    end
  end
  return best
end

local function accepts(node, from_id, src)
  for _, p in ipairs(node.peers) do
    if p.id == from_id then
      for _, a in ipairs(p.allowed) do if ip.contains(a, src) then return true end end
      return false
    end
  end
  return false
end

-- Walk a packet from SRC to DST, starting at node A: the list of nodes it
-- crosses, or nil and why. Ends where DST is inside the prefix HOME(node)
-- gives, or (for an Internet address) at the node that breaks out.
local function walk_from(nodes, a, src, dst, internet, home)
  local at, hops = a, { a }
  for _ = 1, 6 do
    local node = nodes[at]
    local mine = home(node)
    if internet then
      if node.exit == "local" then return hops end
    elseif mine and ip.contains(mine, dst) then
      return hops
    end
    local p = best_peer(node, dst)
    if not p then return nil, at .. " has no route" end
    if not nodes[p.id] then return nil, at .. " routes to " .. p.id .. ", which is no NR" end
    if not accepts(nodes[p.id], at, src) then
      return nil, string.format("%s drops what %s sends it (source not in its AllowedIPs)", p.id, at)
    end
    at = p.id
    hops[#hops + 1] = at
  end
  return nil, "a loop: " .. table.concat(hops, " → ")
end

-- IPv4, from A's subnet's .10, to a subnet or (INTERNET) out.
local function walk(nodes, a, dst, internet)
  return walk_from(nodes, a, ip.host(nodes[a].subnet, 10), dst, internet, function(n) return n.subnet end)
end

local function all_pairs(nodes, ids, why)
  for _, a in ipairs(ids) do
    for _, b in ipairs(ids) do
      if a ~= b then
        local hops, err = walk(nodes, a, ip.host(nodes[b].subnet, 10))
        assert(hops, string.format("%s: %s → %s: %s (seed %d)", why, a, b, tostring(err), seed))
        assert(#hops <= 4, string.format("%s: %s → %s takes %d hops (seed %d)", why, a, b, #hops - 1, seed))
      end
    end
  end
end

-- A random network with at least two public and one hidden node.
local function network(run)
  local kinds = { "pub4", "pub4" }
  for _ = 1, math.random(1, 8) do kinds[#kinds + 1] = build.kinds[math.random(#build.kinds)] end
  kinds[#kinds + 1] = "hid4"
  local n = build.network(net, kinds, fake, { net_id = "f" .. run,
    ipv6_range = math.random() < 0.5 and "fd00:66::/48" or nil })
  return n, net.topology(n)
end

-- The choice a node's daemon comes to, given the truth: DEAD nodes, and
-- BROKEN links ("a/b": a cannot reach b, either way).
local function daemon_choice(t, dead, broken)
  local function cut(a, b) return broken[a .. "/" .. b] or broken[b .. "/" .. a] end
  local function alive_from(me)
    local alive = {}
    for id in pairs(t.node) do
      if dead[id] or cut(me, id) then alive[id] = false end
    end
    return alive
  end
  local upstream = {}
  for _, h in ipairs(t.hidden) do
    local a = alive_from(h)
    for _, c in ipairs(t.aggregators[h]) do
      if a[c] ~= false then upstream[h] = c break end
    end
  end
  local function hears(id)
    local via = {}
    for _, h in ipairs(t.hidden) do
      if not dead[h] and not cut(id, h) then via[h] = upstream[h] end
    end
    return via
  end
  -- What each aggregator says it serves out of order, from its own view.
  local served = {}
  for _, p in ipairs(t.public) do
    local set = {}
    for _, h in ipairs(t.hidden) do
      if upstream[h] == p and not cut(p, h) then
        local a = alive_from(p)
        for _, c in ipairs(t.aggregators[h]) do
          if a[c] ~= false then
            if c ~= p then set[h] = true end
            break
          end
        end
      end
    end
    served[p] = set
  end
  return function(id, cfg)
    local c = { alive = alive_from(id) }
    if t.role[id] == "hidden" then
      c.upstream = upstream[id]
    else
      -- An aggregator hears the hidden NRs it can reach say where they
      -- route; every public NR hears what the aggregators it reaches serve.
      c.via = hears(id)
      c.served = {}
      for _, p in ipairs(t.public) do
        if c.alive[p] ~= false then c.served[p] = served[p] end
      end
    end
    local _ = cfg
    return c
  end
end

-- IPv6, from SRC: ends in the node's routed /64, or (INTERNET) out.
local function walk6(nodes, a, src, dst, internet)
  return walk_from(nodes, a, src, dst, internet, function(n) return n.routed end)
end

describe("failover paths over rendered networks", function()
  it("with nothing known, route as rendered: every pair both ways", function()
    for run = 1, 40 do
      local n, t = network(run)
      local configs = net.render_all(n)
      local ids = {}
      for id in pairs(configs) do ids[#ids + 1] = id end
      table.sort(ids)
      all_pairs(resolved(configs, function() return {} end), ids, "nothing known")
      -- The rendered AllowedIPs themselves route the same way.
      local rendered = {}
      for id, c in pairs(configs) do
        local cfg = nr_config.validate(c)
        local peers = {}
        for _, p in ipairs(cfg.peers) do peers[#peers + 1] = { id = p.node_id, allowed = parsed(p.allowed_ips) } end
        rendered[id] = { peers = peers, subnet = ip.parse_cidr(cfg.subnet), exit = cfg.exit }
      end
      local now = resolved(configs, function() return {} end)
      for _, a in ipairs(ids) do
        for _, b in ipairs(ids) do
          if a ~= b then
            local d = ip.host(now[b].subnet, 10)
            local p1, p2 = best_peer(rendered[a], d), best_peer(now[a], d)
            assert.equal(p1 and p1.id, p2 and p2.id, string.format("%s → %s (seed %d)", a, b, seed))
          end
        end
      end
      local _ = t
    end
  end)

  it("moves every path off a dead aggregator", function()
    local checked = 0
    for run = 41, 80 do
      local n, t = network(run)
      local primary = t.aggregators[t.hidden[1]][1]
      if #t.aggregators[t.hidden[1]] > 1 then
        local configs = net.render_all(n)
        local ids = {}
        for id in pairs(configs) do if id ~= primary then ids[#ids + 1] = id end end
        table.sort(ids)
        all_pairs(resolved(configs, daemon_choice(t, { [primary] = true }, {})), ids,
          "aggregator " .. primary .. " dead")
        checked = checked + 1
      end
    end
    assert.is_true(checked > 10)
  end)

  it("serves a hidden NR whose path to its aggregator alone broke, through the next one", function()
    local checked = 0
    for run = 81, 120 do
      local n, t = network(run)
      local h = t.hidden[1]
      local primary = t.aggregators[h][1]
      if #t.aggregators[h] > 1 then
        local configs = net.render_all(n)
        local ids = {}
        for id in pairs(configs) do ids[#ids + 1] = id end
        table.sort(ids)
        all_pairs(resolved(configs, daemon_choice(t, {}, { [h .. "/" .. primary] = true })), ids,
          h .. " cut from " .. primary)
        checked = checked + 1
      end
    end
    assert.is_true(checked > 10)
  end)

  it("sends the Internet through the next exit when the first is gone", function()
    for run = 121, 150 do
      local n = network(run)
      local pub = {}
      for _, node in ipairs(n.nodes) do
        if build.public_kinds[node.facts.kind or ""] ~= nil then pub[#pub + 1] = node.node_id end
      end
      -- The first two nodes are public (network() makes them so).
      n = net.set_exit(n, { "n1", "n2" })
      local t = net.topology(n)
      local configs = net.render_all(n)
      local ids = {}
      for id in pairs(configs) do ids[#ids + 1] = id end
      table.sort(ids)
      local inet = ip.parse_addr("8.8.8.8")
      for _, dead in ipairs({ {}, { n1 = true } }) do
        local nodes = resolved(configs, daemon_choice(t, dead, {}))
        local want = dead.n1 and "n2" or "n1"
        for _, a in ipairs(ids) do
          if not dead[a] then
            local hops, err = walk(nodes, a, inet, true)
            assert(hops, string.format("%s to the Internet: %s (seed %d)", a, tostring(err), seed))
            assert.equal(want, hops[#hops], string.format("%s leaves through %s (seed %d)", a,
              hops[#hops], seed))
            assert.equal(a == want, nodes[a].exit_for_network)
          end
        end
        all_pairs(nodes, (function()
          local l = {}
          for _, id in ipairs(ids) do if not dead[id] then l[#l + 1] = id end end
          return l
        end)(), "exits")
      end
      local _ = pub
    end
  end)

  it("keeps the aggregator in use and the next one warm, and warms the third when the second dies", function()
    local cfg = {
      node_id = "h", peers = {}, failover = { role = "hidden", keepalive = 25,
        aggregators = { "a", "b", "c" }, range = { "10.1.0.0/16" }, nodes = {} },
    }
    for i, id in ipairs({ "a", "b", "c" }) do
      cfg.peers[i] = { node_id = id, public_key = id, allowed_ips = {} }
      cfg.failover.nodes[id] = { mesh = "100.64.0." .. i, owned = { "10.1." .. i .. ".0/24" } }
    end
    local function keepalives(choice)
      local out = {}
      for _, p in ipairs(paths.resolve(cfg, choice).peers) do out[p.node_id] = p.persistent_keepalive or 0 end
      return out
    end
    assert.same({ a = 25, b = 25, c = 0 }, keepalives({}))
    assert.same({ a = 25, b = 0, c = 25 }, keepalives({ alive = { b = false } }))
    -- The primary dead: traffic through b, c warmed.
    local r = paths.resolve(cfg, { alive = { a = false } })
    assert.same({ "100.64.0.1/32" }, r.peers[1].allowed_ips)
    assert.same({ "10.1.0.0/16" }, r.peers[2].allowed_ips)
    assert.same({ a = 0, b = 25, c = 25 }, keepalives({ alive = { a = false } }))
  end)

  it("probes only what its own decisions need", function()
    local n, t = network(999)
    local configs = net.render_all(n)
    for id, c in pairs(configs) do
      local targets = paths.targets(nr_config.validate(c))
      if t.role[id] == "hidden" then
        local want = {}
        for _, a in ipairs(t.aggregators[id]) do want[a] = true end
        for target in pairs(targets) do assert.truthy(want[target], id .. " probes " .. target) end
      else
        for target in pairs(targets) do
          local needed = t.role[target] == "public" or (t.aggregators[target] and (function()
            for _, a in ipairs(t.aggregators[target]) do if a == id then return true end end
          end)())
          assert.truthy(needed, id .. " probes " .. target)
        end
      end
    end
  end)
  it("carries a routed /64 from the exit in use to its NR, and the replies back out through it", function()
    local checked = 0
    for run = 151, 180 do
      local kinds = { "pub46", "pub46" }
      for _ = 1, math.random(1, 7) do kinds[#kinds + 1] = build.kinds[math.random(#build.kinds)] end
      kinds[#kinds + 1] = "hid4"
      local n = build.network(net, kinds, fake, { net_id = "r" .. run,
        ipv6_range = math.random() < 0.5 and "fd00:66::/48" or nil })
      n = net.set_exit(n, { "n1", "n2" })
      n = net.set_routed_ipv6(n, "2001:db8:100::/48")
      local t = net.topology(n)
      local configs = net.render_all(n)
      local ids = {}
      for id in pairs(configs) do ids[#ids + 1] = id end
      table.sort(ids)
      local internet = ip.parse_addr("2001:db8:ffff::1")
      for _, dead in ipairs({ {}, { n1 = true } }) do
        local nodes = resolved(configs, daemon_choice(t, dead, {}))
        -- The provider routes the prefix to the exit in use.
        local entry = dead.n1 and "n2" or "n1"
        for _, b in ipairs(ids) do
          if not dead[b] then
            local dst = ip.host(nodes[b].routed, 16)
            local hops, err = walk6(nodes, entry, internet, dst)
            assert(hops, string.format("Internet → %s via %s: %s (seed %d)", b, entry, tostring(err), seed))
            assert.equal(b, hops[#hops])
            assert.is_true(#hops <= 4, string.format("Internet → %s: %d hops (seed %d)", b, #hops - 1, seed))
            -- The reply, from the container's own routed address.
            hops, err = walk6(nodes, b, dst, internet, true)
            assert(hops, string.format("%s → Internet: %s (seed %d)", b, tostring(err), seed))
            assert.equal(entry, hops[#hops], string.format("%s leaves through %s (seed %d)", b, hops[#hops], seed))
            checked = checked + 1
          end
        end
      end
    end
    assert.is_true(checked > 100, checked .. " walks")
  end)
end)
