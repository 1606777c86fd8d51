-- common.lua - helpers shared by the `cargo xtask bench` wrk workloads (loaded with dofile).
-- Environment: BENCH_LUA_DIR (this directory), set by xtask.
local M = {}

function M.env_int(name, default)
  local v = tonumber(os.getenv(name) or "")
  if v == nil then return default end
  return math.floor(v)
end

function M.seed_random()
  local addr = tonumber((tostring({}):match("0x(%x+)") or "0"), 16) or 0
  math.randomseed((os.time() * 1000003 + addr) % 2147483647)
  for _ = 1, 10 do math.random() end
end

M.json_headers   = { ["Content-Type"] = "application/json", ["Accept"] = "application/json" }
M.accept_headers = { ["Accept"] = "application/json" }

-- One five-attribute Vehicle entity (~540 bytes, normalized form): the same shape as the
-- entities xtask loads (speed, brandName, isParked, location, category).
local brands = { "Mercedes-Benz", "Volkswagen", "Renault", "Toyota", "Peugeot", "Seat", "Ford", "Hyundai" }
function M.entity(id, n)
  local speed = math.random(0, 999) / 10
  local lon   = -3.80 + math.random() * 0.20
  local lat   = 40.35 + math.random() * 0.15
  return string.format(
    '{"id":"%s","type":"Vehicle",' ..
    '"speed":{"type":"Property","value":%.1f,"unitCode":"KMH","observedAt":"2026-01-15T10:00:00.000Z"},' ..
    '"brandName":{"type":"Property","value":"%s"},' ..
    '"isParked":{"type":"Relationship","object":"urn:ngsi-ld:OffStreetParking:%d","observedAt":"2026-01-15T10:00:00.000Z"},' ..
    '"location":{"type":"GeoProperty","value":{"type":"Point","coordinates":[%.6f,%.6f]},"observedAt":"2026-01-15T10:00:00.000Z"},' ..
    '"category":{"type":"Property","value":["commercial","municipalServices"]}}',
    id, speed, brands[(n % #brands) + 1], n, lon, lat)
end

-- Machine-readable summary line, parsed by xtask (latencies in microseconds).
-- non2xx is wrk's status-error counter (HTTP status >= 400 / unexpected).
function M.done(summary, latency, requests)
  local dur = summary.duration / 1e6
  local e = summary.errors
  io.write(string.format(
    "RESULT requests=%d duration=%.3f p50=%d p99=%d max=%d non2xx=%d connect=%d read=%d write=%d timeout=%d\n",
    summary.requests, dur, latency:percentile(50), latency:percentile(99), latency.max,
    e.status, e.connect, e.read, e.write, e.timeout))
end

return M
