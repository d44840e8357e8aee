//! The backend registry: `type` name → backend, built-ins and plugins alike.
//!
//! Built-in backends register themselves with [`register_backend!`]
//! (through `inventory`); the host adds plugins with
//! [`Registry::register`]. [`Registry::spawn_runtime`] is the one path from
//! a spec to a runtime: one lookup, no backend named anywhere in this crate.

use std::sync::Arc;

use indexmap::IndexMap;

use crate::error::{Error, Result};
use crate::runtime::{BackendInfo, BackendOrigin, BackendRef, Runtime, SpawnContext};
use crate::spec::EnvironmentSpec;

/// A built-in backend's entry, submitted with [`register_backend!`].
#[derive(Debug)]
pub struct BackendRegistration {
    /// The spec `type` it serves.
    pub type_name: &'static str,
    /// The module that registered it (shown by `berth plugins`).
    pub source: &'static str,
    /// Creates the backend.
    pub factory: fn() -> BackendRef,
}

inventory::collect!(BackendRegistration);

/// Registers a built-in backend under a `type` name:
/// `register_backend!("local", || Arc::new(LocalBackend::default()));`
///
/// A crate that only registers a backend must still be referenced by the
/// final binary (`use runtime_local as _;`), or the linker drops it.
#[macro_export]
macro_rules! register_backend {
    ($type_name:expr, $factory:expr) => {
        $crate::inventory::submit! {
            $crate::registry::BackendRegistration {
                type_name: $type_name,
                source: ::core::module_path!(),
                factory: $factory,
            }
        }
    };
}

struct Entry {
    backend: BackendRef,
    origin: BackendOrigin,
}

/// The backends a host knows, by `type` name, in registration order.
#[derive(Default)]
pub struct Registry {
    entries: IndexMap<String, Entry>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map()
            .entries(self.entries.iter().map(|(k, e)| (k, &e.origin)))
            .finish()
    }
}

impl Registry {
    /// A registry with nothing in it.
    pub fn empty() -> Registry {
        Registry::default()
    }

    /// A registry with every built-in backend linked into this binary.
    /// Two built-ins claiming one `type` is [`Error::DuplicateBackend`].
    pub fn with_builtins() -> Result<Registry> {
        let mut registry = Registry::empty();
        let mut registrations: Vec<&BackendRegistration> =
            inventory::iter::<BackendRegistration>().collect();
        registrations.sort_by_key(|r| (r.type_name, r.source));
        for registration in registrations {
            let backend = (registration.factory)();
            let declared = backend.type_name();
            if declared != registration.type_name {
                return Err(Error::Backend {
                    backend: registration.type_name.to_owned(),
                    message: format!(
                        "registered as `{}` by {} but calls itself `{declared}`",
                        registration.type_name, registration.source
                    ),
                });
            }
            registry.register(
                backend,
                BackendOrigin::BuiltIn(registration.source.to_owned()),
            )?;
        }
        Ok(registry)
    }

    /// Adds a backend under the `type` its [`BackendInfo`] declares. A type
    /// already present is [`Error::DuplicateBackend`], naming both origins;
    /// the registry is unchanged.
    pub fn register(&mut self, backend: BackendRef, origin: BackendOrigin) -> Result<()> {
        let type_name = backend.type_name();
        if let Some(existing) = self.entries.get(&type_name) {
            return Err(Error::DuplicateBackend {
                type_name,
                first: existing.origin.to_string(),
                second: origin.to_string(),
            });
        }
        self.entries.insert(type_name, Entry { backend, origin });
        Ok(())
    }

    /// The backend for `type_name`, or [`Error::UnknownBackend`] listing
    /// the registered types.
    pub fn get(&self, type_name: &str) -> Result<&BackendRef> {
        self.entries
            .get(type_name)
            .map(|e| &e.backend)
            .ok_or_else(|| Error::UnknownBackend {
                requested: type_name.to_owned(),
                registered: self.types().join(", "),
            })
    }

    /// Keeps only the backends whose types `types` names (a server that
    /// offers its clients some backends and not others). A name that is not
    /// registered is [`Error::UnknownBackend`], and the registry is then
    /// unchanged.
    pub fn restrict_to(&mut self, types: &[String]) -> Result<()> {
        if let Some(missing) = types.iter().find(|name| !self.entries.contains_key(*name)) {
            return Err(Error::UnknownBackend {
                requested: missing.clone(),
                registered: self.types().join(", "),
            });
        }
        self.entries.retain(|name, _| types.contains(name));
        Ok(())
    }

    /// The registered types, in registration order.
    pub fn types(&self) -> Vec<String> {
        self.entries.keys().cloned().collect()
    }

    /// Every backend's info and origin.
    pub fn describe(&self) -> Vec<(BackendInfo, BackendOrigin)> {
        self.entries
            .values()
            .map(|e| (e.backend.info(), e.origin.clone()))
            .collect()
    }

    /// Looks the spec's `type` up, validates the spec with that backend and
    /// spawns a runtime.
    pub async fn spawn_runtime(
        &self,
        spec: &EnvironmentSpec,
        ctx: SpawnContext,
    ) -> Result<Box<dyn Runtime>> {
        let backend = self.get(&spec.backend_type)?;
        backend.validate(spec)?;
        backend.spawn(spec, ctx).await
    }

    /// Wraps the registry for sharing between sessions.
    pub fn shared(self) -> Arc<Registry> {
        Arc::new(self)
    }
}
