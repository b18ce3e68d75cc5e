//! Presence and settling with a fake clock.

use super::*;

const GRACE: Duration = Duration::from_secs(10);

fn t(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + secs)
}

fn report(connected: bool, last_heard: SystemTime) -> AgentReport {
    AgentReport {
        connected,
        connected_at: t(0),
        last_heard,
        agent_version: "test".into(),
        applied_version: 1,
        applied_hash: vec![0; 32],
        refused: None,
        heartbeat: None,
    }
}

fn reports(list: &[(&str, bool, u64)]) -> BTreeMap<String, AgentReport> {
    list.iter()
        .map(|(n, c, heard)| (n.to_string(), report(*c, t(*heard))))
        .collect()
}

fn nodes(names: &[&str]) -> Vec<NodeInfo> {
    names
        .iter()
        .map(|n| NodeInfo {
            name: (*n).into(),
            labels: Default::default(),
        })
        .collect()
}

#[test]
fn connected_within_grace_past_grace_and_never_seen() {
    let r = reports(&[("up", true, 0), ("recent", false, 95), ("gone", false, 80)]);
    let (agents, wake) = presence(&r, t(100), GRACE, t(0));
    assert_eq!(agents["up"], NodeAgent::Present);
    assert_eq!(agents["recent"], NodeAgent::Present, "5 s of a 10 s grace");
    assert_eq!(
        agents["gone"],
        NodeAgent::Away {
            since: t(80),
            grace: GRACE
        }
    );
    assert!(!agents.contains_key("never"), "never seen: no entry");
    assert_eq!(wake, Some(t(105)), "when `recent` runs out");
    // Exactly at the end of the grace the agent is away.
    let (agents, wake) = presence(&r, t(105), GRACE, t(0));
    assert!(matches!(agents["recent"], NodeAgent::Away { .. }));
    assert_eq!(wake, None);
}

#[test]
fn a_new_leader_counts_the_grace_from_its_term_not_from_when_it_last_heard() {
    // Heard long ago (before this replica led): present until term + grace.
    let r = reports(&[("old", false, 0)]);
    let (agents, wake) = presence(&r, t(504), GRACE, t(500));
    assert_eq!(agents["old"], NodeAgent::Present);
    assert_eq!(wake, Some(t(510)));
}

#[test]
fn a_term_settles_when_every_usable_node_is_connected() {
    let mut s = Settling::new(GRACE);
    let usable = nodes(&["a", "b"]);
    let g = s.update(true, t(0), &usable, &reports(&[("a", true, 0)]));
    assert_eq!(
        g,
        Gate {
            settled: false,
            agents: AgentPresence::Unknown,
            wake: Some(t(10)),
        }
    );
    let both = reports(&[("a", true, 1), ("b", true, 2)]);
    let g = s.update(true, t(2), &usable, &both);
    assert!(g.settled);
    assert_eq!(
        g.agents,
        AgentPresence::Known(
            [
                ("a".to_string(), NodeAgent::Present),
                ("b".to_string(), NodeAgent::Present)
            ]
            .into()
        )
    );
    assert_eq!(g.wake, None);
    // Settled stays settled: a disconnect now is an agent going away.
    let g = s.update(
        true,
        t(3),
        &usable,
        &reports(&[("a", true, 3), ("b", false, 3)]),
    );
    assert!(g.settled);
    assert_eq!(g.wake, Some(t(13)));
}

#[test]
fn a_term_settles_when_the_grace_passes_and_then_absent_agents_are_known() {
    let mut s = Settling::new(GRACE);
    let usable = nodes(&["a", "b"]);
    let r = reports(&[("a", true, 0)]);
    assert!(!s.update(true, t(100), &usable, &r).settled);
    assert!(!s.update(true, t(109), &usable, &r).settled);
    let g = s.update(true, t(110), &usable, &r);
    assert!(g.settled);
    assert_eq!(
        g.agents,
        AgentPresence::Known([("a".to_string(), NodeAgent::Present)].into()),
        "b never connected: no entry, so it does not direct"
    );
}

#[test]
fn losing_leadership_ends_the_term_and_the_next_one_settles_afresh() {
    let mut s = Settling::new(GRACE);
    let usable = nodes(&["a"]);
    let r = reports(&[("a", true, 0)]);
    assert!(s.update(true, t(0), &usable, &r).settled);
    let standby = s.update(false, t(5), &usable, &r);
    assert_eq!(
        standby,
        Gate {
            settled: false,
            agents: AgentPresence::Unknown,
            wake: None,
        }
    );
    let r = reports(&[("a", false, 5)]);
    let g = s.update(true, t(50), &usable, &r);
    assert_eq!((g.settled, g.wake), (false, Some(t(60))));
}

#[test]
fn no_usable_node_means_nothing_to_wait_for() {
    let mut s = Settling::new(GRACE);
    assert!(s.update(true, t(0), &[], &BTreeMap::new()).settled);
}
