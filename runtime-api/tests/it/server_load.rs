//! The server under hostile load: idle and slow connections beyond the
//! connection cap cannot starve a client that holds the token, an
//! authenticated connection is never shed, and stalled headers, idle
//! kept-alive connections and stalled bodies are cut off.

use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

use crate::support::{TOKEN, TestServer, eventually};
use runtime_api::server::ServeLimits;

const CAP: usize = 8;

/// Limits with a small connection cap and header and body timeouts far
/// longer than any test waits, so only the cap can free a place.
fn capped() -> ServeLimits {
    ServeLimits {
        max_connections: CAP,
        header_read_timeout: Duration::from_secs(600),
        body_read_timeout: Duration::from_secs(600),
        ..crate::support::test_limits()
    }
}

/// Opens `count` connections that send nothing, and as many that send half
/// a request's headers and then nothing more.
async fn hostile_connections(addr: std::net::SocketAddr, count: usize) -> Vec<TcpStream> {
    let mut streams = Vec::new();
    for i in 0..2 * count {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        if i % 2 == 1 {
            stream
                .write_all(b"GET /v1/health HTTP/1.1\r\nHost: slow\r\n")
                .await
                .unwrap();
        }
        streams.push(stream);
    }
    streams
}

/// How many of `streams` the server has closed (read gives end of file
/// or an error), without waiting on the others.
fn closed(streams: &[TcpStream]) -> usize {
    streams
        .iter()
        .filter(|stream| {
            let mut byte = [0u8; 1];
            match stream.try_read(&mut byte) {
                Ok(0) => true,
                Ok(_) => false,
                Err(err) => err.kind() != std::io::ErrorKind::WouldBlock,
            }
        })
        .count()
}

/// One `GET /v1/health` with the token on a kept-alive connection; returns
/// the status.
async fn health_on(stream: &mut TcpStream) -> u16 {
    let request =
        format!("GET /v1/health HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = stream.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the connection closed mid-response");
        response.extend_from_slice(&chunk[..n]);
        let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map(|v| v.trim().parse().unwrap())
            .unwrap_or(0);
        if response.len() >= end + 4 + length {
            return head.split(' ').nth(1).unwrap().parse().unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_cannot_starve_an_authenticated_client() {
    let server = TestServer::start_with(capped()).await;
    let hostile = hostile_connections(server.addr, 2 * CAP).await;
    // Far more connections than the cap are open; the client still gets
    // its answer, long before any header timeout could have helped.
    let health = tokio::time::timeout(Duration::from_secs(60), server.client().health())
        .await
        .expect("the authenticated request was answered within the bound")
        .unwrap();
    assert_eq!(health.status, "ok");
    // The oldest of them were shed to make room: of 4 × CAP, at most
    // CAP - 1 are still open beside the client's.
    eventually(
        "the server sheds the oldest unauthenticated connections",
        || closed(&hostile) > hostile.len() - CAP,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_authenticated_connection_is_never_shed() {
    let server = TestServer::start_with(capped()).await;
    let mut trusted = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(health_on(&mut trusted).await, 200);
    let hostile = hostile_connections(server.addr, 2 * CAP).await;
    eventually("the flood fills the table", || {
        closed(&hostile) > hostile.len() - CAP
    })
    .await;
    // The kept-alive authenticated connection is still served.
    let status = tokio::time::timeout(Duration::from_secs(60), health_on(&mut trusted))
        .await
        .expect("answered within the bound");
    assert_eq!(status, 200);
    assert_eq!(closed(std::slice::from_ref(&trusted)), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_and_bodies_are_cut_off() {
    let server = TestServer::start_with(ServeLimits {
        header_read_timeout: Duration::from_millis(300),
        body_read_timeout: Duration::from_millis(300),
        ..crate::support::test_limits()
    })
    .await;
    // Headers that never end: the connection is closed.
    let slow = hostile_connections(server.addr, 1).await;
    eventually("connections with unfinished headers are closed", || {
        closed(&slow) == slow.len()
    })
    .await;

    // A kept-alive connection left idle after its request is closed too.
    let mut idle = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(health_on(&mut idle).await, 200);
    let idle = [idle];
    eventually("an idle kept-alive connection is closed", || {
        closed(&idle) == 1
    })
    .await;

    // A body that stops half way: 408, and the connection is not held.
    let mut stream = TcpStream::connect(server.addr).await.unwrap();
    let head = format!(
        "POST /v1/sessions HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"spec\":"
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), stream.read_to_end(&mut response))
        .await
        .expect("the server answered within the bound")
        .unwrap();
    let text = String::from_utf8_lossy(&response);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("the request body stalled"), "{text}");
    assert!(
        server.remote_dirs().is_empty(),
        "{:?}",
        server.remote_dirs()
    );
}
