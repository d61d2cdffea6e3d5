-- Apply: the one place where the node changes the system. Carries out the
-- actions of reconcile.diff in order through zmesh.core, and stops at the
-- first failure, reporting what was done and what failed.
local resources = require "zmesh.reconcile.resources"

local apply = {}

local cns = resources.core_ns

local ops = {}

function ops.netns_create(core, a) return core.netns.create(a.name) end
function ops.netns_delete(core, a) return core.netns.delete(a.name) end
function ops.sysctl_set(core, a) return core.sysctl.set(cns(a.ns), a.key, a.value) end
function ops.link_bridge(core, a)
  return core.link.bridge { ns = cns(a.ns), name = a.name, mtu = a.mtu }
end
-- core.link treats a missing namespace field as "same as ns": calls that
-- name the host namespace as the other side get a handle of it.
local function with_ns(core, ns, fn)
  if ns ~= resources.HOST then return fn(ns) end
  local handle <close>, err, ename = core.netns.open()
  if not handle then return nil, err, ename end
  return fn(handle)
end

function ops.link_veth(core, a)
  return with_ns(core, a.peer_ns, function(peer_ns)
    return core.link.veth { ns = cns(a.ns), name = a.name, peer = a.peer,
      peer_ns = peer_ns, mtu = a.mtu }
  end)
end
function ops.link_macvlan(core, a)
  return core.link.macvlan { ns = cns(a.ns), name = a.name, parent = a.parent,
    parent_ns = cns(a.parent_ns), mode = "bridge", mtu = a.mtu }
end
function ops.link_move(core, a)
  return with_ns(core, a.netns, function(target)
    return core.link.set { ns = cns(a.ns), name = a.name, netns = target, rename = a.rename }
  end)
end
function ops.link_set(core, a)
  return core.link.set { ns = cns(a.ns), name = a.name, up = a.up, mtu = a.mtu,
    master = a.master }
end
function ops.link_delete(core, a) return core.link.delete { ns = cns(a.ns), name = a.name } end
function ops.wg_create(core, a)
  if a.replace_stale then
    -- What is left of a dead interface (its link, a stale socket) goes first.
    local ok, err, ename = core.wg.delete { ns = cns(a.ns), name = a.name }
    if not ok and ename ~= "ENODEV" and ename ~= "ENOENT" then return ok, err, ename end
  end
  return core.wg.create { name = a.name, birth_ns = cns(a.birth_ns), ns = cns(a.ns),
    mtu = a.mtu, backend = a.backend, log = a.log }
end
-- birth_ns: also end daemons for the name still starting there.
function ops.wg_delete(core, a)
  if a.birth_ns == nil then return core.wg.delete { ns = cns(a.ns), name = a.name } end
  return with_ns(core, a.birth_ns, function(birth)
    return core.wg.delete { ns = cns(a.ns), birth_ns = birth, name = a.name }
  end)
end
function ops.file_remove(core, a) return core.fs.remove(a.path) end
function ops.wg_set(core, a)
  return core.wg.set { ns = cns(a.ns), name = a.name, private_key = a.private_key,
    listen_port = a.listen_port, peers = a.peers }
end
function ops.addr_add(core, a)
  return core.addr.add { ns = cns(a.ns), dev = a.dev, addr = a.addr, nodad = true }
end
function ops.addr_delete(core, a) return core.addr.delete { ns = cns(a.ns), dev = a.dev, addr = a.addr } end
function ops.route_replace(core, a)
  return core.route.add { ns = cns(a.ns), family = a.family, dst = a.dst, via = a.via,
    dev = a.dev, replace = true }
end
function ops.route_delete(core, a)
  return core.route.delete { ns = cns(a.ns), family = a.family, dst = a.dst, via = a.via,
    dev = a.dev }
end
function ops.nft_apply(core, a) return core.nft.apply(cns(a.ns), a.ruleset) end

-- Run ACTIONS. Returns a report {ok, done = {texts}, failed = text,
-- error = message}.
function apply.run(core, actions)
  local report = { ok = true, done = {} }
  for _, a in ipairs(actions) do
    local fn = ops[a.op]
    if not fn then error("unknown action " .. tostring(a.op), 0) end
    local ok, err, ename = fn(core, a)
    if not ok and a.missing_ok and (ename == "ENOENT" or ename == "ENODEV") then
      -- A deletion of what is already gone (another change took it).
      ok = true
    end
    if not ok then
      report.ok, report.failed, report.error = false, a.text, err
      return report
    end
    report.done[#report.done + 1] = a.text
  end
  return report
end

-- The plan: one line per action.
function apply.plan(actions)
  local lines = {}
  for _, a in ipairs(actions) do lines[#lines + 1] = a.text end
  return lines
end

return apply
