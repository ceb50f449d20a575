//! `trackrelay stats`: a route's figures in the terminal, from the same
//! code as `GET /v1/routes/{id}/stats` (same parameters, same JSON with
//! `--json`).

use std::process::ExitCode;

use anyhow::Context;
use serde_json::Value;

#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(flatten)]
    pub config: super::ConfigArg,
    /// Only this route (default: every route of the config).
    #[arg(long)]
    pub route: Option<String>,
    /// Start (RFC 3339 time or a date, UTC); default 30 days before --to.
    #[arg(long)]
    pub from: Option<String>,
    /// End (excluded); default now.
    #[arg(long)]
    pub to: Option<String>,
    /// `hour` or `day` buckets.
    #[arg(long, default_value = "day")]
    pub interval: String,
    /// Count machine activity too (scanners, proxies, previews).
    #[arg(long)]
    pub include_machine: bool,
    /// Print the API's JSON, one line per route.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let config = super::load_config(&args.config)?;
    let routes: Vec<String> = config.routes.iter().map(|r| r.id.clone()).collect();
    let wanted: Vec<String> = match &args.route {
        Some(r) => vec![r.clone()],
        None => routes.clone(),
    };
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (key, value) in [("from", &args.from), ("to", &args.to)] {
        if let Some(v) = value {
            query.append_pair(key, v);
        }
    }
    query.append_pair("interval", &args.interval);
    query.append_pair(
        "include_machine",
        if args.include_machine {
            "true"
        } else {
            "false"
        },
    );
    let query = query.finish();
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
        for id in &wanted {
            let v = crate::api::route_stats(&storage, &routes, id, Some(&query))
                .await
                .map_err(|e| anyhow::anyhow!("--route {id}: {e}"))?;
            if args.json {
                crate::outln!("{v}");
            } else {
                print_table(&v)?;
            }
        }
        anyhow::Ok(())
    })?;
    Ok(ExitCode::SUCCESS)
}

fn print_table(v: &Value) -> std::io::Result<()> {
    let n = |b: &Value, k: &str| b[k].as_u64().unwrap_or(0);
    let rate = |b: &Value, k: &str| {
        b[k].as_f64()
            .map_or_else(|| "-".to_owned(), |r| format!("{:.1}%", r * 100.0))
    };
    crate::outln!(
        "route {} from {} to {}{}",
        v["route"].as_str().unwrap_or(""),
        v["from"].as_str().unwrap_or(""),
        v["to"].as_str().unwrap_or(""),
        if v["include_machine"] == true {
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
    let rows = v["buckets"].as_array().into_iter().flatten();
    for b in rows.chain(std::iter::once(&v["totals"])) {
        let start = b["start"].as_str().unwrap_or("total");
        crate::outln!(
            "{:<22} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
            start,
            n(b, "relayed"),
            n(b, "opens"),
            n(b, "unique_opens"),
            n(b, "clicks"),
            n(b, "unique_clicks"),
            rate(b, "open_rate"),
            rate(b, "click_rate"),
        );
    }
    Ok(())
}
