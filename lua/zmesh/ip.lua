-- IP address and prefix arithmetic, IPv4 and IPv6, in pure Lua.
-- An address is { family = 4|6, bytes = {…} } (4 or 16 integers 0..255);
-- a prefix adds len. Parsers return nil and a message on bad input.
local ip = {}

local function parse_v4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  if not a then return nil end
  local bytes = {}
  for i, part in ipairs({ a, b, c, d }) do
    if #part > 1 and part:sub(1, 1) == "0" then return nil end -- no octal look-alikes
    local n = tonumber(part)
    if n > 255 then return nil end
    bytes[i] = n
  end
  return bytes
end

local function parse_v6(s)
  if s:find("[^%x:%.]") or s:find(":::", 1, true) then return nil end
  local head, tail = s, nil
  local dc = s:find("::", 1, true)
  if dc then
    head, tail = s:sub(1, dc - 1), s:sub(dc + 2)
    if tail:find("::", 1, true) then return nil end
  end
  local function groups(part)
    local out = {}
    if part == "" then return out end
    for g in (part .. ":"):gmatch("([^:]*):") do out[#out + 1] = g end
    return out
  end
  local hg, tg = groups(head), groups(tail or "")
  local words = {}
  local function add(list, is_last)
    for i, g in ipairs(list) do
      if is_last and i == #list and g:find(".", 1, true) then
        local v4 = parse_v4(g)
        if not v4 then return false end
        words[#words + 1] = v4[1] * 256 + v4[2]
        words[#words + 1] = v4[3] * 256 + v4[4]
      else
        if #g == 0 or #g > 4 then return false end
        words[#words + 1] = tonumber(g, 16)
      end
    end
    return true
  end
  if not add(hg, tail == nil) then return nil end
  local nhead = #words
  if tail ~= nil then
    local tstart = #words
    if not add(tg, true) then return nil end
    local ntail = #words - tstart
    if nhead + ntail > 7 then return nil end
    local tailw = table.move(words, tstart + 1, #words, 1, {})
    for i = #words, nhead + 1, -1 do words[i] = nil end
    for _ = 1, 8 - nhead - ntail do words[#words + 1] = 0 end
    for _, w in ipairs(tailw) do words[#words + 1] = w end
  end
  if #words ~= 8 then return nil end
  local bytes = {}
  for i, w in ipairs(words) do
    bytes[2 * i - 1] = w >> 8
    bytes[2 * i] = w & 0xff
  end
  return bytes
end

-- "10.1.2.3" or "fd00::1" → address.
function ip.parse_addr(s)
  if type(s) ~= "string" then return nil, "address must be a string" end
  local bytes = parse_v4(s)
  if bytes then return { family = 4, bytes = bytes } end
  bytes = parse_v6(s)
  if bytes then return { family = 6, bytes = bytes } end
  return nil, string.format("'%s' is not an IPv4 or IPv6 address", s)
end

local function bits(p) return p.family == 4 and 32 or 128 end

-- Clear the host bits of a byte list for a prefix length.
local function mask_bytes(bytes, len)
  local out = {}
  for i, b in ipairs(bytes) do
    local keep = len - (i - 1) * 8
    if keep >= 8 then out[i] = b
    elseif keep <= 0 then out[i] = 0
    else out[i] = b & (0xff << (8 - keep)) & 0xff end
  end
  return out
end

local function same_bytes(a, b)
  if #a ~= #b then return false end
  for i = 1, #a do if a[i] ~= b[i] then return false end end
  return true
end

-- "10.1.0.0/16" → prefix. opts.strict: host bits must be zero.
-- opts.host_ok: a bare address is a full-length prefix.
function ip.parse_cidr(s, opts)
  opts = opts or {}
  if type(s) ~= "string" then return nil, "prefix must be a string" end
  local a, l = s:match("^([^/]+)/(%d+)$")
  if not a then
    if opts.host_ok then
      local addr, err = ip.parse_addr(s)
      if not addr then return nil, err end
      addr.len = bits(addr)
      return addr
    end
    return nil, string.format("'%s' is not an address/prefix (CIDR)", s)
  end
  local addr = ip.parse_addr(a)
  if not addr then return nil, string.format("'%s' is not an address/prefix (CIDR)", s) end
  local len = tonumber(l)
  if (#l > 1 and l:sub(1, 1) == "0") or len > bits(addr) then
    return nil, string.format("'%s' has an invalid prefix length", s)
  end
  addr.len = len
  if opts.strict and not same_bytes(addr.bytes, mask_bytes(addr.bytes, len)) then
    return nil, string.format("'%s' has host bits set (did you mean %s?)", s,
      ip.format_cidr(ip.network(addr)))
  end
  return addr
end

function ip.format_addr(a)
  local b = a.bytes
  if a.family == 4 then return string.format("%d.%d.%d.%d", b[1], b[2], b[3], b[4]) end
  local w = {}
  for i = 1, 8 do w[i] = b[2 * i - 1] * 256 + b[2 * i] end
  -- RFC 5952: compress the longest run (≥2) of zero words, the first on ties.
  local best_s, best_n, s, n = 0, 0, 0, 0
  for i = 1, 8 do
    if w[i] == 0 then
      if n == 0 then s = i end
      n = n + 1
      if n > best_n then best_s, best_n = s, n end
    else n = 0 end
  end
  local parts = {}
  local i = 1
  while i <= 8 do
    if best_n >= 2 and i == best_s then
      parts[#parts + 1] = (i == 1) and ":" or ""
      i = i + best_n
      if i > 8 then parts[#parts + 1] = "" end
    else
      parts[#parts + 1] = string.format("%x", w[i])
      i = i + 1
    end
  end
  return table.concat(parts, ":")
end

function ip.format_cidr(p) return ip.format_addr(p) .. "/" .. p.len end

-- The prefix with host bits cleared.
function ip.network(p)
  return { family = p.family, bytes = mask_bytes(p.bytes, p.len), len = p.len }
end

-- Does prefix OUTER contain prefix or address INNER?
function ip.contains(outer, inner)
  if outer.family ~= inner.family then return false end
  local ilen = inner.len or bits(inner)
  if ilen < outer.len then return false end
  return same_bytes(mask_bytes(outer.bytes, outer.len), mask_bytes(inner.bytes, outer.len))
end

function ip.overlaps(a, b)
  return ip.contains(a, b) or ip.contains(b, a)
end

function ip.equal(a, b)
  return a.family == b.family and (a.len or bits(a)) == (b.len or bits(b))
    and same_bytes(a.bytes, b.bytes)
end

-- Add integer N (≥ 0) to the address bytes, returning new bytes or nil on overflow.
local function add_bytes(bytes, n)
  local out = {}
  local carry = n
  for i = #bytes, 1, -1 do
    local v = bytes[i] + carry
    out[i] = v % 256
    carry = v // 256
  end
  if carry ~= 0 then return nil end
  return out
end

-- How many prefixes of length NEWLEN the prefix P holds (capped at 2^53).
function ip.subnet_count(p, newlen)
  if newlen < p.len then return 0 end
  local d = newlen - p.len
  if d > 53 then return 2 ^ 53 end
  return 1 << d
end

-- The INDEX-th (0-based) prefix of length NEWLEN inside P, or nil.
function ip.subnet(p, newlen, index)
  if newlen < p.len or newlen > bits(p) or index < 0
     or index >= ip.subnet_count(p, newlen) then
    return nil
  end
  -- Shift INDEX into place: multiply by 2^(bits-newlen) byte-wise.
  local shift = bits(p) - newlen
  local offset = {}
  for i = 1, #p.bytes do offset[i] = 0 end
  local n = index
  local pos = #p.bytes - shift // 8
  local bitoff = shift % 8
  local v = n << bitoff
  while v > 0 and pos >= 1 do
    offset[pos] = v & 0xff
    v = v >> 8
    pos = pos - 1
  end
  local base = mask_bytes(p.bytes, p.len)
  local out, carry = {}, 0
  for i = #base, 1, -1 do
    local s = base[i] + offset[i] + carry
    out[i] = s % 256
    carry = s // 256
  end
  return { family = p.family, bytes = out, len = newlen }
end

-- The index of prefix SUB within P (the inverse of ip.subnet), or nil.
function ip.subnet_index(p, sub)
  if not ip.contains(p, sub) then return nil end
  local idx = 0
  for bitno = p.len, sub.len - 1 do
    local byte = sub.bytes[bitno // 8 + 1]
    idx = idx * 2 + ((byte >> (7 - bitno % 8)) & 1)
  end
  return idx
end

-- The N-th address (0-based) of prefix P, or nil past its end.
function ip.host(p, n)
  local size = ip.subnet_count(p, bits(p))
  if n < 0 or n >= size then return nil end
  local bytes = add_bytes(mask_bytes(p.bytes, p.len), n)
  if not bytes then return nil end
  return { family = p.family, bytes = bytes }
end

local classes = {
  { "0.0.0.0/8", "unspecified" }, { "127.0.0.0/8", "loopback" },
  { "10.0.0.0/8", "private" }, { "172.16.0.0/12", "private" },
  { "192.168.0.0/16", "private" }, { "100.64.0.0/10", "cgnat" },
  { "169.254.0.0/16", "link-local" }, { "192.0.2.0/24", "documentation" },
  { "198.51.100.0/24", "documentation" }, { "203.0.113.0/24", "documentation" },
  { "224.0.0.0/4", "multicast" }, { "240.0.0.0/4", "reserved" },
  { "::/128", "unspecified" }, { "::1/128", "loopback" },
  { "fc00::/7", "ula" }, { "fe80::/10", "link-local" },
  { "ff00::/8", "multicast" }, { "2001:db8::/32", "documentation" },
  { "::ffff:0:0/96", "reserved" },
}
for _, c in ipairs(classes) do c[1] = ip.parse_cidr(c[1]) end

-- "private", "cgnat", "ula", "link-local", "loopback", "multicast",
-- "documentation", "unspecified", "reserved" or "global".
function ip.classify(a)
  for _, c in ipairs(classes) do
    if ip.contains(c[1], a) then return c[2] end
  end
  if a.family == 6 and not ip.contains(ip.parse_cidr("2000::/3"), a) then
    return "reserved"
  end
  return "global"
end

-- Sort key: family, then bytes, then length.
function ip.compare(a, b)
  if a.family ~= b.family then return a.family < b.family end
  for i = 1, #a.bytes do
    if a.bytes[i] ~= b.bytes[i] then return a.bytes[i] < b.bytes[i] end
  end
  return (a.len or 0) < (b.len or 0)
end

return ip
