//! The spec's `docker:` block and the checks that need no engine.

use std::fmt;
use std::path::{Component, Path, PathBuf};

use indexmap::IndexMap;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use session_core::spec::EnvironmentSpec;
use session_core::{Error, Result};

/// Where the workspace appears in the container when the spec does not say.
pub const DEFAULT_WORKDIR: &str = "/workspace";

/// The directory under which static assets appear, read-only.
pub const ASSET_ROOT: &str = "/static";

/// The spec's `docker:` block (the format existing environment files use).
///
/// ```yaml
/// docker:
///   image: python:3.12-slim        # required; never pulled by berth
///   workdir: /workspace
///   mount_workspace: true
///   extra_mounts: {/data/cache: /cache, ./fixtures: {bind: /fixtures, mode: ro}}
///   network: null                  # null (the engine's default) | bridge | none | host
///   user: null                     # "uid:gid" or a name; see `DockerConfig::user`
///   keep_container_after_clean: false
///   pool: {size: 2}                # warm containers kept by a long-lived process
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DockerConfig {
    /// The image every runtime's container is created from. It must already
    /// be on the engine: berth does not pull or rename images.
    pub image: String,
    /// Where the workspace is bound and where commands run.
    pub workdir: String,
    /// Whether the workspace is bound at `workdir`. Without it, commands run
    /// in the image's `workdir` and the host workspace is not visible.
    pub mount_workspace: bool,
    /// More host paths to bind, by host path (relative paths are taken from
    /// the workspace). A value is the container path, or
    /// `{bind: PATH, mode: ro|rw}`.
    pub extra_mounts: IndexMap<String, ExtraMount>,
    /// The network mode; `null` leaves the engine's default (a bridge).
    pub network: Option<NetworkMode>,
    /// The user commands run as (`uid:gid` or a name known to the image).
    /// When unset: the caller's `uid:gid` in evaluation mode, so files
    /// written in the workspace stay the caller's; the image's user in
    /// agent mode. When it is someone other than the caller, the runtime
    /// hands the workspace back to the caller after each command and at
    /// cleanup (see the crate's documentation).
    pub user: Option<String>,
    /// Leave the container running after `cleanup()` (and when the runtime
    /// is dropped, or its owner dies) for inspection, with its main process
    /// only: cleanup still kills every process the commands started.
    /// `berth gc` leaves such containers alone; remove them with
    /// `docker rm -f`.
    pub keep_container_after_clean: bool,
    /// A warm pool: `size` containers of this configuration kept started
    /// and ready by a process that keeps warm pools (`berth serve`, or a
    /// program that called [`keep_warm_pools`](crate::keep_warm_pools)),
    /// each taken by one session and never reused. Elsewhere (a one-shot
    /// `berth run`) it is ignored and every spawn creates its container.
    /// See the crate's documentation for what a pooled spawn may add.
    pub pool: Option<PoolConfig>,
}

/// The largest warm pool a spec may ask for.
pub const MAX_POOL_SIZE: usize = 32;

/// The spec's `docker.pool` block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolConfig {
    /// How many started containers wait for sessions (1 to
    /// [`MAX_POOL_SIZE`]).
    pub size: usize,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            image: String::new(),
            workdir: DEFAULT_WORKDIR.to_owned(),
            mount_workspace: true,
            extra_mounts: IndexMap::new(),
            network: None,
            user: None,
            keep_container_after_clean: false,
            pool: None,
        }
    }
}

/// A container network mode berth accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NetworkMode {
    /// The engine's default bridge: outbound network, published ports.
    Bridge,
    /// No network at all: only a loopback interface.
    None,
    /// The host's network stack (Linux only); published ports are
    /// meaningless and ignored.
    Host,
}

impl NetworkMode {
    /// The engine's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            NetworkMode::Bridge => "bridge",
            NetworkMode::None => "none",
            NetworkMode::Host => "host",
        }
    }
}

/// Where an `extra_mounts` entry appears in the container.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtraMount {
    /// The container path.
    pub bind: String,
    /// Whether the container may only read it.
    #[serde(serialize_with = "serialize_mode")]
    pub read_only: bool,
}

fn serialize_mode<S: serde::Serializer>(read_only: &bool, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(if *read_only { "ro" } else { "rw" })
}

/// The long form of an `extra_mounts` value.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LongMount {
    bind: String,
    #[serde(default)]
    mode: MountMode,
}

#[derive(Deserialize, Default, Clone, Copy)]
#[serde(rename_all = "snake_case")]
enum MountMode {
    #[default]
    Rw,
    Ro,
}

impl<'de> Deserialize<'de> for ExtraMount {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct MountVisitor;

        impl<'de> Visitor<'de> for MountVisitor {
            type Value = ExtraMount;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a container path, or a mapping with `bind` and `mode` (ro|rw)")
            }

            fn visit_str<E: de::Error>(self, path: &str) -> Result<ExtraMount, E> {
                Ok(ExtraMount {
                    bind: path.to_owned(),
                    read_only: false,
                })
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<ExtraMount, A::Error> {
                let long = LongMount::deserialize(de::value::MapAccessDeserializer::new(map))?;
                Ok(ExtraMount {
                    bind: long.bind,
                    read_only: matches!(long.mode, MountMode::Ro),
                })
            }
        }

        deserializer.deserialize_any(MountVisitor)
    }
}

impl DockerConfig {
    /// Reads and checks the `docker:` block of `spec`: unknown keys, a
    /// missing image, a relative or root `workdir`, `host` networking off
    /// Linux, and extra mounts whose container path is not absolute or lies
    /// inside `workdir` are [`Error::Spec`] errors naming the field.
    pub fn from_spec(spec: &EnvironmentSpec) -> Result<DockerConfig> {
        let config: DockerConfig = spec.backend_config()?;
        let invalid = |field: &str, message: String| Error::Spec {
            origin: spec.origin().to_owned(),
            field: format!("docker.{field}"),
            message,
        };
        if config.image.trim().is_empty() {
            return Err(invalid(
                "image",
                "an image is required (build or load it on the engine first)".into(),
            ));
        }
        let workdir = container_path(&config.workdir).map_err(|msg| invalid("workdir", msg))?;
        if workdir == Path::new("/") {
            return Err(invalid(
                "workdir",
                "the workspace cannot be the container's root".into(),
            ));
        }
        if config.network == Some(NetworkMode::Host) && !cfg!(target_os = "linux") {
            return Err(invalid(
                "network",
                "`host` networking is only available on Linux".into(),
            ));
        }
        if let Some(pool) = config.pool {
            if pool.size == 0 || pool.size > MAX_POOL_SIZE {
                return Err(invalid(
                    "pool.size",
                    format!("must be from 1 to {MAX_POOL_SIZE}, not {}", pool.size),
                ));
            }
            if config.keep_container_after_clean {
                return Err(invalid(
                    "pool",
                    "a pooled container is always removed after its session; it cannot be \
                     combined with `keep_container_after_clean`"
                        .into(),
                ));
            }
        }
        for (host, mount) in &config.extra_mounts {
            if host.is_empty() {
                return Err(invalid("extra_mounts", "a host path is empty".into()));
            }
            let field = format!("extra_mounts.{host}");
            let target = container_path(&mount.bind).map_err(|msg| invalid(&field, msg))?;
            check_outside_workdir(&target, &workdir).map_err(|msg| invalid(&field, msg))?;
        }
        Ok(config)
    }

    /// `workdir` in its normal form.
    pub fn workdir_path(&self) -> PathBuf {
        container_path(&self.workdir).unwrap_or_else(|_| PathBuf::from(DEFAULT_WORKDIR))
    }
}

/// Normalises an absolute container path (`.` and repeated or trailing
/// slashes removed). A relative path or one with `..` is refused, with the
/// reason.
pub(crate) fn container_path(path: &str) -> Result<PathBuf, String> {
    let raw = Path::new(path);
    if !raw.is_absolute() {
        return Err(format!("container path `{path}` must be absolute"));
    }
    let mut normal = PathBuf::from("/");
    for component in raw.components() {
        match component {
            Component::RootDir | Component::CurDir => {}
            Component::Normal(part) => normal.push(part),
            Component::ParentDir | Component::Prefix(_) => {
                return Err(format!("container path `{path}` must not contain `..`"));
            }
        }
    }
    Ok(normal)
}

/// A mount inside the bound workspace would make the engine create its
/// mount point in the caller's workspace, and hide part of it.
pub(crate) fn check_outside_workdir(target: &Path, workdir: &Path) -> Result<(), String> {
    if target == Path::new("/") {
        return Err("cannot mount over the container's root".into());
    }
    if target.starts_with(workdir) {
        return Err(format!(
            "container path `{}` is inside the workdir `{}`; mount it elsewhere",
            target.display(),
            workdir.display()
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> EnvironmentSpec {
        EnvironmentSpec::from_yaml_str(yaml, "<test>").expect("spec parses")
    }

    #[test]
    fn the_existing_format_loads_with_defaults() {
        let config =
            DockerConfig::from_spec(&spec("type: docker\nname: t\ndocker: {image: img}\n"))
                .unwrap();
        assert_eq!(config.image, "img");
        assert_eq!(config.workdir, "/workspace");
        assert!(config.mount_workspace && !config.keep_container_after_clean);
        assert_eq!(config.network, None);

        let full = DockerConfig::from_spec(&spec(
            "type: docker\nname: t\ndocker:\n  image: img\n  workdir: /work/\n  mount_workspace: false\n  \
             extra_mounts: {/a: /mnt/a, b: {bind: /mnt/b, mode: ro}}\n  network: none\n  user: '1000:1000'\n  \
             keep_container_after_clean: true\n",
        ))
        .unwrap();
        assert_eq!(full.workdir_path(), Path::new("/work"));
        assert_eq!(
            full.extra_mounts["/a"],
            ExtraMount {
                bind: "/mnt/a".into(),
                read_only: false
            }
        );
        assert!(full.extra_mounts["b"].read_only);
        assert_eq!(full.network, Some(NetworkMode::None));
        assert_eq!(full.user.as_deref(), Some("1000:1000"));
        assert_eq!(full.pool, None);
        let pooled = DockerConfig::from_spec(&spec(
            "type: docker\nname: t\ndocker: {image: img, pool: {size: 4}}\n",
        ))
        .unwrap();
        assert_eq!(pooled.pool, Some(PoolConfig { size: 4 }));
    }

    #[test]
    fn bad_blocks_name_the_field() {
        let cases = [
            (
                "docker: {image: i, keep_contaner_after_clean: true}",
                "keep_contaner_after_clean",
            ),
            ("docker: {workdir: /w}", "docker.image"),
            ("docker: {image: i, workdir: rel}", "docker.workdir"),
            ("docker: {image: i, workdir: /}", "docker.workdir"),
            ("docker: {image: i, network: overlay}", "docker.network"),
            (
                "docker: {image: i, extra_mounts: {/a: /workspace/a}}",
                "docker.extra_mounts./a",
            ),
            (
                "docker: {image: i, extra_mounts: {/a: relative}}",
                "docker.extra_mounts./a",
            ),
            (
                "docker: {image: i, extra_mounts: {/a: {bind: /x, mode: rx}}}",
                "docker.extra_mounts",
            ),
            (
                "docker: {image: i, extra_mounts: {/a: {bind: /x, other: 1}}}",
                "other",
            ),
            ("docker: {image: i, pool: {size: 0}}", "docker.pool.size"),
            ("docker: {image: i, pool: {size: 33}}", "docker.pool.size"),
            ("docker: {image: i, pool: {size: 1, warm: 2}}", "warm"),
            ("docker: {image: i, pool: 3}", "docker.pool"),
            (
                "docker: {image: i, pool: {size: 1}, keep_container_after_clean: true}",
                "docker.pool",
            ),
        ];
        for (block, expected) in cases {
            let text = format!("type: docker\nname: t\n{block}\n");
            let err = match EnvironmentSpec::from_yaml_str(&text, "<test>") {
                Ok(spec) => DockerConfig::from_spec(&spec).unwrap_err(),
                Err(err) => err,
            };
            let message = err.to_string();
            assert!(
                message.contains(expected),
                "{block}: `{message}` does not name `{expected}`"
            );
        }
    }

    #[test]
    fn container_paths_are_normalised_and_contained() {
        assert_eq!(container_path("/a//b/./c/").unwrap(), Path::new("/a/b/c"));
        assert!(container_path("/a/../b").is_err());
        assert!(container_path("a").is_err());
        let workdir = Path::new("/workspace");
        assert!(check_outside_workdir(Path::new("/workspace/x"), workdir).is_err());
        assert!(check_outside_workdir(Path::new("/workspace"), workdir).is_err());
        assert!(check_outside_workdir(Path::new("/workspace2"), workdir).is_ok());
        assert!(check_outside_workdir(Path::new("/"), workdir).is_err());
    }
}
