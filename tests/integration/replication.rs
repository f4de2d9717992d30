//! `backup --source replication`: the RDB taken as a replica would (REPLCONF,
//! SYNC), both as a length-prefixed payload (disk-based sync) and with an
//! end mark (diskless sync), restored to the same digest; and a user not
//! allowed to replicate gets a clear exit 3.

use crate::harness::*;

fn replication_round_trip(diskless: &str) {
    let t = TestRedis::builder()
        .requirepass("Repl-Pw-5e1d")
        .save(Save::Off)
        .conf_line(&format!("repl-diskless-sync {diskless}"))
        .conf_line("repl-diskless-sync-delay 0")
        .start();
    fill_every_type(&mut t.conn());
    let before = t.state();
    let rec = t.backup_json(&["--source", "replication"]);
    assert_eq!(rec["source"], "replication", "{rec}");
    assert_eq!(keys_of_record(&rec), before.keys, "{rec}");
    let id = rec["id"].as_str().expect("id").to_string();
    t.run(&["verify", &id]).ok();
    let rdb = t.export(&id, "export.rdb");
    assert_eq!(
        rec["raw_sha256"],
        sha256_file(&rdb).as_str(),
        "the record's hash is the RDB's"
    );
    assert_eq!(digest_of_rdb(&rdb), before, "same data as the source");
    if diskless == "yes" {
        assert!(
            !t.dump_file().exists(),
            "a diskless sync writes nothing to Redis's disk"
        );
    }
    assert_eq!(t.state(), before, "the source is unchanged");
}

#[test]
fn replication_backup_with_a_disk_based_sync() {
    replication_round_trip("no");
}

#[test]
fn replication_backup_with_a_diskless_sync() {
    replication_round_trip("yes");
}

#[test]
fn a_user_that_may_not_replicate_is_exit_3() {
    let t = TestRedis::builder()
        .conf_line("user limited on >Lim-Pw-33 ~* &* +@all -sync -psync -replconf")
        .setting("redis_user", "limited")
        .setting("redis_password", "Lim-Pw-33")
        .start();
    t.conn().ok(&["SET", "k", "v"]);
    let out = t.run(&["backup", "--source", "replication"]);
    out.code(3);
    out.stderr_has("NOPERM");
    out.lacks("Lim-Pw-33");
    assert!(t.list(&[]).is_empty());
}

#[test]
fn a_remote_redis_needs_no_local_redis_conf() {
    // As for a Redis on another host: only the settings say how to reach it.
    let t = TestRedis::builder().requirepass("Remote-Pw-81").start();
    fill_every_type(&mut t.conn());
    let before = t.state();
    let out = t
        .cmd(&[
            "--json",
            "backup",
            "--source",
            "replication",
            "--redis-conf",
            "/nonexistent/redis.conf",
            "--redis-host",
            "127.0.0.1",
            "--redis-port",
            &t.port.to_string(),
        ])
        .env("REDIS_BACKUP_REDIS_PASSWORD", "Remote-Pw-81")
        .run();
    out.ok();
    let id = out.json()["id"].as_str().expect("id").to_string();
    let rdb = t.export(&id, "remote.rdb");
    assert_eq!(digest_of_rdb(&rdb), before);
}
