//! `berth completions SHELL` and `berth man`: shell completions and manual
//! pages, both generated from the command line's own definitions
//! ([`crate::cli::Cli`]), so they always describe the binary that prints
//! them.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use clap_complete::Shell;

use crate::ExitCode;

/// Print a completion script for a shell.
///
/// Load it for this shell session (`source <(berth completions bash)`), or
/// install it where the shell looks for completions.
#[derive(Debug, Args)]
#[command(
    after_help = "Install:\n  berth completions bash > ~/.local/share/bash-completion/completions/berth\n  berth completions zsh > ~/.zfunc/_berth          # with fpath+=(~/.zfunc) in ~/.zshrc\n  berth completions fish > ~/.config/fish/completions/berth.fish"
)]
pub(crate) struct CompletionsArgs {
    /// The shell
    #[arg(value_enum, value_name = "SHELL")]
    pub(crate) shell: Shell,
}

/// Print berth's manual page (roff), or write one page per command.
///
/// Without `--out-dir`, prints `berth(1)` on stdout (`berth man | man -l
/// -`). With it, writes `berth.1` and a page for every command
/// (`berth-run.1`, `berth-plugins-test.1`, ...) into DIR, which is created
/// when missing.
#[derive(Debug, Args)]
#[command(after_help = "Install:\n  berth man --out-dir ~/.local/share/man/man1 && man berth-run")]
pub(crate) struct ManArgs {
    /// Write every page into this directory instead
    #[arg(long, value_name = "DIR")]
    pub(crate) out_dir: Option<PathBuf>,
}

/// The command line as the pages and completions describe it.
fn definitions() -> clap::Command {
    crate::cli::command()
}

/// `berth completions SHELL`.
pub(crate) fn completions(args: &CompletionsArgs) -> anyhow::Result<ExitCode> {
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut definitions(), "berth", &mut script);
    let mut out = std::io::stdout().lock();
    out.write_all(&script)?;
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// `berth man [--out-dir DIR]`.
pub(crate) fn man(args: &ManArgs) -> anyhow::Result<ExitCode> {
    match &args.out_dir {
        None => {
            let page = render(definitions())?;
            let mut out = std::io::stdout().lock();
            out.write_all(&page)?;
            out.flush()?;
        }
        Some(dir) => {
            for (name, page) in pages()? {
                write_page(dir, &name, &page)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn write_page(dir: &Path, name: &str, page: &[u8]) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating `{}`", dir.display()))?;
    let path = dir.join(name);
    std::fs::write(&path, page).with_context(|| format!("writing `{}`", path.display()))
}

/// The roff of one command's page.
fn render(command: clap::Command) -> anyhow::Result<Vec<u8>> {
    let mut page = Vec::new();
    clap_mangen::Man::new(command)
        .render(&mut page)
        .context("rendering the manual page")?;
    Ok(page)
}

/// Every page: `berth.1`, then one per command and subcommand
/// (`berth-plugins-test.1`), each with its file name.
fn pages() -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    fn walk(command: &clap::Command, pages: &mut Vec<(String, Vec<u8>)>) -> anyhow::Result<()> {
        let man = clap_mangen::Man::new(command.clone());
        let name = man.get_filename();
        let mut page = Vec::new();
        man.render(&mut page).context("rendering the manual page")?;
        pages.push((name, page));
        for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
            walk(sub, pages)?;
        }
        Ok(())
    }
    // Built, subcommands carry their display names (`berth-run`).
    let mut command = definitions().disable_help_subcommand(true);
    command.build();
    let mut pages = Vec::new();
    walk(&command, &mut pages)?;
    Ok(pages)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every command of the definitions, with its path (`berth plugins
    /// test`).
    fn commands() -> Vec<(String, clap::Command)> {
        fn walk(prefix: &str, command: &clap::Command, out: &mut Vec<(String, clap::Command)>) {
            let path = if prefix.is_empty() {
                command.get_name().to_owned()
            } else {
                format!("{prefix}-{}", command.get_name())
            };
            out.push((path.clone(), command.clone()));
            for sub in command.get_subcommands().filter(|s| !s.is_hide_set()) {
                walk(&path, sub, out);
            }
        }
        let mut command = definitions().disable_help_subcommand(true);
        command.build();
        let mut out = Vec::new();
        walk("", &command, &mut out);
        out
    }

    #[test]
    fn there_is_a_page_for_every_command_holding_every_option() {
        let pages = pages().unwrap();
        let names: Vec<&str> = pages.iter().map(|(name, _)| name.as_str()).collect();
        let commands = commands();
        assert!(commands.len() > 8, "{names:?}");
        for (path, command) in commands {
            let file = format!("{path}.1");
            let (_, page) = pages
                .iter()
                .find(|(name, _)| *name == file)
                .unwrap_or_else(|| panic!("no page {file} among {names:?}"));
            let page = String::from_utf8(page.clone()).unwrap();
            assert!(page.starts_with(".ie"), "{file}: {page}");
            assert!(page.contains(&format!(".TH {path} 1")), "{file}");
            for arg in command.get_arguments().filter(|a| !a.is_hide_set()) {
                if let Some(long) = arg.get_long() {
                    // roff writes each `-` as `\-`.
                    let flag = format!("\\-\\-{}", long.replace('-', "\\-"));
                    assert!(page.contains(&flag), "{file} lacks {flag}");
                }
            }
            if let Some(about) = command.get_about() {
                // The words up to the first that roff would escape.
                let plain: String = about
                    .to_string()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == ' ')
                    .collect();
                assert!(plain.len() > 3, "{file}: `{about}`");
                assert!(page.contains(&plain), "{file} lacks `{plain}`");
            }
        }
    }

    #[test]
    fn the_printed_page_is_the_top_commands() {
        let printed = render(definitions()).unwrap();
        let text = String::from_utf8(printed).unwrap();
        assert!(text.contains(".TH berth 1"), "{text}");
        for sub in definitions().get_subcommands() {
            assert!(
                text.contains(sub.get_name()),
                "the page lacks {}",
                sub.get_name()
            );
        }
    }
}
