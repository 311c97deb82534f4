//! Clock skew between members: every `CHECK_INTERVAL` (first soon after start) this member dials
//! each peer once (a `Probe` handshake) and compares the wall clock the peer put in its
//! `Welcome` with the middle of its own clock readings around the dial. An offset over
//! `MAX_SKEW_MICROS` is logged as a warning naming both members (once, when it appears; an
//! info line when it is gone) and every offset is exported in `/metrics`
//! (`stet_network_peer_clock_offset_seconds{To=...}`); `stetutl doctor` reports it too. Leases
//! do not depend on wall clocks, but operators' logs and TLS certificates do, and etcd's FAQ
//! names skew as a cause of trouble.

use std::sync::Arc;
use std::time::Duration;

use crate::server::stop::Stopped;

use super::conn::{dial, Identity};
use super::AddressBook;
use crate::proto::stetpeerpb as peerpb;
use crate::server::env::{Environment, Mistake};
use crate::server::metrics::Metrics;

/// How often the clocks are compared.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(30);
/// The first comparison, once the peers are likely up.
const FIRST_CHECK_AFTER: Duration = Duration::from_secs(5);
/// The largest offset that is not worth a warning, in microseconds.
pub const MAX_SKEW_MICROS: i64 = 1_000_000;

/// The peer's clock minus this member's: `remote` was read by the peer between `sent` and
/// `received` (this member's clock), so it is compared with their middle.
pub fn offset_micros(sent: u64, received: u64, remote: u64) -> i64 {
    let middle = sent / 2 + received / 2 + (sent % 2 + received % 2) / 2;
    let offset = i128::from(remote) - i128::from(middle);
    i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX })
}

/// What changed about a peer's skew with a new measurement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// The offset went past the limit.
    Appeared,
    /// The offset came back within the limit.
    Gone,
    None,
}

/// Whether a new offset starts or ends a skew, given the previous one.
pub fn change(previous: Option<i64>, offset: i64) -> Change {
    let skewed = |o: i64| o.unsigned_abs() > MAX_SKEW_MICROS.unsigned_abs();
    match (previous.is_some_and(skewed), skewed(offset)) {
        (false, true) => Change::Appeared,
        (true, false) => Change::Gone,
        _ => Change::None,
    }
}

/// Compares clocks with every peer until `stopped` says stop.
pub async fn watch_clocks(
    env: Arc<dyn Environment>,
    identity: Identity,
    addresses: AddressBook,
    metrics: Arc<Metrics>,
    stopped: Stopped,
    log: slog::Logger,
) {
    let mut wait = FIRST_CHECK_AFTER;
    loop {
        let at = env.now() + wait;
        tokio::select! {
            biased;
            _ = stopped.wait() => return,
            () = env.sleep_until(at) => {}
        }
        wait = CHECK_INTERVAL;
        for (peer, urls) in addresses.members() {
            if peer == identity.member_id {
                continue;
            }
            env.clock_comparison_started(peer);
            let Some((mut offset, round_trip)) =
                measure(env.as_ref(), &identity, peer, &urls).await
            else {
                continue;
            };
            if env.planted(Mistake::MisreadPeerClock) {
                offset = -offset;
            }
            env.clock_offset_measured(peer, offset, round_trip);
            let previous = metrics.record_clock_offset(peer, offset);
            metrics.observe_peer_round_trip(peer, Duration::from_micros(round_trip));
            let (me, them) = (format!("{:x}", identity.member_id), format!("{peer:x}"));
            let seconds = offset as f64 / 1e6;
            match change(previous, offset) {
                Change::Appeared => slog::warn!(log, "clock skew between members over 1 s";
                    "member" => me, "peer" => them, "peer_clock_minus_ours_seconds" => seconds),
                Change::Gone => slog::info!(log, "clock skew between members is back within 1 s";
                    "member" => me, "peer" => them, "peer_clock_minus_ours_seconds" => seconds),
                Change::None => {}
            }
        }
    }
}

/// One comparison with `peer`: its clock minus ours and the round trip it took, if it answered
/// with a clock.
async fn measure(
    env: &dyn Environment,
    identity: &Identity,
    peer: u64,
    urls: &[String],
) -> Option<(i64, u64)> {
    for url in urls {
        let sent = env.wall_clock_micros();
        if let Ok((_, welcome)) = dial(url, identity, peerpb::Purpose::Probe, peer).await {
            let received = env.wall_clock_micros();
            let offset = offset_micros(sent, received, welcome.clock_micros);
            return (welcome.clock_micros > 0).then_some((offset, received.saturating_sub(sent)));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_offset_is_taken_against_the_middle_of_the_round_trip() {
        assert_eq!(offset_micros(1_000, 1_200, 1_100), 0);
        assert_eq!(offset_micros(1_000, 1_200, 2_601_100), 2_600_000);
        assert_eq!(offset_micros(5_000_000, 5_000_002, 1_000_001), -4_000_000);
        assert_eq!(offset_micros(u64::MAX, u64::MAX, 0), i64::MIN);
        assert_eq!(offset_micros(1, 2, 2), 1);
    }

    #[test]
    fn a_skew_is_reported_when_it_appears_and_when_it_is_gone() {
        assert_eq!(change(None, 1_500_000), Change::Appeared);
        assert_eq!(change(Some(1_500_000), 1_600_000), Change::None);
        assert_eq!(change(Some(1_500_000), -200_000), Change::Gone);
        assert_eq!(change(Some(-200_000), -1_000_001), Change::Appeared);
        assert_eq!(change(None, 1_000_000), Change::None);
        assert_eq!(change(Some(10), 20), Change::None);
    }
}
