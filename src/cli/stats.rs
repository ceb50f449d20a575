//! `trackrelay stats`: the figures of a route, a tag (within a route with
//! `--route`), or a message as sent (`--message`) in the terminal: the
//! same [`crate::report::Report`] as `GET /v1/stats`, as a table or, with
//! `--json`, the API's JSON.

use std::process::ExitCode;

use anyhow::Context;

use crate::report::{self, Figures, Interval, Query, Report, Scope};

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Only this route (default: every route of the config).
    #[arg(long)]
    pub route: Option<String>,
    /// Only copies carrying this X-LM-Tag (within --route if given).
    #[arg(long)]
    pub tag: Option<String>,
    /// The message as sent: every copy with this Message-ID header (with
    /// or without <>).
    #[arg(long, conflicts_with_all = ["route", "tag"])]
    pub message: Option<String>,
    /// Start (RFC 3339 time or a date, UTC); default 30 days before --to.
    #[arg(long)]
    pub from: Option<String>,
    /// End (excluded); default the end of the current hour.
    #[arg(long)]
    pub to: Option<String>,
    /// Bucket length.
    #[arg(long, value_enum, default_value = "day")]
    pub interval: Interval,
    /// Count machine activity too (scanners, proxies, previews).
    #[arg(long)]
    pub include_machine: bool,
    /// Print the API's JSON, one line per report.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let routes: Vec<String> = config.routes.iter().map(|r| r.id.clone()).collect();
    let time = |flag: &str, text: &Option<String>| -> anyhow::Result<Option<i64>> {
        text.as_deref()
            .map(|t| {
                crate::time::parse(t)
                    .map(|t| t.as_millisecond())
                    .map_err(|_| {
                        anyhow::anyhow!(
                            "--{flag} must be an RFC 3339 time or a date (2026-11-27), not {t:?}"
                        )
                    })
            })
            .transpose()
    };
    let (from_ms, to_ms) = (time("from", &args.from)?, time("to", &args.to)?);
    let queries = scopes(args, &routes)
        .into_iter()
        .map(|scope| {
            Query::new(
                scope,
                from_ms,
                to_ms,
                args.interval,
                args.include_machine,
                &routes,
            )
            .map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async {
        let storage = crate::storage::Storage::connect(
            &config.storage,
            crate::storage::DEFAULT_QUEUE_CAPACITY,
        )
        .await?;
        for q in &queries {
            let r = report::run(&storage, q).await?;
            if args.json {
                crate::outln!("{}", serde_json::to_string(&r)?);
            } else {
                print_table(&r)?;
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

/// What the flags ask for: a message, a tag (in a route or across them),
/// one route, or every route of the config.
fn scopes(args: &Args, routes: &[String]) -> Vec<Scope> {
    match (&args.message, &args.route, &args.tag) {
        (Some(m), _, _) => vec![Scope::Message(m.clone())],
        (None, None, Some(t)) => vec![Scope::Tag(t.clone())],
        (None, Some(id), tag) => vec![Scope::Route {
            id: id.clone(),
            tag: tag.clone(),
        }],
        (None, None, None) => routes
            .iter()
            .map(|id| Scope::Route {
                id: id.clone(),
                tag: None,
            })
            .collect(),
    }
}

fn print_table(r: &Report) -> std::io::Result<()> {
    let what = [
        r.route.as_ref().map(|v| format!("route {v}")),
        r.tag.as_ref().map(|v| format!("tag {v}")),
        r.message_id.as_ref().map(|v| format!("message <{v}>")),
    ];
    let what: Vec<String> = what.into_iter().flatten().collect();
    crate::outln!(
        "{} from {} to {}{}",
        what.join(", "),
        r.from,
        r.to,
        if r.include_machine {
            " (machine activity included)"
        } else {
            ""
        }
    );
    crate::outln!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        "start",
        "relayed",
        "opens",
        "u.opens",
        "clicks",
        "u.clicks",
        "open%",
        "click%"
    );
    let rows = r.buckets.iter().map(|b| (b.start.as_str(), &b.figures));
    for (start, f) in rows.chain(std::iter::once(("total", &r.totals))) {
        row(start, f)?;
    }
    if !r.links.is_empty() {
        crate::outln!("{:>8} {:>8}  link", "clicks", "u.clicks");
        for l in &r.links {
            crate::outln!("{:>8} {:>8}  {}", l.clicks, l.unique_clicks, l.url);
        }
    }
    Ok(())
}

fn row(start: &str, f: &Figures) -> std::io::Result<()> {
    let rate = |r: Option<f64>| r.map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0));
    crate::outln!(
        "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
        start,
        f.relayed,
        f.opens,
        f.unique_opens,
        f.clicks,
        f.unique_clicks,
        rate(f.open_rate),
        rate(f.click_rate),
    );
    Ok(())
}
