-- inventory → diff → plan | apply, for a list of desired resources.
local apply = require "zmesh.reconcile.apply"
local diff = require "zmesh.reconcile.diff"
local inventory = require "zmesh.reconcile.inventory"

local reconcile = {}

-- The actions that would bring the system to DESIRED.
function reconcile.actions(core, desired, opts)
  return diff.compute(desired, inventory.read(core, desired, opts), opts)
end

-- Lines of the plan, changing nothing.
function reconcile.plan(core, desired, opts)
  return apply.plan(reconcile.actions(core, desired, opts))
end

-- Converge; returns the apply report {ok, done, failed, error}.
function reconcile.apply(core, desired, opts)
  return apply.run(core, reconcile.actions(core, desired, opts))
end

return reconcile
