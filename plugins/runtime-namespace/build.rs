//! Builds `berth-sandbox` (`sandbox/main.rs`), the sandbox as a small
//! program of its own that the crate embeds (`src/program.rs`), the way
//! `runtime-local` builds its keeper program (and with the same helper).
//! Where that build fails, or on a target the program is not written for,
//! the crate is built without it and every command forks berth's process
//! to build its sandbox.

use std::path::{Path, PathBuf};

#[path = "../../runtime-local/keeper/build_program.rs"]
mod build_program;

fn main() {
    for file in ["main.rs", "abi.rs", "stage.rs"] {
        println!("cargo::rerun-if-changed=sandbox/{file}");
    }
    for file in ["abi.rs", "rt.rs", "exec.rs", "dash.rs", "build_program.rs"] {
        println!("cargo::rerun-if-changed=../../runtime-local/keeper/{file}");
    }
    println!("cargo::rustc-check-cfg=cfg(berth_sandbox_program)");
    if !build_program::target_supported() {
        return;
    }
    let out = PathBuf::from(std::env::var("OUT_DIR").unwrap_or_default()).join("berth-sandbox");
    match build_program::build_static_program(Path::new("sandbox/main.rs"), "berth_sandbox", &out) {
        Ok(()) => {
            println!("cargo::rustc-cfg=berth_sandbox_program");
            println!("cargo::rustc-env=BERTH_SANDBOX_PROGRAM={}", out.display());
        }
        Err(err) => println!(
            "cargo::warning=the sandbox program was not built ({err}); \
             commands will build their sandbox in a fork of berth's process"
        ),
    }
}
