-- Mixed, realistic-looking data: most keys JSON documents with varied text,
-- ids and numbers; sessions and tokens (high entropy); hashes, lists, sets,
-- sorted sets; counters; a few binary blobs of 0.3-3 KB (already-compressed
-- payloads). ARGV[1]: thousands of keys, ARGV[2]: seed.
local n = tonumber(ARGV[1]) * 1000
math.randomseed(tonumber(ARGV[2]))
local rnd = math.random
local words = {}
for w in string.gmatch([[the of and to in is you that it he was for on are as with his they at be this
have from or one had by word but not what all were we when your can said there use an each which she do
how their if will up other about out many then them these so some her would make like him into time has
look two more write go see number no way could people my than first water been call who oil its now find
long down day did get come made may part order payment invoice shipped pending refund customer account
login logout error warning timeout retry cache hit miss user admin guest premium basic trial renewal
london paris berlin madrid rome tokyo delhi lagos lima oslo quito cairo dublin prague vienna warsaw
product category price discount coupon cart checkout delivery address street avenue road lane
red green blue black white silver gold small medium large extra fast slow new old open closed]], "%a+") do
  words[#words + 1] = w
end
local first = {"Ana","Ben","Chloe","Dmitri","Emeka","Fatima","Giulia","Hiro","Ines","Jonas","Kofi","Lena",
  "Mateo","Nadia","Omar","Priya","Quentin","Rosa","Sven","Tariq","Uma","Victor","Wen","Ximena","Yusuf","Zoe"}
local last = {"Garcia","Smith","Nguyen","Kowalski","Okafor","Rossi","Tanaka","Silva","Muller","Haddad",
  "Ivanova","Johansson","Kaur","Lopez","Moreau","Novak","Osei","Petrov","Quinn","Reyes","Schmidt","Tran"}
local function pick(t) return t[rnd(#t)] end
local function hex(k)
  local t = {}
  -- Lua 5.1's random(m, n) overflows past 2^31: four hex digits at a time.
  for i = 1, k, 4 do t[#t + 1] = string.format('%04x', rnd(0, 0xffff)) end
  return string.sub(table.concat(t), 1, k)
end
local function text(k)
  local t = {}
  for i = 1, k do t[i] = pick(words) end
  return table.concat(t, ' ')
end
local function blob(k)
  local t = {}
  for i = 1, k do t[i] = string.char(rnd(0, 255)) end
  return table.concat(t)
end
local function uuid()
  return hex(8) .. '-' .. hex(4) .. '-4' .. hex(3) .. '-a' .. hex(3) .. '-' .. hex(12)
end
local function stamp()
  return string.format('2026-%02d-%02dT%02d:%02d:%02d.%03dZ', rnd(1, 12), rnd(1, 28), rnd(0, 23),
    rnd(0, 59), rnd(0, 59), rnd(0, 999))
end
for i = 1, n do
  local kind = rnd(100)
  if kind <= 48 then
    local f, l = pick(first), pick(last)
    redis.call('SET', 'doc:' .. uuid(), '{"id":"' .. uuid() .. '","name":"' .. f .. ' ' .. l ..
      '","email":"' .. string.lower(f) .. '.' .. string.lower(l) .. rnd(1, 9999) .. '@example.com","created":"' ..
      stamp() .. '","active":' .. tostring(rnd(2) == 1) .. ',"score":' .. rnd(0, 100000) / 100 ..
      ',"visits":' .. rnd(0, 50000) .. ',"tags":["' .. pick(words) .. '","' .. pick(words) ..
      '"],"bio":"' .. text(rnd(2, 14)) .. '","address":{"street":"' .. rnd(1, 999) .. ' ' .. pick(words) ..
      ' street","city":"' .. pick(words) .. '","zip":"' .. rnd(10000, 99999) .. '"}}')
  elseif kind <= 58 then
    redis.call('SET', 'session:' .. hex(32), '{"user":' .. rnd(1, 10000000) .. ',"token":"' .. hex(64) ..
      '","expires":"' .. stamp() .. '","ip":"10.' .. rnd(0, 255) .. '.' .. rnd(0, 255) .. '.' .. rnd(0, 255) .. '"}')
  elseif kind <= 65 then
    redis.call('HSET', 'user:' .. i, 'name', pick(first) .. ' ' .. pick(last), 'visits', rnd(0, 100000),
      'plan', pick(words), 'last_seen', stamp(), 'api_key', hex(40))
  elseif kind <= 70 then
    local key = 'queue:' .. i
    for j = 1, rnd(2, 8) do
      redis.call('RPUSH', key, '{"job":"' .. uuid() .. '","action":"' .. pick(words) .. '","at":"' .. stamp() .. '"}')
    end
  elseif kind <= 75 then
    local key = 'tags:' .. i
    for j = 1, rnd(3, 10) do redis.call('SADD', key, pick(words) .. rnd(1, 500)) end
  elseif kind <= 80 then
    local key = 'board:' .. i
    for j = 1, rnd(3, 10) do redis.call('ZADD', key, rnd(0, 1000000) / 10, 'player:' .. hex(10)) end
  elseif kind <= 99 then
    redis.call('SET', 'counter:' .. pick(words) .. ':' .. i, rnd(0, 100000000))
  else
    redis.call('SET', 'blob:' .. hex(24), blob(rnd(300, 3000)))
  end
end
return n
