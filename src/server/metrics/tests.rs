use super::*;

fn status() -> MemberStatus {
    MemberStatus {
        member_id: 0xabc,
        leader: Some(0xabc),
        is_leader: true,
        leader_changes: 3,
        commit_index: 42,
        applied_index: 41,
        db_size: 8192,
        db_size_in_use: 4096,
        proposals_pending: 2,
        proposals_failed: 1,
        revision: 7,
        key_count: 5,
        auth_revision: 9,
        ..MemberStatus::default()
    }
}

/// The value of the sample line that is exactly `series` (name and labels), if any.
fn sample(page: &str, series: &str) -> Option<String> {
    page.lines()
        .filter(|line| !line.starts_with('#'))
        .find_map(|line| {
            line.strip_prefix(series)?
                .strip_prefix(' ')
                .map(str::to_string)
        })
}

#[test]
fn the_status_is_exported_under_etcds_names() {
    let metrics = Metrics::new(2 << 30);
    let page = metrics.render(&status());
    for (series, value) in [
        ("etcd_server_has_leader", "1"),
        ("etcd_server_is_leader", "1"),
        ("etcd_server_leader_changes_seen_total", "3"),
        ("etcd_server_proposals_committed_total", "42"),
        ("etcd_server_proposals_applied_total", "41"),
        ("etcd_server_proposals_pending", "2"),
        ("etcd_server_proposals_failed_total", "1"),
        ("etcd_server_quota_backend_bytes", "2147483648"),
        ("etcd_mvcc_db_total_size_in_bytes", "8192"),
        ("etcd_mvcc_db_total_size_in_use_in_bytes", "4096"),
        ("etcd_debugging_mvcc_keys_total", "5"),
        ("etcd_debugging_mvcc_current_revision", "7"),
        ("etcd_debugging_auth_revision", "9"),
        ("etcd_server_id{server_id=\"abc\"}", "1"),
        ("etcd_server_version{server_version=\"3.5.13\"}", "1"),
        ("etcd_cluster_version{cluster_version=\"3.5\"}", "1"),
    ] {
        assert_eq!(
            sample(&page, series).as_deref(),
            Some(value),
            "{series} in\n{page}"
        );
    }
    assert!(
        page.contains("# TYPE etcd_server_leader_changes_seen_total counter\n"),
        "{page}"
    );
    assert!(
        page.contains("# TYPE etcd_server_has_leader gauge\n"),
        "{page}"
    );
}

#[test]
fn a_new_status_is_seen_by_the_next_scrape() {
    let metrics = Metrics::new(0);
    let page = metrics.render(&status());
    assert_eq!(
        sample(&page, "etcd_server_has_leader").as_deref(),
        Some("1")
    );
    let page = metrics.render(&MemberStatus::default());
    assert_eq!(
        sample(&page, "etcd_server_has_leader").as_deref(),
        Some("0")
    );
}

#[test]
fn disk_latencies_are_histograms_with_etcds_buckets() {
    let metrics = Metrics::new(0);
    metrics.observe_wal_fsync(Duration::from_micros(500));
    metrics.observe_wal_fsync(Duration::from_micros(1500));
    metrics.observe_wal_fsync(Duration::from_secs(1));
    metrics.observe_backend_commit(Duration::from_millis(3));
    let page = metrics.render(&status());
    let fsync = "etcd_disk_wal_fsync_duration_seconds";
    assert_eq!(
        sample(&page, &format!("{fsync}_bucket{{le=\"0.001\"}}")).as_deref(),
        Some("1"),
        "{page}"
    );
    assert_eq!(
        sample(&page, &format!("{fsync}_bucket{{le=\"0.002\"}}")).as_deref(),
        Some("2")
    );
    assert_eq!(
        sample(&page, &format!("{fsync}_bucket{{le=\"+Inf\"}}")).as_deref(),
        Some("3")
    );
    assert_eq!(
        sample(&page, &format!("{fsync}_count")).as_deref(),
        Some("3")
    );
    assert_eq!(
        sample(&page, &format!("{fsync}_sum")).as_deref(),
        Some("1.002")
    );
    let commit = "etcd_disk_backend_commit_duration_seconds";
    assert_eq!(
        sample(&page, &format!("{commit}_bucket{{le=\"0.004\"}}")).as_deref(),
        Some("1")
    );
}

#[test]
fn grpc_calls_are_counted_by_method_type_and_code() {
    let metrics = Metrics::new(0);
    let put = GrpcMethod {
        labels: GrpcCall {
            grpc_type: "unary",
            grpc_service: "etcdserverpb.KV",
            grpc_method: "Put",
        },
        index: 1,
    };
    metrics.grpc_started(&put);
    metrics.grpc_started(&put);
    metrics.grpc_received(&put, 1, 10);
    metrics.grpc_sent(&put, 1, 20);
    metrics.grpc_handled(&put, 0, Duration::from_millis(1));
    metrics.grpc_handled(&put, 14, Duration::from_millis(1));
    metrics.grpc_handled(&put, 14, Duration::from_millis(1));
    metrics.grpc_handled(&put, 99, Duration::from_millis(1));
    let page = metrics.render(&status());
    let labels = "grpc_type=\"unary\",grpc_service=\"etcdserverpb.KV\",grpc_method=\"Put\"";
    for (series, value) in [
        (format!("grpc_server_started_total{{{labels}}}"), "2"),
        (
            format!("grpc_server_handled_total{{{labels},grpc_code=\"OK\"}}"),
            "1",
        ),
        (
            format!("grpc_server_handled_total{{{labels},grpc_code=\"Unavailable\"}}"),
            "2",
        ),
        (
            format!("grpc_server_handled_total{{{labels},grpc_code=\"Unknown\"}}"),
            "1",
        ),
        (
            format!("grpc_server_handling_seconds_count{{{labels}}}"),
            "4",
        ),
        (format!("grpc_server_msg_received_total{{{labels}}}"), "1"),
        (format!("grpc_server_msg_sent_total{{{labels}}}"), "1"),
        (
            "etcd_network_client_grpc_received_bytes_total".to_string(),
            "10",
        ),
        (
            "etcd_network_client_grpc_sent_bytes_total".to_string(),
            "20",
        ),
    ] {
        assert_eq!(
            sample(&page, &series).as_deref(),
            Some(value),
            "{series} in\n{page}"
        );
    }
}

#[test]
fn peer_traffic_is_labelled_by_the_peers_id() {
    let metrics = Metrics::new(0);
    metrics.peer_sent(0x2a, 100);
    metrics.peer_sent(0x2a, 50);
    metrics.peer_received(0x2b, 7);
    metrics.peer_send_failed(0x2a);
    metrics.observe_peer_round_trip(0x2a, Duration::from_micros(150));
    assert_eq!(metrics.record_clock_offset(0x2a, -1_500_000), None);
    assert_eq!(metrics.record_clock_offset(0x2a, 250_000), Some(-1_500_000));
    let page = metrics.render(&status());
    for (series, value) in [
        ("etcd_network_peer_sent_bytes_total{To=\"2a\"}", "150"),
        ("etcd_network_peer_received_bytes_total{From=\"2b\"}", "7"),
        ("etcd_network_peer_sent_failures_total{To=\"2a\"}", "1"),
        (
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2a\",le=\"0.0002\"}",
            "1",
        ),
        (
            "etcd_network_peer_round_trip_time_seconds_bucket{To=\"2a\",le=\"0.0001\"}",
            "0",
        ),
        ("stet_network_peer_clock_offset_seconds{To=\"2a\"}", "0.25"),
    ] {
        assert_eq!(
            sample(&page, series).as_deref(),
            Some(value),
            "{series} in\n{page}"
        );
    }
}

#[test]
fn the_process_is_described_on_linux() {
    let page = Metrics::new(0).render(&status());
    if cfg!(target_os = "linux") {
        for name in [
            "process_cpu_seconds_total",
            "process_resident_memory_bytes",
            "process_open_fds",
            "process_max_fds",
            "process_start_time_seconds",
        ] {
            assert!(sample(&page, name).is_some(), "{name} in\n{page}");
        }
    }
}

#[test]
fn every_peers_bytes_are_counted_past_the_kept_counters() {
    let metrics = Metrics::new(0);
    let peers = MAX_KEPT_PEER_COUNTERS as u64 + 8;
    for round in 0..3 {
        for id in 1..=peers {
            metrics.peer_sent(id, 10 + round);
            metrics.peer_received(id, 1);
        }
    }
    let page = metrics.render(&status());
    for id in 1..=peers {
        let sent = format!("etcd_network_peer_sent_bytes_total{{To=\"{id:x}\"}}");
        assert_eq!(sample(&page, &sent).as_deref(), Some("33"), "{sent}");
        let received = format!("etcd_network_peer_received_bytes_total{{From=\"{id:x}\"}}");
        assert_eq!(sample(&page, &received).as_deref(), Some("3"), "{received}");
    }
}
