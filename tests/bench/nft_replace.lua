-- Benchmark: replacing an NR's firewall table with core.nft.apply (one
-- batch through libnftnl) against `nft -f` of the same rules, in the same
-- run, inside a namespace of this run. Prints milliseconds per replace and
-- the ratio nft/core, for a namespace given by name and by an open handle,
-- and the ratio by name / by handle. Closing a netfilter socket right
-- after a commit waits for the kernel's RCU grace period (some 10 ms; nft
-- pays it too): the netlink layer keeps one socket per namespace, so a
-- call by name (which opens the namespace anew) costs about what a call
-- through a handle does; the ratio shows it (it must stay below 1.5).
-- Run with `make bench` (plain lua5.4, see LUA_ENV there).
local core = require "zmesh.core"
local firewall = require "zmesh.firewall"
local testns = require "testns"

local ROUNDS = tonumber(os.getenv("ZMESH_BENCH_ROUNDS") or "") or 200

local function now_ns()
  local f = io.popen("date +%s%N")
  local t = tonumber(f:read("l"))
  f:close()
  return t
end

local function sh(cmd)
  local out, ok = testns.sh(cmd)
  if not ok then error(cmd .. ": " .. out, 2) end
  return out
end

-- The default NR table, and the same with N farmer rules more.
local function tables()
  local nr = assert(firewall.from_policy("nr", { uplink = "public", range = "10.1.0.0/16",
    range6 = "fd00:1::/48" }))
  local big = assert(firewall.validate(nr))
  local extra = {}
  for i = 1, 500 do
    extra[i] = { match = { iifname = "public", ip_saddr = "198.51.100." .. (i % 250 + 1),
      tcp_dport = 1000 + i }, counter = true, verdict = "accept" }
  end
  local input = big.chains[1].rules
  for i, r in ipairs(extra) do table.insert(input, #input, r); extra[i] = nil end
  return { { "NR default policy", nr }, { "NR + 500 rules", big } }
end

local function count_rules(d)
  local n = 0
  for _, c in ipairs(d.chains) do n = n + #(c.rules or {}) end
  return n
end

local function bench(ns, label, desc)
  local path = os.tmpname()
  local f = assert(io.open(path, "w"))
  f:write(firewall.script(desc))
  f:close()
  assert(core.nft.apply(ns, desc))
  sh(("ip netns exec %s nft -f %s"):format(ns, path)) -- the script works
  local t0 = now_ns()
  for _ = 1, ROUNDS do assert(core.nft.apply(ns, desc)) end
  local ours = (now_ns() - t0) / ROUNDS / 1e6
  -- The same through one open namespace handle.
  local handle = assert(core.netns.open(ns))
  t0 = now_ns()
  for _ = 1, ROUNDS do assert(core.nft.apply(handle, desc)) end
  local by_handle = (now_ns() - t0) / ROUNDS / 1e6
  handle:close()
  local total = tonumber(sh(("ip netns exec %s sh -c 's=$(date +%%s%%N); i=0; "
    .. "while [ $i -lt %d ]; do nft -f %s || exit 1; i=$((i+1)); done; "
    .. "echo $(( $(date +%%s%%N) - s ))'"):format(ns, ROUNDS, path)))
  os.remove(path)
  local theirs = total / ROUNDS / 1e6
  print(string.format("%-18s %4d rules  nft -f %7.3f ms | core.nft.apply by name %7.3f ms "
    .. "(%5.1fx) | by handle %7.3f ms (%5.1fx) | by name / by handle %.2f",
    label, count_rules(desc), theirs, ours, theirs / ours, by_handle, theirs / by_handle,
    ours / by_handle))
  return ours / by_handle
end

local ns = testns.name("fw-bench")
local ok, err = pcall(function()
  assert(core.netns.create(ns))
  print(string.format("%d replacements each, namespace %s", ROUNDS, ns))
  for _, t in ipairs(tables()) do
    local ratio = bench(ns, t[1], t[2])
    if ratio > 1.5 then error(string.format("%s: by name %.2fx by handle (limit 1.5)", t[1], ratio), 0) end
  end
end)
local cleaned, cerr = testns.cleanup()
if not ok then error(err, 0) end
assert(cleaned, cerr)
