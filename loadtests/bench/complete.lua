-- wrk: completes distinct open tasks (ids from TASK_IDS); each thread takes every
-- THREADS-th id from its own offset, so no two requests complete the same task.
-- PACE_MS > 0 makes each connection wait that long between requests (a steady rate of
-- writes beside another load).
local counter = 0
local threads = {}
function setup(thread)
  counter = counter + 1
  thread:set("tid", counter)
  table.insert(threads, thread)
end
function init(args)
  ids = {}
  for line in io.lines(os.getenv("TASK_IDS")) do ids[#ids + 1] = line end
  auth = "Bearer " .. os.getenv("TOKEN")
  step = tonumber(os.getenv("THREADS"))
  i = tid
end
request = function()
  local id = ids[i]
  i = i + step
  return wrk.format("POST", "/api/v1/tasks/" .. id .. "/complete", { Authorization = auth })
end
local pace = tonumber(os.getenv("PACE_MS") or "")
if pace and pace > 0 then
  delay = function() return pace end
end
