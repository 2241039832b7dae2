//! The scale harness's power losses: SIGKILL of hosts (their test-driver VMs die with the
//! process) and the time until every HA VM they ran is up on another host, as the leader holds
//! the VMs. Figures only; a VM that never comes back is counted, not asserted.

use std::collections::BTreeMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use corral_proto::event_service_client::EventServiceClient;
use corral_proto::{HaPriority, ListEventsRequest, Vm};

use super::fleet::{self, check_interrupt, Fleet};
use super::measure::{percentile, secs};

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

/// Polls (stale reads on the leader, every 200 ms, at most `timeout`) until each of `vms` is up
/// on a host other than the one it ran on; returns when each was first seen so, from `t0`.
fn wait_up_elsewhere(
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    vms: &[(String, String)],
    t0: Instant,
    timeout: Duration,
) -> BTreeMap<String, Duration> {
    let mut seen: BTreeMap<String, Duration> = BTreeMap::new();
    let client = {
        let _in_runtime = rt.enter();
        fleet::vms(&fleet.leader_addr())
    };
    while t0.elapsed() < timeout && seen.len() < vms.len() {
        check_interrupt();
        let pending: Vec<&(String, String)> = vms.iter().filter(|(n, _)| !seen.contains_key(n)).collect();
        let got: Vec<Option<Vm>> = rt.block_on(futures::future::join_all(pending.iter().map(|(name, _)| {
            let mut c = client.clone();
            async move { fleet::get_vm(&mut c, name).await }
        })));
        let at = t0.elapsed();
        for ((name, old), vm) in pending.iter().zip(got) {
            if vm.is_some_and(|v| fleet::is_up(&v) && v.host.as_deref().is_some_and(|h| h != old)) {
                seen.insert(name.clone(), at);
            }
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    seen
}

/// The events the leader keeps, the last `limit`.
fn events(rt: &tokio::runtime::Runtime, fleet: &Fleet, limit: u32) -> Vec<corral_proto::Event> {
    rt.block_on(async {
        let mut c = EventServiceClient::new(fleet::channel(&fleet.leader_addr()))
            .max_decoding_message_size(corral_proto::MAX_API_MESSAGE);
        c.list(ListEventsRequest { limit, stale: true, user: String::new() }).await.map(|r| r.into_inner().events)
    })
    .unwrap_or_default()
}

fn priority_word(p: i32) -> &'static str {
    match HaPriority::try_from(p) {
        Ok(HaPriority::High) => "high",
        Ok(HaPriority::Medium) => "medium",
        Ok(HaPriority::Low) => "low",
        _ => "?",
    }
}

fn summary(times: &BTreeMap<String, Duration>) -> String {
    let mut v: Vec<Duration> = times.values().copied().collect();
    v.sort();
    if v.is_empty() {
        return "none up".into();
    }
    format!("first {}, median {}, last {}", secs(v[0]), secs(percentile(&v, 0.5)), secs(v[v.len() - 1]))
}

/// Pairs (a, b) where a has a higher priority than b but b was seen up in an earlier poll.
fn inversions(times: &BTreeMap<String, Duration>, prio: &BTreeMap<String, i32>) -> usize {
    let v: Vec<(i32, Duration)> = times.iter().filter_map(|(n, t)| Some((*prio.get(n)?, *t))).collect();
    let mut count = 0;
    for a in &v {
        for b in &v {
            if a.0 > b.0 && b.1 < a.1 {
                count += 1;
            }
        }
    }
    count
}

/// How the restarts were ordered in the event log ("VM X is being restarted on host Y (highly
/// available, P priority)"): the priorities in log order, and how many pairs are out of order.
/// Only events from `since_ms` on count (earlier restarts of the same VMs, after a lapsed lease,
/// are not this loss's). Hosts declared down at different times get a restart pass each, and
/// the order holds within a pass.
fn restart_order(evs: &[corral_proto::Event], names: &BTreeMap<String, i32>, since_ms: i64) -> (Vec<i32>, usize) {
    let order: Vec<i32> = evs
        .iter()
        .filter(|e| e.time_unix_ms >= since_ms && e.message.contains("is being restarted on host"))
        .filter_map(|e| {
            let name = e.message.strip_prefix("VM ")?.split_whitespace().next()?;
            names.get(name).copied()
        })
        .collect();
    let mut out = 0;
    for (i, a) in order.iter().enumerate() {
        out += order[i + 1..].iter().filter(|b| *b > a).count();
    }
    (order, out)
}

/// Prints what the kill to "all up elsewhere" took, by priority, with the host-down event's time.
fn report(
    rt: &tokio::runtime::Runtime,
    fleet: &Fleet,
    vms: &[(String, String)],
    prio: &BTreeMap<String, i32>,
    seen: &BTreeMap<String, Duration>,
    killed_at_ms: i64,
) {
    println!("{} of {} HA VMs up elsewhere: {}", seen.len(), vms.len(), summary(seen));
    for p in [HaPriority::High, HaPriority::Medium, HaPriority::Low] {
        let of: BTreeMap<String, Duration> =
            seen.iter().filter(|(n, _)| prio.get(*n) == Some(&(p as i32))).map(|(n, t)| (n.clone(), *t)).collect();
        let total = prio.values().filter(|q| **q == p as i32).count();
        println!("  {:>6} priority ({} of {total}): {}", priority_word(p as i32), of.len(), summary(&of));
    }
    println!("  pairs seen up out of priority order (by the 200 ms poll): {}", inversions(seen, prio));
    let evs = events(rt, fleet, 5000);
    let downs: Vec<String> = evs
        .iter()
        .filter(|e| e.time_unix_ms >= killed_at_ms && e.message.contains("is down:"))
        .filter(|e| e.message.starts_with("Host "))
        .map(|e| format!("{:.2} s", (e.time_unix_ms - killed_at_ms) as f64 / 1000.0))
        .collect();
    println!("  host declared down after (event time): {}", downs.join(", "));
    let (order, out) = restart_order(&evs, prio, killed_at_ms);
    let words: Vec<&str> = order.iter().map(|p| priority_word(*p)).collect();
    let mut runs: Vec<String> = Vec::new();
    for w in words.chunk_by(|a, b| a == b) {
        runs.push(format!("{}x{}", w.len(), w[0]));
    }
    println!(
        "  restart events in log order: {} (pairs out of priority order: {out}){}",
        runs.join(" "),
        if order.len() < prio.len() { " — some restarts are not in the kept event log" } else { "" }
    );
}

/// SIGKILL of the HA host with the HA part's `ha_vms` VMs of mixed priority. If some of them
/// run elsewhere (the hosts' leases lapsed during the fill and HA moved them), it says so and
/// kills the learner host that runs most of them, measuring those.
pub fn ha_host(rt: &tokio::runtime::Runtime, fleet: &mut Fleet, ha_vms: usize, timeout: Duration) {
    check_interrupt();
    let names: Vec<String> = (0..ha_vms).map(fleet::vm_name).collect();
    let prio: BTreeMap<String, i32> = (0..ha_vms).map(|i| (fleet::vm_name(i), fleet::priority(i) as i32)).collect();
    // Bounded: at most 120 s for all of them to be up somewhere.
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut hosts: BTreeMap<String, Vec<String>> = BTreeMap::new();
    while Instant::now() < deadline {
        check_interrupt();
        let got: Vec<Option<Vm>> = rt.block_on(async {
            let c = fleet::vms(&fleet.leader_addr());
            futures::future::join_all(names.iter().map(|n| {
                let mut c = c.clone();
                async move { fleet::get_vm(&mut c, n).await }
            }))
            .await
        });
        hosts.clear();
        // A VM whose creation was refused is not waited for.
        let exist = got.iter().flatten().count();
        for v in got.into_iter().flatten().filter(fleet::is_up) {
            hosts.entry(v.host.clone().unwrap_or_default()).or_default().push(v.name);
        }
        if hosts.values().map(Vec::len).sum::<usize>() == exist {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let planned = fleet.name(fleet.ha_host);
    let learner = |name: &str| (0..fleet.c.nodes.len()).find(|i| fleet.name(*i) == name && !fleet.voters.contains(i));
    let victim = hosts
        .iter()
        .filter_map(|(h, v)| Some((v.len(), learner(h)?)))
        .max_by_key(|(n, i)| (*n, *i == fleet.ha_host))
        .map(|(_, i)| i)
        .unwrap_or(fleet.ha_host);
    let host = fleet.name(victim);
    let on: Vec<String> = hosts.get(&host).cloned().unwrap_or_default();
    println!("\n## HA: SIGKILL of {host} with {} HA VMs (a third each high, medium, low)", on.len());
    let up: usize = hosts.values().map(Vec::len).sum();
    if on.len() < ha_vms {
        let spread: Vec<String> = hosts.iter().map(|(h, v)| format!("{h}: {}", v.len())).collect();
        println!(
            "(of the {ha_vms} planned on {planned}, {up} are up, on {}: the others were refused at creation, or moved when leases lapsed)",
            spread.join(", ")
        );
    }
    let vms: Vec<(String, String)> = on.iter().map(|n| (n.clone(), host.clone())).collect();
    let prio: BTreeMap<String, i32> = prio.into_iter().filter(|(n, _)| on.contains(n)).collect();
    let killed_at_ms = now_ms();
    let t0 = Instant::now();
    fleet.c.kill(victim);
    let seen = wait_up_elsewhere(rt, fleet, &vms, t0, timeout);
    report(rt, fleet, &vms, &prio, &seen, killed_at_ms);
}

/// SIGKILL of `lose` worker hosts at once, chosen among those that run HA VMs.
pub fn lose_hosts(rt: &tokio::runtime::Runtime, fleet: &mut Fleet, lose: usize, timeout: Duration) {
    check_interrupt();
    let all = match rt.block_on(fleet::list_vms(&fleet.leader_addr())) {
        Ok(all) => all,
        Err(e) => {
            println!("\n## loss of hosts: cannot list the VMs: {}", e.message());
            return;
        }
    };
    let mut by_host: BTreeMap<String, Vec<&Vm>> = BTreeMap::new();
    for v in all.iter().filter(|v| v.ha.as_ref().is_some_and(|h| h.enabled) && fleet::is_up(v)) {
        if let Some(h) = &v.host {
            by_host.entry(h.clone()).or_default().push(v);
        }
    }
    let victims: Vec<usize> = fleet
        .workers
        .iter()
        .copied()
        .filter(|w| fleet.c.nodes[*w].is_running() && by_host.contains_key(&fleet.name(*w)))
        .take(lose)
        .collect();
    let vms: Vec<(String, String)> = victims
        .iter()
        .flat_map(|w| by_host[&fleet.name(*w)].iter().map(|v| (v.name.clone(), fleet.name(*w))))
        .collect();
    let prio: BTreeMap<String, i32> = all
        .iter()
        .filter(|v| vms.iter().any(|(n, _)| *n == v.name))
        .map(|v| (v.name.clone(), v.ha.as_ref().map_or(0, |h| h.priority_enum)))
        .collect();
    let names: Vec<String> = victims.iter().map(|v| fleet.name(*v)).collect();
    println!(
        "\n## loss of {} hosts at once (SIGKILL of {}), {} HA VMs on them",
        victims.len(),
        names.join(" "),
        vms.len()
    );
    let killed_at_ms = now_ms();
    let t0 = Instant::now();
    for v in &victims {
        fleet.c.kill(*v);
    }
    let seen = wait_up_elsewhere(rt, fleet, &vms, t0, timeout);
    report(rt, fleet, &vms, &prio, &seen, killed_at_ms);
}
