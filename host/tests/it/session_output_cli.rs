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
    let out = sb.run([
        "run".as_ref(),
        "--checkpoint".as_ref(),
        out_dir.as_os_str(),
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
