-- The topology as Graphviz DOT: public NRs as boxes (aggregators with a
-- double border), hidden NRs as dashed ellipses, devices as notes; public
-- mesh links plain, hidden-to-aggregator links bold (primary) or dotted
-- (backup), and the sole exit linked to "internet".
local graph = {}

-- Quoted for DOT; "\n" in labels stays a line break.
local function q(s) return '"' .. s:gsub('"', '\\"') .. '"' end

function graph.dot(t)
  local net = t.net
  local out = {}
  local function add(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  add("graph %s {", q("zmesh-" .. net.name))
  add("  graph [label=%s, labelloc=t];", q(string.format("%s %s%s (net_id %s)", net.name, net.ip_range,
    net.ipv6_range and (" " .. net.ipv6_range) or "", net.net_id)))
  add("  node [fontname=Helvetica];")
  for _, n in ipairs(net.nodes) do
    local id = n.node_id
    local serves = t.role[id] == "public" and (#t.carried[id] + #t.standby[id]) > 0
    local attrs = t.role[id] == "public"
      and string.format("shape=box%s", serves and ", peripheries=2" or "")
      or "shape=ellipse, style=dashed"
    if t.exit == id then attrs = attrs .. ", color=red" end
    add("  %s [label=%s, %s];", q(id), q(id .. "\\n" .. n.subnet .. "\\n" .. t.role[id]), attrs)
  end
  for _, d in ipairs(t.devices) do
    add("  %s [label=%s, shape=note];", q(d), q(t.device[d].name .. "\\n" .. t.device[d].address))
  end
  for i, a in ipairs(t.public) do
    for j = i + 1, #t.public do add("  %s -- %s;", q(a), q(t.public[j])) end
  end
  local served = {}
  for _, h in ipairs(t.hidden) do served[#served + 1] = h end
  for _, d in ipairs(t.devices) do served[#served + 1] = d end
  for _, h in ipairs(served) do
    for i, a in ipairs(t.aggregators[h]) do
      add("  %s -- %s [style=%s%s];", q(h), q(a), i == 1 and "bold" or "dotted",
        i == 1 and ', label="primary"' or ', label="backup"')
    end
  end
  if t.exit then
    add('  internet [shape=plaintext, label="Internet"];')
    add('  %s -- internet [color=red, label="sole exit"];', q(t.exit))
  end
  add("}")
  return table.concat(out, "\n") .. "\n"
end

return graph
