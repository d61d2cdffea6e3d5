-- busted output: the usual one, and the full name of the test now running
-- written to $ZMESH_TEST_PROGRESS, so that a suite stopped by its time
-- limit (`make check`) can say which test it was stopped in.
return function(options)
  local busted = require "busted"
  local handler = require("busted.outputHandlers." .. options.defaultOutput)(options)
  local path = os.getenv("ZMESH_TEST_PROGRESS")
  if path then
    busted.subscribe({ "test", "start" }, function(element)
      local f = io.open(path, "w")
      if f then
        f:write(handler.getFullName(element), "\n")
        f:close()
      end
      return nil, true
    end)
  end
  return handler
end
