-- The topology as Graphviz DOT: public NRs as boxes (aggregators with a
-- double border), hidden NRs as dashed ellipses, devices as notes; public
-- mesh links plain, hidden-to-aggregator links bold (primary) or dotted
-- (backup), and the sole exit linked to "internet" (its fallbacks, in
-- order, dashed).
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
    for i = 2, #t.exits do
      add('  %s -- internet [color=red, style=dashed, label="fallback exit %d"];', q(t.exits[i]), i - 1)
    end
  end
  add("}")
  return table.concat(out, "\n") .. "\n"
end

-- The live graph, from what the nodes' `zmesh node check --json` reported
-- (REPORTS: a list of those reports, each a list of NR reports): one edge
-- per WireGuard peering a node reported, bold when it carries traffic
-- for other NRs too (a relayed path: the aggregator in use, the exit),
-- solid when it carries only the peer's own, dotted for a standby
-- (an aggregator not in use: its mesh address only); labelled with the
-- handshake age and the bytes; red when the peer did not answer.
function graph.live(net, reports)
  local out = {}
  local function add(fmt, ...) out[#out + 1] = string.format(fmt, ...) end
  add("digraph %s {", q("zmesh-live-" .. net.name))
  add("  graph [label=%s, labelloc=t];", q(net.name .. " (live, from node check reports)"))
  add("  node [fontname=Helvetica];")
  local known, edges, reporting = {}, {}, {}
  for _, n in ipairs(net.nodes) do known[n.node_id] = n end
  for _, report in ipairs(reports) do
    for _, nr in ipairs(report) do
      if nr.net_id == net.net_id and known[nr.node_id] then
        reporting[nr.node_id] = nr
        for target, p in pairs(nr.peers or {}) do
          local via = p.peer or target
          local e = edges[nr.node_id .. " " .. via] or { from = nr.node_id, to = via, own = false,
            relays = 0, answered = true }
          if via == target then
            e.own = true
            e.answered = p.reachable and true or false
            e.age, e.rx, e.tx = p.handshake_age, p.rx_bytes, p.tx_bytes
          else
            e.relays = e.relays + 1
            e.age, e.rx, e.tx = e.age or p.handshake_age, e.rx or p.rx_bytes, e.tx or p.tx_bytes
          end
          edges[nr.node_id .. " " .. via] = e
        end
      end
    end
  end
  for _, n in ipairs(net.nodes) do
    local id, r = n.node_id, reporting[n.node_id]
    add("  %s [label=%s, shape=%s%s];", q(id), q(id .. "\\n" .. n.subnet .. (r and r.aggregator
      and ("\\nvia " .. r.aggregator) or "") .. (r and "" or "\\n(no report)")),
      n.aggregators and "ellipse" or "box", r and "" or ", style=dashed")
  end
  local keys = {}
  for k in pairs(edges) do keys[#keys + 1] = k end
  table.sort(keys)
  for _, k in ipairs(keys) do
    local e = edges[k]
    local style = e.relays > 0 and "bold" or "solid"
    local r = reporting[e.from]
    if e.relays == 0 and r and r.standby and r.standby[e.to] then style = "dotted" end
    add("  %s -> %s [style=%s%s, label=%s];", q(e.from), q(e.to), style,
      e.answered and "" or ", color=red",
      q(string.format("%s%s, %s/%s B", e.relays > 0 and ("relays " .. e.relays .. ", ") or "",
        e.age and (e.age .. " s") or "no handshake", tostring(e.rx or 0), tostring(e.tx or 0))))
  end
  add("}")
  return table.concat(out, "\n") .. "\n"
end

return graph
