-- The network tool's live view from node check reports (graph --status),
-- and exit candidates with their Internet probe targets (set-exit).
local fake = require("fake_keys").install()
local json = require "zmesh.json"
local net = require "zmesh.net"
local build = dofile("tests/fixtures/net/build.lua")

describe("net set-exit with fallbacks", function()
  it("keeps the candidates in order, with the probe targets; none undoes it", function()
    local n = build.network(net, { "pub4", "pub4", "pub4", "hid4" }, fake)
    n = net.set_exit(n, { "n2", "n1" }, { internet_targets = { "192.0.2.9" } })
    assert.same({ "n2", "n1" }, n.exit)
    assert.same({ "192.0.2.9" }, n.internet_targets)
    local t = net.topology(n)
    assert.same({ "n2", "n1" }, t.exits)
    local cfg = net.render(n, "n3")
    assert.same({ "n2", "n1" }, cfg.failover.exits)
    assert.same({ "192.0.2.9" }, cfg.failover.internet_targets)
    -- Removing the exit in use promotes the next.
    local m, notes = net.remove_node(n, "n2")
    assert.equal("n1", m.exit)
    assert.matches("n1 is now", notes[1])
    assert.is_nil(net.set_exit(n, nil).exit)
    assert.has_error(function() net.set_exit(n, { "n2", "n9" }) end,
      "exit[2]: 'n9' is not a node of network t")
    assert.has_error(function() net.set_exit(n, { "n2", "n2" }) end)
    local bad = json.decode(json.encode(n))
    bad.internet_targets = { "not-an-ip" }
    assert.has_error(function() require("zmesh.net.validate").network(bad) end,
      "internet_targets[1]: 'not-an-ip' must be an IPv4 address")
    -- A probe that always answers, or never leaves the mesh, tells nothing.
    for target, why in pairs({
      ["127.0.0.1"] = "is a loopback address, not an address on the Internet",
      ["0.0.0.0"] = "is an unspecified address, not an address on the Internet",
      ["224.0.0.1"] = "is a multicast address, not an address on the Internet",
      ["255.255.255.255"] = "is a reserved address, not an address on the Internet",
      ["10.1.1.5"] = "is inside the network's own addresses, not on the Internet",
      ["100.64.1.1"] = "is inside the network's own addresses, not on the Internet",
    }) do
      assert.has_error(function() net.set_exit(n, "n2", { internet_targets = { target } }) end,
        string.format("internet_targets[1]: '%s' %s", target, why))
    end
    assert.has_error(function() net.set_exit(n, "n2", { internet_targets = { "192.0.2.9", "192.0.2.9" } }) end,
      "internet_targets[2]: '192.0.2.9' is also internet_targets[1]")
  end)
end)

describe("net graph --status", function()
  it("draws the live edges: relaying bold, own traffic solid, a standby dotted, a dead peer red", function()
    local n = build.network(net, { "pub4", "pub4", "hid4" }, fake)
    local t = net.topology(n)
    local h = t.hidden[1]
    local primary, standby = t.aggregators[h][1], t.aggregators[h][2]
    local other = primary == "n1" and "n2" or "n1"
    local report_h = { { net_id = n.net_id, node_id = h, aggregator = primary,
      standby = { [standby] = true }, peers = {
        [primary] = { reachable = true, path = "direct", peer = primary, handshake_age = 3, rx_bytes = 10, tx_bytes = 20 },
        [standby] = { reachable = false, path = "direct", peer = standby, handshake_age = 40 },
      } } }
    local report_p = { { net_id = n.net_id, node_id = primary, peers = {
      [h] = { reachable = true, path = "direct", peer = h, handshake_age = 3 },
      [other] = { reachable = true, path = "direct", peer = other, handshake_age = 5 },
    } } }
    local dot = require("zmesh.net.graph").live(n, { report_h, report_p })
    local function has(text) assert.truthy(dot:find(text, 1, true), text .. " not in:\n" .. dot) end
    has(string.format('"%s" -> "%s" [style=solid, label="3 s, 10/20 B"]', h, primary))
    has(string.format('"%s" -> "%s" [style=dotted, color=red', h, standby))
    has(string.format('"%s" -> "%s" [style=solid', primary, other))
    -- The node that sent nothing is drawn dashed, "(no report)".
    has("(no report)\", shape=box, style=dashed]")
  end)
end)
