-- Properties over hundreds of random networks: random mixes of public and
-- hidden nodes (of every kind the role policy tells apart), random exits,
-- IPv6 or not, devices, and removals. Set ZMESH_TEST_SEED to replay a run.
local fake = require("fake_keys").install()
local net = require "zmesh.net"
local build = dofile("tests/fixtures/net/build.lua")
local props = dofile("tests/fixtures/net/props.lua")

local seed = tonumber(os.getenv("ZMESH_TEST_SEED")) or os.time()
print(string.format("\nnet_property_spec: seed %d (ZMESH_TEST_SEED=%d replays it)", seed, seed))
math.randomseed(seed)

local RUNS = 300

-- OPTS.devices = false: no external devices.
local function random_network(run, opts)
  local kinds = {}
  for i = 1, math.random(1, 14) do kinds[i] = build.kinds[math.random(#build.kinds)] end
  local p = { net_id = "r" .. run, ipv6_range = math.random() < 0.5 and "fd00:77::/48" or nil }
  local n = build.network(net, kinds, fake, p)
  -- removals: any node, aggregators included
  for _ = 1, math.random(0, 2) do
    if #n.nodes > 1 then n = net.remove_node(n, n.nodes[math.random(#n.nodes)].node_id) end
  end
  -- a late node after removals: subnets must not collide with old ones
  if math.random() < 0.5 then
    n = net.add_node(n, (build.facts("late" .. run, build.kinds[math.random(#build.kinds)], fake)))
  end
  if math.random() < 0.3 then n = net.set_exit(n, n.nodes[math.random(#n.nodes)].node_id) end
  -- devices, where there is a public node to peer with
  if math.random() < 0.3 and not (opts and opts.devices == false) then
    local ok, with = pcall(net.add_access, n, "dev" .. run)
    if ok then n = with end
  end
  return n, kinds
end

local function describe_net(n)
  local parts = {}
  for _, node in ipairs(n.nodes) do
    parts[#parts + 1] = node.node_id .. "=" .. table.concat(node.facts.addresses, ",")
      .. (node.facts.force_role and ("(" .. node.facts.force_role .. ")") or "")
  end
  return table.concat(parts, " ") .. (n.exit and (" exit=" .. n.exit) or "")
end

describe("net properties over random networks", function()
  it("hold for every renderable network, and the rest fail for a stated reason", function()
    local rendered, refused, devices = 0, 0, 0
    for run = 1, RUNS do
      local n = random_network(run)
      local ok, t = pcall(net.topology, n)
      if not ok then
        -- The only acceptable refusals: no public node for hidden ones.
        assert(tostring(t):find("but no public node to serve", 1, true),
          string.format("run %d (seed %d): %s\n%s", run, seed, tostring(t), describe_net(n)))
        local public = 0
        for _, r in pairs(net.show(n).nodes) do public = public + (r.role == "public" and 1 or 0) end
        assert.equal(0, public)
        refused = refused + 1
      else
        local configs = net.render_all(n)
        local roles = t.role
        for _, check in ipairs({
          function() return props.reachability(configs, 2) end,
          function() return props.no_overlap(configs) end,
          function() return props.hidden_peers(configs, roles) end,
          function() return props.mutual(configs) end,
        }) do
          local problem = check()
          assert(problem == nil, string.format("run %d (seed %d): %s\n%s", run, seed, tostring(problem), describe_net(n)))
        end
        -- re-rendering an unchanged network, read back from its file
        local path = os.tmpname()
        net.save(n, path)
        local again = build.encode_all(net.render_all(net.load(path)))
        os.remove(path)
        assert.equal(build.encode_all(configs), again)
        rendered = rendered + 1
        devices = devices + #(n.access or {})
      end
    end
    print(string.format("net_property_spec: %d networks rendered and checked (%d with a device), %d refused (no public node)",
      rendered, devices, refused))
    -- the run must mostly exercise the renderable case
    assert.is_true(rendered >= RUNS * 0.6)
    assert.is_true(devices >= RUNS * 0.1)
  end)

  it("catches a broken render (the checks can fail)", function()
    local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
    local configs = net.render_all(n)
    local t = net.topology(n)
    -- a hidden NR whose primary loses the range: unreachable
    local broken = net.render_all(n)
    broken.n3.peers[1].allowed_ips = {}
    assert.matches("n3", props.reachability(broken, 2))
    -- an overlap
    broken = net.render_all(n)
    for _, peer in ipairs(broken.n1.peers) do
      if peer.node_id == "n3" then table.insert(peer.allowed_ips, "10.1.0.0/16") end
    end
    assert.matches("overlap", props.no_overlap(broken))
    -- a hidden NR peering with a hidden NR
    broken = net.render_all(n)
    table.insert(broken.n3.peers, { node_id = "n4", allowed_ips = {}, endpoint = "192.0.2.1:1",
      persistent_keepalive = 25 })
    assert.matches("not public", props.hidden_peers(broken, { n1 = "public", n2 = "public",
      n3 = "hidden", n4 = "hidden" }))
    -- a one-sided peering
    broken = net.render_all(n)
    table.remove(broken.n3.peers, 1)
    assert.matches("not the other way", props.mutual(broken))
    assert.is_nil(props.reachability(configs, 2))
    assert.is_nil(props.hidden_peers(configs, t.role))
  end)
end)

describe("net render encoder", function()
  local json = require "zmesh.json"
  local render = require "zmesh.net.render"
  it("gives exactly json.encode's bytes for random networks", function()
    local checked = 0
    for run = 1, 60 do
      local n = random_network(1000 + run)
      local ok, t = pcall(net.topology, n)
      if ok then
        local encode = render.encoder()
        for id, c in pairs(render.all(t)) do
          assert.equal(json.encode(c), encode(c), "node " .. id .. " (seed " .. seed .. ")")
          checked = checked + 1
        end
      end
    end
    assert.is_true(checked > 100)
  end)
end)

describe("net render and the node side", function()
  -- zmesh.nr.config is what a node checks an NR config with: every kind
  -- of render, standby peers (no AllowedIPs) and the sole exit's
  -- 0.0.0.0/0 beside other peers' /24s included, and external devices
  -- (peers named "access:NAME").
  local nr_config = require "zmesh.nr.config"
  it("renders configs the node side accepts", function()
    local checked, standby, exits, devices = 0, 0, 0, 0
    for run = 1, 60 do
      local n = random_network(3000 + run)
      local ok, configs = pcall(net.render_all, n)
      if ok then
        for id, c in pairs(configs) do
          local valid, err = pcall(nr_config.validate, c)
          assert(valid, string.format("node %s (seed %d): %s\n%s", id, seed, tostring(err), describe_net(n)))
          checked = checked + 1
          if c.exit == "mesh" then exits = exits + 1 end
          for _, p in ipairs(c.peers) do
            if #p.allowed_ips == 0 then standby = standby + 1 end
            if tostring(p.node_id):match("^access:") then devices = devices + 1 end
          end
        end
      end
    end
    assert.is_true(checked >= 100)
    assert.is_true(standby > 0 and exits > 0 and devices > 0)
  end)
end)

describe("aggregator memory over random networks", function()
  -- Every hidden NR's aggregators as N renders them, and the topology.
  local function served(n)
    local t = net.topology(n)
    local out = {}
    for _, h in ipairs(t.hidden) do out[h] = t.aggregators[h] end
    return out, t
  end

  local function text(list) return "{" .. table.concat(list or {}, ", ") .. "}" end

  -- nil, or how AFTER breaks the promise: each hidden NR of BEFORE that
  -- is still there keeps its list; GONE (a removed aggregator) leaves it,
  -- and the rest move up in order. A list only grows where it had no
  -- backup yet (filled up), to primary and one backup.
  local function kept(before, after, gone)
    for h, old in pairs(before) do
      local new = after[h]
      if new then
        local expect = {}
        for _, p in ipairs(old) do if p ~= gone then expect[#expect + 1] = p end end
        for i, p in ipairs(expect) do
          if new[i] ~= p then return string.format("%s: %s became %s", h, text(old), text(new)) end
        end
        if #new > #expect and #old >= 2 and not gone or #new > 2 then
          return string.format("%s: %s grew to %s", h, text(old), text(new))
        end
      end
    end
    return nil
  end

  -- nil, or a hidden NR whose file record differs from its render.
  local function recorded(n, now)
    for _, node in ipairs(n.nodes) do
      local want = now[node.node_id]
      if want and text(node.aggregators) ~= text(want) then
        return string.format("%s: file records %s, renders %s", node.node_id, text(node.aggregators), text(want))
      end
    end
    return nil
  end

  local function pick(list) return list[math.random(#list)] end
  local hidden_kinds = { "hid4", "hid46", "cgnat", "forced_hidden" }
  local public_kinds = { "pub4", "pub46", "fwd", "lan_public" }

  -- One random change to N whose render is NOW (topology T): the new
  -- network, what it is, and the aggregator it removed (if any).
  local function change(n, now, t, run, k)
    local aggs, non = {}, {}
    for _, list in pairs(now) do for _, p in ipairs(list) do aggs[p] = true end end
    for _, p in ipairs(t.public) do if not aggs[p] then non[#non + 1] = p end end
    local ops = { "add public", "add hidden" }
    if #t.hidden > 1 then ops[#ops + 1] = "remove hidden" end
    if #non > 0 then ops[#ops + 1] = "remove public" end
    if #t.public > 1 then ops[#ops + 1] = "remove aggregator" end
    local op = pick(ops)
    local id = string.format("x%d-%d", run, k)
    if op == "add public" then return net.add_node(n, (build.facts(id, pick(public_kinds), fake))), op end
    if op == "add hidden" then return net.add_node(n, (build.facts(id, pick(hidden_kinds), fake))), op end
    if op == "remove hidden" then return (net.remove_node(n, pick(t.hidden))), op end
    if op == "remove public" then
      local p = pick(non)
      return (net.remove_node(n, p)), op .. " " .. p
    end
    -- half the time the primary of a random hidden NR, else any aggregator
    local list = now[pick(t.hidden)]
    local p = math.random() < 0.5 and list[1] or list[#list]
    return (net.remove_node(n, p)), op .. " " .. p, p
  end

  it("keeps every hidden NR's aggregators when unrelated nodes come and go", function()
    local networks, changes, legacy, promoted = 0, 0, 0, 0
    for run = 1, 100 do
      local n = random_network(5000 + run)
      local ok, now, t = pcall(served, n)
      if ok and #t.hidden > 0 then
        networks = networks + 1
        local where = function(msg, what)
          return string.format("run %d (seed %d), %s: %s\n%s", run, seed, what, msg, describe_net(n))
        end
        assert(recorded(n, now) == nil, where(tostring(recorded(n, now)), "as built"))
        -- A file without the record (as older zmesh wrote it) gets one
        -- on its next change, keeping what it rendered to.
        if math.random() < 0.3 then
          for _, node in ipairs(n.nodes) do node.aggregators = nil end
          now, t = served(n)
          legacy = legacy + 1
        end
        for k = 1, 6 do
          local after, what, gone = change(n, now, t, run, k)
          local after_now, after_t = served(after)
          local problem = kept(now, after_now, gone) or recorded(after, after_now)
          assert(problem == nil, where(tostring(problem), what))
          -- every hidden NR still shares one primary: two hops between them
          local first
          for _, list in pairs(after_now) do
            first = first or list[1]
            assert(list[1] == first, where("primaries differ", what))
          end
          if gone then
            for h, old in pairs(now) do
              if old[1] == gone and old[2] and after_now[h] then
                assert.equal(old[2], after_now[h][1])
                promoted = promoted + 1
              end
            end
          end
          n, now, t = after, after_now, after_t
          changes = changes + 1
        end
      end
    end
    print(string.format("net_property_spec: aggregator memory: %d networks (%d without a record), %d changes, "
      .. "%d backups promoted", networks, legacy, changes, promoted))
    assert.is_true(networks >= 40 and legacy > 0 and promoted > 0)
  end)

  it("catches a moved primary (the check can fail)", function()
    assert.matches("became", kept({ h = { "a", "b" } }, { h = { "c", "a" } }))
    assert.matches("became", kept({ h = { "a", "b" } }, { h = { "b", "a" } }))
    assert.matches("grew", kept({ h = { "a", "b" } }, { h = { "a", "b", "c" } }))
    assert.is_nil(kept({ h = { "a" } }, { h = { "a", "c" } }))
    assert.is_nil(kept({ h = { "a", "b" } }, { h = { "b", "c" } }, "a"))
    assert.matches("became", kept({ h = { "a", "b" } }, { h = { "c", "b" } }, "a"))
  end)
end)
