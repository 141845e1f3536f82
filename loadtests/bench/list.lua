-- wrk: the store task list of a random store (ids from STORE_IDS), 50 open tasks.
-- PACE_MS > 0 makes each connection wait that long between requests: a steady load
-- below saturation, where latency means something (closed-loop maximum load measures
-- queueing on the cores instead).
local ids = {}
for line in io.lines(os.getenv("STORE_IDS")) do ids[#ids + 1] = line end
local auth = "Bearer " .. os.getenv("TOKEN")
local pace = tonumber(os.getenv("PACE_MS") or "")
math.randomseed(os.time())
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/v1/stores/" .. id .. "/tasks?status=open&limit=50", { Authorization = auth })
end
if pace and pace > 0 then
  delay = function() return pace end
end
