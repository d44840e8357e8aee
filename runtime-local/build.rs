//! Builds `berth-keeper` (`keeper/main.rs`), the keeper as a small program
//! of its own that the crate embeds (`src/process/keeper_program.rs`), with
//! the same `rustc` that builds the crate: a static executable of a few
//! KiB that links no C library (it makes its system calls itself), so no
//! dynamic loader or C runtime start-up runs on every command. Where that
//! build fails, or on a target the program is not written for, the crate is
//! built without it and commands start by forking berth's process.

use std::path::{Path, PathBuf};

#[path = "keeper/build_program.rs"]
mod build_program;

fn main() {
    for file in [
        "main.rs",
        "abi.rs",
        "rt.rs",
        "exec.rs",
        "dash.rs",
        "build_program.rs",
    ] {
        println!("cargo::rerun-if-changed=keeper/{file}");
    }
    println!("cargo::rustc-check-cfg=cfg(berth_keeper_program)");
    if !build_program::target_supported() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("berth-keeper");
    match build_program::build_static_program(Path::new("keeper/main.rs"), "berth_keeper", &out) {
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
