-- wrk: the store task list of a random store (ids from STORE_IDS), 50 open tasks.
local ids = {}
for line in io.lines(os.getenv("STORE_IDS")) do ids[#ids + 1] = line end
local auth = "Bearer " .. os.getenv("TOKEN")
math.randomseed(os.time())
request = function()
  local id = ids[math.random(#ids)]
  return wrk.format("GET", "/api/v1/stores/" .. id .. "/tasks?status=open&limit=50", { Authorization = auth })
end
