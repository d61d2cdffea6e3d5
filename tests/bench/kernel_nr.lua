-- Kernel memory per NR with the kernel WireGuard backend, measured in the
-- QEMU VM (tests/vm/nr_memory.lua; this host's kernel has no WireGuard
-- module): the kernel's own memory (MemAvailable drop, and its Slab and
-- Percpu parts) for 40 kernel NRs (namespace, uplink veth, WireGuard with
-- 10 peers), against 40 bare NRs (namespace and veth only) in the same VM
-- run: the ratio says what WireGuard adds to an NR. The VM's CPU is
-- emulated: its timings are printed for completeness and say nothing of a
-- node. Compare with nr_many.lua's userspace figure (RSS and PSS of each
-- wireguard-go, on this host). Nothing is asserted.
local ROOT = os.getenv("ZMESH_ROOT") or "."
local N = tonumber(os.getenv("ZMESH_BENCH_VM_NRS") or "") or 40

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end
local f = assert(io.popen("cd " .. shell_quote(ROOT) .. " && tests/vm/run.sh --timeout 600 tests/vm/nr_memory.lua "
  .. N .. " 2>&1"))
local out = f:read("a")
local _, _, code = f:close()
if code == 77 then
  print("kernel NRs: the VM cannot run here (" .. (out:match("ZMESH%-VM%-UNAVAILABLE: ([^\n]*)") or "?")
    .. "); not measured")
  os.exit(0)
end
local b = {}
for label, n, avail, slab, percpu, stack, secs in
    out:gmatch("batch (%a+) (%d+) (%-?%d+) (%-?%d+) (%-?%d+) (%-?%d+) ([%d.]+)") do
  b[label] = { n = tonumber(n), avail = tonumber(avail), slab = tonumber(slab), percpu = tonumber(percpu),
    stack = tonumber(stack), secs = tonumber(secs) }
end
if code ~= 0 or not b.bare or not b.kernel or not out:find("\ndone") then
  io.stderr:write("bench kernel_nr: the VM run failed (exit ", tostring(code), "):\n", out:sub(-1500), "\n")
  os.exit(1)
end
local function per(x, k) return x[k] / x.n end
print(string.format("%d NRs each, kernel WireGuard, in the QEMU VM (512 MiB, emulated CPU):", N))
for _, label in ipairs({ "bare", "kernel" }) do
  local x = b[label]
  print(string.format("  %-6s NR: %6.0f kB of MemAvailable each (Slab %.0f kB, Percpu %.0f kB, kernel stacks %.0f kB);"
    .. " %.0f ms each (emulated)", label, per(x, "avail"), per(x, "slab"), per(x, "percpu"), per(x, "stack"),
    x.secs * 1000 / x.n))
end
local wg = per(b.kernel, "avail") - per(b.bare, "avail")
print(string.format("  WireGuard with 10 peers adds %.0f kB per NR; kernel NR / bare NR %.2f",
  wg, per(b.kernel, "avail") / per(b.bare, "avail")))
