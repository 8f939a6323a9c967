//! The operator files in config/ops are valid for the tools that read them:
//! promtool checks the scrape config and the alert rules (Debian's
//! `prometheus` package; .ci/run installs it), and the dashboard is JSON with
//! panels. That their metric names exist is checked against a live /metrics
//! in metrics_and_lifecycle.rs.

use std::path::PathBuf;
use std::process::Command;

fn ops(file: &str) -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../config/ops")
        .join(file)
}

fn promtool(args: &[&str], file: &str) {
    let out = Command::new("promtool")
        .args(args)
        .arg(ops(file))
        .output()
        .expect("promtool runs: install Debian's `prometheus` package (.ci/run does)");
    assert!(
        out.status.success(),
        "promtool {args:?} {file}:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn promtool_accepts_the_scrape_config_and_the_alert_rules() {
    promtool(&["check", "config"], "prometheus.yml");
    promtool(&["check", "rules"], "alerts.yml");
}

#[test]
fn the_dashboard_is_json_with_queries() {
    let text = std::fs::read_to_string(ops("grafana-dashboard.json")).unwrap();
    let dash: serde_json::Value = serde_json::from_str(&text).unwrap();
    let panels = dash["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    for p in panels {
        let targets = p["targets"].as_array().unwrap();
        assert!(!targets.is_empty(), "panel {} has queries", p["title"]);
        assert!(targets.iter().all(|t| t["expr"]
            .as_str()
            .is_some_and(|e| e.contains("sfu_") || e.contains("process_"))));
    }
}
