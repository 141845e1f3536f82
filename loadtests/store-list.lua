-- wrk script for loadtests/store-list.sh: GET /api/v1/stores?limit=50 as an HQ user.
-- The token comes from the environment (STOREOPS_TOKEN), never from the command line.
local token = os.getenv("STOREOPS_TOKEN")
if token == nil or token == "" then
  io.stderr:write("store-list.lua: STOREOPS_TOKEN is not set\n")
  os.exit(2)
end

wrk.method = "GET"
wrk.headers["Authorization"] = "Bearer " .. token
wrk.headers["Accept"] = "application/json"
wrk.headers["User-Agent"] = "storeops-loadtest/1.0 (wrk)"

-- One summary line per run, easy to grep and to paste into docs/PERFORMANCE.md.
function done(summary, latency, requests)
  local seconds = summary.duration / 1e6
  local e = summary.errors
  local ms = function(us) return us / 1000 end
  io.write(string.format(
    "\nSUMMARY requests=%d duration_s=%.2f req_per_s=%.1f " ..
    "p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f p999_ms=%.2f max_ms=%.2f " ..
    "non_2xx_3xx=%d connect_errors=%d read_errors=%d write_errors=%d timeouts=%d\n",
    summary.requests, seconds, summary.requests / seconds,
    ms(latency:percentile(50)), ms(latency:percentile(90)), ms(latency:percentile(99)),
    ms(latency:percentile(99.9)), ms(latency.max),
    e.status, e.connect, e.read, e.write, e.timeout))
end
