//! `stet-bench`: a load generator that speaks etcd's v3 gRPC API, so it measures stet and etcd the
//! same way. `put` times puts of random keys; `range` first writes every key of the key space
//! (untimed), then times single-key ranges of random keys; `pages` lists every key page by page
//! as kube-apiserver does, timing each page. Prints a summary, or with `--json` one
//! line of JSON on stdout (the summary then goes to stderr). Exit 1 if it cannot connect or fill.

use std::process::ExitCode;
use std::time::Duration;

/// mimalloc, as the `stet` binary: the load generator shares the machine with the server it
/// measures, so what it spends allocating is taken from the server, whichever server it is.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::{Args, Parser, Subcommand, ValueEnum};
mod connection;
mod load;
mod summary;

use load::{Op, Plan, Workload};
use summary::Summary;

#[derive(Debug, Parser)]
#[command(
    name = "stet-bench",
    about = "Put and range load over etcd's v3 gRPC API, for stet or etcd",
    disable_version_flag = true
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    common: Common,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Time puts of random keys from the key space.
    Put,
    /// Put every key of the key space (untimed), then time single-key ranges of random keys.
    Range {
        /// l: linearizable (etcd's default), s: serializable (served from the member's own state).
        #[arg(long, value_enum, default_value_t = Consistency::L)]
        consistency: Consistency,
    },
    /// One client lists every key page by page, as kube-apiserver's pager: each later page at
    /// the first page's revision from the key after the last; times each page (`--total`
    /// counts pages) and checks every page's count.
    Pages {
        /// Keys per page (kube-apiserver asks for 500).
        #[arg(long, default_value_t = 500)]
        page_size: i64,
    },
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Consistency {
    L,
    S,
}

#[derive(Debug, Args)]
struct Common {
    /// Client URLs, comma-separated; connections are spread over them round-robin.
    #[arg(
        long,
        global = true,
        value_delimiter = ',',
        default_value = "http://127.0.0.1:2379"
    )]
    endpoints: Vec<String>,
    /// gRPC connections (M); the clients share them round-robin.
    #[arg(long, global = true, default_value_t = 1)]
    conns: usize,
    /// Concurrent clients (N), each with one request in flight.
    #[arg(long, global = true, default_value_t = 1)]
    clients: usize,
    /// Requests to time, shared by the clients [default: 10000 unless --duration].
    #[arg(long, global = true, conflicts_with = "duration")]
    total: Option<u64>,
    /// Time the phase for this many seconds instead of a number of requests.
    #[arg(long, global = true)]
    duration: Option<f64>,
    /// Key size in bytes (keys are zero-padded decimal indices).
    #[arg(long, global = true, default_value_t = 8)]
    key_size: usize,
    /// Value size in bytes.
    #[arg(long, global = true, default_value_t = 8)]
    val_size: usize,
    /// Keys are drawn uniformly from this many.
    #[arg(long, global = true, default_value_t = 1000)]
    key_space: u64,
    /// Seed of the clients' key sequences.
    #[arg(long, global = true, default_value_t = 1)]
    seed: u64,
    /// Seconds before an unanswered request counts as an error.
    #[arg(long, global = true, default_value_t = 10.0)]
    timeout: f64,
    /// Print one JSON line on stdout (the human-readable summary goes to stderr).
    #[arg(long, global = true)]
    json: bool,
}

fn seconds(flag: &str, value: f64) -> Result<Duration, String> {
    Duration::try_from_secs_f64(value)
        .ok()
        .filter(|d| !d.is_zero())
        .ok_or_else(|| format!("--{flag} must be a positive number of seconds, not {value}"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let common = &cli.common;
    let parsed = (|| -> Result<(Workload, Plan), String> {
        let plan = match common.duration {
            Some(d) => Plan::Duration(seconds("duration", d)?),
            None => Plan::Total(common.total.unwrap_or(10_000)),
        };
        let workload = Workload {
            endpoints: common.endpoints.clone(),
            conns: common.conns,
            clients: common.clients,
            key_size_bytes: common.key_size,
            val_size_bytes: common.val_size,
            key_space: common.key_space,
            seed: common.seed,
            request_timeout: seconds("timeout", common.timeout)?,
        };
        workload.check().map_err(|error| error.to_string())?;
        Ok((workload, plan))
    })();
    let (workload, plan) = match parsed {
        Ok(parsed) => parsed,
        Err(error) => {
            eprintln!("stet-bench: error: {error}");
            return ExitCode::from(2);
        }
    };
    let op = match cli.command {
        Command::Put => Some(Op::Put),
        Command::Range { consistency } => Some(Op::Range {
            serializable: matches!(consistency, Consistency::S),
        }),
        Command::Pages { .. } => None,
    };
    let page_size = match cli.command {
        Command::Pages { page_size } => page_size,
        _ => 0,
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("stet-bench: error: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let measured = match op {
        Some(op) => runtime.block_on(measure(&workload, op, plan)),
        None => runtime.block_on(measure_pages(&workload, page_size, plan)),
    };
    match measured {
        Ok(summary) => {
            if common.json {
                eprint!("{summary}");
                println!("{}", summary.json_line());
            } else {
                print!("{summary}");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("stet-bench: error: {error}");
            ExitCode::FAILURE
        }
    }
}

async fn measure(workload: &Workload, op: Op, plan: Plan) -> Result<Summary, load::BenchError> {
    let connections = load::connect(workload).await?;
    if let Op::Range { .. } = op {
        load::fill(&connections, workload).await?;
    }
    let report = load::run(&connections, workload, op, plan).await?;
    Ok(Summary::new(op.name(), report))
}

async fn measure_pages(
    workload: &Workload,
    page_size: i64,
    plan: Plan,
) -> Result<Summary, load::BenchError> {
    let connections = load::connect(workload).await?;
    let report = load::list_pages(&connections, workload, page_size, plan).await?;
    Ok(Summary::new("page", report))
}
