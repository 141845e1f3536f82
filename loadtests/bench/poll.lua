-- wrk: store phones polling their store's work (scripts/bench-polling).
-- POLL_MODE: `full` (the store task list, no validator), `conditional` (the same with
-- If-None-Match: each phone sends the ETag of its last answer) or `feed` (GET
-- /changes?since= with each phone's last next_token). STATE holds one line per store,
-- "store_id etag token", as a phone has them after its first sync; PHONES phones per
-- store keep their own tag or token. A response finds its phone through X-Request-Id,
-- which the api echoes. PACE_MS: each connection waits that long between requests.
local threads = {}
function setup(thread)
  table.insert(threads, thread)
end

function init(args)
  mode = os.getenv("POLL_MODE")
  auth = "Bearer " .. os.getenv("TOKEN")
  phones = tonumber(os.getenv("PHONES") or "25")
  stores, first_tag, first_token = {}, {}, {}
  for line in io.lines(os.getenv("STATE")) do
    local id, tag, token = line:match("^(%S+) (%S+) (%S+)$")
    stores[#stores + 1] = id
    first_tag[id], first_token[id] = tag, token
  end
  tags, tokens, pending = {}, {}, {}
  sent, ok, not_modified, other = 0, 0, 0, 0
  math.randomseed(os.time() + #threads * 7919)
end

request = function()
  local s = math.random(#stores)
  local id = stores[s]
  local phone = s * 1000 + math.random(phones)
  sent = sent + 1
  pending[sent] = { phone = phone, store = id }
  local headers = { Authorization = auth, ["X-Request-Id"] = tostring(sent) }
  if mode == "feed" then
    local since = tokens[phone] or first_token[id]
    return wrk.format("GET", "/api/v1/stores/" .. id .. "/changes?limit=100&since=" .. since, headers)
  end
  if mode == "conditional" then
    headers["If-None-Match"] = tags[phone] or first_tag[id]
  end
  return wrk.format("GET", "/api/v1/stores/" .. id .. "/tasks?status=open,in_progress&limit=50", headers)
end

response = function(status, headers, body)
  local n = tonumber(headers["x-request-id"] or "")
  local sender = n and pending[n]
  if n then pending[n] = nil end
  if status == 304 then
    not_modified = not_modified + 1
  elseif status == 200 then
    ok = ok + 1
    if sender and mode == "conditional" then
      tags[sender.phone] = headers["etag"]
    elseif sender and mode == "feed" then
      tokens[sender.phone] = body:match('"next_token":"([^"]+)"')
    end
  else
    other = other + 1
  end
end

local pace = tonumber(os.getenv("PACE_MS") or "")
if pace and pace > 0 then
  delay = function() return pace end
end

function done(summary, latency, requests)
  local s200, s304, bad = 0, 0, 0
  for _, thread in ipairs(threads) do
    s200 = s200 + thread:get("ok")
    s304 = s304 + thread:get("not_modified")
    bad = bad + thread:get("other")
  end
  io.write(string.format(
    "POLL requests=%d bytes=%d seconds=%.2f p50_ms=%.2f p99_ms=%.2f s200=%d s304=%d other=%d socket_errors=%d\n",
    summary.requests, summary.bytes, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000,
    s200, s304, bad,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout))
end
