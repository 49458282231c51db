//! `berth bench api`: a small HTTP/1.1 load generator (keep-alive connections, each with one
//! request in flight), so the API's throughput and tail latency can be measured anywhere
//! berth builds, beside the database's own `find_one` rate measured in the same run.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Args;
use mongodb::bson::{Document, doc};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `berth bench api`.
#[derive(Debug, Args)]
pub struct ApiBenchArgs {
    /// Base URL of a running `berth serve` (http only).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// Paths to load, one after the other (e.g. /api/v1/models).
    #[arg(long = "path", required = true)]
    paths: Vec<String>,
    /// Bearer token (or BERTH_TOKEN).
    #[arg(long, env = "BERTH_TOKEN", hide_env_values = true)]
    token: String,
    /// Concurrent keep-alive connections.
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Seconds per path.
    #[arg(long, default_value_t = 5.0)]
    seconds: f64,
    /// Also measure the database's own `find_one` rate by `_id` on this URI's `tasks`.
    #[arg(long)]
    mongodb_uri: Option<String>,
    /// The database of that measurement.
    #[arg(long, default_value = "berth")]
    database: String,
    /// Process id of the server, to report its resident memory before and after.
    #[arg(long)]
    pid: Option<u32>,
}

/// What one load run measured.
struct Figures {
    requests: usize,
    errors: usize,
    seconds: f64,
    latencies_us: Vec<u32>,
}

impl Figures {
    fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return f64::NAN;
        }
        let i = ((self.latencies_us.len() - 1) as f64 * p).round() as usize;
        self.latencies_us[i] as f64 / 1000.0
    }

    fn print(&self, what: &str) {
        println!(
            "{what:<40} {:>9.0} req/s  p50 {:>6.2} ms  p99 {:>6.2} ms  ({} requests, {} errors)",
            self.requests as f64 / self.seconds,
            self.percentile_ms(0.50),
            self.percentile_ms(0.99),
            self.requests,
            self.errors
        );
    }
}

/// Runs the benchmark.
pub fn run(args: ApiBenchArgs) -> Result<()> {
    if args.connections == 0 {
        bail!("--connections: must be at least 1");
    }
    if !(args.seconds.is_finite() && args.seconds > 0.0) {
        bail!("--seconds: must be positive");
    }
    let authority = args
        .url
        .strip_prefix("http://")
        .context("--url: only http:// URLs")?
        .trim_end_matches('/')
        .to_string();
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(async {
        if let Some(pid) = args.pid {
            println!("server RSS before: {}", rss(pid));
        }
        println!("{} connections, {} s per path, against {}", args.connections, args.seconds, args.url);
        for path in &args.paths {
            let figures = load(&authority, path, &args.token, args.connections, args.seconds).await?;
            figures.print(&format!("GET {path}"));
        }
        if let Some(uri) = &args.mongodb_uri {
            let figures = database_load(uri, &args.database, args.connections, args.seconds).await?;
            figures.print("MongoDB find_one by _id (driver)");
        }
        if let Some(pid) = args.pid {
            println!("server RSS after: {}", rss(pid));
        }
        Ok(())
    })
}

fn rss(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(|l| l[6..].trim().to_string()))
        .unwrap_or_else(|| "unknown".into())
}

async fn load(authority: &str, path: &str, token: &str, connections: usize, seconds: f64) -> Result<Figures> {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {authority}\r\nAuthorization: Bearer {token}\r\nAccept: application/json\r\n\r\n"
    );
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut workers = Vec::with_capacity(connections);
    for _ in 0..connections {
        let (authority, request) = (authority.to_string(), request.clone());
        workers.push(tokio::spawn(async move { connection(&authority, request.as_bytes(), deadline).await }));
    }
    let mut figures = Figures { requests: 0, errors: 0, seconds: 0.0, latencies_us: Vec::new() };
    for worker in workers {
        let (latencies, errors) = worker.await??;
        figures.requests += latencies.len();
        figures.errors += errors;
        figures.latencies_us.extend(latencies);
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures.latencies_us.sort_unstable();
    Ok(figures)
}

/// One keep-alive connection sending `request` until `deadline`: latencies (µs) of the
/// answers, and how many were not 2xx.
async fn connection(authority: &str, request: &[u8], deadline: Instant) -> Result<(Vec<u32>, usize)> {
    let mut stream = TcpStream::connect(authority)
        .await
        .with_context(|| format!("--url: cannot connect to {authority}"))?;
    stream.set_nodelay(true)?;
    let (mut latencies, mut errors) = (Vec::new(), 0);
    let mut buffer = Vec::with_capacity(16 * 1024);
    while Instant::now() < deadline {
        let sent = Instant::now();
        stream.write_all(request).await?;
        let status = read_response(&mut stream, &mut buffer).await?;
        latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
        if !(200..300).contains(&status) {
            errors += 1;
        }
    }
    Ok((latencies, errors))
}

/// Reads one response with a Content-Length body; returns its status.
async fn read_response(stream: &mut TcpStream, buffer: &mut Vec<u8>) -> Result<u16> {
    buffer.clear();
    let mut chunk = [0u8; 8192];
    let header_end = loop {
        if let Some(i) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection");
        }
        buffer.extend_from_slice(&chunk[..n]);
    };
    let head = std::str::from_utf8(&buffer[..header_end]).context("response head is not UTF-8")?;
    let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).context("no status line")?;
    let length: usize = head
        .lines()
        .find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case("content-length")))
        .and_then(|(_, v)| v.trim().parse().ok())
        .context("response without Content-Length")?;
    let mut have = buffer.len() - header_end;
    while have < length {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            bail!("the server closed the connection mid-body");
        }
        have += n;
    }
    Ok(status)
}

/// `find_one` by `_id` of the newest task, from `connections` concurrent tasks.
async fn database_load(uri: &str, database: &str, connections: usize, seconds: f64) -> Result<Figures> {
    let client = mongodb::Client::with_uri_str(uri).await.context("--mongodb-uri")?;
    let tasks = client.database(database).collection::<Document>("tasks");
    let newest =
        tasks.find_one(doc! {}).sort(doc! {"_id": -1}).await?.context("no task to read in that database")?;
    let id = newest.get("_id").cloned().context("task without _id")?;
    let started = Instant::now();
    let deadline = started + Duration::from_secs_f64(seconds);
    let mut workers = Vec::new();
    for _ in 0..connections {
        let (tasks, id) = (tasks.clone(), id.clone());
        workers.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            while Instant::now() < deadline {
                let sent = Instant::now();
                tasks.find_one(doc! {"_id": id.clone()}).await?;
                latencies.push(sent.elapsed().as_micros().min(u32::MAX as u128) as u32);
            }
            Ok::<_, mongodb::error::Error>(latencies)
        }));
    }
    let mut figures = Figures { requests: 0, errors: 0, seconds: 0.0, latencies_us: Vec::new() };
    for worker in workers {
        let latencies = worker.await??;
        figures.requests += latencies.len();
        figures.latencies_us.extend(latencies);
    }
    figures.seconds = started.elapsed().as_secs_f64();
    figures.latencies_us.sort_unstable();
    Ok(figures)
}
