-- wrk script for make bench.  BENCH_MODE picks the request:
--   event   POST /event bodies (~200 B) cycling over 20 event types
--   post    the same bodies POSTed to BENCH_PATH (a static file: the ceiling)
--   get     GET BENCH_PATH (with BENCH_ACCEPT as Accept when set)
-- done() prints one machine-readable line for bench/bench.py.
local mode = os.getenv("BENCH_MODE") or "get"
local path = os.getenv("BENCH_PATH") or "/"
local accept = os.getenv("BENCH_ACCEPT")
local get_headers = accept and { ["Accept"] = accept } or nil
local n = 0

local function body(i)
  return string.format(
    '{"type":"weather%02d","data":{"sky":"clear","temp_c":%d.5,' ..
    '"humidity":0.42,"wind_kph":[3.1,4.7,2.2],"safe":true,' ..
    '"station":"pan001-aag"},"meta":{"unit":"PAN001","source":"bench",' ..
    '"seq_hint":%d}}', i % 20, i % 40, i)
end

request = function()
  n = n + 1
  if mode == "get" then
    return wrk.format("GET", path, get_headers)
  end
  return wrk.format("POST", path,
                    { ["Content-Type"] = "application/json" }, body(n))
end

done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCH requests=%d duration_us=%d connect=%d read=%d write=%d " ..
    "status=%d timeout=%d p50_us=%d p99_us=%d mean_us=%d bytes=%d\n",
    summary.requests, summary.duration, e.connect, e.read, e.write,
    e.status, e.timeout, latency:percentile(50), latency:percentile(99),
    math.floor(latency.mean), summary.bytes))
end
