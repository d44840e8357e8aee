//! Every event stream ends with its last line, `finished` or `error`, also
//! when the server shuts down or the session's lease runs out under a
//! running command; and a client whose stream ends without one reports the
//! command lost instead of waiting.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

use crate::support::{TestServer, eventually, remote_runtime};
use runtime_api::client::ExecStream;
use runtime_api::protocol::{ExecRequest, StreamLine};
use runtime_api::server::ServeConfig;
use session_core::runtime::wire::WireError;
use session_core::runtime::{ExecCommand, ExecStatus};
use session_core::session::{Session, SpawnOptions};

fn long_command(key: &str, base: session_core::snapshot::ContentHash) -> ExecRequest {
    ExecRequest {
        idempotency_key: key.into(),
        base,
        command: ExecCommand::new("echo started; sleep 60").wall_timeout(Duration::from_secs(120)),
        stdin: None,
        stdin_stream: false,
    }
}

/// Reads the stream until its `stdout` line.
async fn until_output(stream: &mut ExecStream) {
    loop {
        match stream.next_line().await.unwrap() {
            Some(StreamLine::Stdout { .. }) => return,
            Some(StreamLine::Finished { .. } | StreamLine::Error { .. }) | None => {
                panic!("the command ended early")
            }
            Some(_) => {}
        }
    }
}

/// Reads the stream to its end and returns its last line, checking that
/// nothing follows it.
async fn last_line(mut stream: ExecStream) -> StreamLine {
    let read = async {
        let mut last = None;
        while let Some(line) = stream.next_line().await.unwrap() {
            if !matches!(line, StreamLine::Heartbeat) {
                last = Some(line);
            }
        }
        last.expect("the stream carried lines")
    };
    tokio::time::timeout(Duration::from_secs(60), read)
        .await
        .expect("the stream ended within the bound")
}

fn error_message(line: &StreamLine) -> String {
    match line {
        StreamLine::Error {
            error: WireError::Backend { message, .. },
        } => message.clone(),
        other => panic!("the stream did not end with an error line: {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_every_stream_with_an_error_line() {
    let work_root = tempfile::tempdir().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let config = ServeConfig::new(crate::support::token(), crate::support::server_registry())
        .listen("127.0.0.1:0".parse().unwrap())
        .limits(crate::support::test_limits())
        .work_root(work_root.path())
        .shutdown(async move {
            let _ = stopped.await;
        });
    let server = runtime_api::server::bind(config).await.unwrap();
    let url = format!("http://{}", server.local_addr());
    let task = tokio::spawn(server.run());
    let client = runtime_api::ApiClient::new(&url, &crate::support::token()).unwrap();
    let (session, runtime, base) = remote_runtime(&client, None).await;
    let request = long_command("live", base);
    let mut live = client.exec(&session, &runtime, &request).await.unwrap();
    until_output(&mut live).await;
    // A retry with the same key joins the running command.
    let mut joined = client.exec(&session, &runtime, &request).await.unwrap();
    assert!(matches!(
        joined.next_line().await.unwrap(),
        Some(StreamLine::Started { attached: true, .. })
    ));

    stop.send(()).unwrap();
    for stream in [live, joined] {
        let message = error_message(&last_line(stream).await);
        assert!(
            message.contains("the server is shutting down")
                && message.contains("killed before it finished"),
            "{message}"
        );
    }
    tokio::time::timeout(Duration::from_secs(60), task)
        .await
        .expect("the server stopped within the bound")
        .unwrap()
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_lease_ends_the_stream_with_an_error_line() {
    let server = TestServer::start().await;
    let client = server.client();
    let (session, runtime, base) = remote_runtime(&client, Some(1000)).await;
    let mut stream = client
        .exec(&session, &runtime, &long_command("k", base))
        .await
        .unwrap();
    until_output(&mut stream).await;
    // Nothing renews the lease: the reaper closes the session under the
    // running command.
    let message = error_message(&last_line(stream).await);
    assert!(
        message.contains("the session's lease expired")
            && message.contains("killed before it finished"),
        "{message}"
    );
    eventually("the reaped session's directory is removed", || {
        server.remote_dirs().is_empty()
    })
    .await;
}

/// A TCP proxy to `upstream` that, once it has passed on the `started` line
/// of an event stream, ends that response cleanly (the chunked body's end)
/// without the stream's last line, and from then on refuses every
/// connection.
async fn cutting_proxy(upstream: std::net::SocketAddr) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let cut = Arc::new(AtomicBool::new(false));
    tokio::spawn(async move {
        loop {
            let Ok((client, _)) = listener.accept().await else {
                return;
            };
            if cut.load(Ordering::SeqCst) {
                drop(client);
                continue;
            }
            tokio::spawn(pump(client, upstream, Arc::clone(&cut)));
        }
    });
    addr
}

async fn pump(client: TcpStream, upstream: std::net::SocketAddr, cut: Arc<AtomicBool>) {
    let Ok(server) = TcpStream::connect(upstream).await else {
        return;
    };
    let (mut client_read, mut client_write) = client.into_split();
    let (mut server_read, mut server_write) = server.into_split();
    let requests = tokio::spawn(async move {
        let _ = tokio::io::copy(&mut client_read, &mut server_write).await;
    });
    let mut seen = Vec::new();
    let mut written = 0;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match server_read.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        seen.extend_from_slice(&buf[..n]);
        let marker = b"\"type\":\"started\"";
        let started = seen
            .windows(marker.len())
            .position(|w| w == marker)
            .and_then(|at| {
                let rest = &seen[at..];
                rest.windows(3)
                    .position(|w| w == b"\n\r\n")
                    .map(|end| at + end + 3)
            });
        let upto = started.unwrap_or(seen.len());
        if client_write.write_all(&seen[written..upto]).await.is_err() {
            break;
        }
        written = upto;
        if started.is_some() {
            cut.store(true, Ordering::SeqCst);
            let _ = client_write.write_all(b"0\r\n\r\n").await;
            break;
        }
    }
    requests.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_that_ends_without_its_last_line_is_lost_not_a_hang() {
    let server = TestServer::start().await;
    let proxy = cutting_proxy(server.addr).await;
    let spec = crate::support::api_spec(&format!("http://{proxy}"));
    let temp = tempfile::tempdir().unwrap();
    let mut session = Session::builder(spec)
        .registry(crate::support::client_registry())
        .temp_root(temp.path())
        .prepare()
        .await
        .unwrap();
    let rt = session.spawn(SpawnOptions::default()).await.unwrap();
    let stream = rt
        .stream(ExecCommand::new("echo started; sleep 60").wall_timeout(Duration::from_secs(120)))
        .await
        .unwrap();
    let result = tokio::time::timeout(Duration::from_secs(60), stream.finish())
        .await
        .expect("the result came within the bound");
    assert_eq!(result.status, ExecStatus::Lost, "{result:?}");
    assert_eq!(result.exit_code, -1);
    // The server is out of reach now: closing says so, and the local side
    // is removed.
    assert!(session.close().await.is_err());
    assert_eq!(std::fs::read_dir(temp.path()).unwrap().count(), 0);
}
