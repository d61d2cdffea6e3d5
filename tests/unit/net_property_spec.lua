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

local function random_network(run)
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
  if math.random() < 0.3 then
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
  -- zmesh.nr.config is what a node checks an NR config with. Standby
  -- peers (no AllowedIPs) and the sole exit's 0.0.0.0/0 beside other
  -- peers' /24s are not accepted there yet, so those cases are left out.
  local nr_config = require "zmesh.nr.config"
  it("renders configs the node side accepts", function()
    local checked = 0
    for run = 1, 40 do
      local kinds = { "pub46" }
      for i = 2, math.random(1, 10) do
        kinds[i] = ({ "hid4", "hid46", "cgnat", "forced_hidden" })[math.random(4)]
      end
      local n = build.network(net, kinds, fake, { net_id = "c" .. run,
        ipv6_range = run % 2 == 0 and "fd00:9::/48" or nil })
      for id, c in pairs(net.render_all(n)) do
        local ok, err = pcall(nr_config.validate, c)
        assert(ok, string.format("node %s (seed %d): %s", id, seed, tostring(err)))
        checked = checked + 1
      end
    end
    assert.is_true(checked >= 40)
  end)
end)
