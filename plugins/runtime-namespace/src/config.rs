//! The spec's `namespace:` block.

use std::path::PathBuf;

use runtime_local::seccomp::{Filter, Setting};
use serde::{Deserialize, Serialize};
use session_core::spec::EnvironmentSpec;
use session_core::{Error, Result};

use crate::plan::{RESERVED, check_sandbox_path, is_reserved};

/// Whether commands reach a network.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Network {
    /// A network namespace of the command's own, with only a loopback
    /// interface: nothing outside the sandbox is reachable.
    #[default]
    None,
    /// The host's network namespace: the command reaches what the host
    /// reaches, and its listening ports are the host's.
    Host,
}

/// The spec's `namespace:` block.
///
/// ```yaml
/// type: namespace
/// name: python
/// namespace:
///   system_dirs: [/usr, /bin, /lib, /lib64, /etc]   # default: see below
///   network: none                                  # or host
///   shell: /bin/sh
///   hostname: berth
///   seccomp: default                               # or unconfined, or a profile file
///   tmpfs_size: 1073741824                         # bytes, each of /tmp and /dev/shm
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct NamespaceConfig {
    /// Host paths shown read-only at the same path in the sandbox. A path
    /// that is a symlink on the host (`/bin` on a merged-`/usr` system)
    /// appears as the same symlink. `null` (the default) shows those of
    /// [`DEFAULT_SYSTEM_DIRS`](crate::DEFAULT_SYSTEM_DIRS) that exist on
    /// this host; a path named here that does not exist makes spawning
    /// fail with the kernel's reason.
    pub system_dirs: Option<Vec<PathBuf>>,
    /// `none` (the default) or `host`.
    pub network: Network,
    /// The POSIX shell that runs command strings: a path inside the
    /// sandbox.
    pub shell: PathBuf,
    /// The sandbox's host name (its own uts namespace).
    pub hostname: String,
    /// The seccomp filter commands run under: `default` (the default
    /// profile, modelled on Docker's: see [`runtime_local::seccomp`] for
    /// what it refuses), `unconfined` (none), or the path of a profile file
    /// in Docker's JSON format. A relative path is taken from the spec
    /// file's directory (or, for a spec that came from no file, from the
    /// current directory of the berth process).
    pub seccomp: Setting,
    /// The size cap, in bytes, of each of the sandbox's own tmpfs mounts
    /// (`/tmp` and `/dev/shm`), whose content is memory; lowered to
    /// `limits.memory` when that is smaller. Default: 1 GiB.
    pub tmpfs_size: u64,
}

/// The smallest [`NamespaceConfig::tmpfs_size`] accepted: 1 MiB.
const MIN_TMPFS_SIZE: u64 = 1 << 20;

/// The default [`NamespaceConfig::tmpfs_size`]: 1 GiB.
pub const DEFAULT_TMPFS_SIZE: u64 = 1 << 30;

impl Default for NamespaceConfig {
    fn default() -> Self {
        NamespaceConfig {
            system_dirs: None,
            network: Network::None,
            shell: PathBuf::from("/bin/sh"),
            hostname: "berth".to_owned(),
            seccomp: Setting::Default,
            tmpfs_size: DEFAULT_TMPFS_SIZE,
        }
    }
}

impl NamespaceConfig {
    /// Parses and checks the block of `spec`.
    ///
    /// Fails with [`Error::Spec`] naming the field (`namespace.network`)
    /// for an unknown field, a wrong type, a system directory that is not a
    /// plain absolute path or would hide one of the sandbox's own paths, a
    /// relative shell, or a host name that is empty or longer than 64
    /// bytes.
    pub fn from_spec(spec: &EnvironmentSpec) -> Result<NamespaceConfig> {
        let config: NamespaceConfig = spec.backend_config()?;
        let invalid = |field: String, message: String| Error::Spec {
            origin: spec.origin().to_owned(),
            field: format!("{}.{field}", spec.backend_type),
            message,
        };
        for (index, dir) in config.system_dirs.iter().flatten().enumerate() {
            let field = format!("system_dirs[{index}]");
            let clean = check_sandbox_path(dir).map_err(|reason| {
                invalid(field.clone(), format!("`{}` {reason}", dir.display()))
            })?;
            if let Some(reserved) = is_reserved(&clean) {
                return Err(invalid(
                    field,
                    format!(
                        "`{}` would hide the sandbox's `{reserved}` (the sandbox provides {})",
                        dir.display(),
                        RESERVED.join(", ")
                    ),
                ));
            }
        }
        if !config.shell.is_absolute() {
            return Err(invalid(
                "shell".into(),
                format!(
                    "`{}` must be an absolute path inside the sandbox",
                    config.shell.display()
                ),
            ));
        }
        if config.hostname.is_empty()
            || config.hostname.len() > 64
            || config.hostname.contains('\0')
        {
            return Err(invalid(
                "hostname".into(),
                format!(
                    "`{}` must be 1 to 64 bytes without NUL",
                    config.hostname.escape_debug()
                ),
            ));
        }
        if config.tmpfs_size < MIN_TMPFS_SIZE {
            return Err(invalid(
                "tmpfs_size".into(),
                format!(
                    "{} bytes is too small for a usable /tmp (at least {MIN_TMPFS_SIZE})",
                    config.tmpfs_size
                ),
            ));
        }
        Ok(config)
    }

    /// Compiles the filter [`seccomp`](Self::seccomp) names (`None` for
    /// `unconfined`), reading the profile file if it names one.
    ///
    /// Fails with [`Error::Spec`] naming `namespace.seccomp` when the
    /// profile cannot be read or is not a profile berth supports (the
    /// message names the field inside it), or when this architecture has
    /// no seccomp filters.
    pub fn seccomp_filter(&self, spec: &EnvironmentSpec) -> Result<Option<Filter>> {
        self.seccomp
            .load(spec, &format!("{}.seccomp", spec.backend_type))
    }
}
