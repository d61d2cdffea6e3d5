-- container.* entry points.
local container = require "zmesh.container"
local context = require "zmesh.node.context"

local entries = {}

function entries.attach(params) return container.attach(context.load(), params) end
function entries.detach(params) return container.detach(context.load(), params) end

entries.describe = {
  attach = "attach {netns} to NR {net_id} with address {ip} (create = true makes the namespace)",
  detach = "detach {netns} from NR {net_id} (delete = true removes the namespace)",
}

return entries
