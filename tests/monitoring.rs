//! The monitoring files shipped in `deploy/monitoring/` against what stet really exports: every
//! metric that the Grafana dashboard (`grafana-dashboard.json`) or the Prometheus alert rules
//! (`alerts.yaml`) reference must be a sample name on the `/metrics` page of some member of a
//! running three-member cluster (`up` aside: Prometheus makes it up for every target), and the
//! labels they select on must be there too. The cluster serves unary calls, a watch stream and a
//! lease keep-alive stream, lets its peers measure their round trips, then loses a member, so
//! that the series that exist only once something happened (peer send failures) exist too.
//!
//! The metric names and their label matchers are read out of the PromQL by a small lexer
//! (`selectors`), unit-tested here on tricky expressions, so a renamed or dropped metric, or a
//! label a selector needs and no series has, fails this test instead of leaving a panel empty or
//! an alert silent. Every wait is bounded; every member is killed when the test ends.

mod procs;

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::{Duration, Instant};

use procs::*;

use stet::proto::etcdserverpb as pb;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

const DASHBOARD: &str = "deploy/monitoring/grafana-dashboard.json";
const ALERTS: &str = "deploy/monitoring/alerts.yaml";
/// Series Prometheus synthesises for every scrape target; no target exports them.
const SYNTHESISED: &[&str] = &["up"];
/// The members of the test cluster.
const MEMBERS: usize = 3;
/// How long to wait for a peer metric: the round trip is measured ~5 s after start, the sends
/// to a killed member fail within a few heartbeats.
const PEER_METRICS_TIMEOUT: Duration = Duration::from_secs(15);
/// The histogram whose samples show that the peers have measured each other.
const PEER_ROUND_TRIP: &str = "etcd_network_peer_round_trip_time_seconds_bucket";
/// The counter whose samples show that a member failed to send to a peer.
const PEER_SENT_FAILURES: &str = "etcd_network_peer_sent_failures_total";

/// etcd's alerts (its mixin's names, so its runbooks apply), each of which `alerts.yaml` defines.
const ETCD_ALERTS: &[&str] = &[
    "etcdMembersDown",
    "etcdInsufficientMembers",
    "etcdNoLeader",
    "etcdHighNumberOfLeaderChanges",
    "etcdHighNumberOfFailedGRPCRequests",
    "etcdGRPCRequestsSlow",
    "etcdMemberCommunicationSlow",
    "etcdHighNumberOfFailedProposals",
    "etcdHighFsyncDurations",
    "etcdHighCommitDurations",
    "etcdDatabaseQuotaLowSpace",
    "etcdExcessiveDatabaseGrowth",
    "etcdDatabaseHighFragmentationRatio",
];

/// PromQL's aggregation operators and keywords, which PromQL matches regardless of case.
const PROMQL_KEYWORDS: &str =
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile limitk \
     limit_ratio by without on ignoring group_left group_right and or unless bool offset atan2 \
     inf nan";

/// Keywords followed by a parenthesised list of label names.
const LABEL_LIST_KEYWORDS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];

/// PromQL's functions (Prometheus 2 and 3), including `@`'s `start()` and `end()`.
const PROMQL_FUNCTIONS: &str =
    "abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes \
     clamp clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year \
     days_in_month deg delta deriv double_exponential_smoothing end exp floor histogram_avg \
     histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar \
     histogram_sum holt_winters hour idelta increase info irate label_join label_replace \
     last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute month pi \
     predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn sin \
     sinh sort sort_by_label sort_by_label_desc sort_desc sqrt start stddev_over_time \
     stdvar_over_time sum_over_time tan tanh time timestamp vector year";

// ---- Reading the monitoring files ----

/// One PromQL expression and where it comes from (a panel's or an alert's name).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Expression {
    origin: String,
    promql: String,
}

fn read_repo_file(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("read {}: {e}", full.display()))
}

/// Every `expr` string anywhere in a Grafana dashboard, with the title of its panel.
fn dashboard_expressions(json: &str) -> Vec<Expression> {
    let dashboard: serde_json::Value =
        serde_json::from_str(json).expect("the dashboard is valid JSON");
    let mut found = Vec::new();
    collect_expressions(&dashboard, "dashboard", &mut found);
    found
}

fn collect_expressions(value: &serde_json::Value, title: &str, found: &mut Vec<Expression>) {
    match value {
        serde_json::Value::Object(fields) => {
            let title = fields
                .get("title")
                .and_then(serde_json::Value::as_str)
                .unwrap_or(title);
            for (key, field) in fields {
                match (key.as_str(), field.as_str()) {
                    ("expr", Some(promql)) => found.push(Expression {
                        origin: format!("panel {title:?}"),
                        promql: promql.to_string(),
                    }),
                    _ => collect_expressions(field, title, found),
                }
            }
        }
        serde_json::Value::Array(items) => {
            for item in items {
                collect_expressions(item, title, found);
            }
        }
        _ => {}
    }
}

/// Every rule's `expr` in a Prometheus rule file, line by line: a plain one-line scalar or a
/// literal block scalar (`expr: |`), whose lines are those indented deeper than the key.
fn alert_expressions(yaml: &str) -> Vec<Expression> {
    let lines: Vec<&str> = yaml.lines().collect();
    let mut found = Vec::new();
    let mut alert = String::from("(no alert yet)");
    let mut i = 0;
    while i < lines.len() {
        let (indent, entry) = yaml_entry(lines[i]);
        i += 1;
        if let Some(name) = entry.strip_prefix("alert:") {
            alert = name.trim().to_string();
        } else if let Some(value) = entry.strip_prefix("expr:") {
            let value = value.trim();
            let promql = if value.starts_with('|') {
                let block = block_scalar(&lines[i..], indent);
                i += block.len();
                block.join("\n")
            } else {
                assert!(
                    !value.is_empty() && !value.starts_with(['\'', '"', '>']),
                    "{alert}: write `expr` as a block scalar (`expr: |`) or a plain one-line scalar"
                );
                value.to_string()
            };
            found.push(Expression {
                origin: format!("alert {alert}"),
                promql,
            });
        }
    }
    found
}

/// A YAML line's key column and its text from there, past a list item's `- `.
fn yaml_entry(line: &str) -> (usize, &str) {
    let text = line.trim_start();
    let text = text.strip_prefix("- ").map_or(text, str::trim_start);
    (line.len() - text.len(), text)
}

/// The lines of a block scalar whose key sits at column `key_indent`: those after it indented
/// deeper, and blank lines between them.
fn block_scalar<'a>(lines: &[&'a str], key_indent: usize) -> Vec<&'a str> {
    let inside =
        |line: &&str| line.trim().is_empty() || line.len() - line.trim_start().len() > key_indent;
    let mut block: Vec<&str> = lines.iter().copied().take_while(inside).collect();
    while block.last().is_some_and(|line| line.trim().is_empty()) {
        block.pop();
    }
    block
}

/// Each alert rule's name and the keys it sets (`expr`, `for`, `severity`, `summary`, ...).
fn alert_rule_keys(yaml: &str) -> Vec<(String, BTreeSet<String>)> {
    let mut rules: Vec<(String, BTreeSet<String>)> = Vec::new();
    for line in yaml.lines() {
        let (_, entry) = yaml_entry(line);
        if entry.starts_with('#') {
            continue;
        }
        if let Some(name) = entry.strip_prefix("alert:") {
            rules.push((name.trim().to_string(), BTreeSet::new()));
        } else if let (Some((_, keys)), Some((key, _))) = (rules.last_mut(), entry.split_once(':'))
        {
            if key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                keys.insert(key.to_string());
            }
        }
    }
    rules
}

// ---- Metric names in PromQL ----

/// One label matcher of a selector: `label op "value"`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Matcher {
    label: String,
    op: String,
    value: String,
}

/// A metric named in PromQL and the label matchers in braces after it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Selector {
    metric: String,
    matchers: Vec<Matcher>,
}

/// The metric names a PromQL expression reads.
fn metric_names(promql: &str) -> BTreeSet<String> {
    selectors(promql).into_iter().map(|s| s.metric).collect()
}

/// The metrics a PromQL expression reads, with their label matchers: its identifiers that are
/// neither functions, aggregations nor keywords, outside label matchers (`{...}`), label lists
/// (`by (...)`, ...), ranges (`[5m]`), string literals, numbers and durations, comments and
/// Grafana variables (`$__rate_interval`, `${datasource}`). A metric named only inside braces
/// (`{__name__="..."}`) is not seen: the shipped files do not use that form.
fn selectors(promql: &str) -> Vec<Selector> {
    let chars: Vec<char> = promql.chars().collect();
    let mut found = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i = match c {
            '"' | '\'' | '`' => skip_string(&chars, i),
            '#' => skip_comment(&chars, i),
            '{' => skip_group(&chars, i, '}'),
            '[' => skip_group(&chars, i, ']'),
            '$' => skip_variable(&chars, i),
            _ if c.is_ascii_digit() || (c == '.' && next_is_digit(&chars, i)) => {
                skip_number(&chars, i)
            }
            _ if is_identifier_start(c) => {
                let end = identifier_end(&chars, i);
                let word: String = chars[i..end].iter().collect();
                if is_label_list_keyword(&word) {
                    skip_label_list(&chars, end)
                } else if is_promql_word(&word) {
                    end
                } else {
                    let (matchers, after) = matchers_after(&chars, end);
                    found.push(Selector {
                        metric: word,
                        matchers,
                    });
                    after
                }
            }
            _ => i + 1,
        };
    }
    found
}

/// The label matchers in braces right after a metric name ending at `end` (none without
/// braces), and the index past them.
fn matchers_after(chars: &[char], end: usize) -> (Vec<Matcher>, usize) {
    let open = skip_whitespace(chars, end);
    if chars.get(open) != Some(&'{') {
        return (Vec::new(), end);
    }
    let close = skip_group(chars, open, '}');
    let inside = &chars[open + 1..close.saturating_sub(1).max(open + 1)];
    (parse_matchers(inside), close)
}

/// `label="value", label=~"regex", ...`: the text between a selector's braces.
fn parse_matchers(chars: &[char]) -> Vec<Matcher> {
    let text: String = chars.iter().collect();
    let mut matchers = Vec::new();
    let mut i = 0;
    loop {
        while chars.get(i).is_some_and(|c| c.is_whitespace() || *c == ',') {
            i += 1;
        }
        if i == chars.len() {
            return matchers;
        }
        let label_end = identifier_end(chars, i);
        let label: String = chars[i..label_end].iter().collect();
        let op_start = skip_whitespace(chars, label_end);
        let op_end = (op_start..chars.len())
            .find(|&j| !matches!(chars[j], '=' | '!' | '~'))
            .unwrap_or(chars.len());
        let op: String = chars[op_start..op_end].iter().collect();
        let value_start = skip_whitespace(chars, op_end);
        assert!(
            !label.is_empty()
                && ["=", "!=", "=~", "!~"].contains(&op.as_str())
                && matches!(chars.get(value_start), Some('"' | '\'' | '`')),
            "a malformed label matcher in {{{text}}}"
        );
        i = skip_string(chars, value_start);
        let value = string_value(&chars[value_start..i]);
        matchers.push(Matcher { label, op, value });
    }
}

/// The value of a quoted string literal (`literal` with its quotes).
fn string_value(literal: &[char]) -> String {
    let raw = literal[0] == '`';
    let mut value = String::new();
    let mut chars = literal[1..literal.len().saturating_sub(1)].iter();
    while let Some(&c) = chars.next() {
        match (c, raw) {
            ('\\', false) => match chars.next() {
                Some('n') => value.push('\n'),
                Some('t') => value.push('\t'),
                Some(&escaped) => value.push(escaped),
                None => {}
            },
            _ => value.push(c),
        }
    }
    value
}

fn skip_whitespace(chars: &[char], start: usize) -> usize {
    (start..chars.len())
        .find(|&j| !chars[j].is_whitespace())
        .unwrap_or(chars.len())
}

fn is_identifier_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_identifier_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn identifier_end(chars: &[char], start: usize) -> usize {
    (start..chars.len())
        .find(|&j| !is_identifier_char(chars[j]))
        .unwrap_or(chars.len())
}

fn next_is_digit(chars: &[char], i: usize) -> bool {
    chars.get(i + 1).is_some_and(char::is_ascii_digit)
}

fn is_promql_word(word: &str) -> bool {
    let lower = word.to_ascii_lowercase();
    PROMQL_KEYWORDS
        .split_whitespace()
        .any(|keyword| keyword == lower)
        || PROMQL_FUNCTIONS
            .split_whitespace()
            .any(|function| function == word)
}

fn is_label_list_keyword(word: &str) -> bool {
    LABEL_LIST_KEYWORDS.contains(&word.to_ascii_lowercase().as_str())
}

/// Past a string literal starting at `start`: `"..."` and `'...'` with backslash escapes, or a
/// raw `` `...` ``.
fn skip_string(chars: &[char], start: usize) -> usize {
    let quote = chars[start];
    let mut j = start + 1;
    while j < chars.len() {
        match chars[j] {
            '\\' if quote != '`' => j += 2,
            c if c == quote => return j + 1,
            _ => j += 1,
        }
    }
    chars.len()
}

/// Past a `#` comment: to the end of its line.
fn skip_comment(chars: &[char], start: usize) -> usize {
    (start..chars.len())
        .find(|&j| chars[j] == '\n')
        .unwrap_or(chars.len())
}

/// Past a label matcher `{...}` or a range `[...]` opened at `start`, whose strings may hold
/// the closing character.
fn skip_group(chars: &[char], start: usize, close: char) -> usize {
    let mut j = start + 1;
    while j < chars.len() {
        match chars[j] {
            '"' | '\'' | '`' => j = skip_string(chars, j),
            c if c == close => return j + 1,
            _ => j += 1,
        }
    }
    chars.len()
}

/// Past a Grafana variable: `$name`, `$__name` or `${name}` / `${name:format}`.
fn skip_variable(chars: &[char], start: usize) -> usize {
    match chars.get(start + 1) {
        Some('{') => skip_group(chars, start + 1, '}'),
        _ => identifier_end(chars, start + 1),
    }
}

/// Past a number or a duration: `0.99`, `1e6`, `0x1f`, `5m`, `1h30m`.
fn skip_number(chars: &[char], start: usize) -> usize {
    (start..chars.len())
        .find(|&j| !(chars[j].is_ascii_alphanumeric() || chars[j] == '.' || chars[j] == '_'))
        .unwrap_or(chars.len())
}

/// Past the parenthesised label names after `by`, `without`, `on`, ... (if any: `group_left`
/// may stand alone).
fn skip_label_list(chars: &[char], after_keyword: usize) -> usize {
    let open = skip_whitespace(chars, after_keyword);
    if chars.get(open) != Some(&'(') {
        return after_keyword;
    }
    (open..chars.len())
        .find(|&j| chars[j] == ')')
        .map_or(chars.len(), |close| close + 1)
}

// ---- The /metrics page ----

/// One sample line of the text exposition format: its name and labels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Sample {
    name: String,
    labels: BTreeMap<String, String>,
}

/// The samples on a `/metrics` page; comments and blank lines skipped.
fn samples(page: &str) -> Vec<Sample> {
    page.lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .map(|line| parse_sample(line).unwrap_or_else(|| panic!("malformed sample: {line:?}")))
        .collect()
}

/// `name{label="value",...} value [timestamp]`, or `name value [timestamp]`.
fn parse_sample(line: &str) -> Option<Sample> {
    let end = line
        .find(|c: char| c == '{' || c.is_whitespace())
        .unwrap_or(line.len());
    let name = &line[..end];
    if name.is_empty() || !name.chars().all(is_identifier_char) {
        return None;
    }
    let labels = match line[end..].strip_prefix('{') {
        Some(rest) => parse_labels(rest)?,
        None => BTreeMap::new(),
    };
    Some(Sample {
        name: name.to_string(),
        labels,
    })
}

/// The labels of a sample, from just past its `{` up to its `}`.
fn parse_labels(mut rest: &str) -> Option<BTreeMap<String, String>> {
    let mut labels = BTreeMap::new();
    loop {
        rest = rest.trim_start_matches([',', ' ']);
        if rest.starts_with('}') {
            return Some(labels);
        }
        let (name, after) = rest.split_once("=\"")?;
        let mut value = String::new();
        let mut chars = after.char_indices();
        let close = loop {
            match chars.next()? {
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    escaped => value.push(escaped),
                },
                (at, '"') => break at,
                (_, c) => value.push(c),
            }
        };
        labels.insert(name.trim().to_string(), value);
        rest = &after[close + 1..];
    }
}

/// A label a series must have: its name, and its value (`None`: any value).
type WantedLabel<'a> = (&'a str, Option<&'a str>);

/// The samples on all the pages.
fn all_samples(pages: &[String]) -> Vec<Sample> {
    pages.iter().flat_map(|page| samples(page)).collect()
}

/// The names of the samples.
fn exported_names(samples: &[Sample]) -> BTreeSet<String> {
    samples.iter().map(|sample| sample.name.clone()).collect()
}

/// The referenced names no sample has, sorted; a histogram counts through its `_bucket`, `_sum`
/// and `_count` samples, so those are the names to reference.
fn missing_names(referenced: &BTreeSet<String>, samples: &[Sample]) -> Vec<String> {
    let exported = exported_names(samples);
    referenced
        .iter()
        .filter(|name| !exported.contains(*name) && !SYNTHESISED.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// Whether some sample of `name` has every label of `labels`: with the given value, or any value
/// for `None`.
fn has_series(samples: &[Sample], name: &str, labels: &[WantedLabel]) -> bool {
    samples.iter().any(|sample| {
        sample.name == name
            && labels.iter().all(|(label, wanted)| {
                sample
                    .labels
                    .get(*label)
                    .is_some_and(|value| wanted.is_none_or(|wanted| value == wanted))
            })
    })
}

/// Label names Prometheus gives every series of a target; no `/metrics` page has them.
const TARGET_LABELS: &[&str] = &["job", "instance"];

/// What a series needs for `selector` to select it, as far as a test can tell: the value of each
/// `=` matcher and the label of each `=~` matcher, except target labels, Grafana variables and
/// empty values; `!=` and `!~` matchers may hold without the label.
fn required_labels(selector: &Selector) -> Vec<WantedLabel<'_>> {
    selector
        .matchers
        .iter()
        .filter(|m| {
            !TARGET_LABELS.contains(&m.label.as_str())
                && !m.value.contains('$')
                && !m.value.is_empty()
        })
        .filter_map(|m| match m.op.as_str() {
            "=" => Some((m.label.as_str(), Some(m.value.as_str()))),
            "=~" => Some((m.label.as_str(), None)),
            _ => None,
        })
        .collect()
}

/// The selectors of exported metrics that select no sample (a panel that stays empty, an alert
/// that cannot fire), each with the panels and alerts using it.
fn empty_selectors(
    expressions: &[Expression],
    samples: &[Sample],
) -> BTreeMap<String, BTreeSet<String>> {
    let exported = exported_names(samples);
    let mut empty: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for expression in expressions {
        for selector in selectors(&expression.promql) {
            let labels = required_labels(&selector);
            if exported.contains(&selector.metric)
                && !has_series(samples, &selector.metric, &labels)
            {
                empty
                    .entry(format!("{} with {labels:?}", selector.metric))
                    .or_default()
                    .insert(expression.origin.clone());
            }
        }
    }
    empty
}

// ---- The cluster ----

/// Starts `MEMBERS` members bootstrapped together in `dir`, all at once (none is healthy before
/// a quorum is up); each member and its client URL.
fn start_cluster(dir: &TempDir) -> Vec<(KilledOnDrop, String)> {
    let names: Vec<String> = (0..MEMBERS).map(|i| format!("m{i}")).collect();
    let peer_urls: Vec<String> = (0..MEMBERS)
        .map(|_| format!("http://127.0.0.1:{}", free_port()))
        .collect();
    let cluster = names
        .iter()
        .zip(&peer_urls)
        .map(|(name, url)| format!("{name}={url}"))
        .collect::<Vec<_>>()
        .join(",");
    std::thread::scope(|scope| {
        let starting: Vec<_> = names
            .iter()
            .zip(&peer_urls)
            .map(|(name, peer_url)| {
                let cluster = &cluster;
                scope.spawn(move || start_member(&dir.0, name, name, peer_url, cluster))
            })
            .collect();
        starting
            .into_iter()
            .map(|member| member.join().expect("a member failed to start"))
            .collect()
    })
}

/// The port of a member's client URL (`http://127.0.0.1:PORT`).
fn port_of(url: &str) -> u16 {
    url.rsplit(':')
        .next()
        .and_then(|port| port.parse().ok())
        .unwrap_or_else(|| panic!("no port in {url}"))
}

/// Unary calls, a watch stream and a lease keep-alive stream through the member at `url`, each
/// stream opened, used and closed, so that the gRPC metrics have series of every kind.
fn exercise(url: &str) {
    runtime().block_on(async {
        let mut clients = connect(url.to_string()).await;
        for i in 0..5 {
            clients.put(&format!("monitoring/{i}"), "value", 0).await;
        }
        assert_eq!(
            clients.value("monitoring/0").await.as_deref(),
            Some(&b"value"[..])
        );
        watch_once(&mut clients).await;
        keep_alive_once(&mut clients).await;
    });
}

/// Opens a watch stream, waits for its watch to be created, and closes the stream.
async fn watch_once(clients: &mut Clients) {
    let (requests, receiver) = mpsc::channel(1);
    let create = pb::WatchCreateRequest {
        key: b"monitoring/".to_vec(),
        range_end: b"monitoring0".to_vec(),
        ..Default::default()
    };
    requests
        .send(pb::WatchRequest {
            request_union: Some(pb::watch_request::RequestUnion::CreateRequest(create)),
        })
        .await
        .expect("send the watch's create request");
    let mut responses = bounded("watch", clients.watch.watch(ReceiverStream::new(receiver)))
        .await
        .expect("watch")
        .into_inner();
    let created = bounded("watch created", responses.message())
        .await
        .expect("watch stream")
        .expect("a created response");
    assert!(created.created, "{created:?}");
    drop(requests);
}

/// Grants a lease, renews it once on a keep-alive stream, and closes the stream.
async fn keep_alive_once(clients: &mut Clients) {
    let grant = bounded(
        "lease grant",
        clients
            .lease
            .lease_grant(pb::LeaseGrantRequest { ttl: 30, id: 0 }),
    )
    .await
    .expect("lease grant")
    .into_inner();
    let (requests, receiver) = mpsc::channel(1);
    requests
        .send(pb::LeaseKeepAliveRequest { id: grant.id })
        .await
        .expect("send a keep-alive");
    let mut responses = bounded(
        "keep-alive",
        clients
            .lease
            .lease_keep_alive(ReceiverStream::new(receiver)),
    )
    .await
    .expect("keep-alive")
    .into_inner();
    let renewed = bounded("keep-alive answer", responses.message())
        .await
        .expect("keep-alive stream")
        .expect("a keep-alive answer");
    assert_eq!(renewed.id, grant.id);
    drop(requests);
}

/// The `/metrics` page of the member on `port`.
fn scrape(port: u16) -> String {
    let (code, page) = http_get(port, "/metrics").expect("GET /metrics");
    assert_eq!(code, 200, "GET /metrics: {page}");
    page
}

/// The `/metrics` page of each member on `ports`, once one of them has a sample of `name` (or,
/// failing that, after `PEER_METRICS_TIMEOUT`, for the check to report what is missing).
fn scrape_once_exported(ports: &[u16], name: &str) -> Vec<String> {
    let deadline = Instant::now() + PEER_METRICS_TIMEOUT;
    loop {
        let pages: Vec<String> = ports.iter().map(|&port| scrape(port)).collect();
        if has_series(&all_samples(&pages), name, &[]) || Instant::now() > deadline {
            return pages;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Every expression of the dashboard and of the alert rules.
fn shipped_expressions() -> Vec<Expression> {
    let mut expressions = dashboard_expressions(&read_repo_file(DASHBOARD));
    expressions.extend(alert_expressions(&read_repo_file(ALERTS)));
    expressions
}

/// Each metric name the expressions read, with the panels and alerts reading it.
fn references(expressions: &[Expression]) -> BTreeMap<String, BTreeSet<String>> {
    let mut readers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for expression in expressions {
        for name in metric_names(&expression.promql) {
            readers
                .entry(name)
                .or_default()
                .insert(expression.origin.clone());
        }
    }
    readers
}

// ---- Tests ----

/// Series the panels and alerts depend on, by name and labels.
const KEY_SERIES: &[(&str, &[WantedLabel])] = &[
    (
        "grpc_server_handled_total",
        &[
            ("grpc_type", None),
            ("grpc_service", None),
            ("grpc_method", None),
            ("grpc_code", Some("OK")),
        ],
    ),
    (PEER_ROUND_TRIP, &[("To", None)]),
    (PEER_SENT_FAILURES, &[("To", None)]),
];

/// The samples of a three-member cluster that served requests and streams, whose peers measured
/// their round trips, and whose survivors then failed to send to a killed member.
fn cluster_samples() -> Vec<Sample> {
    let dir = TempDir::new("monitoring");
    let mut members = start_cluster(&dir);
    exercise(&members[0].1);
    let ports: Vec<u16> = members.iter().map(|(_, url)| port_of(url)).collect();
    let mut pages = scrape_once_exported(&ports, PEER_ROUND_TRIP);
    drop(members.pop().expect("a member to kill"));
    pages.extend(scrape_once_exported(
        &ports[..MEMBERS - 1],
        PEER_SENT_FAILURES,
    ));
    all_samples(&pages)
}

/// What the expressions read that the samples do not have: missing metrics, selectors that
/// select nothing, missing key series.
fn unexported(expressions: &[Expression], samples: &[Sample]) -> Vec<String> {
    let readers = references(expressions);
    let referenced: BTreeSet<String> = readers.keys().cloned().collect();
    let missing = missing_names(&referenced, samples)
        .into_iter()
        .map(|name| format!("{name} is not exported (read by {:?})", readers[&name]));
    let empty = empty_selectors(expressions, samples)
        .into_iter()
        .map(|(selector, users)| format!("{selector} selects no series (read by {users:?})"));
    let absent = KEY_SERIES
        .iter()
        .filter(|(name, labels)| !has_series(samples, name, labels))
        .map(|(name, labels)| format!("no {name} series with labels {labels:?}"));
    missing.chain(empty).chain(absent).collect()
}

#[test]
fn every_metric_the_dashboard_and_alerts_read_is_exported() {
    let expressions = shipped_expressions();
    let samples = cluster_samples();
    let problems = unexported(&expressions, &samples);
    assert!(
        problems.is_empty(),
        "the monitoring files read what stet does not export:\n{}\n\nthe members export: {:?}",
        problems.join("\n"),
        exported_names(&samples)
    );
}

#[test]
fn the_files_read_the_expected_metrics() {
    let readers = references(&shipped_expressions());
    for expected in [
        "up",
        "etcd_server_has_leader",
        "etcd_network_peer_sent_failures_total",
        "grpc_server_started_total",
        "grpc_server_handled_total",
        "etcd_network_peer_round_trip_time_seconds_bucket",
        "stet_network_peer_clock_offset_seconds",
    ] {
        assert!(readers.contains_key(expected), "{expected}: {readers:?}");
    }
    for name in readers.keys() {
        assert!(
            name.starts_with("etcd_")
                || name.starts_with("grpc_server_")
                || name.starts_with("process_")
                || name.starts_with("stet_")
                || name == "up",
            "{name} does not look like a metric (a PromQL word missing from the lists?)"
        );
    }
}

#[test]
fn every_alert_has_etcds_name_a_duration_a_severity_and_annotations() {
    let rules = alert_rule_keys(&read_repo_file(ALERTS));
    let names: BTreeSet<&str> = rules.iter().map(|(name, _)| name.as_str()).collect();
    assert_eq!(names, ETCD_ALERTS.iter().copied().collect());
    for (name, keys) in &rules {
        for key in ["expr", "for", "severity", "summary", "description"] {
            assert!(keys.contains(key), "alert {name} has no {key}: {keys:?}");
        }
    }
    let expressions = alert_expressions(&read_repo_file(ALERTS));
    assert_eq!(expressions.len(), rules.len(), "{expressions:#?}");
}

#[test]
fn the_dashboard_has_a_datasource_variable_and_queries_in_every_panel() {
    let json = read_repo_file(DASHBOARD);
    let dashboard: serde_json::Value =
        serde_json::from_str(&json).expect("the dashboard is valid JSON");
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating variables");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "{variables:?}"
    );
    let panels = dashboard["panels"].as_array().expect("panels");
    for panel in panels.iter().filter(|panel| panel["type"] != "row") {
        let targets = panel["targets"].as_array().expect("targets");
        assert!(
            !targets.is_empty()
                && targets
                    .iter()
                    .all(|t| t["expr"].as_str().is_some_and(|e| !e.is_empty())),
            "panel {} has no query",
            panel["title"]
        );
    }
}

// ---- Unit tests of the helpers ----

fn names(promql: &str) -> Vec<String> {
    metric_names(promql).into_iter().collect()
}

#[test]
fn label_matchers_and_ranges_hold_no_metric_names() {
    assert_eq!(
        names(r#"rate(grpc_server_handled_total{job=~".*etcd.*", grpc_code!="OK"}[5m])"#),
        ["grpc_server_handled_total"]
    );
    assert_eq!(
        names(r#"increase((max by (job) (x_total) or 0 * absent(x_total{a="}"}))[15m:1m]) >= 4"#),
        ["x_total"]
    );
}

#[test]
fn label_lists_of_grouping_and_matching_hold_no_metric_names() {
    assert_eq!(
        names("sum without (grpc_type, grpc_code) (rate(a_total[5m]))"),
        ["a_total"]
    );
    assert_eq!(
        names("histogram_quantile(0.99, sum by (le, instance) (rate(x_bucket{job=~\".*etcd.*\"}[5m])))"),
        ["x_bucket"]
    );
    assert_eq!(
        names("sum(rate(a_total[1m])) BY (job) / on(instance) group_left(version) b_info"),
        ["a_total", "b_info"]
    );
    assert_eq!(
        names("a == bool 0 and ignoring (To) b unless c offset 5m"),
        ["a", "b", "c"]
    );
    assert_eq!(names("a * on (x) group_left b"), ["a", "b"]);
}

#[test]
fn strings_numbers_comments_and_grafana_variables_hold_no_metric_names() {
    assert_eq!(
        names(r#"label_replace(up, "dst", "$1 metric_in_string", 'src', "(.*)")"#),
        ["up"]
    );
    assert_eq!(
        names("predict_linear(db_bytes[4h], 4 * 60 * 60) > quota_bytes * 1e6 + 0x1f"),
        ["db_bytes", "quota_bytes"]
    );
    assert_eq!(
        names("rate(a_total{job=~\"$cluster\"}[$__rate_interval]) # not_a_metric\n + ${datasource} * $__range_s + b"),
        ["a_total", "b"]
    );
    assert_eq!(names("sum(level:rate5m) * Inf"), ["level:rate5m"]);
}

#[test]
fn alert_expressions_are_read_from_block_and_plain_scalars() {
    let yaml = "groups:\n  - name: g\n    rules:\n      - alert: A\n        expr: |\n          sum(\n            a_total\n\n          ) > 0\n        for: 1m\n      - alert: B\n        expr: b == 0\n        labels:\n          severity: warning\n";
    let found = alert_expressions(yaml);
    assert_eq!(
        found,
        [
            Expression {
                origin: "alert A".into(),
                promql: "          sum(\n            a_total\n\n          ) > 0".into(),
            },
            Expression {
                origin: "alert B".into(),
                promql: "b == 0".into(),
            },
        ]
    );
}

#[test]
fn histogram_samples_and_labels_are_read_from_the_page() {
    let page = "# HELP h A histogram.\n# TYPE h histogram\nh_bucket{To=\"a1\",le=\"0.1\"} 1\nh_bucket{To=\"a1\",le=\"+Inf\"} 2\nh_sum{To=\"a1\"} 0.3\nh_count{To=\"a1\"} 2\ng{path=\"a \\\"b\\\", c}\"} 1\n";
    let page = samples(page);
    assert!(has_series(&page, "h_bucket", &[("To", None)]));
    assert!(has_series(&page, "h_bucket", &[("le", Some("+Inf"))]));
    assert!(!has_series(&page, "h_bucket", &[("From", None)]));
    assert!(has_series(&page, "g", &[("path", Some("a \"b\", c}"))]));
    let referenced: BTreeSet<String> = ["h_bucket", "h_sum", "h_count", "g", "up"]
        .map(String::from)
        .into();
    assert_eq!(missing_names(&referenced, &page), Vec::<String>::new());
}

#[test]
fn a_name_no_member_exports_is_reported_missing() {
    let page = "# TYPE etcd_server_has_leader gauge\netcd_server_has_leader 1\n".to_string();
    let referenced = metric_names(
        "etcd_server_has_leader == 0 or rate(etcd_made_up_total[5m]) > 0 or h_bucket > up",
    );
    assert_eq!(
        missing_names(&referenced, &samples(&page)),
        ["etcd_made_up_total", "h_bucket"]
    );
}

#[test]
fn selectors_carry_their_label_matchers() {
    let matcher = |label: &str, op: &str, value: &str| Matcher {
        label: label.into(),
        op: op.into(),
        value: value.into(),
    };
    assert_eq!(
        selectors(
            r#"sum(rate(a_total{job=~"$cluster", grpc_type = "unary",code!="OK",p=~'a\'b',}[5m])) / b"#
        ),
        [
            Selector {
                metric: "a_total".into(),
                matchers: vec![
                    matcher("job", "=~", "$cluster"),
                    matcher("grpc_type", "=", "unary"),
                    matcher("code", "!=", "OK"),
                    matcher("p", "=~", "a'b"),
                ],
            },
            Selector {
                metric: "b".into(),
                matchers: vec![],
            },
        ]
    );
}

#[test]
fn a_selector_no_series_matches_is_reported() {
    let page = samples(
        "grpc_server_handled_total{grpc_method=\"Put\",grpc_code=\"OK\"} 1\nup_to_date 1\n",
    );
    let expression = |promql: &str| Expression {
        origin: "panel P".into(),
        promql: promql.into(),
    };
    let expressions = [
        expression(r#"rate(grpc_server_handled_total{job="x", grpc_type="unary"}[5m])"#),
        expression(
            r#"grpc_server_handled_total{instance=~"$i", grpc_code=~"OK|Unknown", grpc_method!="Range"}"#,
        ),
        expression(r#"up_to_date{grpc_code=~".+"}"#),
        expression(r#"missing_total{grpc_code="OK"}"#),
    ];
    let empty: Vec<String> = empty_selectors(&expressions, &page).into_keys().collect();
    assert_eq!(
        empty,
        [
            r#"grpc_server_handled_total with [("grpc_type", Some("unary"))]"#,
            r#"up_to_date with [("grpc_code", None)]"#,
        ]
    );
}
