//! `berth serve` with few descriptors under a connection flood, silent
//! connections and ones that start a request and never finish it: the
//! connection cap holds (no accept ever fails for want of descriptors),
//! and a client with the token is still answered, request after request.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::common::Sandbox;

const TOKEN: &str = "a-token-for-the-flood-test-only";

/// The server's descriptor limit, soft and hard: its connection cap is
/// half of it.
const DESCRIPTORS: libc::rlim_t = 128;

/// Connections each flooder keeps open, closing its oldest beyond them.
const KEPT_PER_FLOODER: usize = 300;

/// Connects to `addr` without waiting for the connection to complete, as
/// a flood does; returns the descriptor, or `None` when the socket could
/// not be made.
fn connect_without_waiting(addr: SocketAddr) -> Option<i32> {
    let SocketAddr::V4(v4) = addr else {
        panic!("a loopback IPv4 address is expected");
    };
    // SAFETY: plain system calls on a descriptor this function owns; the
    // address struct is fully initialised before use.
    unsafe {
        let fd = libc::socket(
            libc::AF_INET,
            libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
            0,
        );
        if fd < 0 {
            return None;
        }
        let sin = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: v4.port().to_be(),
            sin_addr: libc::in_addr {
                s_addr: u32::from(*v4.ip()).to_be(),
            },
            sin_zero: [0; 8],
        };
        libc::connect(
            fd,
            std::ptr::addr_of!(sin).cast(),
            std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t,
        );
        Some(fd)
    }
}

/// Closes a flood connection with a reset, so that neither side keeps it
/// in `TIME_WAIT` (the machine's ports are shared).
fn reset(fd: i32) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: a descriptor the flooder opened, an option struct it owns.
    unsafe {
        libc::setsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
        libc::close(fd);
    }
}

/// Opens connections to `addr` as fast as it can until `stop`, keeping the
/// newest [`KEPT_PER_FLOODER`], and counts them in `made`. With `talking`,
/// each connection sends the start of a request and never finishes it (if
/// its handshake is through by then); otherwise it sends nothing.
fn flood(addr: SocketAddr, talking: bool, stop: &AtomicBool, made: &AtomicUsize) {
    const START: &[u8] = b"GET /v1/health HTTP/1.1\r\nHost: flood\r\n";
    let mut open = VecDeque::new();
    while !stop.load(Ordering::SeqCst) {
        if let Some(fd) = connect_without_waiting(addr) {
            if talking {
                // SAFETY: a descriptor this flooder opened and a static
                // buffer; a failed send is fine.
                unsafe { libc::send(fd, START.as_ptr().cast(), START.len(), libc::MSG_NOSIGNAL) };
            }
            open.push_back(fd);
            made.fetch_add(1, Ordering::SeqCst);
        }
        while open.len() > KEPT_PER_FLOODER {
            reset(open.pop_front().unwrap());
        }
    }
    open.into_iter().for_each(reset);
}

/// `GET /v1/health` with the token on a fresh connection; the status.
fn health(addr: SocketAddr) -> u16 {
    let bound = Duration::from_secs(120);
    let mut stream = TcpStream::connect_timeout(&addr, bound).unwrap();
    stream.set_read_timeout(Some(bound)).unwrap();
    stream.set_write_timeout(Some(bound)).unwrap();
    write!(
        stream,
        "GET /v1/health HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {TOKEN}\r\n\
         Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status in {response:?}"))
}

/// The server, killed if the test fails before it stopped it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn a_connection_flood_under_a_low_descriptor_limit_starves_nobody() {
    let sb = Sandbox::new();
    let token_file = sb.write_private("token", TOKEN);
    let mut command = sb.berth([
        "serve".as_ref(),
        "--listen".as_ref(),
        "127.0.0.1:0".as_ref(),
        "--token-file".as_ref(),
        token_file.as_os_str(),
    ]);
    command.stderr(Stdio::piped());
    // SAFETY: setrlimit is async-signal-safe and touches only its
    // argument, built in the child's own frame.
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: DESCRIPTORS,
                rlim_max: DESCRIPTORS,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut server = KillOnDrop(command.spawn().unwrap());
    let mut lines = BufReader::new(server.0.stderr.take().unwrap()).lines();
    let addr: SocketAddr = loop {
        let line = lines
            .next()
            .expect("the server says where it listens")
            .unwrap();
        if let Some(url) = line.strip_prefix("berth serve: listening on http://") {
            break url.parse().unwrap();
        }
    };
    let log = Arc::new(Mutex::new(Vec::new()));
    let drain = std::thread::spawn({
        let log = Arc::clone(&log);
        move || lines.for_each(|line| log.lock().unwrap().push(line.unwrap_or_default()))
    });

    let stop = Arc::new(AtomicBool::new(false));
    let made = Arc::new(AtomicUsize::new(0));
    // Two flooders that start requests they never finish (the server must
    // take them in and shed them), one that only connects.
    let flooders: Vec<_> = [true, true, false]
        .into_iter()
        .map(|talking| {
            let stop = Arc::clone(&stop);
            let made = Arc::clone(&made);
            std::thread::spawn(move || flood(addr, talking, &stop, &made))
        })
        .collect();
    // The flood is on: each flooder has cycled through its connections
    // several times, far more than the server's cap.
    assert!(
        crate::common::wait_until(Duration::from_secs(120), || {
            made.load(Ordering::SeqCst) > 10 * 3 * KEPT_PER_FLOODER
        }),
        "the flood never got going"
    );
    let statuses: Vec<u16> = (0..10).map(|_| health(addr)).collect();
    let flooded = made.load(Ordering::SeqCst);
    stop.store(true, Ordering::SeqCst);
    for flooder in flooders {
        flooder.join().unwrap();
    }
    assert_eq!(statuses, [200; 10], "after {flooded} flood connections");
    // Still serving once the flood is over.
    assert_eq!(health(addr), 200);

    // SAFETY: signalling our own child.
    unsafe {
        libc::kill(server.0.id() as i32, libc::SIGTERM);
    }
    let status = server.0.wait().unwrap();
    drain.join().unwrap();
    assert!(status.success(), "{status:?}");
    let log = log.lock().unwrap();
    let failed: Vec<&String> = log
        .iter()
        .filter(|line| line.contains("accepting a connection failed") || line.contains("Too many"))
        .collect();
    assert!(failed.is_empty(), "{failed:#?}");
    sb.assert_no_session_dirs();
}
