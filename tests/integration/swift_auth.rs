//! Swift authentication beyond TempAuth, against a real stack of
//! `tests/support/swift-aio.sh`: Keystone v3 (password and application
//! credentials, which wins when several are set, wrong secrets, an unknown
//! region) and TLS with a self-signed CA (`OS_CACERT`, refused without it).
//! What is in Swift is read with the harness's own client (curl).
//!
//! A Keystone stack takes ~14 s to start on the 2-core test machines: one
//! Keystone test that checks everything Keystone.

use crate::harness::*;
use serde_json::Value;
use std::path::Path;

fn array(out: &Output) -> Vec<Value> {
    match out.json() {
        Value::Array(items) => items,
        other => panic!("not a JSON array: {other}\n{out}"),
    }
}

/// `env` with `key` set to `value` (replaced or added).
fn with_var(
    env: &[(&'static str, String)],
    key: &'static str,
    value: &str,
) -> Vec<(&'static str, String)> {
    let mut env: Vec<_> = env.iter().filter(|(k, _)| *k != key).cloned().collect();
    env.push((key, value.to_string()));
    env
}

#[test]
fn keystone_password_and_application_credentials() {
    let swift = SwiftStack::builder().keystone().start();
    let container = "rbks";
    let segments = format!("{container}_segments");
    let mut t = redis_on_swift(container);
    let password = swift.var("OS_PASSWORD").to_string();
    let secret = swift.var("OS_APPLICATION_CREDENTIAL_SECRET").to_string();
    let auth_url = swift.var("OS_AUTH_URL").to_string();
    let user = swift.var("OS_USERNAME").to_string();
    // Every run: the environment given, never a secret in the output.
    let run_in = |t: &TestRedis, env: &[(&'static str, String)], args: &[&str]| -> Output {
        let mut r = t.cmd(args);
        for (k, v) in env {
            r = r.env(k, v);
        }
        let out = r.run();
        out.lacks(&password).lacks(&secret);
        out
    };
    let keystone = swift.keystone_env();
    let app = swift.app_credential_env();

    let mut c = t.conn();
    fill_every_type(&mut c);
    add_noise_keys(&mut c, 2500, 11);
    let before = t.state();

    // Password credentials from the environment; OS_INTERFACE left out
    // (public by default).
    let no_interface: Vec<_> = keystone
        .iter()
        .filter(|(k, _)| *k != "OS_INTERFACE")
        .cloned()
        .collect();
    let rec = run_in(&t, &no_interface, &["--json", "backup"]).ok().json();
    let id = id_of(&rec);
    // The account is part of where it was written.
    assert_eq!(
        rec["location"].as_str(),
        Some(
            format!(
                "swift://AUTH_{}/{container}/{id}.rbk",
                swift.var("OS_DEMO_PROJECT_ID")
            )
            .as_str()
        ),
        "{rec}"
    );

    // It went to the demo project's account named in Keystone's catalog
    // (through the Keystone proxy), not to the TempAuth account.
    let demo = swift.keystone_login(&user, &password, swift.var("OS_PROJECT_NAME"));
    assert!(
        demo.storage_url
            .ends_with(&format!("/v1/AUTH_{}", swift.var("OS_DEMO_PROJECT_ID"))),
        "catalog URL {}",
        demo.storage_url
    );
    assert_eq!(
        swift.names_in(&demo, container, ""),
        vec![format!("{id}.json"), format!("{id}.rbk")]
    );
    let segs = swift.names_in(&demo, &segments, &format!("{id}.rbk/"));
    assert!(segs.len() >= 3, "~2.7 MiB in 1 MiB segments: {segs:?}");
    let head = swift.request_in(
        &demo,
        "HEAD",
        &url_encode(&format!("{container}/{id}.rbk"), true),
        &[],
        None,
    );
    head.expect(&[200]);
    assert_eq!(head.header("X-Object-Meta-Backup-Id"), Some(id.as_str()));
    assert_eq!(
        swift.names(container, ""),
        Vec::<String>::new(),
        "the TempAuth account got nothing"
    );

    // Password credentials from the settings file (lower-case keys).
    for (k, v) in swift.keystone_settings() {
        t.set_setting(&k, &v);
    }
    assert_eq!(
        array(run_in(&t, &[], &["--json", "list"]).ok()),
        vec![rec.clone()]
    );
    run_in(&t, &[], &["verify", &id]).ok();
    c.ok(&["SET", "after", "written after the backup"]);
    c.ok(&["DEL", "noise:7"]);
    assert_ne!(t.state(), before, "precondition: the data changed");
    run_in(&t, &[], &["restore", &id]).ok();
    assert!(t.is_active(), "Redis runs after the restore");
    assert_eq!(t.state(), before, "the restored data is the backup's");
    for (k, _) in swift.keystone_settings() {
        t.remove_setting(&k);
    }

    // Application credentials alone.
    assert_eq!(
        array(run_in(&t, &app, &["--json", "list"]).ok()),
        vec![rec.clone()]
    );
    run_in(&t, &app, &["verify", &id]).ok();

    // Which credentials win when several are set.
    let wrong_pw = "Wr0ng-Keystone-Pw-5e1d";
    let wrong_secret = "Wr0ng-App-Secret-77a0";
    let mut env = with_var(&keystone, "OS_PASSWORD", wrong_pw);
    env.extend(app.iter().skip(1).cloned());
    let out = run_in(&t, &env, &["--json", "list"]);
    out.lacks(wrong_pw);
    assert_eq!(
        array(out.ok()),
        vec![rec.clone()],
        "the application credential beats the (wrong) password"
    );
    let mut env = keystone.clone();
    env.extend(swift.tempauth_env());
    assert_eq!(
        array(run_in(&t, &env, &["--json", "list"]).ok()),
        vec![rec.clone()],
        "Keystone beats ST_AUTH (whose account is empty)"
    );
    let mut env = with_var(&keystone, "OS_PASSWORD", wrong_pw);
    env.extend(with_var(
        &app,
        "OS_APPLICATION_CREDENTIAL_SECRET",
        wrong_secret,
    ));
    env.push(("OS_STORAGE_URL", demo.storage_url.clone()));
    env.push(("OS_AUTH_TOKEN", demo.token.clone()));
    let out = run_in(&t, &env, &["--json", "list"]);
    out.lacks(wrong_pw).lacks(wrong_secret).lacks(&demo.token);
    assert_eq!(
        array(out.ok()),
        vec![rec.clone()],
        "OS_STORAGE_URL + OS_AUTH_TOKEN beat everything"
    );

    // A wrong password: a storage error naming the auth URL or the user,
    // never the password; nothing stored.
    let bad = with_var(&keystone, "OS_PASSWORD", wrong_pw);
    for args in [vec!["list"], vec!["backup", "--id", "wrongpw"]] {
        let out = run_in(&t, &bad, &args);
        // Refused credentials are final: not sent again and again.
        out.code(4).lacks(wrong_pw).stderr_lacks("trying again");
        assert!(
            out.stderr.contains(&auth_url) || out.stderr.contains(&user),
            "the message names neither {auth_url} nor {user}\n{out}"
        );
    }
    // A wrong application credential secret.
    let bad = with_var(&app, "OS_APPLICATION_CREDENTIAL_SECRET", wrong_secret);
    let out = run_in(&t, &bad, &["list"]);
    out.code(4).lacks(wrong_secret).stderr_lacks("trying again");
    assert!(!out.stderr.trim().is_empty(), "no message\n{out}");
    // A region the catalog does not have.
    let out = run_in(
        &t,
        &with_var(&keystone, "OS_REGION_NAME", "NoSuchRegion"),
        &["list"],
    );
    out.code(4);
    assert!(
        out.stderr.contains("NoSuchRegion") || out.stderr.to_lowercase().contains("catalog"),
        "the message names neither the region nor the catalog\n{out}"
    );
    assert_eq!(
        swift.names_in(&demo, container, ""),
        vec![format!("{id}.json"), format!("{id}.rbk")],
        "the failed runs stored nothing"
    );
}

#[test]
fn swift_tls_with_the_ca_and_refused_without_it() {
    let swift = SwiftStack::builder().tls().start();
    assert!(swift.st_auth.starts_with("https://"), "{}", swift.st_auth);
    let ca = swift.cacert.clone().expect("a TLS stack has a CA");
    let ca = ca.display().to_string();
    let container = "rbtls";
    let mut t = redis_on_swift(container);
    for (k, v) in swift.tempauth_settings() {
        t.set_setting(k, &v);
    }
    let mut c = t.conn();
    fill_every_type(&mut c);
    add_noise_keys(&mut c, 1500, 12);

    // Without the CA: the certificate is refused, whatever the command,
    // at once (asking again would meet the same certificate).
    for args in [vec!["backup"], vec!["list"]] {
        t.run(&args)
            .code(4)
            .stderr_has("certificate")
            .stderr_lacks("trying again")
            .lacks(&swift.st_key);
    }
    // A CA bundle without this CA (the system's own) is no better.
    let system = "/etc/ssl/certs/ca-certificates.crt";
    if Path::new(system).exists() {
        t.cmd(&["list"])
            .env("OS_CACERT", system)
            .run()
            .code(4)
            .stderr_has("certificate");
    }
    assert_eq!(swift.names(container, ""), Vec::<String>::new());

    // OS_CACERT in the environment.
    let out = t.cmd(&["--json", "backup"]).env("OS_CACERT", &ca).run();
    let rec = out.ok().lacks(&swift.st_key).json();
    let id = id_of(&rec);
    assert_eq!(
        swift.names(container, ""),
        vec![format!("{id}.json"), format!("{id}.rbk")]
    );
    assert!(
        swift
            .names(&format!("{container}_segments"), &format!("{id}.rbk/"))
            .len()
            >= 2,
        "~1.7 MiB in 1 MiB segments"
    );
    // os_cacert in the settings file.
    t.set_setting("os_cacert", &ca);
    assert_eq!(t.list(&[]), vec![rec.clone()]);
    t.run(&["verify", &id]).ok().lacks(&swift.st_key);
    // And refused again without it.
    t.remove_setting("os_cacert");
    t.run(&["verify", &id]).code(4).stderr_has("certificate");
}

/// A TLS server that speaks only TLS 1.2 (`openssl s_server`), with a
/// certificate for 127.0.0.1 that `OS_CACERT` trusts.
#[test]
fn a_tls_1_2_only_endpoint_works_or_is_refused_with_the_way_out_named() {
    let mut t = redis_on_swift("database_backups");
    let dir = t.path("tls12");
    std::fs::create_dir_all(&dir).unwrap();
    // A CA, and a server certificate it signed, as rustls wants one.
    let made = std::process::Command::new("sh")
        .arg("-c")
        .arg(
            "set -e
            openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=test-ca \\
                -keyout ca.key -out ca.pem
            openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout key.pem -out req.csr
            printf 'subjectAltName=IP:127.0.0.1\\nbasicConstraints=CA:FALSE\\nextendedKeyUsage=serverAuth\\n' >ext.cnf
            openssl x509 -req -in req.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 1 \\
                -extfile ext.cnf -out cert.pem",
        )
        .current_dir(&dir)
        .output()
        .expect("run openssl");
    assert!(made.status.success(), "{made:?}");
    let (ca, cert, key) = (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    );
    let port = free_port();
    let mut server = std::process::Command::new("openssl")
        .args(["s_server", "-quiet", "-www", "-tls1_2", "-accept"])
        .arg(port.to_string())
        .arg("-cert")
        .arg(&cert)
        .arg("-key")
        .arg(&key)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start openssl s_server");
    wait_for("openssl s_server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).ok()
    });
    t.set_setting("st_auth", &format!("https://127.0.0.1:{port}/auth/v1.0"));
    t.set_setting("st_user", "test:tester");
    t.set_setting("st_key", "tls12-key");
    t.set_setting("os_cacert", &ca.display().to_string());
    let out = t.run(&["list"]);
    server.kill().expect("stop openssl s_server");
    server.wait().expect("reap openssl s_server");
    // The request reaches the HTTP layer only with TLS 1.2 built in, and
    // s_server's -www page is no TempAuth: exit 4 either way.
    out.code(4).lacks("tls12-key");
    if cfg!(feature = "tls12") {
        assert!(!out.stderr.contains("TLS handshake"), "{out}");
        out.stderr_has("Swift auth");
    } else {
        out.stderr_has("TLS 1.2")
            .stderr_has("feature tls12")
            .stderr_lacks("trying again");
    }
}
