//! Compiles one of berth's small static programs (`keeper/main.rs` here,
//! the `namespace` plugin's `sandbox/main.rs`) for the target being built,
//! with the `rustc` that builds the crate: `no_std`, no C library, linked
//! statically without start files, stripped. Included by both crates'
//! `build.rs`.

use std::ffi::OsString;
use std::path::Path;
use std::process::Command;

/// Whether the programs are written for the target being built: Linux
/// with glibc on x86_64 or aarch64 (the system call numbers of `abi.rs`).
pub(crate) fn target_supported() -> bool {
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && matches!(var("CARGO_CFG_TARGET_ARCH").as_str(), "x86_64" | "aarch64")
}

/// Compiles `source` into the executable `out`. `Err` holds the compiler's
/// first error line.
pub(crate) fn build_static_program(
    source: &Path,
    crate_name: &str,
    out: &Path,
) -> Result<(), String> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let mut command = Command::new(&rustc);
    command
        .args(["--edition", "2024", "--crate-type", "bin"])
        .args(["--crate-name", crate_name])
        .args(["--target", &std::env::var("TARGET").unwrap_or_default()])
        .args(["-C", "panic=abort", "-C", "opt-level=2", "-C", "lto=fat"])
        .args(["-C", "codegen-units=1", "-C", "strip=symbols"])
        .args(["-C", "debuginfo=0"])
        // Not position-independent: nothing would relocate it.
        .args(["-C", "relocation-model=static"])
        .args(["-C", "target-feature=+crt-static"])
        .args(["-C", "link-arg=-nostartfiles", "-C", "link-arg=-nostdlib"])
        .args(["-C", "link-arg=-static"])
        .arg(source)
        .arg("-o")
        .arg(out);
    if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
        let mut arg = OsString::from("linker=");
        arg.push(linker);
        command.arg("-C").arg(arg);
    }
    let output = command.output().map_err(|err| err.to_string())?;
    if output.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&output.stderr);
    Err(stderr
        .lines()
        .find(|line| line.contains("error"))
        .unwrap_or("rustc failed")
        .to_owned())
}
