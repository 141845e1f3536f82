-- wrk: completes distinct open tasks (ids from TASK_IDS); each thread takes every
-- THREADS-th id from its own offset, so no two requests complete the same task.
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
