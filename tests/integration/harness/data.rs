//! Data of every type, in two databases, with expiring and binary keys, and
//! a test Redis filled with it and backed up.

use super::*;

/// Deterministic pseudo-random bytes (incompressible enough for the tests).
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..len)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect()
}

/// The binary key holding every byte value, as written in `db`.
pub fn binary_key(db: u32) -> Vec<u8> {
    let mut key = format!("bin:{db}:").into_bytes();
    key.extend(0..=255u8);
    key
}

/// The value stored under `binary_key(db)`.
pub fn binary_value() -> Vec<u8> {
    let mut v: Vec<u8> = (0..=255u8).collect();
    v.extend((0..=255u8).rev());
    v.extend_from_slice(b"\r\n\0\r\n");
    v
}

/// Fill db 0 and db 1 with keys of every type: strings (binary keys and
/// values, integers, empty, ~100 KB), hashes, lists, sets and sorted sets in
/// both small and large encodings, streams with a consumer group, and keys with
/// a TTL. The two databases get different numbers of keys. Leaves db 0 selected.
pub fn fill_every_type(conn: &mut Resp) {
    for db in [0u32, 1] {
        let d = db.to_string();
        let mut c: Vec<Vec<Vec<u8>>> = vec![cmd(&["SELECT", &d])];
        let strings = if db == 0 { 80 } else { 30 };
        for i in 0..strings {
            c.push(cmd(&[
                "SET".to_string(),
                format!("s:{db}:{i}"),
                format!("value {i} in db {db}"),
            ]));
        }
        for i in 0..20i64 {
            c.push(cmd(&[
                "SET".to_string(),
                format!("n:{db}:{i}"),
                (i * 12345 - 70000).to_string(),
            ]));
        }
        c.push(cmd(&[b"SET".to_vec(), binary_key(db), binary_value()]));
        c.push(cmd(&[
            b"SET".as_slice(),
            format!("crlf\r\nkey {db}\0").as_bytes(),
            b"line\r\nbreak\0nul",
        ]));
        c.push(cmd(&[
            "SET".to_string(),
            format!("empty:{db}"),
            String::new(),
        ]));
        c.push(cmd(&[
            b"SET".to_vec(),
            format!("big:{db}").into_bytes(),
            noise(100_000, u64::from(db) + 7),
        ]));
        // Hashes: small (listpack) and large (hashtable), one binary field.
        for h in 0..10 {
            let mut args = vec![b"HSET".to_vec(), format!("h:{db}:{h}").into_bytes()];
            for f in 0..5 {
                args.push(format!("field{f}").into_bytes());
                args.push(format!("v{h}.{f}").into_bytes());
            }
            c.push(args);
        }
        let mut args = vec![b"HSET".to_vec(), format!("hbig:{db}").into_bytes()];
        for f in 0..200 {
            args.push(format!("f{f}").into_bytes());
            args.push(noise(20, f).to_vec());
        }
        args.push(vec![0, 1, 2, 255]);
        args.push(vec![255, 0]);
        c.push(args);
        // Lists: small and long (quicklist with several nodes).
        for l in 0..10 {
            let mut args = vec![b"RPUSH".to_vec(), format!("l:{db}:{l}").into_bytes()];
            args.extend((0..10).map(|i| format!("item{i}").into_bytes()));
            c.push(args);
        }
        let mut args = vec![b"RPUSH".to_vec(), format!("lbig:{db}").into_bytes()];
        args.extend((0..1000u64).map(|i| noise(12, i)));
        c.push(args);
        // Sets: intset, small strings (listpack), large (hashtable).
        let mut args = vec![b"SADD".to_vec(), format!("sint:{db}").into_bytes()];
        args.extend((0..50).map(|i: i64| (i * 7 - 100).to_string().into_bytes()));
        c.push(args);
        let mut args = vec![b"SADD".to_vec(), format!("sstr:{db}").into_bytes()];
        args.extend(["a", "b", "c", "dee", "\u{e9}t\u{e9}"].map(|s| s.as_bytes().to_vec()));
        c.push(args);
        let mut args = vec![b"SADD".to_vec(), format!("sbig:{db}").into_bytes()];
        args.extend((0..200).map(|i| format!("member-{i}").into_bytes()));
        c.push(args);
        // Sorted sets: small (listpack) and large (skiplist).
        let mut args = vec![b"ZADD".to_vec(), format!("z:{db}").into_bytes()];
        for i in 0..10 {
            args.push(format!("{}", f64::from(i) * 1.5 - 3.0).into_bytes());
            args.push(format!("zm{i}").into_bytes());
        }
        c.push(args);
        let mut args = vec![b"ZADD".to_vec(), format!("zbig:{db}").into_bytes()];
        for i in 0..200 {
            args.push(format!("{}", f64::from(i) * -0.25).into_bytes());
            args.push(format!("zmember-{i}").into_bytes());
        }
        c.push(args);
        // Streams, one with a consumer group.
        for s in 0..2 {
            let key = format!("stream:{db}:{s}");
            for i in 0..30 {
                c.push(cmd(&[
                    "XADD".to_string(),
                    key.clone(),
                    "*".to_string(),
                    "n".to_string(),
                    i.to_string(),
                    "payload".to_string(),
                    format!("entry {i} of {key}"),
                ]));
            }
        }
        c.push(cmd(&[
            "XGROUP",
            "CREATE",
            &format!("stream:{db}:0"),
            "g1",
            "0",
        ]));
        // Keys with a TTL.
        for i in 0..20 {
            c.push(cmd(&[
                "SET".to_string(),
                format!("ttl:{db}:{i}"),
                format!("expiring {i}"),
                "EX".to_string(),
                "3600".to_string(),
            ]));
        }
        c.push(cmd(&["EXPIRE", &format!("h:{db}:0"), "3600"]));
        conn.pipeline(&c);
    }
    conn.ok(&["SELECT", "0"]);
}

/// A Redis started from `b`, filled with every type, and a backup of it
/// whose record counts the keys there were: (Redis, the state at backup
/// time, the backup's record).
pub fn filled_and_backed_up(b: Builder) -> (TestRedis, DbState, Value) {
    let t = b.start();
    fill_every_type(&mut t.conn());
    let backed_up = t.state();
    let record = t.backup_json(&[]);
    assert_eq!(keys_of_record(&record), backed_up.keys, "{record}");
    (t, backed_up, record)
}

/// Add `n` plain string keys `filler:i` to db 0 (to make saves slower with
/// `rdb-key-save-delay`).
pub fn add_filler(conn: &mut Resp, n: usize) {
    let cmds: Vec<_> = (0..n)
        .map(|i| cmd(&["SET".to_string(), format!("filler:{i}"), format!("x{i}")]))
        .collect();
    conn.pipeline(&cmds);
}
