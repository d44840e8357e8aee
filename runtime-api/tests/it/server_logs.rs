//! What the server logs: never the token; a warning when it listens beyond
//! loopback; for a command that changes nothing, exactly one request; and
//! for a flood of requests without the token, one line and one count per
//! interval, with what the client chose cut short.
//!
//! This file holds one test: it installs the process-wide log subscriber.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::support::TOKEN;
use runtime_api::server::ServeConfig;
use session_core::runtime::ExecCommand;
use session_core::session::{Session, SpawnOptions};

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_token_is_never_logged_and_an_idle_command_is_one_request() {
    let logs = Captured::default();
    let writer = logs.clone();
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .init();

    // Listening on every interface (reached here through loopback).
    let work_root = tempfile::tempdir().unwrap();
    let config = ServeConfig::new(crate::support::token(), crate::support::server_registry())
        .listen("0.0.0.0:0".parse().unwrap())
        .limits(crate::support::test_limits())
        .work_root(work_root.path());
    tracing::debug!(?config, "serving");
    let server = runtime_api::server::bind(config).await.unwrap();
    let port = server.local_addr().port();
    let task = tokio::spawn(server.run());
    assert!(
        logs.text().contains("not loopback"),
        "no warning about the address: {}",
        logs.text()
    );
    let url = format!("http://127.0.0.1:{port}");

    // A whole session, a refused request, and the commands to count.
    let (status, _) = crate::support::raw_request(
        format!("127.0.0.1:{port}").parse().unwrap(),
        "GET",
        "/v1/health",
        &[("Authorization", &format!("Bearer {TOKEN}-wrong"))],
        &[],
    )
    .await;
    assert_eq!(status, 401);
    let mut session = Session::builder(crate::support::api_spec(&url))
        .registry(crate::support::client_registry())
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let written = rt
        .execute(ExecCommand::new("echo hi > hi.txt"))
        .await
        .unwrap();
    assert!(written.success());
    assert!(
        rt.execute(ExecCommand::new("true"))
            .await
            .unwrap()
            .success()
    );

    tracing::info!("MARK before");
    assert!(
        rt.execute(ExecCommand::new("true"))
            .await
            .unwrap()
            .success()
    );
    tracing::info!("MARK after");
    session.close().await.unwrap();
    task.abort();

    let text = logs.text();
    assert!(!text.contains(TOKEN), "the token was logged:\n{text}");
    assert!(text.contains("refused a request without the right bearer token"));
    assert!(text.contains("session opened"));
    assert!(text.contains("session closed"));
    let between = &text[text.find("MARK before").unwrap()..text.find("MARK after").unwrap()];
    let requests: Vec<&str> = between
        .lines()
        .filter(|line| line.contains("status=") && line.contains("path="))
        .collect();
    assert_eq!(requests.len(), 1, "{requests:#?}");
    assert!(requests[0].contains("/exec"), "{requests:?}");

    refused_requests_are_logged_once_and_counted(&logs).await;
}

/// A flood of refused requests with long paths: pipelined on one
/// connection (which carries just one of them: it is closed after the
/// first answer), and one per connection. The log gets one line, with the
/// path cut short, and one count when the interval ends (here: at
/// shutdown).
async fn refused_requests_are_logged_once_and_counted(logs: &Captured) {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let work_root = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServeConfig::new(crate::support::token(), crate::support::server_registry())
        .listen("127.0.0.1:0".parse().unwrap())
        .limits(runtime_api::server::ServeLimits {
            log_interval: std::time::Duration::from_secs(3600),
            ..crate::support::test_limits()
        })
        .work_root(work_root.path())
        .shutdown(async {
            let _ = stopped.await;
        });
    let server = runtime_api::server::bind(config).await.unwrap();
    let addr = server.local_addr();
    let task = tokio::spawn(server.run());
    tracing::info!("MARK flood");

    let path = format!("/v1/{}", "A".repeat(30_000));
    let request = format!("GET {path} HTTP/1.1\r\nHost: flood\r\n\r\n");
    let mut pipelined = tokio::net::TcpStream::connect(addr).await.unwrap();
    let flood = request.repeat(200);
    // The server may close before it has read everything: a write error
    // then is what is expected.
    let _ = pipelined.write_all(flood.as_bytes()).await;
    let mut answers = Vec::new();
    let _ = pipelined.read_to_end(&mut answers).await;
    let answers = String::from_utf8_lossy(&answers);
    assert_eq!(answers.matches("HTTP/1.1 401").count(), 1, "{answers}");
    assert!(
        answers.to_ascii_lowercase().contains("connection: close"),
        "{answers}"
    );
    for _ in 0..50 {
        let (status, _) = crate::support::raw_request(addr, "GET", &path, &[], &[]).await;
        assert_eq!(status, 401);
    }
    stop.send(()).unwrap();
    task.await.unwrap().unwrap();

    let text = logs.text();
    let flood = &text[text.find("MARK flood").unwrap()..];
    let refused: Vec<&str> = flood
        .lines()
        .filter(|line| line.contains("refused a request"))
        .collect();
    assert_eq!(refused.len(), 1, "{refused:#?}");
    assert!(
        refused[0].contains(&format!("/v1/{}… (30004 bytes)", "A".repeat(96))),
        "{}",
        refused[0]
    );
    // The interval ended at shutdown, after a second or so.
    assert!(
        flood.contains("50 more refused requests in the last "),
        "{flood}"
    );
    let longest = flood.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 1000, "a log line of {longest} bytes");
}
