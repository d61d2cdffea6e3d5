-- A fresh directory for one test (mktemp -d); the caller removes it.
return function()
  local p = assert(io.popen("mktemp -d"))
  local d = p:read("l")
  p:close()
  return assert(d, "mktemp -d gave no directory")
end
