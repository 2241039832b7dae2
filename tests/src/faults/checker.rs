//! Is a history of one VM's calls linearizable? A Wing–Gong–Lowe search over a register
//! model (absent, or present with a configuration). A call with an unknown outcome may take
//! effect at any time after it was invoked, or never; a read that never answered says nothing
//! and is left out. The search is bounded: a history too tangled to decide is reported so, never
//! passed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use super::history::{Call, Config, Op, Outcome};

/// The model: one VM name, absent or present with its configuration.
pub type State = Option<Config>;

/// Search states visited before a history is called undecided.
const MAX_STATES: usize = 1_000_000;

/// How many sets of unknown calls per (known calls, state) a new one is compared with: the
/// comparison only prunes, so a bounded window keeps it cheap and the search complete.
const DOMINANCE_WINDOW: usize = 32;

/// Wall-clock time one search may take before its history is called undecided.
const TIME_BUDGET: Duration = Duration::from_secs(10);

/// A set of calls, by index into the history.
type Bits = Vec<u64>;

/// The order in which unknown calls are placed between two known ones (see `check`).
fn phase(call: &Call) -> u8 {
    match call {
        Call::Delete => 1,
        Call::Create(_) => 2,
        Call::SetMemory(_) => 3,
        Call::SetDescription(_) => 4,
        Call::Read => 5,
    }
}

/// What the model says `call` answering `outcome` does to `state`: the next state, or `None`
/// when that answer is impossible from `state`.
pub fn step(state: &State, call: &Call, outcome: &Outcome) -> Option<State> {
    use Outcome::*;
    match (call, outcome) {
        // A refusal for another reason (a validation, say) and an unknown read change nothing.
        (_, Refused(_)) => Some(state.clone()),
        (Call::Create(c), Ok(answer)) => {
            (state.is_none() && answer.as_ref().is_none_or(|a| a == c)).then(|| Some(c.clone()))
        }
        (Call::Create(_), AlreadyExists) => state.is_some().then(|| state.clone()),
        (Call::Create(c), Unknown(_)) => Some(state.clone().or_else(|| Some(c.clone()))),
        (Call::SetMemory(_) | Call::SetDescription(_), Ok(answer)) => {
            let next = edited(state.as_ref()?, call);
            answer.as_ref().is_none_or(|a| *a == next).then_some(Some(next))
        }
        (Call::SetMemory(_) | Call::SetDescription(_), Unknown(_)) => Some(state.as_ref().map(|s| edited(s, call))),
        (Call::Read, Ok(answer)) => (state.is_some() && *state == *answer).then(|| state.clone()),
        (Call::Read, Unknown(_)) => Some(state.clone()),
        (Call::Delete, Ok(_)) => state.is_some().then_some(None),
        (Call::Delete, Unknown(_)) => Some(None),
        (_, NotFound) => state.is_none().then_some(None),
        (_, AlreadyExists) => None,
    }
}

fn edited(s: &Config, call: &Call) -> Config {
    let mut next = s.clone();
    match call {
        Call::SetMemory(m) => next.memory_mib = *m,
        Call::SetDescription(d) => next.description = d.clone(),
        _ => {}
    }
    next
}

/// The checker's answer for one VM's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    Linearizable,
    /// No order of the calls fits the model. `stuck` indexes (in the history given) the call
    /// whose answer no order reached could explain; `states` are the model states the deepest
    /// orders had reached just before it.
    Violation {
        stuck: usize,
        states: Vec<State>,
    },
    /// The search gave up (too many concurrent unknown calls): neither passed nor failed.
    Undecided,
}

struct Entry {
    op: usize,
    call: bool,
}

/// Checks one VM's history (in any order) against the register model, starting absent.
pub fn check(ops: &[Op]) -> Verdict {
    // An unanswered read has no effect and constrains nothing.
    // Values some answer showed. An unknown edit whose value no answer shows cannot explain
    // anything (while it would hold, no answer may show the VM), so it is left out too; and
    // unknown deletes, like unknown creates whose values no answer shows, are interchangeable
    // once invoked (each may take effect at any later time): only the first available of
    // them is tried.
    let mut seen_memory = HashSet::new();
    let mut seen_description = HashSet::new();
    for o in ops {
        if let Outcome::Ok(Some(c)) = &o.outcome {
            seen_memory.insert(c.memory_mib);
            seen_description.insert(c.description.clone());
        }
    }
    let unseen = |c: &Config| !seen_memory.contains(&c.memory_mib) && !seen_description.contains(&c.description);
    let class: Vec<Option<u8>> = ops
        .iter()
        .map(|o| match (&o.call, o.outcome.is_unknown()) {
            (Call::Delete, true) => Some(1),
            (Call::Create(c), true) if unseen(c) => Some(2),
            _ => None,
        })
        .collect();
    let kept: Vec<usize> = (0..ops.len())
        .filter(|i| {
            let o = &ops[*i];
            !(o.outcome.is_unknown()
                && match &o.call {
                    Call::Read => true,
                    Call::SetMemory(m) => !seen_memory.contains(m),
                    Call::SetDescription(d) => !seen_description.contains(d),
                    _ => false,
                })
        })
        .collect();
    let mut timed: Vec<(u64, bool, usize)> = Vec::new();
    for &i in &kept {
        timed.push((ops[i].invoked_us, false, i));
        if let Some(t) = ops[i].completed_us {
            // At equal times a call sorts before a return: the two count as concurrent.
            timed.push((t, true, i));
        }
    }
    timed.sort();
    let entries: Vec<Entry> = timed.iter().map(|(_, ret, op)| Entry { op: *op, call: !*ret }).collect();
    let m = entries.len();
    const NIL: usize = usize::MAX;
    let head = m;
    // A doubly linked list over the entries (plus a head at index m) that calls are lifted
    // out of as they are linearized and put back into on backtracking.
    let mut next: Vec<usize> = (1..=m).map(|i| if i == m { NIL } else { i }).collect();
    next.push(if m == 0 { NIL } else { 0 });
    let mut prev: Vec<usize> = (0..m).map(|i| if i == 0 { head } else { i - 1 }).collect();
    prev.push(NIL);
    let mut return_of = vec![NIL; m];
    {
        let mut call_at = vec![NIL; ops.len()];
        for (e, entry) in entries.iter().enumerate() {
            if entry.call {
                call_at[entry.op] = e;
            } else {
                return_of[call_at[entry.op]] = e;
            }
        }
    }
    let unlink = |x: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[x]] = next[x];
        if next[x] != NIL {
            prev[next[x]] = prev[x];
        }
    };
    let relink = |x: usize, next: &mut Vec<usize>, prev: &mut Vec<usize>| {
        next[prev[x]] = x;
        if next[x] != NIL {
            prev[next[x]] = x;
        }
    };

    let words = ops.len().div_ceil(64);
    let set = |bits: &mut Vec<u64>, i: usize, on: bool| {
        if on {
            bits[i / 64] |= 1 << (i % 64);
        } else {
            bits[i / 64] &= !(1 << (i % 64));
        }
    };
    // Calls with a known answer placed so far, and unknown calls made to take effect so far.
    let mut definite = vec![0u64; words];
    let mut used = vec![0u64; words];
    // The phase of the last unknown call placed since the last call with a known answer.
    let mut run = 0u8;
    let mut state: State = None;
    let mut stack: Vec<(usize, State, u8)> = Vec::new();
    // Every configuration explored, exactly; and for each (known calls placed, state) the last
    // few sets of unknown calls used to get there, with the phase reached: a superset of one of
    // them, at a later phase, leaves fewer choices, so there is nothing new to find there.
    let mut explored: HashSet<(Bits, State, Bits, u8)> = HashSet::new();
    let mut recent: HashMap<(Bits, State), VecDeque<(Bits, u8)>> = HashMap::new();
    let deadline = Instant::now() + TIME_BUDGET;
    let mut deepest: Option<(usize, usize)> = None; // (depth, stuck op)
    let mut deepest_states: Vec<State> = Vec::new();
    let mut entry = next[head];
    loop {
        if entry == NIL {
            // Only calls with unknown outcomes are left: they may never have happened.
            return Verdict::Linearizable;
        }
        let e = &entries[entry];
        if e.call {
            let op = &ops[e.op];
            let unknown = op.outcome.is_unknown();
            // An unknown call that would change nothing here is better left for later (or
            // never): taking it now only removes choices. Between two known calls, the unknown
            // ones worth placing are at most a delete, a create, an edit of the memory and one
            // of the description, in that order: any other run of them reaches its state with
            // a subset of its calls in this order.
            let interchangeable_before = class[e.op].is_some_and(|k| {
                let mut x = prev[entry];
                while x != head {
                    if entries[x].call && class[entries[x].op] == Some(k) {
                        return true;
                    }
                    x = prev[x];
                }
                false
            });
            let after = step(&state, &op.call, &op.outcome)
                .filter(|a| !(unknown && (*a == state || phase(&op.call) <= run || interchangeable_before)));
            if let Some(after) = after {
                let (mut d, mut u) = (definite.clone(), used.clone());
                set(if unknown { &mut u } else { &mut d }, e.op, true);
                let next_run = if unknown { phase(&op.call) } else { 0 };
                let sets = recent.entry((d.clone(), after.clone())).or_default();
                let covered = sets.iter().any(|(s, r)| *r <= next_run && s.iter().zip(&u).all(|(s, u)| s & !u == 0));
                if !covered && explored.insert((d.clone(), after.clone(), u.clone(), next_run)) {
                    if sets.len() == DOMINANCE_WINDOW {
                        sets.pop_front();
                    }
                    sets.push_back((u.clone(), next_run));
                    if explored.len() > MAX_STATES || (explored.len().is_multiple_of(4096) && Instant::now() > deadline)
                    {
                        return Verdict::Undecided;
                    }
                    stack.push((entry, std::mem::replace(&mut state, after), run));
                    (definite, used, run) = (d, u, next_run);
                    unlink(entry, &mut next, &mut prev);
                    if return_of[entry] != NIL {
                        unlink(return_of[entry], &mut next, &mut prev);
                    }
                    entry = next[head];
                    continue;
                }
            }
            entry = next[entry];
        } else {
            // This call has returned and no order so far could place it: back up one.
            let depth = stack.len();
            match deepest {
                Some((d, _)) if d > depth => {}
                Some((d, _)) if d == depth => {
                    if !deepest_states.contains(&state) && deepest_states.len() < 4 {
                        deepest_states.push(state.clone());
                    }
                }
                _ => {
                    deepest = Some((depth, e.op));
                    deepest_states = vec![state.clone()];
                }
            }
            let Some((back, before, before_run)) = stack.pop() else {
                let stuck = deepest.map(|(_, op)| op).unwrap_or(e.op);
                return Verdict::Violation { stuck, states: deepest_states };
            };
            let op = entries[back].op;
            set(&mut definite, op, false);
            set(&mut used, op, false);
            state = before;
            run = before_run;
            if return_of[back] != NIL {
                relink(return_of[back], &mut next, &mut prev);
            }
            relink(back, &mut next, &mut prev);
            entry = next[back];
        }
    }
}

/// The history as it stood at time `t`: calls invoked by then, and those still open at `t`
/// turned into unknown outcomes.
fn prefix(ops: &[Op], t: u64) -> Vec<Op> {
    ops.iter()
        .filter(|o| o.invoked_us <= t)
        .map(|o| match o.completed_us {
            Some(c) if c > t => Op { completed_us: None, outcome: Outcome::Unknown("still open".into()), ..o.clone() },
            _ => o.clone(),
        })
        .collect()
}

/// A violation made readable: the call that no order explains, the shortest prefix of the
/// history that shows it, and the calls around it.
#[derive(Debug, Clone)]
pub struct Finding {
    pub vm: String,
    /// The call whose answer the model cannot explain (the last to complete in the shortest
    /// failing prefix).
    pub culprit: Op,
    /// The shortest failing prefix, in order of invocation, cut to the calls around the culprit.
    pub excerpt: Vec<Op>,
    /// Calls of the prefix left out of the excerpt (older, completed before the window).
    pub omitted: usize,
    /// What the model could hold just before the culprit.
    pub states: Vec<State>,
}

/// Calls completed before the culprit was invoked that the excerpt keeps.
const CONTEXT: usize = 8;

/// Checks one VM's history; on a violation, narrows it to the shortest failing prefix (a
/// prefix of a linearizable history is linearizable, so a bisection over completion times
/// finds it).
pub fn check_vm(vm: &str, ops: &[Op]) -> (Verdict, Option<Finding>) {
    let verdict = check(ops);
    let Verdict::Violation { states, .. } = &verdict else { return (verdict, None) };
    let mut ends: Vec<u64> = ops.iter().filter_map(|o| o.completed_us).collect();
    ends.sort();
    ends.dedup();
    let (mut lo, mut hi) = (0usize, ends.len().saturating_sub(1));
    while lo < hi {
        let mid = (lo + hi) / 2;
        if matches!(check(&prefix(ops, ends[mid])), Verdict::Violation { .. }) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let t = ends.get(hi).copied().unwrap_or(0);
    let mut shortest = prefix(ops, t);
    shortest.sort_by_key(|o| (o.invoked_us, o.completed_us));
    let states = match check(&shortest) {
        Verdict::Violation { states, .. } => states,
        _ => states.clone(),
    };
    let culprit = shortest.iter().find(|o| o.completed_us == Some(t)).cloned().unwrap_or_else(|| shortest[0].clone());
    // The window: the culprit and everything concurrent with it, plus the last few calls
    // that completed before it began.
    let before: Vec<usize> =
        (0..shortest.len()).filter(|i| shortest[*i].completed_us.is_some_and(|c| c < culprit.invoked_us)).collect();
    let keep_from = before.len().saturating_sub(CONTEXT);
    let dropped: HashSet<usize> = before[..keep_from].iter().copied().collect();
    let excerpt: Vec<Op> = (0..shortest.len()).filter(|i| !dropped.contains(i)).map(|i| shortest[i].clone()).collect();
    let finding = Finding { vm: vm.to_string(), culprit, excerpt, omitted: dropped.len(), states };
    (verdict, Some(finding))
}

impl std::fmt::Display for Finding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.culprit.client == super::history::FINAL_READER {
            writeln!(f, "vm {}: the final read after healing disagrees with what was acknowledged (a lost or phantom write): {}", self.vm, self.culprit)?;
        } else {
            writeln!(f, "vm {}: no order of its calls explains: {}", self.vm, self.culprit)?;
        }
        let states: Vec<String> =
            self.states.iter().map(|s| s.as_ref().map_or("absent".to_string(), |c| c.to_string())).collect();
        writeln!(f, "  the model could hold, just before it: {}", states.join(" | "))?;
        if self.omitted > 0 {
            writeln!(f, "  ({} earlier calls left out)", self.omitted)?;
        }
        for op in &self.excerpt {
            let mark =
                if op.invoked_us == self.culprit.invoked_us && op.client == self.culprit.client { ">>" } else { "  " };
            writeln!(f, "  {mark} {op}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(m: u64, d: &str) -> Config {
        Config { memory_mib: m, description: d.into() }
    }

    fn op(client: usize, call: Call, from_ms: u64, to_ms: Option<u64>, outcome: Outcome) -> Op {
        Op {
            client,
            node: 0,
            vm: "vm0".into(),
            call,
            invoked_us: from_ms * 1000,
            completed_us: to_ms.map(|t| t * 1000),
            outcome,
        }
    }

    fn ok(c: Config) -> Outcome {
        Outcome::Ok(Some(c))
    }

    fn unknown() -> Outcome {
        Outcome::Unknown("timed out".into())
    }

    #[test]
    fn a_sequential_history_that_follows_the_model_passes() {
        let h = vec![
            op(0, Call::Read, 0, Some(1), Outcome::NotFound),
            op(0, Call::Create(cfg(256, "a")), 2, Some(3), ok(cfg(256, "a"))),
            op(1, Call::SetMemory(512), 4, Some(5), ok(cfg(512, "a"))),
            op(0, Call::SetDescription("b".into()), 6, Some(7), ok(cfg(512, "b"))),
            op(1, Call::Read, 8, Some(9), ok(cfg(512, "b"))),
            op(0, Call::Delete, 10, Some(11), Outcome::Ok(None)),
            op(1, Call::Read, 12, Some(13), Outcome::NotFound),
            op(1, Call::Delete, 14, Some(15), Outcome::NotFound),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn concurrent_calls_may_take_effect_in_either_order() {
        // The read overlaps the edit: it may see the old or the new value, and a later read
        // fixes the order.
        let h = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::SetDescription("b".into()), 2, Some(10), ok(cfg(256, "b"))),
            op(1, Call::Read, 3, Some(4), ok(cfg(256, "b"))),
            op(2, Call::Read, 5, Some(6), ok(cfg(256, "b"))),
        ];
        assert_eq!(check(&h), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_write_may_take_effect_late_or_never() {
        let late = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::SetMemory(512), 2, None, unknown()),
            op(1, Call::Read, 30, Some(31), ok(cfg(256, "a"))),
            op(1, Call::Read, 40, Some(41), ok(cfg(512, "a"))),
        ];
        assert_eq!(check(&late), Verdict::Linearizable);
        let never = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::Delete, 2, None, unknown()),
            op(1, Call::Read, 30, Some(31), ok(cfg(256, "a"))),
        ];
        assert_eq!(check(&never), Verdict::Linearizable);
    }

    #[test]
    fn many_unknown_writes_are_decided_quickly() {
        // 40 unanswered edits and deletes, then reads that pin down a few of them.
        let mut h = vec![op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a")))];
        for i in 0..40u64 {
            let call = if i % 5 == 0 { Call::Delete } else { Call::SetMemory(1000 + i) };
            h.push(op(1 + i as usize, call, 2 + i, None, unknown()));
        }
        h.push(op(0, Call::Read, 100, Some(101), ok(cfg(1007, "a"))));
        h.push(op(0, Call::Read, 102, Some(103), Outcome::NotFound));
        h.push(op(0, Call::Create(cfg(5, "b")), 104, Some(105), ok(cfg(5, "b"))));
        h.push(op(0, Call::Read, 106, Some(107), ok(cfg(1039, "b"))));
        assert_eq!(check(&h), Verdict::Linearizable);
        h.push(op(0, Call::Read, 108, Some(109), ok(cfg(1007, "b"))));
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn a_stale_read_fails() {
        // The edit completed before the read began, yet the read shows the old value.
        let h = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::SetMemory(512), 2, Some(3), ok(cfg(512, "a"))),
            op(1, Call::Read, 4, Some(5), ok(cfg(256, "a"))),
        ];
        assert!(matches!(check(&h), Verdict::Violation { stuck: 2, .. }), "{:?}", check(&h));
        let (_, finding) = check_vm("vm0", &h);
        let finding = finding.expect("a finding");
        assert_eq!(finding.culprit.call, Call::Read);
        assert_eq!(finding.excerpt.len(), 3);
    }

    #[test]
    fn an_already_exists_after_an_acknowledged_delete_fails() {
        let h = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::Delete, 2, Some(3), Outcome::Ok(None)),
            op(1, Call::Create(cfg(300, "b")), 4, Some(5), Outcome::AlreadyExists),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn a_lost_write_fails() {
        // The delete was acknowledged, yet the final read still finds the VM.
        let h = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::Delete, 2, Some(3), Outcome::Ok(None)),
            op(usize::MAX, Call::Read, 50, Some(51), ok(cfg(256, "a"))),
        ];
        let (verdict, finding) = check_vm("vm0", &h);
        assert!(matches!(verdict, Verdict::Violation { .. }));
        assert_eq!(finding.expect("a finding").culprit.client, usize::MAX);
    }

    #[test]
    fn a_read_of_a_value_never_written_fails() {
        let h = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::SetMemory(512), 2, None, unknown()),
            op(1, Call::Read, 3, Some(4), ok(cfg(768, "a"))),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn an_edit_answering_another_value_than_it_wrote_fails() {
        let h = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::SetMemory(512), 2, Some(3), ok(cfg(256, "a"))),
        ];
        assert!(matches!(check(&h), Verdict::Violation { .. }));
    }

    #[test]
    fn the_shortest_failing_prefix_ends_at_the_first_impossible_answer() {
        let mut h = vec![
            op(0, Call::Create(cfg(256, "a")), 0, Some(1), ok(cfg(256, "a"))),
            op(0, Call::SetMemory(512), 2, Some(3), ok(cfg(512, "a"))),
            op(1, Call::Read, 4, Some(5), ok(cfg(256, "a"))),
        ];
        for i in 0..20 {
            h.push(op(2, Call::Read, 10 + 2 * i, Some(11 + 2 * i), ok(cfg(512, "a"))));
        }
        let (_, finding) = check_vm("vm0", &h);
        let finding = finding.expect("a finding");
        assert_eq!(finding.culprit.invoked_us, 4000);
        assert_eq!(finding.excerpt.len(), 3, "{finding}");
    }

    /// Every order of every subset of the unknown calls, checked one by one: the slow truth
    /// the search must agree with on small histories.
    fn brute_force(ops: &[Op]) -> bool {
        let ops: Vec<&Op> = ops.iter().filter(|o| !(o.call == Call::Read && o.outcome.is_unknown())).collect();
        let unknown: Vec<usize> = (0..ops.len()).filter(|i| ops[*i].outcome.is_unknown()).collect();
        for mask in 0..(1u32 << unknown.len()) {
            let chosen: Vec<usize> = (0..ops.len())
                .filter(|i| unknown.iter().position(|u| u == i).is_none_or(|k| mask & (1 << k) != 0))
                .collect();
            if orders(&ops, &chosen, &mut Vec::new(), &None) {
                return true;
            }
        }
        false
    }

    fn orders(ops: &[&Op], left: &[usize], placed: &mut Vec<usize>, state: &State) -> bool {
        if left.is_empty() {
            return true;
        }
        for (k, &i) in left.iter().enumerate() {
            // Real time: nothing left may have completed before this one was invoked.
            if left.iter().any(|&j| ops[j].completed_us.is_some_and(|c| c < ops[i].invoked_us)) {
                continue;
            }
            let Some(after) = step(state, &ops[i].call, &ops[i].outcome) else { continue };
            let rest: Vec<usize> = left.iter().enumerate().filter(|(x, _)| *x != k).map(|(_, j)| *j).collect();
            placed.push(i);
            if orders(ops, &rest, placed, &after) {
                return true;
            }
            placed.pop();
        }
        false
    }

    #[test]
    fn the_search_agrees_with_brute_force_on_small_random_histories() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(42);
        let value = |rng: &mut StdRng| -> Config { cfg(rng.gen_range(1..3), ["a", "b"][rng.gen_range(0..2)]) };
        let (mut passed, mut failed) = (0, 0);
        for _ in 0..3000 {
            let n = rng.gen_range(1..7);
            let mut h = Vec::new();
            for c in 0..n {
                let from = rng.gen_range(0..20);
                let to = from + rng.gen_range(0..8);
                let call = match rng.gen_range(0..5) {
                    0 => Call::Create(value(&mut rng)),
                    1 => Call::SetMemory(rng.gen_range(1..3)),
                    2 => Call::SetDescription(["a", "b"][rng.gen_range(0..2)].into()),
                    3 => Call::Read,
                    _ => Call::Delete,
                };
                let outcome = match rng.gen_range(0..6) {
                    0 => Outcome::NotFound,
                    1 => Outcome::AlreadyExists,
                    2 => unknown(),
                    3 if call == Call::Delete => Outcome::Ok(None),
                    _ if call == Call::Delete => Outcome::NotFound,
                    _ => ok(value(&mut rng)),
                };
                let to = (!outcome.is_unknown()).then_some(to);
                h.push(op(c, call, from, to, outcome));
            }
            let expected = brute_force(&h);
            let got = check(&h);
            match (&got, expected) {
                (Verdict::Linearizable, true) => passed += 1,
                (Verdict::Violation { .. }, false) => failed += 1,
                _ => panic!("search says {got:?}, brute force says {expected}: {h:#?}"),
            }
        }
        // Both answers must occur for the comparison to mean something.
        assert!(passed > 300 && failed > 300, "{passed} linearizable, {failed} not");
    }

    /// Histories made by running a register for real (each call takes effect at a random
    /// instant of its interval; an unknown one at a random later instant, or never) must pass,
    /// quickly, however many unknown calls they hold.
    #[test]
    fn simulated_linearizable_histories_with_many_unknown_calls_pass() {
        use rand::rngs::StdRng;
        use rand::{Rng, SeedableRng};
        let mut rng = StdRng::seed_from_u64(7);
        let started = std::time::Instant::now();
        for trial in 0..40 {
            let mut calls: Vec<(u64, Op)> = Vec::new();
            for i in 0..200u64 {
                let from = rng.gen_range(0..20_000u64);
                let known = rng.gen_bool(0.7);
                let to = from + rng.gen_range(1..400);
                let at = if known { rng.gen_range(from..=to) } else { from + rng.gen_range(0..3000) };
                let call = match rng.gen_range(0..5) {
                    0 => Call::Create(cfg(1000 + i, &format!("d{i}"))),
                    1 => Call::SetMemory(1000 + i),
                    2 => Call::SetDescription(format!("d{i}")),
                    3 => Call::Read,
                    _ => Call::Delete,
                };
                let takes_effect = known || rng.gen_bool(0.5);
                let mut o = op(i as usize, call, 0, None, unknown());
                o.invoked_us = from;
                o.completed_us = known.then_some(to);
                calls.push((if takes_effect { at } else { u64::MAX }, o));
            }
            calls.sort_by_key(|(at, _)| *at);
            let mut state: State = None;
            let mut h = Vec::new();
            for (at, mut o) in calls {
                if at != u64::MAX {
                    let (next, answer) = match (&o.call, &state) {
                        (Call::Create(c), None) => (Some(c.clone()), ok(c.clone())),
                        (Call::Create(_), Some(_)) => (state.clone(), Outcome::AlreadyExists),
                        (Call::SetMemory(_) | Call::SetDescription(_), Some(s)) => {
                            let e = edited(s, &o.call);
                            (Some(e.clone()), ok(e))
                        }
                        (Call::Read, Some(s)) => (state.clone(), ok(s.clone())),
                        (Call::Delete, Some(_)) => (None, Outcome::Ok(None)),
                        (_, None) => (None, Outcome::NotFound),
                    };
                    state = next;
                    if o.completed_us.is_some() {
                        o.outcome = answer;
                    }
                }
                h.push(o);
            }
            assert_eq!(check(&h), Verdict::Linearizable, "trial {trial}");
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(30), "took {:?}", started.elapsed());
    }
}
