//! Builds `berth-keeper` (`keeper/main.rs`), the keeper as a small program
//! of its own that the crate embeds (`src/process/keeper_program.rs`), with
//! the same `rustc` that builds the crate: a static executable of a few
//! KiB that links no C library (it makes its system calls itself), so no
//! dynamic loader or C runtime start-up runs on every command. Where that
//! build fails, or on a target the program is not written for, the crate is
//! built without it and commands start by forking berth's process.

use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=keeper/main.rs");
    println!("cargo::rerun-if-changed=keeper/abi.rs");
    println!("cargo::rustc-check-cfg=cfg(berth_keeper_program)");
    let var = |name: &str| std::env::var(name).unwrap_or_default();
    let supported = var("CARGO_CFG_TARGET_OS") == "linux"
        && var("CARGO_CFG_TARGET_ENV") == "gnu"
        && matches!(var("CARGO_CFG_TARGET_ARCH").as_str(), "x86_64" | "aarch64");
    if !supported {
        return;
    }
    let out = PathBuf::from(var("OUT_DIR")).join("berth-keeper");
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let build = |extra: &[&str]| -> Result<(), String> {
        let mut command = Command::new(&rustc);
        command
            .args(["--edition", "2024", "--crate-type", "bin"])
            .args(["--crate-name", "berth_keeper", "--target", &var("TARGET")])
            .args(["-C", "panic=abort", "-C", "opt-level=2", "-C", "lto=fat"])
            .args([
                "-C",
                "codegen-units=1",
                "-C",
                "strip=symbols",
                "-C",
                "debuginfo=0",
            ])
            .args(extra)
            .arg("keeper/main.rs")
            .arg("-o")
            .arg(&out);
        if let Some(linker) = std::env::var_os("RUSTC_LINKER") {
            command.arg("-C").arg({
                let mut arg = std::ffi::OsString::from("linker=");
                arg.push(linker);
                arg
            });
        }
        let output = command.output().map_err(|err| err.to_string())?;
        if output.status.success() {
            Ok(())
        } else {
            let stderr = String::from_utf8_lossy(&output.stderr);
            Err(stderr
                .lines()
                .find(|line| line.contains("error"))
                .unwrap_or("rustc failed")
                .to_owned())
        }
    };
    // Not position-independent: nothing would relocate it.
    let static_link = [
        "-C",
        "relocation-model=static",
        "-C",
        "target-feature=+crt-static",
        "-C",
        "link-arg=-nostartfiles",
        "-C",
        "link-arg=-nostdlib",
        "-C",
        "link-arg=-static",
    ];
    match build(&static_link) {
        Ok(()) => {
            println!("cargo::rustc-cfg=berth_keeper_program");
            println!("cargo::rustc-env=BERTH_KEEPER_PROGRAM={}", out.display());
        }
        Err(err) => println!(
            "cargo::warning=the keeper program was not built ({err}); \
             commands will start by forking berth's process"
        ),
    }
}
