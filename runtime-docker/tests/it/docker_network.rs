//! Networking: published ports, `network: none`, `network: host`.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use session_core::runtime::PortMapping;
use session_core::session::SpawnOptions;

/// A port nothing listens on right now.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}

/// Fetches `/index.html` from the host port, retrying while the server in
/// the container starts (bounded).
fn fetch(port: u16) -> Result<String, String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let attempt = (|| -> std::io::Result<String> {
            let mut stream = TcpStream::connect(("127.0.0.1", port))?;
            stream.set_read_timeout(Some(Duration::from_secs(5)))?;
            stream.write_all(b"GET /index.html HTTP/1.0\r\n\r\n")?;
            let mut response = String::new();
            stream.read_to_string(&mut response)?;
            Ok(response)
        })();
        match attempt {
            Ok(response) if response.contains("from the container") => return Ok(response),
            Ok(other) if Instant::now() > deadline => return Err(other),
            Err(err) if Instant::now() > deadline => return Err(err.to_string()),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_published_port_reaches_a_server_in_the_container() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("ports");
    let mut session = crate::support::session(
        crate::support::spec("", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let workspace = session.workspace_path().expect("workspace");
    std::fs::create_dir(workspace.join("www")).expect("mkdir");
    std::fs::write(workspace.join("www/index.html"), "from the container\n").expect("write");
    let port = free_port();
    let runtime = session
        .spawn(SpawnOptions {
            ports: vec![PortMapping {
                host_ip: None,
                host_port: port,
                container_port: 8080,
            }],
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    // busybox httpd puts itself in the background and returns.
    let started = crate::support::run(runtime.as_ref(), "httpd -p 8080 -h www").await;
    assert!(started.success(), "{started:?}");
    let response = tokio::task::spawn_blocking(move || fetch(port))
        .await
        .expect("fetch task")
        .expect("the server answers through the published port");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_none_leaves_only_loopback() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("netnone");
    let mut isolated = crate::support::session(
        crate::support::spec("network: none", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = isolated
        .spawn(SpawnOptions::default())
        .await
        .expect("spawn");
    let result = crate::support::run(runtime.as_ref(), "ls /sys/class/net").await;
    assert_eq!(result.stdout_lossy(), "lo\n", "{result:?}");

    let mut bridged = crate::support::session(
        crate::support::spec("network: bridge", ""),
        &format!("{prefix}-b"),
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = bridged.spawn(SpawnOptions::default()).await.expect("spawn");
    let result = crate::support::run(runtime.as_ref(), "ls /sys/class/net").await;
    assert!(result.stdout_lossy().contains("eth0"), "{result:?}");
    isolated.close().await.expect("close");
    bridged.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn network_host_shares_the_hosts_interfaces() {
    let docker = docker_or_skip!();
    let temp = tempfile::tempdir().expect("tempdir");
    let prefix = crate::support::session_id("nethost");
    let mut session = crate::support::session(
        crate::support::spec("network: host", ""),
        &prefix,
        &temp.path().join("sessions"),
    )
    .await;
    let runtime = session
        .spawn(SpawnOptions {
            // Ignored with host networking.
            ports: vec![PortMapping {
                host_ip: None,
                host_port: free_port(),
                container_port: 8080,
            }],
            ..SpawnOptions::default()
        })
        .await
        .expect("spawn");
    let result = crate::support::run(runtime.as_ref(), "ls /sys/class/net").await;
    // Other containers' veth interfaces come and go meanwhile.
    let lasting = |name: &str| !name.starts_with("veth");
    let mut host: Vec<String> = std::fs::read_dir("/sys/class/net")
        .expect("/sys/class/net")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| lasting(name))
        .collect();
    host.sort();
    let mut inside: Vec<String> = result
        .stdout_lossy()
        .lines()
        .filter(|name| lasting(name))
        .map(str::to_owned)
        .collect();
    inside.sort();
    assert_eq!(inside, host, "{result:?}");
    session.close().await.expect("close");
    crate::support::assert_no_containers_left(&docker, &prefix).await;
}
