//! What comes out of a session onto the host, through the real binary:
//! checkpoints carry only permission bits (no set-user-id, set-group-id or
//! sticky bit), belong to whoever ran berth, and never write through a
//! file already at their place.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::common::{Sandbox, code, stdout};

fn mode_of(path: &Path) -> u32 {
    std::fs::symlink_metadata(path).unwrap().mode() & 0o7777
}

#[test]
fn a_checkpoint_carries_no_set_id_or_sticky_bits() {
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    let out = sb.run([
        "run".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "-c".as_ref(),
        "cp /bin/sh s && chmod 4755 s && cp /bin/sh g && chmod 2711 g && \
         mkdir shared && chmod 1777 shared && mkdir group && chmod 2770 group && \
         stat -c %a s g shared group"
            .as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(
        stdout(&out),
        "4755\n2711\n1777\n2770\n",
        "inside the session, the command's own modes"
    );
    // SAFETY: geteuid(2) takes no arguments and cannot fail.
    let me = unsafe { libc::geteuid() };
    for (name, mode) in [
        ("s", 0o755),
        ("g", 0o711),
        ("shared", 0o777),
        ("group", 0o770),
    ] {
        let path = out_dir.join(name);
        assert_eq!(mode_of(&path), mode, "{name}");
        assert_eq!(
            std::fs::symlink_metadata(&path).unwrap().uid(),
            me,
            "{name}"
        );
    }
    sb.assert_no_session_dirs();
}

#[test]
fn a_checkpoint_replaces_files_instead_of_writing_through_them() {
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    let victim = sb.write("victim", "host data\n");
    std::fs::hard_link(&victim, out_dir.join("f")).unwrap();
    // The directory is not one berth wrote: --force says to replace it.
    let out = sb.run([
        "run".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "--force".as_ref(),
        "-c".as_ref(),
        "echo from the session > f".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host data\n");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("f")).unwrap(),
        "from the session\n"
    );
}

#[test]
fn a_workspace_made_from_set_id_files_does_not_keep_the_bits() {
    let sb = Sandbox::new();
    let base = sb.files().join("base");
    std::fs::create_dir(&base).unwrap();
    std::fs::copy("/bin/sh", base.join("tool")).unwrap();
    std::fs::set_permissions(base.join("tool"), std::fs::Permissions::from_mode(0o6755)).unwrap();
    let out = sb.run([
        "run".as_ref(),
        "-w".as_ref(),
        base.as_os_str(),
        "-c".as_ref(),
        "stat -c %a tool".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    assert_eq!(stdout(&out), "755\n");
    assert_eq!(mode_of(&base.join("tool")), 0o6755, "the base is untouched");
}

#[test]
fn a_checkpoint_keeps_symlink_targets_exactly() {
    use std::os::unix::ffi::OsStringExt;
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    let long = "ab//".repeat(1000);
    let out = sb.run([
        "run".to_owned(),
        "--checkpoint".to_owned(),
        out_dir.display().to_string(),
        "-c".to_owned(),
        format!(
            "ln -s / root && ln -s //x slashes && ln -s a//b ab && ln -s x/. xdot && \
             ln -s \"$(printf 'a\\377b')\" bytes && ln -s '{long}' long"
        ),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let mut long_bytes = long.into_bytes();
    long_bytes.truncate(4000);
    let cases: [(&str, &[u8]); 6] = [
        ("root", b"/"),
        ("slashes", b"//x"),
        ("ab", b"a//b"),
        ("xdot", b"x/."),
        ("bytes", b"a\xffb"),
        ("long", &long_bytes),
    ];
    for (name, target) in cases {
        let read = std::fs::read_link(out_dir.join(name))
            .unwrap()
            .into_os_string()
            .into_vec();
        assert_eq!(read, target, "{name}");
    }
    sb.assert_no_session_dirs();
}

/// A FIFO and a device node a command leaves in its workspace are left
/// out of the checkpoint, never opened (the device has no driver: opened,
/// it would fail the checkpoint), and nothing blocks.
#[test]
fn a_checkpoint_leaves_fifos_and_devices_out_without_opening_them() {
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    let out = sb.run([
        "run".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "-c".as_ref(),
        "echo kept > f && mkfifo pipe && { mknod dev c 42 0 2>/dev/null || true; }".as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let mut names: Vec<String> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["f"]);
    sb.assert_no_session_dirs();
}

/// The checkpoint summary prints every path on one line of its own:
/// names holding a newline, a tab, a carriage return or an escape are
/// quoted as git quotes them.
#[test]
fn the_checkpoint_summary_quotes_names_that_would_forge_lines() {
    let sb = Sandbox::new();
    let out_dir = sb.files().join("out");
    let out = sb.run([
        "run".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
        "-c".as_ref(),
        "echo x > \"$(printf 'z\\n+++ evil\\n@@ -0,0 +1 @@\\n+pwn')\" && \
         echo y > \"$(printf 'tab\\there')\" && echo y > \"$(printf 'cr\\rhere')\" && \
         echo y > \"$(printf 'esc\\033[2Jhere')\" && echo y > plain.txt"
            .as_ref(),
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let said = crate::common::stderr(&out);
    let lines: Vec<&str> = said.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("berth: checkpoint written to"))
        .unwrap_or_else(|| panic!("{said}"));
    assert_eq!(
        &lines[at + 1..],
        [
            "  A \"cr\\rhere\"  +1",
            "  A \"esc\\033[2Jhere\"  +1",
            "  A plain.txt  +1",
            "  A \"tab\\there\"  +1",
            "  A \"z\\n+++ evil\\n@@ -0,0 +1 @@\\n+pwn\"  +1",
        ],
        "{said}"
    );
    assert!(!said.contains('\r') && !said.contains('\u{1b}'), "{said:?}");
    sb.assert_no_session_dirs();
}
