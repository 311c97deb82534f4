//! The standard Prometheus process metrics (`process_cpu_seconds_total`,
//! `process_resident_memory_bytes`, `process_open_fds`, ...), which etcd's Go client exports and
//! etcd's dashboards chart, read from `/proc/self` at scrape time. Where `/proc` is missing (not
//! Linux, or the simulator's processes) nothing is reported rather than a made-up value.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Linux reports CPU times in `/proc` in clock ticks of 1/100 s on every architecture
/// (`USER_HZ`), whatever the kernel's own tick rate.
const TICKS_PER_SECOND: f64 = 100.0;

/// What `/proc` says of this process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ProcessStats {
    pub cpu_seconds: f64,
    pub resident_bytes: u64,
    pub virtual_bytes: u64,
    pub start_time_seconds: f64,
    pub open_fds: Option<u64>,
    pub max_fds: Option<u64>,
}

/// Reads `/proc/self`; `None` where it cannot be read.
pub fn read() -> Option<ProcessStats> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let boot_time = std::fs::read_to_string("/proc/stat")
        .ok()
        .and_then(|text| boot_time_seconds(&text));
    let page_bytes = page_size_bytes();
    let mut stats = parse_stat(&stat, page_bytes, boot_time.unwrap_or(0))?;
    stats.open_fds = std::fs::read_dir("/proc/self/fd")
        .ok()
        .map(|entries| entries.count() as u64);
    stats.max_fds = std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|text| max_open_files(&text));
    Some(stats)
}

fn page_size_bytes() -> u64 {
    // SAFETY: sysconf only reads a configuration value.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    u64::try_from(size).ok().filter(|&s| s > 0).unwrap_or(4096)
}

/// `/proc/self/stat`: the fields after the command name (which may hold spaces and parentheses,
/// so the last `)` ends it). Field numbers as in proc(5).
pub fn parse_stat(stat: &str, page_bytes: u64, boot_time_seconds: u64) -> Option<ProcessStats> {
    let after_name = &stat[stat.rfind(')')? + 1..];
    // proc(5) numbers fields from 1 (pid) and 2 (comm); `after_name` starts at field 3.
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let field = |number: usize| -> Option<u64> { fields.get(number - 3)?.parse().ok() };
    let user_ticks = field(14)?;
    let system_ticks = field(15)?;
    let start_ticks = field(22)?;
    Some(ProcessStats {
        cpu_seconds: (user_ticks + system_ticks) as f64 / TICKS_PER_SECOND,
        virtual_bytes: field(23)?,
        resident_bytes: field(24)?.saturating_mul(page_bytes),
        start_time_seconds: boot_time_seconds as f64 + start_ticks as f64 / TICKS_PER_SECOND,
        open_fds: None,
        max_fds: None,
    })
}

/// The `btime` line of `/proc/stat`: when the machine booted, in seconds since the epoch.
pub fn boot_time_seconds(text: &str) -> Option<u64> {
    let line = text.lines().find(|line| line.starts_with("btime "))?;
    line["btime ".len()..].trim().parse().ok()
}

/// The soft limit of `Max open files` in `/proc/self/limits`.
pub fn max_open_files(text: &str) -> Option<u64> {
    let line = text
        .lines()
        .find(|line| line.starts_with("Max open files"))?;
    line["Max open files".len()..]
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Encodes the process metrics on every scrape.
#[derive(Debug)]
pub struct ProcessCollector;

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(stats) = read() else {
            return Ok(());
        };
        let cpu = ConstCounter::new(stats.cpu_seconds);
        cpu.encode(encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            cpu.metric_type(),
        )?)?;
        let start = ConstGauge::new(stats.start_time_seconds);
        start.encode(encoder.encode_descriptor(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds",
            None,
            start.metric_type(),
        )?)?;
        let as_i64 = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let gauges = [
            (
                "process_resident_memory_bytes",
                "Resident memory size in bytes",
                Some(stats.resident_bytes),
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size in bytes",
                Some(stats.virtual_bytes),
            ),
            (
                "process_open_fds",
                "Number of open file descriptors",
                stats.open_fds,
            ),
            (
                "process_max_fds",
                "Maximum number of open file descriptors",
                stats.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            let Some(value) = value else { continue };
            let gauge = ConstGauge::new(as_i64(value));
            gauge.encode(encoder.encode_descriptor(name, help, None, gauge.metric_type())?)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        // A command name with a space and a parenthesis, as a process may be named.
        let stat = "4242 (stet (x) y) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 50 0 0 20 0 \
                    12 0 360000 123456789 2048 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 1";
        let stats = parse_stat(stat, 4096, 1_700_000_000).expect("parses");
        assert_eq!(stats.cpu_seconds, 3.0);
        assert_eq!(stats.virtual_bytes, 123_456_789);
        assert_eq!(stats.resident_bytes, 2048 * 4096);
        assert_eq!(stats.start_time_seconds, 1_700_000_000.0 + 3600.0);
    }

    #[test]
    fn a_truncated_stat_is_not_read() {
        assert_eq!(parse_stat("4242 (stet) S 1 2 3", 4096, 0), None);
        assert_eq!(parse_stat("no parenthesis", 4096, 0), None);
    }

    #[test]
    fn boot_time_and_the_open_files_limit_are_found() {
        assert_eq!(
            boot_time_seconds("cpu 1 2 3\nbtime 1700000000\nprocesses 5\n"),
            Some(1_700_000_000)
        );
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max cpu time              unlimited            unlimited            seconds\n\
                      Max open files            1024                 1048576              files\n";
        assert_eq!(max_open_files(limits), Some(1024));
    }

    #[test]
    fn this_process_is_read_on_linux() {
        if cfg!(target_os = "linux") {
            let stats = read().expect("/proc/self is readable on Linux");
            assert!(stats.resident_bytes > 0, "{stats:?}");
            assert!(stats.open_fds.is_some_and(|n| n > 0), "{stats:?}");
            assert!(stats.start_time_seconds > 1_000_000_000.0, "{stats:?}");
        }
    }
}
