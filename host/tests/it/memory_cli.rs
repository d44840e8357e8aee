//! What a session makes costs berth bounded memory: a sparse file of
//! gigabytes through a checkpoint and a diff, and an archive that unpacks
//! to gigabytes through `berth diff`, each measured as the peak resident
//! memory of the real binary.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use crate::common::Sandbox;
use session_core::compression::Compression;

/// The bound every run below stays under: a few MiB of buffers and
/// decoders, and the diff's text budget, never the size of the content.
const PEAK_LIMIT_KIB: u64 = 200 << 10;

/// What a finished run of berth left: its exit code, its output and its
/// peak resident memory.
struct Measured {
    code: i32,
    stdout: String,
    stderr: String,
    peak_kib: u64,
}

/// `VmHWM` of a running process, in KiB.
fn vm_hwm(pid: i32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Runs `cmd` to its end and measures its peak resident memory: `VmHWM`
/// read from `/proc` while it runs, and at its end the same high-water
/// mark as the kernel hands it to `wait4` (`ru_maxrss`), which no sampling
/// can miss. The larger of the two is the peak.
fn measure(mut cmd: Command, dir: &Path) -> Measured {
    let out_path = dir.join("measured.stdout");
    let err_path = dir.join("measured.stderr");
    let child = cmd
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .expect("starting berth");
    let pid = child.id() as i32;
    let mut sampled = 0;
    let (status, rusage) = loop {
        if let Some(hwm) = vm_hwm(pid) {
            sampled = sampled.max(hwm);
        }
        let mut status = 0;
        // SAFETY: an all-zero `rusage` is a valid value to be overwritten.
        let mut rusage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own child, not yet reaped (`child` is never
        // waited on through std); the pointers are to live locals.
        let got = unsafe { libc::wait4(pid, &mut status, libc::WNOHANG, &mut rusage) };
        assert!(got >= 0, "wait4: {}", std::io::Error::last_os_error());
        if got == pid {
            break (status, rusage);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    };
    drop(child);
    assert!(
        libc::WIFEXITED(status),
        "berth died by signal {}",
        libc::WTERMSIG(status)
    );
    Measured {
        code: libc::WEXITSTATUS(status),
        stdout: std::fs::read_to_string(out_path).unwrap(),
        stderr: std::fs::read_to_string(err_path).unwrap(),
        peak_kib: sampled.max(rusage.ru_maxrss as u64),
    }
}

fn assert_bounded(run: &Measured, what: &str) {
    assert!(
        run.peak_kib < PEAK_LIMIT_KIB,
        "{what}: berth's peak RSS was {} KiB, over {} KiB",
        run.peak_kib,
        PEAK_LIMIT_KIB
    );
}

/// A command makes a 2 GiB file with `truncate`. The checkpoint and its
/// diff, then a `berth diff` of the checkpoint directory, stay within the
/// bound, and the file in the checkpoint is as sparse as the one the
/// command made: 2 GiB long, no block of it on disk.
#[test]
fn a_sparse_file_of_gigabytes_through_a_checkpoint_and_a_diff() {
    let sb = Sandbox::new();
    let out = sb.files().join("out");
    let cmd = sb.berth([
        "run".as_ref(),
        "--checkpoint".as_ref(),
        out.as_os_str(),
        "-c".as_ref(),
        "truncate -s 2G big && echo small > note.txt".as_ref(),
    ]);
    let run = measure(cmd, &sb.files());
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("A big  binary, 0 -> 2147483648 bytes"),
        "{}",
        run.stderr
    );
    assert_bounded(&run, "run --checkpoint");

    let big = std::fs::metadata(out.join("big")).unwrap();
    assert_eq!(big.len(), 2 << 30);
    assert!(
        big.blocks() * 512 < 1 << 20,
        "the checkpoint wrote {} bytes of a file that is all holes",
        big.blocks() * 512
    );
    assert_eq!(
        std::fs::read_to_string(out.join("note.txt")).unwrap(),
        "small\n"
    );

    let empty = sb.files().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cmd = sb.berth([
        "diff".as_ref(),
        "--stat".as_ref(),
        empty.as_os_str(),
        out.as_os_str(),
    ]);
    let run = measure(cmd, &sb.files());
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout.contains("A big  binary, 0 -> 2147483648 bytes"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("A note.txt  +1"), "{}", run.stdout);
    assert_bounded(&run, "diff of the checkpoint directory");
    sb.assert_no_session_dirs();
}

/// A tar header of a regular member `name` of `size` bytes (ustar, octal
/// size: below 8 GiB).
fn tar_header(name: &str, size: u64) -> [u8; 512] {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}", width = field.len() - 1);
        field[..text.len()].copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644);
    octal(&mut header[108..116], 0);
    octal(&mut header[116..124], 0);
    octal(&mut header[124..136], size);
    octal(&mut header[136..148], 0);
    header[156] = b'0';
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    header[148..156].fill(b' ');
    let sum: u64 = header.iter().map(|b| u64::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    header
}

/// A zstd archive of a few hundred KiB holding one member of 8 GiB minus
/// one block of zeros, made of one compressed frame of 64 MiB of zeros
/// repeated (concatenated frames are one stream).
fn archive_bomb(path: &Path) -> u64 {
    const CHUNK: u64 = 64 << 20;
    let size = (8 << 30) - 512;
    let zeros = Compression::Zstd
        .compress(&vec![0u8; CHUNK as usize])
        .unwrap();
    let mut file = File::create(path).unwrap();
    file.write_all(
        &Compression::Zstd
            .compress(&tar_header("big", size))
            .unwrap(),
    )
    .unwrap();
    let mut left = size;
    while left >= CHUNK {
        file.write_all(&zeros).unwrap();
        left -= CHUNK;
    }
    // The rest of the member (a whole number of blocks: no padding) and
    // the two blocks that end an archive.
    let tail = vec![0u8; left as usize + 1024];
    file.write_all(&Compression::Zstd.compress(&tail).unwrap())
        .unwrap();
    size
}

/// `berth diff` of an archive that unpacks to 8 GiB against an empty
/// directory: the member is read no further than binary detection needs,
/// and memory stays within the bound.
#[test]
fn an_archive_bomb_through_diff() {
    let sb = Sandbox::new();
    let bomb = sb.files().join("bomb.tar.zst");
    let size = archive_bomb(&bomb);
    assert!(std::fs::metadata(&bomb).unwrap().len() < 1 << 20);
    let empty = sb.files().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let cmd = sb.berth([
        "diff".as_ref(),
        "--stat".as_ref(),
        bomb.as_os_str(),
        empty.as_os_str(),
    ]);
    let run = measure(cmd, &sb.files());
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stdout
            .contains(&format!("D big  binary, {size} -> 0 bytes")),
        "{}",
        run.stdout
    );
    assert_bounded(&run, "diff of an archive bomb");
    sb.assert_no_session_dirs();
}
