//! Prometheus' own checker on a render with every kind of family.
//!
//! Needs `promtool` on PATH (Debian's `prometheus` package). Without it the
//! test says so and passes, unless `DIALTONE_REQUIRE_PEERS=1`, where it
//! fails: the end-to-end suite sets that.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use dialtone_http::metrics::{Registry, DEFAULT_BUCKETS};

fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// A registry with every kind of family, labels that need escaping, and
/// awkward floats.
fn everything() -> Registry {
    let r = Registry::new();
    r.counter("dialtone_calls_total", "Calls placed.").add(7);
    let requests = r.counter_vec(
        "dialtone_api_requests_total",
        "API requests by tenant.\nSecond line with a \\ backslash.",
        &["tenant", "code"],
    );
    requests.with(&["tenant-a", "200"]).inc();
    requests
        .with(&["quote \" backslash \\ newline \n end", "500"])
        .add(2);
    r.gauge("dialtone_registrations", "Registered endpoints.")
        .set(-3);
    r.gauge_vec(
        "dialtone_tenant_channels",
        "Channels by tenant.",
        &["tenant"],
    )
    .with(&["tenant-a"])
    .set(4);
    let setup = r.histogram(
        "dialtone_call_setup_seconds",
        "Time from INVITE to answer.",
        DEFAULT_BUCKETS,
    );
    for v in [0.001, 0.02, 0.3, 4.0, 60.0] {
        setup.observe(v);
    }
    let upload = r.histogram_vec(
        "dialtone_dialplan_upload_seconds",
        "Dialplan upload time by tenant.",
        &["tenant"],
        &[1e-7, 0.5, 1e20],
    );
    upload.with(&["b"]).observe(0.25);
    upload.with(&["a"]).observe(1e-8);
    r.gauge_fn(
        "dialtone_channels_active",
        "Channels up now.",
        &["profile"],
        Box::new(|| {
            vec![
                (vec!["internal".into()], 2.0),
                (vec!["external".into()], f64::NAN),
                (vec!["loopback".into()], f64::INFINITY),
                (vec!["other".into()], 0.1 + 0.2),
            ]
        }),
    );
    r.counter_fn(
        "dialtone_cdrs_written_total",
        "CDRs written.",
        &[],
        Box::new(|| vec![(vec![], 12.0)]),
    );
    r
}

#[test]
fn promtool_accepts_the_render() {
    let required = std::env::var("DIALTONE_REQUIRE_PEERS").as_deref() == Ok("1");
    let Some(promtool) = find_on_path("promtool") else {
        assert!(
            !required,
            "promtool is not on PATH (Debian package prometheus) and DIALTONE_REQUIRE_PEERS=1"
        );
        eprintln!("promtool is not on PATH: `promtool check metrics` was NOT run");
        return;
    };
    let render = everything().render();
    let mut child = Command::new(&promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(render.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed ({}):\n{}{}\n--- render ---\n{render}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("promtool check metrics: ok");
}
