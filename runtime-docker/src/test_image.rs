//! A tiny image built locally, for tests, benchmarks and soak runs on
//! machines without a registry: busybox on an empty base, with `/tmp`.
//!
//! Built from Debian's `busybox-static` (`/bin/busybox`; `cargo xtask
//! test` installs it), once per engine, under a file lock so concurrent
//! processes share one build.

use std::io::Write;

use bollard::Docker;
use bollard::query_parameters::BuildImageOptionsBuilder;
use futures_util::StreamExt;

/// The image's tag.
pub const IMAGE: &str = "berth-test-busybox:latest";

/// Where Debian's `busybox-static` installs its binary.
const BUSYBOX: &str = "/bin/busybox";

const DOCKERFILE: &str = "FROM scratch\n\
COPY busybox /bin/busybox\n\
RUN [\"/bin/busybox\", \"--install\", \"-s\", \"/bin\"]\n\
RUN [\"/bin/mkdir\", \"-m\", \"1777\", \"/tmp\"]\n";

/// Why the Docker Engine must be usable where the tests run, if it must:
/// `CI` says so (`true` or `1`), or this machine has an engine (`DOCKER_HOST`
/// names one, the default socket exists, or `dockerd` is installed). A test
/// that needs the engine then fails when it cannot reach it or build
/// [`IMAGE`], rather than report itself skipped.
pub fn engine_required() -> Option<String> {
    let dockerd_installed = std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join("dockerd").is_file()));
    engine_required_by(
        std::env::var("CI").ok().as_deref(),
        std::env::var_os("DOCKER_HOST").is_some(),
        std::path::Path::new(DEFAULT_SOCKET).exists(),
        dockerd_installed,
    )
}

/// Where the engine listens by default.
const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// [`engine_required`] from what it looks at: the value of `CI`, whether
/// `DOCKER_HOST` is set, whether the default socket exists, whether
/// `dockerd` is installed.
pub fn engine_required_by(
    ci: Option<&str>,
    docker_host: bool,
    socket: bool,
    dockerd: bool,
) -> Option<String> {
    if ci.is_some_and(|ci| ci.eq_ignore_ascii_case("true") || ci == "1") {
        Some("CI is set".to_owned())
    } else if docker_host {
        Some("DOCKER_HOST names an engine".to_owned())
    } else if socket {
        Some(format!("{DEFAULT_SOCKET} exists"))
    } else if dockerd {
        Some("dockerd is installed".to_owned())
    } else {
        None
    }
}

/// A client for the engine (from `DOCKER_HOST` or the default socket),
/// with its API version negotiated, or why the engine cannot be reached.
pub async fn connect() -> Result<Docker, String> {
    let docker = Docker::connect_with_defaults().map_err(|err| err.to_string())?;
    docker
        .negotiate_version()
        .await
        .map_err(|err| format!("cannot reach the engine: {err}"))
}

/// Builds [`IMAGE`] unless the engine already has it. A file lock keeps
/// concurrent test processes from building it twice at once.
pub async fn ensure(docker: &Docker) -> Result<(), String> {
    if docker.inspect_image(IMAGE).await.is_ok() {
        return Ok(());
    }
    let lock_path = std::env::temp_dir().join("berth-test-busybox-image.lock");
    let lock = tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(|err| format!("opening {}: {err}", lock_path.display()))?;
        file.lock()
            .map_err(|err| format!("locking {}: {err}", lock_path.display()))?;
        Ok::<_, String>(file)
    })
    .await
    .map_err(|err| err.to_string())??;
    // Another process may have built it while this one waited.
    if docker.inspect_image(IMAGE).await.is_ok() {
        return Ok(());
    }
    let context = build_context()?;
    let options = BuildImageOptionsBuilder::default()
        .dockerfile("Dockerfile")
        .t(IMAGE)
        .rm(true)
        .forcerm(true)
        .build();
    let mut progress = docker.build_image(
        options,
        None,
        Some(bollard::body_full(bytes::Bytes::from(context))),
    );
    while let Some(step) = progress.next().await {
        let step = step.map_err(|err| format!("building {IMAGE}: {err}"))?;
        if let Some(detail) = step.error_detail {
            return Err(format!(
                "building {IMAGE}: {}",
                detail.message.unwrap_or_default()
            ));
        }
    }
    drop(lock);
    docker
        .inspect_image(IMAGE)
        .await
        .map(drop)
        .map_err(|err| format!("{IMAGE} missing after its build: {err}"))
}

/// A tar holding the Dockerfile and the host's static busybox.
fn build_context() -> Result<Vec<u8>, String> {
    let busybox = std::fs::read(BUSYBOX).map_err(|err| {
        format!(
            "reading {BUSYBOX} ({err}); install Debian's busybox-static (`cargo xtask test` does)"
        )
    })?;
    let mut archive = tar::Builder::new(Vec::new());
    let mut add = |name: &str, mode: u32, bytes: &[u8]| {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        archive
            .append_data(&mut header, name, bytes)
            .map_err(|err| format!("building the image context: {err}"))
    };
    add("Dockerfile", 0o644, DOCKERFILE.as_bytes())?;
    add("busybox", 0o755, &busybox)?;
    let mut bytes = archive
        .into_inner()
        .map_err(|err| format!("building the image context: {err}"))?;
    bytes.flush().map_err(|err| err.to_string())?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_is_required_in_ci_or_where_one_is_installed() {
        assert_eq!(engine_required_by(None, false, false, false), None);
        assert_eq!(engine_required_by(Some("false"), false, false, false), None);
        for ci in ["true", "TRUE", "1"] {
            assert!(engine_required_by(Some(ci), false, false, false).is_some());
        }
        assert!(engine_required_by(None, true, false, false).is_some());
        assert!(engine_required_by(None, false, true, false).is_some());
        assert!(engine_required_by(None, false, false, true).is_some());
    }
}
