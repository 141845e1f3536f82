-- wrk: one report, REPORT_PATH (e.g. /api/v1/reports/compliance?...), with TOKEN.
local path = os.getenv("REPORT_PATH")
local auth = "Bearer " .. os.getenv("TOKEN")
request = function()
  return wrk.format("GET", path, { Authorization = auth })
end
