-- A whole NR, the way a node takes one: node.start (the ndmz), nr.apply of
-- an NR with 10 peers, and one container attached, on a simulated node
-- with the userspace WireGuard backend; against the same NR built by hand
-- with ip, wg, wireguard-go and nft (tests/bench/nr_by_hand.sh), on the
-- same node, in the same run. Rounds alternate the builds; the median is
-- printed with min and max, and the ratio by hand / Zero-Mesh (target:
-- Zero-Mesh at least 10 times faster). The first round checks that both
-- builds are identical (tests/bench/lib/describe.lua: links, addresses,
-- routes, sysctls, WireGuard, nftables). Zero-Mesh is timed in one
-- process with its modules loaded, as the daemon's writer runs it; the
-- same as three one-shot commands is printed too. Nothing is asserted
-- about timings. ZMESH_BENCH_ROUNDS changes the rounds (default 5).
local ROOT = os.getenv("ZMESH_ROOT") or "."
local stats = dofile(ROOT .. "/tests/bench/lib/stats.lua")
local core = require "zmesh.core"
local desired = require "zmesh.nr.desired"
local nr_config = require "zmesh.nr.config"
local firewall = require "zmesh.firewall"
local json = require "zmesh.json"
local names = require "zmesh.node.names"
local nrconf = require "nrconf"
local sim = require "zmesh.sim"

local BIN = os.getenv("ZMESH_BIN") or (ROOT .. "/build/zmesh")
local ROUNDS = tonumber(os.getenv("ZMESH_BENCH_ROUNDS") or "") or 5
local PEERS = 10
local NET_ID, CONTAINER, CIP = "w1", "c1", "10.1.1.10"

local S = sim.new { prefix = "zb" .. string.format("%x", os.time() % 0xfff) .. "w-", bin = BIN,
  backend = "userspace" }

local function put(path, text)
  assert(core.fs.mkdir("/proc/" .. S.nodes.n1.pid .. "/root/run/bench", tonumber("700", 8)))
  assert(core.fs.write("/proc/" .. S.nodes.n1.pid .. "/root" .. path, text, tonumber("600", 8)))
end

local function must_sh(cmd)
  local out, ok = S:sh("n1", cmd)
  if not ok then error(cmd .. ": " .. out, 2) end
  return out
end

-- Everything of the NR gone again (Zero-Mesh's removal takes the hand-made
-- one as well: the same names), and the container's namespace.
local function teardown()
  assert(S:call("n1", "node.stop", {}))
  must_sh("ip netns del " .. CONTAINER .. " 2>/dev/null; "
    .. "pkill -KILL -f '^wireguard-go (-f )?w-" .. NET_ID .. "$'; rm -f /run/wireguard/w-" .. NET_ID .. ".sock; true")
end

local function peers_conf(cfg)
  local out = {}
  for _, p in ipairs(cfg.peers) do
    out[#out + 1] = "[Peer]\nPublicKey = " .. p.wireguard_public_key .. "\nAllowedIPs = "
      .. table.concat(p.allowed_ips, ", ") .. "\nEndpoint = " .. p.endpoint
      .. (p.persistent_keepalive and ("\nPersistentKeepalive = " .. p.persistent_keepalive) or "") .. "\n"
  end
  return table.concat(out, "\n")
end

local ok, err = pcall(function()
  S:internet()
  S:node { id = "n1", addr = "203.0.113.11/24" }
  local node_cfg = S.nodes.n1.config
  assert(S:call("n1", "node.start", {}))
  local facts = assert(S:call("n1", "node.facts", {}))
  teardown()
  local key = core.key.generate()
  local cfg = nrconf.make(facts, NET_ID, 1, PEERS, 25, { key = key, port = 51821 })
  put("/run/bench/nr.json", json.encode(cfg))
  put("/run/bench/wg.key", key:export() .. "\n")
  key:close()
  put("/run/bench/peers.conf", peers_conf(cfg))
  -- The rulesets as the firewall policy gives them to Zero-Mesh: what an
  -- operator would keep in nft files.
  local ndmz_rules = assert(firewall.from_policy("ndmz", { uplink = names.UPLINK, bridge = names.TONRS,
    range = names.NR_UPLINK_RANGE, wg_port_range = { min = 51820, max = 52819 } }))
  local nr_rules = assert(firewall.from_policy("nr", { uplink = names.UPLINK, range = cfg.ip_range,
    wg = names.wg_if(NET_ID), bridge = names.bridge_if(NET_ID) }))
  put("/run/bench/ndmz.nft", firewall.script(assert(firewall.validate(ndmz_rules))))
  put("/run/bench/nr.nft", firewall.script(assert(firewall.validate(nr_rules))))
  local env = table.concat({
    "NIC=eth0", "UPLINK_ADDR=" .. node_cfg.uplink.addresses[1], "GATEWAY=" .. node_cfg.uplink.gateway,
    "NET_ID=" .. NET_ID, "RANGE=" .. cfg.ip_range, "SUBNET_GW=10.1.1.1/24", "MESH_ADDR=100.64.1.1/16",
    "NR_UPLINK=100.127.0.2/16", "WG_PORT=" .. cfg.wireguard_listen_port, "WG_KEY=/run/bench/wg.key",
    "WG_PEERS=/run/bench/peers.conf", "NFT_NDMZ=/run/bench/ndmz.nft", "NFT_NR=/run/bench/nr.nft",
    "CONTAINER=" .. CONTAINER, "CPORT=" .. names.container_port(CONTAINER), "CIP=" .. CIP .. "/24",
    -- What the tree's desired state adds, when it has it.
    names.TONRS_ADDR6 and ("TONRS_ADDR6=" .. names.TONRS_ADDR6) or "",
    desired.mtu and ("MTU=" .. desired.mtu(nr_config.validate(cfg), { mtu = 1500, ipv6 = false })) or "",
  }, " ")
  local described = {}
  local function describe(who)
    described[who] = must_sh(BIN .. " run " .. ROOT .. "/tests/bench/lib/describe.lua ndmz n-" .. NET_ID
      .. " " .. CONTAINER)
  end
  local setups = {
    zmesh = function(round)
      local r = json.decode(must_sh(BIN .. " run " .. ROOT .. "/tests/bench/lib/nr_whole_node.lua "
        .. "/run/bench/nr.json " .. CONTAINER .. " " .. CIP))
      if round == 1 then describe("zmesh") end
      teardown()
      return { total = r.total / 1000, start = r.start / 1000, apply = r.apply / 1000, attach = r.attach / 1000 }
    end,
    oneshot = function()
      local ns = tonumber(must_sh(string.format("s=$(date +%%s%%N); %s node start >/dev/null && "
        .. "%s node apply /run/bench/nr.json >/dev/null && %s call container.attach %s >/dev/null && "
        .. "echo $(( $(date +%%s%%N) - s ))", BIN, BIN, BIN,
        sim.q(json.encode({ net_id = NET_ID, netns = CONTAINER, ip = CIP, create = true })))))
      teardown()
      return ns / 1e9
    end,
    hand = function(round)
      local ns = tonumber(must_sh("s=$(date +%s%N); env " .. env .. " sh " .. ROOT
        .. "/tests/bench/nr_by_hand.sh up && echo $(( $(date +%s%N) - s ))"))
      if round == 1 then describe("hand") end
      teardown()
      return ns / 1e9
    end,
  }
  local r = stats.alternate(os.getenv("BENCH_ORDER") and { "hand", "zmesh", "oneshot" } or { "zmesh", "hand", "oneshot" }, setups, ROUNDS)
  local same = described.zmesh == described.hand
  if not same then
    local a, b = os.tmpname(), os.tmpname()
    for path, text in pairs({ [a] = described.zmesh, [b] = described.hand }) do
      local f = assert(io.open(path, "w"))
      f:write(text, "\n")
      f:close()
    end
    io.stderr:write("the builds differ (< zmesh, > by hand):\n", (sim.sh("diff " .. a .. " " .. b)), "\n")
    os.remove(a)
    os.remove(b)
  end
  local z, h = stats.median(r.zmesh.total), stats.median(r.hand)
  print(string.format("whole NR: node.start + nr.apply (%d peers) + one container, userspace WireGuard, "
    .. "median of %d (min–max):", PEERS, ROUNDS))
  print(string.format("  zmesh, one process (the daemon's writer) %s: start %s, apply %s, attach %s",
    stats.show(r.zmesh.total), stats.show(r.zmesh.start), stats.show(r.zmesh.apply), stats.show(r.zmesh.attach)))
  print(string.format("  zmesh, three one-shot commands          %s", stats.show(r.oneshot)))
  print(string.format("  by hand (tests/bench/nr_by_hand.sh)     %s", stats.show(r.hand)))
  print(string.format("  by hand / zmesh %.1f (target >= 10: %s); by hand / one-shot %.1f; identical builds: %s",
    h / z, stats.verdict(h / z, ">=", 10), h / stats.median(r.oneshot),
    same and "yes" or "NO"))
  if not same then error("the two builds differ", 0) end
end)
S:destroy()
if not ok then
  io.stderr:write("bench nr_whole: ", tostring(err), "\n")
  os.exit(1)
end
