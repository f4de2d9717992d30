-- Templated data: JSON documents, hashes, lists, sets and sorted sets whose
-- values are fixed templates around sequential numbers. Far more regular
-- than real data (deflate shrinks it about 6:1): kept in the benchmark to
-- show how the stored size compares on such data. ARGV[1]: thousands of keys.
local n = tonumber(ARGV[1]) * 1000
for i = 1, n * 0.8 do
  redis.call('SET', 'doc:' .. i, '{"id":' .. i .. ',"name":"user ' .. i ..
    '","email":"user' .. i .. '@example.com","active":' .. tostring(i % 3 == 0) ..
    ',"score":' .. (i * 7919 % 100000) / 100 .. ',"tags":["t' .. (i % 17) .. '","t' .. (i % 29) ..
    '"],"address":{"city":"City' .. (i % 1000) .. '","zip":"' .. (10000 + i % 89999) .. '"}}')
end
for i = 1, n * 0.08 do
  redis.call('HSET', 'user:' .. i, 'name', 'user' .. i, 'visits', i, 'plan', 'p' .. (i % 5), 'last', 1700000000 + i)
end
for i = 1, n * 0.04 do
  redis.call('RPUSH', 'queue:' .. i, 'job-a-' .. i, 'job-b-' .. i, 'job-c-' .. i)
end
for i = 1, n * 0.04 do
  redis.call('SADD', 'tags:' .. i, 'x' .. i, 'y' .. (i % 100), 'z' .. (i % 7))
end
for i = 1, n * 0.04 do
  redis.call('ZADD', 'board:' .. i, i, 'a' .. i, i * 2, 'b' .. i)
end
return n
