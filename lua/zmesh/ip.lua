-- IP address and prefix arithmetic, IPv4 and IPv6, in pure Lua.
-- An address is { family = 4|6, bytes = {…} } (4 or 16 integers 0..255);
-- a prefix adds len. Parsers return nil and a message on bad input.
local ip = {}

local function parse_v4(s)
  local a, b, c, d = s:match("^(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)%.(%d%d?%d?)$")
  if not a then return nil end
  -- No octal look-alikes: a part may start with 0 only when it is 0.
  if s:find("^0%d") or s:find("%.0%d") then return nil end
  a, b, c, d = tonumber(a), tonumber(b), tonumber(c), tonumber(d)
  if a > 255 or b > 255 or c > 255 or d > 255 then return nil end
  return { a, b, c, d }
end

local find, sub = string.find, string.sub

-- Append the 16-bit words of S[I..J] (colon-separated groups, no "::")
-- to WORDS after its first N; the new count, or nil on a malformed
-- group. An embedded IPv4 address may end the address only (LAST). Hot:
-- every IPv6 address of every node goes through here, so it walks the
-- text by position (no substrings but the groups, no closures).
local function v6_groups(s, i, j, words, n, last)
  if i > j then return n end
  while true do
    local c = find(s, ":", i, true)
    local e = (c and c <= j) and c - 1 or j
    if e < i then return nil end
    local dot = find(s, ".", i, true)
    if dot and dot <= e then
      if not last or e ~= j then return nil end
      local v4 = parse_v4(sub(s, i, e))
      if not v4 then return nil end
      words[n + 1] = v4[1] * 256 + v4[2]
      words[n + 2] = v4[3] * 256 + v4[4]
      return n + 2
    end
    if e - i > 3 then return nil end
    n = n + 1
    words[n] = tonumber(sub(s, i, e), 16)
    if e == j then return n end
    i = e + 2
    if i > j then return nil end -- a colon that ends the part
  end
end

local function parse_v6(s)
  if find(s, "[^%x:%.]") or find(s, ":::", 1, true) then return nil end
  local words, n = {}, nil
  local dc = find(s, "::", 1, true)
  if dc then
    if find(s, "::", dc + 1, true) then return nil end
    n = v6_groups(s, 1, dc - 1, words, 0, false)
    if not n then return nil end
    local tail = {}
    local m = v6_groups(s, dc + 2, #s, tail, 0, true)
    if not m or n + m > 7 then return nil end
    for _ = 1, 8 - n - m do
      n = n + 1
      words[n] = 0
    end
    for k = 1, m do words[n + k] = tail[k] end
    n = n + m
  else
    n = v6_groups(s, 1, #s, words, 0, true)
  end
  if n ~= 8 then return nil end
  local bytes = {}
  for k = 1, 8 do
    local w = words[k]
    bytes[2 * k - 1] = w >> 8
    bytes[2 * k] = w & 0xff
  end
  return bytes
end

-- "10.1.2.3" or "fd00::1" → address. On failure also a third value: the
-- reason without the input, for messages that show the input their way.
function ip.parse_addr(s)
  if type(s) ~= "string" then return nil, "address must be a string", "must be a string (an address)" end
  local bytes = parse_v4(s)
  if bytes then return { family = 4, bytes = bytes } end
  bytes = parse_v6(s)
  if bytes then return { family = 6, bytes = bytes } end
  return nil, string.format("'%s' is not an IPv4 or IPv6 address", s), "is not an IPv4 or IPv6 address"
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

local function bad(s, why) return nil, string.format("'%s' %s", s, why), why end

-- "10.1.0.0/16" → prefix. opts.strict: host bits must be zero.
-- opts.host_ok: a bare address is a full-length prefix. Failures return
-- nil, a message and the reason alone (as ip.parse_addr).
function ip.parse_cidr(s, opts)
  opts = opts or {}
  if type(s) ~= "string" then return nil, "prefix must be a string", "must be a string (address/prefix)" end
  local a, l = s:match("^([^/]+)/(%d+)$")
  if not a then
    if opts.host_ok then
      local addr, err, why = ip.parse_addr(s)
      if not addr then return nil, err, why end
      addr.len = bits(addr)
      return addr
    end
    return bad(s, "is not an address/prefix (CIDR)")
  end
  local addr = ip.parse_addr(a)
  if not addr then return bad(s, "is not an address/prefix (CIDR)") end
  local len = tonumber(l)
  if (#l > 1 and l:sub(1, 1) == "0") or len > bits(addr) then
    return bad(s, "has an invalid prefix length")
  end
  addr.len = len
  if opts.strict and not same_bytes(addr.bytes, mask_bytes(addr.bytes, len)) then
    return bad(s, string.format("has host bits set (did you mean %s?)", ip.format_cidr(ip.network(addr))))
  end
  return addr
end

-- Parsing is the hot path of validating and rendering a large network, and
-- the same text is parsed by the file checks, the role policy and the
-- topology: ip.parsed(s) is ip.parse_cidr(s) (host_ok) memoised. Its
-- results are shared: callers must not modify them.
local memo, memo_size = {}, 0
local MEMO_MAX = 200000

function ip.parsed(s)
  local hit = memo[s]
  if hit ~= nil then
    if hit == false then return ip.parse_cidr(s, { host_ok = true }) end
    return hit
  end
  local p, err = ip.parse_cidr(s, { host_ok = true })
  if type(s) ~= "string" then return p, err end
  if memo_size >= MEMO_MAX then memo, memo_size = {}, 0 end
  memo[s], memo_size = p or false, memo_size + 1
  return p, err
end

-- Forget what ip.parsed remembers (benchmarks measure a cold start).
function ip.forget() memo, memo_size = {}, 0 end

-- Are all host bits of prefix P clear (is it a network address)?
function ip.is_network(p)
  local b, len = p.bytes, p.len
  local i = len // 8 + 1
  if len % 8 ~= 0 then
    if b[i] & (0xff >> (len % 8)) ~= 0 then return false end
    i = i + 1
  end
  for k = i, #b do
    if b[k] ~= 0 then return false end
  end
  return true
end

-- A compact string that is equal for equal prefixes (or addresses): for
-- set membership without formatting.
function ip.key(p)
  return string.char(p.family, p.len or 255, table.unpack(p.bytes))
end

-- Zero runs ":0:0:…:" from longest to shortest, for RFC 5952 "::".
local zero_runs = {}
for n = 8, 2, -1 do zero_runs[#zero_runs + 1] = ":" .. string.rep("0:", n) end

function ip.format_addr(a)
  local b = a.bytes
  if a.family == 4 then return string.format("%d.%d.%d.%d", b[1], b[2], b[3], b[4]) end
  local s = string.format(":%x:%x:%x:%x:%x:%x:%x:%x:",
    b[1] * 256 + b[2], b[3] * 256 + b[4], b[5] * 256 + b[6], b[7] * 256 + b[8],
    b[9] * 256 + b[10], b[11] * 256 + b[12], b[13] * 256 + b[14], b[15] * 256 + b[16])
  -- RFC 5952: compress the longest run (≥2) of zero words, the first on ties.
  for _, run in ipairs(zero_runs) do
    local at = s:find(run, 1, true)
    if at then
      s = s:sub(1, at - 1) .. "::" .. s:sub(at + #run)
      break
    end
  end
  -- Drop the framing colons, but not those of a leading or trailing "::".
  if s:sub(1, 2) ~= "::" then s = s:sub(2) end
  if s:sub(-2) ~= "::" then s = s:sub(1, -2) end
  return s
end

function ip.format_cidr(p) return ip.format_addr(p) .. "/" .. p.len end

-- The prefix with host bits cleared.
function ip.network(p)
  return { family = p.family, bytes = mask_bytes(p.bytes, p.len), len = p.len }
end

-- Do byte lists A and B agree on their first LEN bits? Allocation-free:
-- classify and overlap checks run for every address of every node.
local function same_prefix(a, b, len)
  local full = len // 8
  for i = 1, full do
    if a[i] ~= b[i] then return false end
  end
  local rest = len % 8
  if rest == 0 then return true end
  local mask = (0xff << (8 - rest)) & 0xff
  return (a[full + 1] & mask) == (b[full + 1] & mask)
end

-- Does prefix OUTER contain prefix or address INNER?
function ip.contains(outer, inner)
  if outer.family ~= inner.family then return false end
  local ilen = inner.len or bits(inner)
  if ilen < outer.len then return false end
  return same_prefix(outer.bytes, inner.bytes, outer.len)
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
local global6 = ip.parse_cidr("2000::/3")

-- The classes that can hold an address, by family and first byte, in
-- table order: classify runs for every address of every node.
local by_first = { [4] = {}, [6] = {} }
for fam, t in pairs(by_first) do
  for b = 0, 255 do
    local list = {}
    for _, c in ipairs(classes) do
      local p = c[1]
      local lead = p.len >= 8 and 8 or p.len
      local mask = (0xff << (8 - lead)) & 0xff
      if p.family == fam and (b & mask) == (p.bytes[1] & mask) then list[#list + 1] = c end
    end
    t[b] = list
  end
end

-- "private", "cgnat", "ula", "link-local", "loopback", "multicast",
-- "documentation", "unspecified", "reserved" or "global".
function ip.classify(a)
  for _, c in ipairs(by_first[a.family][a.bytes[1]]) do
    if ip.contains(c[1], a) then return c[2] end
  end
  if a.family == 6 and not ip.contains(global6, a) then
    return "reserved"
  end
  return "global"
end

-- An address's bits as two 64-bit integers (IPv4: the low 32 bits of the
-- first), compared unsigned: cheaper than byte lists in a sort.
local function halves(p)
  local b = p.bytes
  if p.family == 4 then return (b[1] << 24) | (b[2] << 16) | (b[3] << 8) | b[4], 0 end
  local hi, lo = 0, 0
  for i = 1, 8 do hi = (hi << 8) | b[i] end
  for i = 9, 16 do lo = (lo << 8) | b[i] end
  return hi, lo
end

local function before(x, y)
  if x.family ~= y.family then return x.family < y.family end
  if x.hi ~= y.hi then return math.ult(x.hi, y.hi) end
  if x.lo ~= y.lo then return math.ult(x.lo, y.lo) end
  if x.len ~= y.len then return x.len < y.len end
  return x.at < y.at
end

-- The overlap in list PREFIXES whose later entry comes first: returns the
-- index of that entry and of an earlier one it overlaps, or nil. n log n:
-- two prefixes are either nested or disjoint, so sorted by start (the
-- shorter first) each prefix's containers are the chain on a stack.
function ip.first_overlap(prefixes)
  local items = {}
  for i, p in ipairs(prefixes) do
    local hi, lo = halves(p)
    items[i] = { family = p.family, hi = hi, lo = lo, len = p.len, at = i, p = p }
  end
  table.sort(items, before)
  local stack, later, earlier = {}, nil, nil
  for _, it in ipairs(items) do
    while #stack > 0 and not ip.contains(stack[#stack].p, it.p) do stack[#stack] = nil end
    local top = stack[#stack]
    -- TOP.first: the earliest entry among IT's containers.
    local first = top and top.first
    if first then
      local a, b = math.max(first, it.at), math.min(first, it.at)
      if not later or a < later then later, earlier = a, b end
    end
    it.first = first and math.min(first, it.at) or it.at
    stack[#stack + 1] = it
  end
  return later, earlier
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
