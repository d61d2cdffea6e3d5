-- Kernel memory per NR, inside the test VM (tests/vm/run.sh; run by
-- tests/bench/kernel_nr.lua). This host's kernel has no WireGuard module,
-- so the kernel backend's cost per NR can only be measured here.
--
-- N "bare" NRs (a namespace with loopback up and its uplink veth to a
-- shared ndmz, addressed), then N kernel NRs (the same plus a WireGuard
-- interface born in the ndmz and moved into the NR, its key, port and 10
-- peers, addressed and up). Before and after each batch, with the page
-- cache dropped: MemAvailable, Slab, Percpu, KernelStack from
-- /proc/meminfo. Prints one line per batch:
--   "batch NAME N avail_kb SLAB_KB PERCPU_KB STACK_KB SECONDS"
-- (deltas for the whole batch). Timings are of an emulated CPU.
local core = require "zmesh.core"
local N = tonumber(arg and arg[1]) or 40
local NDMZ = "ndmz"

local function must(v, err)
  if v == nil then error(tostring(err), 2) end
  return v
end

local function meminfo()
  local drop = io.open("/proc/sys/vm/drop_caches", "w")
  if drop then drop:write("3\n") drop:close() end
  local f = must(io.open("/proc/meminfo"))
  local m = {}
  for line in f:lines() do
    local k, v = line:match("^(%w+):%s+(%d+) kB")
    if k then m[k] = tonumber(v) end
  end
  f:close()
  return m
end

local function clock()
  local f = must(io.open("/proc/uptime"))
  local s = f:read("n")
  f:close()
  return s
end

local function bare(name, i)
  local ns = "n-" .. name
  must(core.netns.create(ns))
  must(core.link.set { ns = ns, name = "lo", up = true })
  must(core.link.veth { ns = NDMZ, name = "p-" .. name, peer = "public", peer_ns = ns })
  must(core.link.set { ns = NDMZ, name = "p-" .. name, up = true })
  must(core.link.set { ns = ns, name = "public", up = true })
  must(core.addr.add { ns = ns, dev = "public", addr = string.format("100.127.%d.%d/16", i // 250, 2 + i % 250) })
  return ns
end

local function peer_key()
  local k <close> = core.key.generate()
  return k:public()
end

local function kernel_nr(name, i)
  local ns = bare(name, i)
  local wg = "w-" .. name
  must(core.wg.create { name = wg, birth_ns = NDMZ, ns = ns, backend = "kernel" })
  local key <close> = core.key.generate()
  local peers = {}
  for j = 1, 10 do
    peers[j] = { public_key = peer_key(), endpoint = string.format("192.0.2.%d:51820", j),
      allowed_ips = { string.format("10.%d.%d.0/24", i % 250, j) }, persistent_keepalive = 25 }
  end
  must(core.wg.set { ns = ns, name = wg, private_key = key, listen_port = 51820 + i, peers = peers })
  must(core.addr.add { ns = ns, dev = wg, addr = string.format("10.%d.0.1/16", i % 250) })
  must(core.link.set { ns = ns, name = wg, up = true })
end

local function batch(label, make)
  collectgarbage()
  local before, t0 = meminfo(), clock()
  for i = 1, N do make(label .. i, i) end
  local took = clock() - t0
  local after = meminfo()
  local function d(k) return (before[k] or 0) - (after[k] or 0) end
  print(string.format("batch %s %d %d %d %d %d %.2f", label, N, d("MemAvailable"),
    -d("Slab"), -d("Percpu"), -d("KernelStack"), took))
  io.stdout:flush()
end

must(core.netns.create(NDMZ))
must(core.link.set { ns = NDMZ, name = "lo", up = true })
batch("bare", bare)
batch("kernel", kernel_nr)
print("done")
