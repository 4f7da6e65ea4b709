//! Real ingestion: an event sent by the worker is accepted by Bugsink (a Sentry-compatible
//! tracker running locally) and stored as an issue. This checks our envelopes against someone
//! else's parser, not only our own sink.

use std::path::PathBuf;
use std::process::{Command, Output};

use crate::support::workerd::repo_root;
use crate::support::{closed_port, is_event_id, Origin, Worker};

/// A Bugsink started by `scripts/bugsink.sh` in a fresh state dir, stopped on drop.
struct Bugsink {
    state: PathBuf,
    dsn: String,
}

fn bugsink_sh(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(repo_root().join("scripts/bugsink.sh"))
        .args(args)
        .output()
        .expect("run scripts/bugsink.sh")
}

impl Bugsink {
    fn start() -> Bugsink {
        let state = std::env::temp_dir().join(format!(
            "edgeguard-e2e-bugsink-{}-{}",
            std::process::id(),
            closed_port()
        ));
        let port = closed_port().to_string();
        let out = bugsink_sh(&["start", state.to_str().unwrap(), &port]);
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        let bugsink = Bugsink {
            dsn: stdout
                .lines()
                .find_map(|l| l.strip_prefix("SENTRY_DSN="))
                .unwrap_or_default()
                .to_owned(),
            state,
        };
        assert!(
            out.status.success() && !bugsink.dsn.is_empty(),
            "bugsink did not start:\n{stdout}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        bugsink
    }

    /// Waits (bounded) for the event to be stored in an issue; returns the script's report.
    fn find_event(&self, id: &str) -> Result<String, String> {
        let out = bugsink_sh(&["has-event", self.state.to_str().unwrap(), id, "30"]);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        if out.status.success() {
            Ok(text)
        } else {
            Err(text)
        }
    }
}

impl Drop for Bugsink {
    fn drop(&mut self) {
        bugsink_sh(&["stop", self.state.to_str().unwrap_or_default()]);
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

#[test]
fn origin_failures_become_separate_issues_in_a_real_bugsink() {
    let bugsink = Bugsink::start();
    let origin = Origin::start();
    let worker = Worker::start(&[
        ("ORIGIN_URL", &origin.url()),
        ("SENTRY_DSN", &bugsink.dsn),
        ("SENTRY_ENVIRONMENT", "e2e"),
        ("SENTRY_DEBUG", "true"),
    ]);

    let mut reports = Vec::new();
    for (path, status, title) in [
        ("/status/500", 500, "OriginStatus"),
        ("/status/503", 503, "OriginStatus"),
    ] {
        let resp = worker.get(path);
        assert_eq!(resp.status, status, "{resp:?}");
        let id = resp.header("x-sentry-id").unwrap_or_default().to_owned();
        assert!(is_event_id(&id), "no event id for {path}: {resp:?}");
        assert!(resp.text().contains(&id), "the page must quote {id}");
        let report = bugsink.find_event(&id).unwrap_or_else(|why| {
            panic!(
                "event {id} for {path} not stored by bugsink: {why}\nworker log:\n{}",
                worker.logs()
            )
        });
        // The issue is titled by our exception, not "<unknown>" (what `synthetic` caused).
        assert!(report.contains(title), "issue title for {path}: {report}");
        reports.push(report);
    }
    // Different statuses are different problems: two issues, not one.
    let issue = |report: &str| {
        report
            .split(" in issue ")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
    };
    let issues: Vec<_> = reports.iter().map(|r| issue(r)).collect();
    assert!(
        issues[0].is_some() && issues[0] != issues[1],
        "500 and 503 should be separate issues: {reports:?}"
    );
    eprintln!("bugsink stored: {reports:?}");
    assert!(
        worker.logs().contains("Sentry answered 200"),
        "with SENTRY_DEBUG the worker logs each accepted delivery:\n{}",
        worker.logs()
    );
}
