-- The kernel WireGuard backend against a real kernel WireGuard.
--
-- This host's kernel has no WireGuard, so tests/vm/run.sh boots Debian's
-- kernel under QEMU (full emulation, no network device) and runs
-- tests/vm/wg_kernel.lua inside: two nodes (ndmz + NR namespaces each), a
-- tunnel built with core.wg.* between them, interop with the real `wg`,
-- 1000 peers, bad input. Every check the VM makes comes back as one line
-- and is asserted here, one `it` each.
--
-- When the VM cannot run here (no qemu, no kernel package) this fails.
-- ZMESH_VM_OPTIONAL=1 turns that into `pending` (never a pass).

local root = os.getenv("ZMESH_ROOT") or "."
local script = "tests/vm/wg_kernel.lua"

-- Every check of tests/vm/wg_kernel.lua, in order.
local checks = {
  "kernel WireGuard answers",
  "topology: namespaces, uplinks",
  "create: born in the ndmz, moved to the NR",
  "set: keys, port, psk, endpoint, allowed IPs",
  "wg showconf reads what zmesh set",
  "tunnel over IPv4 endpoints: ping",
  "get: handshake, exact counters equal wg show dump",
  "one-peer update keeps the running session",
  "tunnel over IPv6 endpoints",
  "wg set changes, zmesh reads them",
  "1000 peers: set and get round trip",
  "1000 peers: wg agrees",
  "split peer: replace_allowed_ips keeps every part",
  "split peer: update_only never creates a partial peer",
  "1000 peers: one removed, one added, the rest untouched",
  "1000 peers: replace_peers with an empty list clears",
  "bad input: malformed public key",
  "bad input: malformed endpoints",
  "bad input: malformed allowed IPs",
  "bad input: port out of range, keepalive out of range",
  "bad input: a bad peer after a good one changes nothing",
  "errors: no such device, not a WireGuard device",
  "errors: create twice, bad names",
  "errors: listen port in use in the birth namespace",
  "tunnel still up after all that",
  "teardown",
}

local function shell_quote(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

-- Run the VM once: its output, exit status and the checks it reported.
local function run_vm()
  local cmd = "cd " .. shell_quote(root) .. " && tests/vm/run.sh --timeout " ..
    (os.getenv("ZMESH_VM_TIMEOUT") or "300") .. " " .. script .. " 2>&1"
  local f = assert(io.popen(cmd))
  local out = f:read("a")
  local _, _, code = f:close()
  local vm = { out = out, code = code, results = {}, notes = {} }
  for line in out:gmatch("[^\n]+") do
    local name = line:match("^ok %- (.*)$")
    if name then vm.results[name] = { ok = true } end
    local bad, why = line:match("^not ok %- (.-): (.*)$")
    if bad then vm.results[bad] = { ok = false, why = why } end
    if line:match("^# ") then vm.notes[#vm.notes + 1] = line end
    vm.unavailable = vm.unavailable or line:match("^ZMESH%-VM%-UNAVAILABLE: (.*)$")
    vm.error = vm.error or line:match("^ZMESH%-VM%-ERROR: (.*)$")
    vm.elapsed = vm.elapsed or line:match("^ZMESH%-VM%-RESULT %d+ %((%d+)s%)$")
  end
  return vm
end

describe("kernel WireGuard backend, in a VM with a real kernel WireGuard", function()
  local vm

  lazy_setup(function()
    vm = run_vm()
    if vm.elapsed then
      io.stderr:write(string.format("\n[wg_kernel VM: %ss, exit %s]\n", vm.elapsed, tostring(vm.code)))
    end
    for _, n in ipairs(vm.notes) do io.stderr:write(n, "\n") end
  end)

  -- Did the VM run at all? Otherwise say why, as a failure (or pending).
  local function vm_ran()
    if vm.unavailable or vm.code == 77 then
      local why = "the VM cannot run here: " .. (vm.unavailable or vm.out)
      if os.getenv("ZMESH_VM_OPTIONAL") == "1" then pending(why) end
      error(why, 0)
    end
    assert(not vm.error, "the VM gave no result: " .. tostring(vm.error) .. "\n" .. vm.out)
  end

  for _, name in ipairs(checks) do
    it(name, function()
      vm_ran()
      local r = vm.results[name]
      assert(r, "the VM did not report this check:\n" .. vm.out)
      assert(r.ok, r.why)
    end)
  end

  it("reports no other check and exits 0", function()
    vm_ran()
    local known = {}
    for _, name in ipairs(checks) do known[name] = true end
    for name, r in pairs(vm.results) do
      assert(known[name], "check not listed in this spec: " .. name)
      assert(r.ok, name .. ": " .. tostring(r.why))
    end
    assert.are.equal(0, vm.code, vm.out)
  end)
end)
