//! `trackrelay man`: the man page, generated from the clap definitions
//! (as ripgrep does), so it never disagrees with `--help`. One page,
//! trackrelay(1): the synopsis and global options, then a section per
//! subcommand with its own synopsis and options (nested ones included).

use std::io::Write;
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;
use clap_mangen::Man;
use clap_mangen::roff::{Roff, bold, roman};

#[derive(Debug, clap::Args)]
pub struct Args {}

pub fn run(_args: &Args) -> anyhow::Result<ExitCode> {
    let page = render()?;
    std::io::stdout()
        .lock()
        .write_all(&page)
        .context("writing the man page")?;
    Ok(ExitCode::SUCCESS)
}

/// The whole page as roff.
pub fn render() -> anyhow::Result<Vec<u8>> {
    let mut cmd = super::Cli::command();
    cmd.build();
    let man = Man::new(cmd.clone()).section("1");
    let mut out = Vec::new();
    man.render_title(&mut out)?;
    man.render_name_section(&mut out)?;
    man.render_synopsis_section(&mut out)?;
    man.render_description_section(&mut out)?;
    man.render_options_section(&mut out)?;
    let mut roff = Roff::new();
    roff.control("SH", ["COMMANDS"]);
    for sub in cmd.get_subcommands() {
        commands(&mut roff, sub, "trackrelay");
    }
    roff.to_writer(&mut out)?;
    files_section(&mut out)?;
    man.render_version_section(&mut out)?;
    Ok(out)
}

/// One subsection per (nested) subcommand: synopsis, about, options.
fn commands(roff: &mut Roff, cmd: &clap::Command, parent: &str) {
    if cmd.is_hide_set() {
        return;
    }
    let path = format!("{parent} {}", cmd.get_name());
    roff.control("SS", [path.as_str()]);
    let mut usage = vec![bold(path.clone())];
    for arg in cmd.get_positionals() {
        usage.push(roman(format!(
            " <{}>",
            arg.get_id().as_str().to_uppercase()
        )));
    }
    if cmd.get_opts().next().is_some() || cmd.get_arguments().any(|a| !a.is_positional()) {
        usage.push(roman(" [OPTIONS]"));
    }
    if cmd.has_subcommands() {
        usage.push(roman(" <COMMAND>"));
    }
    roff.text(usage);
    if let Some(about) = cmd.get_long_about().or(cmd.get_about()) {
        roff.control("PP", []);
        roff.text([roman(about.to_string())]);
    }
    for arg in cmd
        .get_arguments()
        .filter(|a| !a.is_hide_set() && !a.is_global_set())
    {
        option(roff, arg);
    }
    for sub in cmd.get_subcommands() {
        commands(roff, sub, &path);
    }
}

/// An option or positional argument as a tagged paragraph.
fn option(roff: &mut Roff, arg: &clap::Arg) {
    let mut head = Vec::new();
    if let Some(short) = arg.get_short() {
        head.push(bold(format!("-{short}")));
        head.push(roman(", "));
    }
    match arg.get_long() {
        Some(long) => head.push(bold(format!("--{long}"))),
        None => head.push(roman(format!("<{}>", arg.get_id().as_str().to_uppercase()))),
    }
    if arg.get_action().takes_values() && arg.get_long().is_some() {
        let name = arg
            .get_value_names()
            .and_then(|n| n.first())
            .map_or_else(|| arg.get_id().as_str().to_uppercase(), |n| n.to_string());
        head.push(roman(format!(" <{name}>")));
    }
    roff.control("TP", []);
    roff.text(head);
    let mut help = arg
        .get_long_help()
        .or(arg.get_help())
        .map(ToString::to_string)
        .unwrap_or_default();
    if let Some(default) = arg.get_default_values().first() {
        help.push_str(&format!(" [default: {}]", default.to_string_lossy()));
    }
    if let Some(env) = arg.get_env() {
        help.push_str(&format!(" [env: {}]", env.to_string_lossy()));
    }
    roff.text([roman(help)]);
}

/// Where the packaged files are.
fn files_section(out: &mut Vec<u8>) -> std::io::Result<()> {
    let mut roff = Roff::new();
    roff.control("SH", ["FILES"]);
    for (path, what) in [
        (
            "/etc/trackrelay/trackrelay.toml",
            "The configuration; every key is listed there with its default.",
        ),
        (
            "/var/lib/trackrelay/",
            "The database, generated secrets and dir: upstreams (packaged install).",
        ),
        (
            "/usr/share/doc/trackrelay/",
            "README, licences and the third-party notices.",
        ),
    ] {
        roff.control("TP", []);
        roff.text([bold(path)]);
        roff.text([roman(what)]);
    }
    roff.to_writer(out)
}
