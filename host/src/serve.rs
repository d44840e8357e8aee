//! `berth serve`: this host's registry over HTTP, for `type: api` clients.
//!
//! It logs at info unless `RUST_LOG` says otherwise: each session's opening
//! and closing (its id, type and client) is the server's record of use. It
//! keeps the warm pools docker specs ask for (`docker.pool`) unless told
//! not to, and removes their containers when it stops.

use anyhow::Context as _;
use runtime_api::Token;
use runtime_api::server::{self, ServeConfig};

use crate::cli::{GlobalArgs, ServeArgs};
use crate::{ExitCode, temp_root};

pub(crate) async fn serve(args: &ServeArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        // Each error names the file and the fix in one line.
        Some(file) => {
            let token = Token::from_file(file)?;
            token
                .check_server_strength()
                .map_err(|err| anyhow::anyhow!("the token file `{}`: {err}", file.display()))?;
            token
        }
        None => match std::env::var("BERTH_TOKEN") {
            Ok(text) => {
                let token = Token::new(text).context("reading $BERTH_TOKEN")?;
                token
                    .check_server_strength()
                    .map_err(|err| anyhow::anyhow!("$BERTH_TOKEN: {err}"))?;
                token
            }
            Err(_) => {
                let token = Token::generate();
                eprintln!("berth serve: token for this run: {}", token.reveal());
                token
            }
        },
    };
    raise_descriptor_limit();
    let (mut registry, plugins) = crate::backends::load(global.plugin_dir.as_deref())?;
    crate::backends::warn_problems(&plugins);
    if args
        .backends
        .iter()
        .any(|name| name == runtime_api::TYPE_NAME)
    {
        anyhow::bail!(
            "--backend {}: a berth server does not relay sessions to another server; serve the \
             backends that run commands (`berth plugins` lists them)",
            runtime_api::TYPE_NAME
        );
    }
    if !args.backends.is_empty() {
        registry
            .restrict_to(&args.backends)
            .map_err(|err| crate::backends::explain_unknown(err, &plugins))
            .context("choosing the backends to serve (--backend)")?;
    }
    eprintln!(
        "berth serve: serving backends: {}",
        server::served_types(&registry).join(", ")
    );
    let config = ServeConfig::new(token, registry.shared())
        .listen(args.listen)
        .work_root(temp_root(global))
        .shutdown(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("installing a SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        });
    let server = server::bind(config).await.context("starting the server")?;
    eprintln!("berth serve: listening on http://{}", server.local_addr());
    // A long-lived server is where warm pools pay: a spec with
    // `docker.pool` gets its containers started ahead of its sessions.
    runtime_docker::keep_warm_pools(!args.no_warm_pools);
    let served = server.run().await.context("serving");
    // Whether serving ended well or not, no warm container outlives it.
    runtime_docker::keep_warm_pools(false);
    runtime_docker::drain_warm_pools().await;
    served?;
    Ok(ExitCode(0))
}

/// Raises the soft limit on open descriptors to the hard limit: every
/// connection and every running command holds some, and the server bounds
/// its connections itself.
fn raise_descriptor_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "reading the descriptor limit");
        return;
    }
    if limit.rlim_cur >= limit.rlim_max {
        return;
    }
    let raised = libc::rlimit {
        rlim_cur: limit.rlim_max,
        rlim_max: limit.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we own.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } != 0 {
        tracing::warn!(error = %std::io::Error::last_os_error(), "raising the descriptor limit");
    } else {
        tracing::debug!(
            from = limit.rlim_cur,
            to = limit.rlim_max,
            "raised the descriptor limit"
        );
    }
}
