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
