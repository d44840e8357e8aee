//! `berth serve`: this host's registry over HTTP, for `type: api` clients.

use anyhow::Context as _;
use runtime_api::Token;
use runtime_api::server::{self, ServeConfig};

use crate::ExitCode;
use crate::cli::{GlobalArgs, ServeArgs};

pub(crate) async fn serve(args: &ServeArgs, global: &GlobalArgs) -> anyhow::Result<ExitCode> {
    let token = match &args.token_file {
        Some(file) => Token::from_file(file).context("reading the token file")?,
        None => match std::env::var("BERTH_TOKEN") {
            Ok(text) => Token::new(text).context("reading $BERTH_TOKEN")?,
            Err(_) => {
                let token = Token::generate();
                eprintln!("berth serve: token for this run: {}", token.reveal());
                token
            }
        },
    };
    let (registry, _plugins) = crate::backends::load(global.plugin_dir.as_deref())?;
    let config = ServeConfig::new(token, registry.shared())
        .listen(args.listen)
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
    server.run().await.context("serving")?;
    Ok(ExitCode(0))
}
