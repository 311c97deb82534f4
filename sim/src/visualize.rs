//! A failing seed's history as one self-contained HTML page (inline SVG and CSS, no scripts from
//! elsewhere), in the spirit of Porcupine's visualizer: for each key, every operation is a bar
//! from its invoke to its completion, in its client's lane, labelled with what it did and what it
//! got; leader changes, faults, crashes and restarts are marked on the same time axis; and the key
//! on which the checker found no valid order comes first, framed in red, with the checker's
//! words.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::checker::{Op, Operation, Outcome};

/// What the page shows besides the history.
pub struct Page<'a> {
    pub title: String,
    pub history: &'a [Operation],
    /// The run's trace (`"   1.234s text"` lines): faults, leaders, starts and stops become marks.
    pub trace: &'a [String],
    /// The key the checker found no valid order for, and why (its first line names the
    /// operations, as `#id`, that are outlined in red).
    pub violation: Option<(&'a [u8], &'a str)>,
}

const LANE_PX: f64 = 22.0;
const LEFT_PX: f64 = 90.0;
const WIDTH_PX: f64 = 1400.0;

/// The page's HTML.
pub fn render(page: &Page) -> String {
    let end_us = page
        .history
        .iter()
        .map(|op| op.complete_us.max(op.invoke_us))
        .max()
        .unwrap_or(1)
        .max(1);
    let marks = marks(page.trace);
    let mut by_key: BTreeMap<&[u8], Vec<&Operation>> = BTreeMap::new();
    for op in page.history {
        by_key.entry(key_of(&op.op)).or_default().push(op);
    }
    let mut keys: Vec<&[u8]> = by_key.keys().copied().collect();
    if let Some((bad, _)) = page.violation {
        keys.sort_by_key(|k| *k != bad);
    }
    let mut html = String::new();
    let _ = write!(
        html,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{}</title><style>{STYLE}</style>\
         </head><body><h1>{}</h1>",
        escape(&page.title),
        escape(&page.title)
    );
    let mut named = Vec::new();
    if let Some((key, why)) = page.violation {
        let first = why.lines().next().unwrap_or_default();
        named = named_operations(first);
        let _ = write!(
            html,
            "<p class=\"why\">No valid order for key <b>{}</b>: {}</p>",
            escape(&String::from_utf8_lossy(key)),
            escape(first)
        );
    }
    html.push_str(
        "<p class=\"legend\"><span class=\"ok\">acknowledged</span> \
        <span class=\"unknown\">unknown outcome</span> <span class=\"failed\">failed</span> \
        &nbsp; marks: <span class=\"mark-leader\">leader</span> \
        <span class=\"mark-fault\">fault</span> <span class=\"mark-member\">start/stop</span> \
        &nbsp; hover a bar or a mark for its details</p>",
    );
    if let Some((key, _)) = page.violation {
        // Close up: the time around the operations the checker named.
        let around: Vec<&&Operation> = by_key[key]
            .iter()
            .filter(|op| named.contains(&op.id))
            .collect();
        if let (Some(from), Some(to)) = (
            around.iter().map(|op| op.invoke_us).min(),
            around.iter().map(|op| op.complete_us).max(),
        ) {
            let margin = ((to - from) / 4).max(50_000);
            let window = (from.saturating_sub(margin), to + margin);
            let section = Section {
                title: format!("key {} close up", String::from_utf8_lossy(key)),
                ops: &by_key[key],
                marks: &marks,
                window,
                bad: true,
                named: &named,
            };
            section.render(&mut html);
        }
    }
    for key in keys {
        let section = Section {
            title: format!("key {}", String::from_utf8_lossy(key)),
            ops: &by_key[key],
            marks: &marks,
            window: (0, end_us),
            bad: page.violation.is_some_and(|(k, _)| k == key),
            named: &named,
        };
        section.render(&mut html);
    }
    html.push_str("</body></html>\n");
    html
}

const STYLE: &str = "body{font:12px sans-serif;margin:16px}h2{font-size:14px;margin:18px 0 4px}\
    .bad{border:3px solid #c00;padding:4px}.why{color:#c00;font-weight:bold}\
    .ok{background:#cfe8cf}.unknown{background:#ffe0a0}.failed{background:#ddd}\
    .mark-leader{color:#06c}.mark-fault{color:#c00}.mark-member{color:#777}\
    .legend span{padding:1px 4px}svg text{font:10px monospace}";

/// One key over one stretch of time: a lane per client, a bar per operation, the marks across all
/// lanes.
struct Section<'a> {
    title: String,
    ops: &'a [&'a Operation],
    marks: &'a [Mark],
    /// The stretch of time shown (µs).
    window: (u64, u64),
    bad: bool,
    /// Operations to outline in red.
    named: &'a [u64],
}

impl Section<'_> {
    fn x(&self, at_us: u64) -> f64 {
        let (from, to) = self.window;
        let span = (to - from).max(1) as f64;
        LEFT_PX + (at_us.saturating_sub(from)) as f64 * (WIDTH_PX - LEFT_PX - 10.0) / span
    }

    fn shows(&self, from_us: u64, to_us: u64) -> bool {
        to_us >= self.window.0 && from_us <= self.window.1
    }

    fn render(&self, html: &mut String) {
        let ops: Vec<&&Operation> = self
            .ops
            .iter()
            .filter(|op| self.shows(op.invoke_us, op.complete_us))
            .collect();
        let mut lanes: Vec<u64> = ops.iter().map(|op| op.client).collect();
        lanes.sort_unstable();
        lanes.dedup();
        let height = LANE_PX * (lanes.len() as f64 + 1.0) + 14.0;
        let _ = write!(
            html,
            "<div class=\"{}\"><h2>{}</h2><svg width=\"{WIDTH_PX}\" height=\"{height}\">",
            if self.bad { "bad" } else { "" },
            escape(&self.title)
        );
        for mark in self.marks.iter().filter(|m| self.shows(m.at_us, m.at_us)) {
            let x = self.x(mark.at_us);
            let _ = write!(
                html,
                "<line x1=\"{x:.1}\" y1=\"0\" x2=\"{x:.1}\" y2=\"{height}\" stroke=\"{}\" \
                 stroke-width=\"1.5\"><title>{:.3}s {}</title></line>",
                mark.kind.color(),
                mark.at_us as f64 / 1e6,
                escape(&mark.text)
            );
        }
        for (lane, client) in lanes.iter().enumerate() {
            let y = 14.0 + LANE_PX * lane as f64;
            let _ = write!(
                html,
                "<text x=\"2\" y=\"{:.1}\">client {client}</text>",
                y + 14.0
            );
            for op in ops.iter().filter(|op| op.client == *client) {
                self.bar(html, op, y);
            }
        }
        html.push_str("</svg></div>");
    }

    fn bar(&self, html: &mut String, op: &Operation, y: f64) {
        let x = self.x(op.invoke_us);
        let width = (self.x(op.complete_us) - x).max(2.0);
        let (fill, label) = describe(op);
        let named = self.named.contains(&op.id);
        let (stroke, stroke_width) = if named { ("#c00", 2.5) } else { ("#555", 0.5) };
        let _ = write!(
            html,
            "<g><rect x=\"{x:.1}\" y=\"{y:.1}\" width=\"{width:.1}\" height=\"{}\" \
             fill=\"{fill}\" stroke=\"{stroke}\" stroke-width=\"{stroke_width}\"><title>#{} client \
             {} {:.3}s–{:.3}s: {}</title></rect>",
            LANE_PX - 4.0,
            op.id,
            op.client,
            op.invoke_us as f64 / 1e6,
            op.complete_us as f64 / 1e6,
            escape(&label)
        );
        // A label only where it fits; the tooltip always has it.
        if width >= 6.0 * label.chars().count() as f64 {
            let _ = write!(
                html,
                "<text x=\"{:.1}\" y=\"{:.1}\">{}</text>",
                x + 2.0,
                y + 12.0,
                escape(&label)
            );
        }
        html.push_str("</g>");
    }
}

/// The bar's colour and label: what the operation did and what it got.
fn describe(op: &Operation) -> (&'static str, String) {
    let text = |v: &[u8]| String::from_utf8_lossy(v).into_owned();
    let did = match &op.op {
        Op::Put { value, .. } => format!("put {}", text(value)),
        Op::Get { .. } => "get".to_string(),
        Op::SerializableGet { .. } => "get (serializable)".to_string(),
        Op::Delete { .. } => "delete".to_string(),
        Op::Cas { expected, new, .. } => format!(
            "cas {}→{}",
            expected.as_deref().map_or("∅".to_string(), text),
            text(new)
        ),
    };
    match &op.outcome {
        Outcome::Put => ("#cfe8cf", did),
        Outcome::Get(value) => (
            "#cfe8cf",
            format!("{did} → {}", value.as_deref().map_or("∅".to_string(), text)),
        ),
        Outcome::Delete { deleted } => ("#cfe8cf", format!("{did} → {deleted}")),
        Outcome::Cas { succeeded } => ("#cfe8cf", format!("{did} → {succeeded}")),
        Outcome::Unknown => ("#ffe0a0", format!("{did} ?")),
        Outcome::Failed => ("#dddddd", format!("{did} ✗")),
    }
}

/// The operations a checker's sentence names as `#id`.
fn named_operations(text: &str) -> Vec<u64> {
    text.split('#')
        .skip(1)
        .filter_map(|rest| {
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            digits.parse().ok()
        })
        .collect()
}

fn key_of(op: &Op) -> &[u8] {
    match op {
        Op::Put { key, .. }
        | Op::Get { key }
        | Op::SerializableGet { key }
        | Op::Delete { key }
        | Op::Cas { key, .. } => key,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MarkKind {
    Leader,
    Fault,
    Member,
}

impl MarkKind {
    fn color(self) -> &'static str {
        match self {
            MarkKind::Leader => "#06c",
            MarkKind::Fault => "#c00",
            MarkKind::Member => "#999",
        }
    }
}

/// Something that happened to the cluster, on the time axis.
#[derive(Debug, Clone)]
struct Mark {
    at_us: u64,
    kind: MarkKind,
    text: String,
}

/// The marks among the trace lines (`"   1.234s text"`).
fn marks(trace: &[String]) -> Vec<Mark> {
    trace
        .iter()
        .filter_map(|line| {
            let line = line.trim_start();
            let (time, text) = line.split_once("s ")?;
            let at_us = (time.parse::<f64>().ok()? * 1e6) as u64;
            let kind = if text.starts_with("nemesis:") || text.starts_with("operator:") {
                MarkKind::Fault
            } else if text.contains(" sees leader ") && text.contains(" sees leader 0 ") {
                return None;
            } else if text.contains(" sees leader ") {
                MarkKind::Leader
            } else if text.contains(" started (") || text.contains(" stopped") {
                MarkKind::Member
            } else {
                return None;
            };
            Some(Mark {
                at_us,
                kind,
                text: text.to_string(),
            })
        })
        .collect()
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(id: u64, client: u64, op: Op, at: u64, outcome: Outcome) -> Operation {
        Operation {
            id,
            client,
            op,
            invoke_us: at,
            complete_us: at + 500,
            outcome,
        }
    }

    #[test]
    fn the_page_shows_every_operation_the_marks_and_the_violation_first() {
        let history = [
            op(
                0,
                1,
                Op::Put {
                    key: b"k1".to_vec(),
                    value: b"a".to_vec(),
                },
                100,
                Outcome::Put,
            ),
            op(
                1,
                2,
                Op::Get {
                    key: b"k2".to_vec(),
                },
                200,
                Outcome::Get(None),
            ),
            op(
                2,
                2,
                Op::Get {
                    key: b"k1".to_vec(),
                },
                900,
                Outcome::Get(Some(b"<b>".to_vec())),
            ),
        ];
        let trace = [
            "     0.000s nemesis: partition [1] | [2]".to_string(),
            "     0.001s member 1 sees leader 1 in term 2".to_string(),
            "     0.002s member 1 sees leader 0 in term 3".to_string(),
        ];
        let html = render(&Page {
            title: "calm seed 3".to_string(),
            history: &history,
            trace: &trace,
            violation: Some((b"k1", "operation [#2 client 2] read <b>, never written")),
        });
        assert!(html.starts_with("<!doctype html>"));
        assert!(html.find("key k1").unwrap() < html.find("key k2").unwrap());
        assert!(html.contains("class=\"bad\""));
        assert!(html.contains("put a"));
        assert!(html.contains("get → &lt;b&gt;"), "values are escaped");
        assert!(html.contains("key k1 close up"));
        assert!(html.contains("nemesis: partition"));
        assert!(html.contains("sees leader 1 in term 2"));
        assert!(
            !html.contains("sees leader 0"),
            "losing a leader is not a mark"
        );
        assert_eq!(
            named_operations("places [#19, #25] then [#79 client 2]"),
            [19, 25, 79]
        );
    }
}
