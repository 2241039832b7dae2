//! Prometheus metrics on `--metrics-listen`: a real node scraped with a plain HTTP/1.1 client
//! shows its Raft term and leadership, the VMs by status, a write latency histogram that grows
//! with writes and the usage of the VMs it runs; anything but `/metrics` is 404, and hostile
//! requests leave the node serving.

use std::net::TcpStream;
use std::time::Duration;

use corral_cli::views::VmView;
use corral_tests::scrape::{get, metrics as scrape, request as http, value};
use corral_tests::{free_port, wait_until, Cluster};

fn must(text: &str, series: &str) -> Result<f64, String> {
    value(text, series).ok_or_else(|| format!("{series} not in the scrape"))
}

/// Every metric the Grafana dashboard (deploy/grafana/corral.json) queries is one a node serves.
fn dashboard_names_are_served(text: &str) {
    let served: Vec<&str> = text.lines().filter_map(|l| l.strip_prefix("# TYPE ")?.split(' ').next()).collect();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/corral.json");
    let dashboard = std::fs::read_to_string(path).expect("the dashboard");
    let mut queried: Vec<String> = Vec::new();
    for (start, _) in dashboard.match_indices("corral_") {
        let name: String = dashboard[start..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
        let base = ["_bucket", "_count", "_sum", "_total"]
            .iter()
            .fold(name.clone(), |n, s| n.strip_suffix(s).map_or(n.clone(), str::to_string));
        if !queried.contains(&base) {
            queried.push(base);
        }
    }
    assert!(queried.len() > 20, "the dashboard queries {queried:?}");
    let missing: Vec<&String> = queried.iter().filter(|q| !served.contains(&q.as_str())).collect();
    assert!(missing.is_empty(), "the dashboard queries metrics no node serves: {missing:?}");
}

#[test]
fn a_node_serves_its_metrics_without_login_on_the_metrics_address() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut c = Cluster::start(1, &["--metrics-listen", &addr]);
    c.bootstrap();
    let text = wait_until(Duration::from_secs(20), "the node leads in its metrics", || {
        let text = scrape(&addr)?;
        match must(&text, "corral_raft_is_leader")? {
            1.0 => Ok(text),
            v => Err(format!("corral_raft_is_leader {v}")),
        }
    });
    assert!(must(&text, "corral_raft_term").unwrap() >= 1.0, "{text}");
    let leader_id = c.status(0).leader_id as f64;
    assert_eq!(must(&text, "corral_raft_leader_id").unwrap(), leader_id);
    assert_eq!(must(&text, "corral_raft_has_leader").unwrap(), 1.0);
    assert_eq!(must(&text, "corral_hosts{state=\"up\"}").unwrap(), 1.0);
    assert_eq!(must(&text, "corral_vms{status=\"up\"}").unwrap(), 0.0);
    assert!(must(&text, "corral_raft_applied_index").unwrap() >= 1.0);
    assert!(text.contains("# TYPE corral_write_duration_seconds histogram"), "{text}");
    assert!(text.ends_with("# EOF\n"), "OpenMetrics text ends with # EOF");

    // Writes through this node are timed; a VM that starts shows up among the running ones,
    // with its usage from libvirt once the agent has read it.
    let writes_before = value(&text, "corral_write_duration_seconds_count").unwrap_or(0.0);
    c.cli_json::<VmView>(0, &["vm", "create", "web1", "--memory", "256M", "--vcpus", "1"]);
    c.cli_json::<VmView>(0, &["vm", "start", "web1"]);
    c.wait_status(0, "web1", "up");
    wait_until(Duration::from_secs(30), "the running VM and its usage in the metrics", || {
        let text = scrape(&addr)?;
        let up = must(&text, "corral_vms{status=\"up\"}")?;
        let writes = must(&text, "corral_write_duration_seconds_count")?;
        let memory = must(&text, "corral_vm_memory_bytes{vm=\"web1\"}")?;
        let cpu = must(&text, "corral_vm_cpu_seconds_total{vm=\"web1\"}")?;
        let on_host = must(&text, "corral_host_vms")?;
        if up == 1.0 && on_host == 1.0 && writes >= writes_before + 2.0 && memory > 0.0 && cpu >= 0.0 {
            Ok(())
        } else {
            Err(format!("up {up}, here {on_host}, writes {writes} (before {writes_before}), memory {memory}"))
        }
    });
    let text = scrape(&addr).unwrap();
    dashboard_names_are_served(&text);
    assert!(must(&text, "corral_ovf_documents").unwrap() >= 1.0, "{text}");
    assert!(must(&text, "corral_ovf_writes_total").unwrap() >= 1.0, "{text}");
    assert!(must(&text, "corral_lease_held").unwrap() == 1.0, "{text}");

    // Anything else is 404 (or 405), and hostile requests do not hurt the node.
    assert_eq!(get(&addr, "/").unwrap().0, 404);
    assert_eq!(get(&addr, "/metrics/../etc/passwd").unwrap().0, 404);
    let post = format!("POST /metrics HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc");
    assert_eq!(http(&addr, &post).unwrap().0, 405);
    let huge = format!("GET /metrics HTTP/1.1\r\nHost: {addr}\r\nX-Big: {}\r\n\r\n", "a".repeat(1 << 20));
    let answer = http(&addr, &huge);
    assert!(!matches!(answer, Ok((200, _))), "a 1 MiB request head is refused: {answer:?}");
    for junk in ["\u{0}\u{1}\u{2}garbage\r\n\r\n", "GET\r\n\r\n", "GET /metrics HTTP/9.9\r\n\r\n"] {
        let _ = http(&addr, junk);
    }
    // Idle connections that never send a thing take no more than their slots.
    let idle: Vec<TcpStream> = (0..32).filter_map(|_| TcpStream::connect(&addr).ok()).collect();
    drop(idle);
    wait_until(Duration::from_secs(20), "the node still serves its metrics", || scrape(&addr).map(drop));
    assert_eq!(c.vm(0, "web1").status, "up");
}
