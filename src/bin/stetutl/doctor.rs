//! `stetutl doctor [--offline] [-w json] [the member's flags]`: examines the data directory and
//! settings a member would start with — its flags after the doctor's own, and the `ETCD_*`
//! variables of the environment, read exactly as `stet` reads them — and the live members its
//! data names, and explains each problem with its fix (`stet::server::doctor`). Exits 1 when it
//! finds a problem, so scripts and supervisors can use it.

use stet::server::config;
use stet::server::doctor::{self, Severity};

use crate::Output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Output: simple lines or JSON.
    #[arg(short = 'w', long = "write-out", value_enum, default_value_t = Output::Simple)]
    write_out: Output,
    /// Do not ask the live members (their cluster and clocks).
    #[arg(long)]
    offline: bool,
    /// The member's flags, as `stet` takes them (e.g. `--data-dir D --name m1 ...`).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    flags: Vec<String>,
}

pub fn run(args: &Args) -> Result<(), String> {
    let argv = std::iter::once("stet".to_string()).chain(args.flags.iter().cloned());
    let config = match config::parse(argv, |name| std::env::var_os(name)) {
        Ok(Some(config)) => config,
        Ok(None) => return Err("--version is not a member's setting".to_string()),
        Err(error) => {
            return Err(format!(
            "the flags would not start a member: {error} (fix the flag or ETCD_* variable named)"
        ))
        }
    };
    let depth = match args.offline {
        true => doctor::Depth::Offline,
        false => doctor::Depth::Full,
    };
    let findings = doctor::examine(&config, depth);
    let problems = findings
        .iter()
        .filter(|f| f.severity == Severity::Problem)
        .count();
    match args.write_out {
        Output::Simple => {
            print!("{}", doctor::render(&findings));
            if problems == 0 {
                println!("no problems found in {}", config.data_dir.display());
            }
        }
        Output::Json => {
            let list: Vec<serde_json::Value> = findings
                .iter()
                .map(|f| {
                    serde_json::json!({
                        "severity": match f.severity {
                            Severity::Problem => "problem",
                            Severity::Note => "note",
                        },
                        "what": f.what,
                        "fix": f.fix,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({ "problems": problems, "findings": list })
            );
        }
    }
    match problems {
        0 => Ok(()),
        1 => Err("1 problem found".to_string()),
        n => Err(format!("{n} problems found")),
    }
}
