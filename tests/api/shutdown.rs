//! Graceful shutdown of the real binary on SIGTERM: the listener closes at
//! once, the request and the adapter call in flight finish, the process
//! exits 0, and no job is left claimed, also when an adapter call outlives
//! the deadline.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;

use scim_gateway::store::jobs::state;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::process::{Gateway, Hook, database};

const TOKEN: &str = "shutdown-test-token";
const HOOK_SECRET: &str = "shutdown-hook-secret-0123456789";

fn config(dir: &std::path::Path, hook: &Hook, shutdown_secs: u64) -> std::path::PathBuf {
    let path = dir.join("gw.toml");
    std::fs::write(
        &path,
        format!(
            r#"
[server]
workers = 1
shutdown_timeout_secs = {shutdown_secs}

[log]
format = "json"

[delivery]
poll_ms = 100

[[apps]]
name = "hooks"
concurrency = 1
# Far longer than any deadline here: only the shutdown can cut a call short.
timeout_secs = 120
[apps.adapter]
kind = "webhook"
url = "{}"
secrets_env = ["TEST_HOOK_SECRET"]
"#,
            hook.url
        ),
    )
    .unwrap();
    path
}

async fn start(dir: &std::path::Path, hook: &Hook, shutdown_secs: u64, url: &str) -> Gateway {
    let config = config(dir, hook, shutdown_secs);
    Gateway::start(
        &config,
        url,
        &dir.join("gw.log"),
        &[
            ("SCIM_GATEWAY_TOKEN", TOKEN),
            ("TEST_HOOK_SECRET", HOOK_SECRET),
        ],
    )
    .await
}

async fn create_user(gw: &Gateway, user_name: &str) -> String {
    let res = reqwest::Client::new()
        .post(format!("{}/scim/v2/Users", gw.address()))
        .bearer_auth(TOKEN)
        .json(&json!({"userName": user_name}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let user: Value = res.json().await.unwrap();
    user["id"].as_str().unwrap().to_string()
}

/// Starts `POST /scim/v2/Users` with `Expect: 100-continue` and waits for
/// the `100 Continue`: the server has parsed the request and its handler
/// waits for the body, which the caller sends later.
fn begin_slow_create(port: u16, body: &str) -> TcpStream {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(30)))
        .unwrap();
    write!(
        s,
        "POST /scim/v2/Users HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/scim+json\r\nContent-Length: {}\r\nExpect: 100-continue\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut reader = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert!(line.starts_with("HTTP/1.1 100"), "{line:?}");
    let mut blank = String::new();
    reader.read_line(&mut blank).unwrap();
    assert_eq!(blank, "\r\n");
    s
}

async fn refuses_connections(port: u16) {
    eventually(10, "the listener to close", || async {
        match TcpStream::connect(("127.0.0.1", port)) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
}

#[tokio::test]
async fn sigterm_lets_the_request_and_delivery_in_flight_finish_then_exits_0() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = database(dir.path());
    let hook = Hook::start(true);
    let mut gw = start(dir.path(), &hook, 60, &url).await;
    let first = create_user(&gw, "first@example.com").await;
    // The webhook call for `first` is now in flight and held.
    hook.arrived(1).await;
    let body = json!({"userName": "second@example.com"}).to_string();
    let mut slow = begin_slow_create(gw.port, &body);

    gw.terminate();
    refuses_connections(gw.port).await;

    // The request in flight still completes.
    slow.write_all(body.as_bytes()).unwrap();
    let mut answer = String::new();
    slow.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 201"), "{answer}");
    let second: Value =
        serde_json::from_str(&answer[answer.find("\r\n\r\n").unwrap() + 4..]).unwrap();
    let second = second["id"].as_str().unwrap().to_string();

    // The held adapter call answers; the process then exits cleanly.
    hook.release();
    let status = gw.exited(30).await;
    assert!(status.success(), "{status}\n{}", gw.log_text());

    let jobs = gw.jobs("hooks");
    assert!(
        !jobs.iter().any(|j| j.resource_id == first),
        "the delivery in flight was recorded: {jobs:?}"
    );
    // The user created during shutdown waits, unclaimed, for the next process.
    let [job] = jobs.as_slice() else {
        panic!("{jobs:?}")
    };
    assert_eq!(job.resource_id, second);
    assert_eq!(job.state, state::PENDING);
    assert_eq!((job.claimed_by.as_deref(), job.attempts), (None, 0));
    assert_eq!(hook.bodies().len(), 1, "nothing was claimed after SIGTERM");
    let log = gw.log_text();
    assert!(log.contains("SIGTERM received"), "{log}");
}

#[tokio::test]
async fn an_adapter_call_outliving_the_deadline_is_handed_back() {
    let dir = tempfile::tempdir().unwrap();
    let (url, _pg) = database(dir.path());
    let hook = Hook::start(true);
    let mut gw = start(dir.path(), &hook, 1, &url).await;
    let id = create_user(&gw, "held@example.com").await;
    hook.arrived(1).await;
    assert_eq!(gw.jobs("hooks")[0].state, state::RUNNING);

    gw.terminate();
    // The call would only time out after 120 s; the 1 s deadline ends it.
    let status = gw.exited(30).await;
    assert!(status.success(), "{status}\n{}", gw.log_text());
    let jobs = gw.jobs("hooks");
    let [job] = jobs.as_slice() else {
        panic!("{jobs:?}")
    };
    assert_eq!(job.resource_id, id);
    assert_eq!(job.state, state::PENDING, "handed back, not left claimed");
    assert_eq!(job.claimed_by, None);
    assert_eq!(job.attempts, 0, "the interrupted attempt does not count");
    assert!(gw.log_text().contains("abandoning in-flight jobs"));

    // The next process delivers it.
    hook.release();
    let gw = start(dir.path(), &hook, 1, &url).await;
    let bodies = hook.arrived(2).await;
    assert!(bodies[1].contains(&id), "{bodies:?}");
    eventually(30, "the job to be done", || async {
        let jobs = gw.jobs("hooks");
        if jobs.is_empty() {
            Ok(())
        } else {
            Err(format!("{jobs:?}"))
        }
    })
    .await;
}
