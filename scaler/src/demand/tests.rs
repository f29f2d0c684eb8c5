use super::*;

fn class(accelerator: AcceleratorType, zone: Option<&str>) -> DemandClass {
    DemandClass { accelerator, zone: zone.map(str::to_owned) }
}

#[test]
fn a_first_pull_wakes_and_later_ones_count_distinct_requesters() {
    let d = Demand::new(Duration::from_secs(60), 100);
    let mut rx = d.subscribe(AcceleratorType::Nvidia);
    assert_eq!(d.pending(AcceleratorType::Nvidia, None), 0);
    assert!(d.record(class(AcceleratorType::Nvidia, Some("a")), "phone-1"));
    assert!(rx.has_changed().unwrap());
    rx.mark_unchanged();
    assert!(!d.record(class(AcceleratorType::Nvidia, Some("a")), "phone-1"), "already awake");
    assert!(!d.record(class(AcceleratorType::Nvidia, Some("a")), "phone-2"));
    assert!(!rx.has_changed().unwrap(), "only the wake is signalled");
    assert!(d.record(class(AcceleratorType::Nvidia, None), "phone-3"), "another class wakes on its own");
    // A zone-a trigger sees zone a and zone-less demand; a zone-b trigger only the zone-less.
    assert_eq!(d.pending(AcceleratorType::Nvidia, Some("a")), 3);
    assert_eq!(d.pending(AcceleratorType::Nvidia, Some("b")), 1);
    assert_eq!(d.pending(AcceleratorType::Nvidia, None), 3);
    assert_eq!(d.pending(AcceleratorType::Cpu, None), 0);
    assert_eq!(d.requesters(), 3);
}

#[test]
fn a_ready_endpoint_clears_the_demand_it_answers() {
    let d = Demand::new(Duration::from_secs(60), 100);
    d.record(class(AcceleratorType::Nvidia, Some("a")), "p1");
    d.record(class(AcceleratorType::Nvidia, Some("b")), "p2");
    d.record(class(AcceleratorType::Nvidia, None), "p3");
    d.record(class(AcceleratorType::Cpu, None), "p4");
    let mut rx = d.subscribe(AcceleratorType::Nvidia);
    rx.mark_unchanged();
    d.satisfy(AcceleratorType::Nvidia, "a");
    assert!(rx.has_changed().unwrap());
    assert_eq!(d.pending(AcceleratorType::Nvidia, None), 1, "zone b still waits");
    assert_eq!(d.pending(AcceleratorType::Cpu, None), 1);
}

#[test]
fn demand_decays_after_the_ttl_and_is_bounded_per_class() {
    let d = Demand::new(Duration::from_millis(100), 3);
    for i in 0..10 {
        d.record(class(AcceleratorType::Cpu, None), &format!("p{i}"));
    }
    assert_eq!(d.pending(AcceleratorType::Cpu, None), 3, "the oldest are forgotten first");
    // Refreshing a requester keeps it among the newest.
    d.record(class(AcceleratorType::Cpu, None), "p7");
    d.record(class(AcceleratorType::Cpu, None), "p10");
    assert_eq!(d.pending(AcceleratorType::Cpu, None), 3);
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(d.pending(AcceleratorType::Cpu, None), 0);
    let mut rx = d.subscribe(AcceleratorType::Cpu);
    rx.mark_unchanged();
    d.purge();
    assert!(rx.has_changed().unwrap(), "decay is a change too");
    assert_eq!(d.requesters(), 0);
    assert!(d.record(class(AcceleratorType::Cpu, None), "p1"), "wakes again after decaying");
}

#[test]
fn a_zero_ttl_turns_demand_off() {
    let d = Demand::new(Duration::ZERO, 3);
    assert!(!d.record(class(AcceleratorType::Cpu, None), "p1"));
    assert_eq!(d.pending(AcceleratorType::Cpu, None), 0);
}

#[test]
fn listeners_name_what_a_class_wakes_until_their_stream_closes() {
    let d = Arc::new(Demand::new(Duration::from_secs(60), 10));
    let regional = d.listen(AcceleratorType::Nvidia, None, "ns", "sd-nvidia");
    let lax = d.listen(AcceleratorType::Nvidia, Some("lax"), "ns", "sd-nvidia-lax");
    let _cpu = d.listen(AcceleratorType::Cpu, None, "ns", "sd-cpu");
    let names = |c: &DemandClass| d.waking(c).into_iter().map(|w| w.deployment).collect::<Vec<_>>();
    assert_eq!(names(&class(AcceleratorType::Nvidia, Some("lax"))), ["sd-nvidia", "sd-nvidia-lax"]);
    assert_eq!(names(&class(AcceleratorType::Nvidia, Some("sea"))), ["sd-nvidia"]);
    assert!(d.listens_in("lax") && !d.listens_in("sea"));
    drop(lax);
    assert_eq!(names(&class(AcceleratorType::Nvidia, None)), ["sd-nvidia"]);
    drop(regional);
    assert!(names(&class(AcceleratorType::Nvidia, None)).is_empty());
}
