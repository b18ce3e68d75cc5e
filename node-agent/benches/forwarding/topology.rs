//! The benchmark's namespaces and links: veth pairs, the director's
//! addresses and neighbours, its NAPI thread on its own CPU, and the
//! programs attached to each end (generator, director, sink).
use super::*;

/// Runs a command; panics with its stderr when it fails.
pub fn sh(args: &[&str]) {
    netns::run(args[0], &args[1..]).unwrap_or_else(|e| panic!("{e:#}"));
}

pub fn ipn(ns: &str, args: &[&str]) {
    netns::ip_in(ns, args).unwrap_or_else(|e| panic!("{e:#}"));
}

/// Namespaces that go away on drop.
pub struct Namespaces(pub Vec<String>);

impl Namespaces {
    pub fn new(names: &[String]) -> Self {
        for n in names {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
            sh(&["ip", "netns", "add", n]);
            ipn(n, &["link", "set", "lo", "up"]);
            // The sink counts every frame: no IPv6 chatter (DAD, MLD).
            sysctl(n, "net.ipv6.conf.all.disable_ipv6", "1");
            sysctl(n, "net.ipv6.conf.default.disable_ipv6", "1");
        }
        Self(names.to_vec())
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            let _ = Command::new("ip").args(["netns", "del", n]).output();
        }
    }
}

/// A veth pair with fixed MACs, one end in each namespace, both up.
pub fn veth(
    a_ns: &str,
    a: &str,
    a_mac: Option<&[u8; 6]>,
    b_ns: &str,
    b: &str,
    b_mac: Option<&[u8; 6]>,
) {
    ipn(
        a_ns,
        &[
            "link", "add", a, "type", "veth", "peer", "name", b, "netns", b_ns,
        ],
    );
    if let Some(m) = a_mac {
        ipn(a_ns, &["link", "set", a, "address", &format_mac(m)]);
    }
    if let Some(m) = b_mac {
        ipn(b_ns, &["link", "set", b, "address", &format_mac(m)]);
    }
    ipn(a_ns, &["link", "set", a, "up"]);
    ipn(b_ns, &["link", "set", b, "up"]);
}

pub fn sysctl(ns: &str, key: &str, value: &str) {
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sysctl",
        "-qw",
        &format!("{key}={value}"),
    ]);
}

pub fn director_addresses(ns: &str, ifname: &str, backend_mac: &[u8; 6]) {
    for addr in [DIRECTOR_CLIENT_ADDR, DIRECTOR_BACKEND_ADDR] {
        ipn(ns, &["addr", "add", &format!("{addr}/24"), "dev", ifname]);
    }
    ipn(
        ns,
        &[
            "neigh",
            "replace",
            &BACKEND.to_string(),
            "lladdr",
            &format_mac(backend_mac),
            "dev",
            ifname,
            "nud",
            "permanent",
        ],
    );
    ipn(
        ns,
        &[
            "neigh",
            "replace",
            "192.0.2.1",
            "lladdr",
            &format_mac(&GEN_MAC),
            "dev",
            ifname,
            "nud",
            "permanent",
        ],
    );
    sysctl(ns, "net.ipv4.ip_forward", "1");
    sysctl(ns, "net.ipv4.conf.all.rp_filter", "0");
    sysctl(ns, &format!("net.ipv4.conf.{ifname}.rp_filter"), "0");
}

/// The director's interface: named after the run, because its NAPI
/// thread is found by name (`napi/<ifname>-<id>`) among all the host's.
pub fn director_if(p: &str) -> String {
    format!("{p}d")
}

/// Moves the director's receive processing to DIR_CPU: its veth's NAPI
/// instance gets a kernel thread of its own. veth has a NAPI instance with
/// XDP or with GRO on, and passes it skbs only from a peer without TSO
/// (attaching XDP turns the peer's off; nftables needs it done here);
/// otherwise the sender's CPU processes them, as it does its own softirqs.
pub fn director_on_own_cpu(ns: &str, ifname: &str, peer_ns: &str, peer: &str) {
    ethtool(ns, ifname, "gro", "on");
    ethtool(peer_ns, peer, "tso", "off");
    sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "sh",
        "-c",
        &format!("echo 1 > /sys/class/net/{ifname}/threaded"),
    ]);
    let threads = napi_threads(ifname);
    assert_eq!(threads.len(), 1, "NAPI threads of {ifname}: {threads:?}");
    dedicate(threads[0], DIR_CPU);
}

pub fn ethtool(ns: &str, ifname: &str, feature: &str, value: &str) {
    sh(&[
        "ip", "netns", "exec", ns, "ethtool", "-K", ifname, feature, value,
    ]);
}

pub fn napi_threads(ifname: &str) -> Vec<i32> {
    let prefix = format!("napi/{ifname}-");
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter(|e| {
            std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with(&prefix))
        })
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

/// Pins thread `tid` (0: the calling thread) to `cpu` at real-time
/// priority. Other work on this shared machine (builds, tests) would
/// otherwise take the CPU for a scheduler slice of milliseconds: the
/// director's 256-frame veth ring overflows in far less, and a preempted
/// generator catches up with a burst. The kernel still leaves 5% of each
/// CPU to everyone else (sched_rt_runtime_us).
pub fn dedicate(tid: i32, cpu: usize) {
    // SAFETY: an all-zero cpu_set_t is an empty set; CPU_SET writes within it.
    let set = unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        set
    };
    // SAFETY: reads only the set we pass.
    let rc = unsafe { libc::sched_setaffinity(tid, std::mem::size_of_val(&set), &set) };
    assert_eq!(
        rc,
        0,
        "pin thread {tid} to CPU {cpu}: {}",
        std::io::Error::last_os_error()
    );
    let param = libc::sched_param { sched_priority: 50 };
    // SAFETY: reads only the parameters we pass.
    let rc = unsafe { libc::sched_setscheduler(tid, libc::SCHED_FIFO, &param) };
    assert_eq!(
        rc,
        0,
        "SCHED_FIFO for thread {tid}: {}",
        std::io::Error::last_os_error()
    );
}

/// Loads the traffic object and attaches one of its programs natively.
pub fn attach_bench(ns: &str, ifname: &str, program: &'static str) -> Ebpf {
    attach(ns, ifname, objects::TRAFFIC, program)
}

/// Loads `object` and attaches its `program` natively to `ifname` in `ns`.
pub fn attach(ns: &str, ifname: &str, object: &'static [u8], program: &'static str) -> Ebpf {
    let ifname = ifname.to_string();
    in_netns(ns, move || {
        let mut ebpf = EbpfLoader::new().load(object).expect("bench object");
        let p: &mut Xdp = ebpf.program_mut(program).unwrap().try_into().unwrap();
        p.load().unwrap();
        p.attach(&ifname, XdpMode::Driver).unwrap();
        ebpf
    })
    .unwrap()
}

/// The director side, Ballast FullNAT or (floor) the MAC-swap program,
/// kept attached while alive; its pinned state goes on drop.
pub struct RunningDirector {
    pub director: Box<Director>,
    pub pin: std::path::PathBuf,
    /// The floor program (test object), attached while this lives.
    pub _floor: Option<Ebpf>,
}

pub fn start_director(ns: &str, ifname: &str, floor: bool) -> RunningDirector {
    let pin = std::path::PathBuf::from(format!("/sys/fs/bpf/ballast-bench/{ns}"));
    let _ = std::fs::remove_dir_all(&pin);
    let (if_s, pin_c) = (ifname.to_string(), pin.clone());
    // Opened and programmed in the director's namespace, as an agent there
    // would be (it keeps the backend's next hop resolved with `ip`).
    let d = in_netns(ns, move || {
        let opts = LoadOptions {
            interface: if floor { None } else { Some(if_s) },
            pin_dir: pin_c,
            ring_slots: 4 * 65537,
            backend_slots: None,
            conntrack_entries: None,
            mode: XdpAttachMode::Native,
        };
        let settings = NodeSettings {
            mac: DIR_MAC,
            snat_addrs: vec![SNAT_ADDR],
            ..Default::default()
        };
        let mut d = Director::open(&opts, &settings, 65537).expect("director");
        if !floor {
            let svc = DesiredService::new(
                "bench/udp:53",
                (VIP, 53, 17),
                abi::MODE_FULLNAT,
                5353,
                [(BACKEND, 1)],
            );
            let errors = d.apply(&[svc]).unwrap();
            assert!(errors.is_empty(), "{errors:?}");
        }
        Box::new(d)
    })
    .unwrap();
    let floor = floor.then(|| attach(ns, ifname, objects::TEST_PROGRAMS, "xdp_floor"));
    RunningDirector {
        director: d,
        pin,
        _floor: floor,
    }
}

impl Drop for RunningDirector {
    fn drop(&mut self) {
        // Where the frames went, for the record.
        if let Ok(r) = self.director.maps().reason_counters() {
            let nonzero: Vec<_> = abi::REASONS
                .iter()
                .zip(r)
                .filter(|(_, c)| *c > 0)
                .map(|((n, _), c)| (*n, c))
                .collect();
            eprintln!("    director verdicts: {nonzero:?}");
        }
        let _ = std::fs::remove_dir_all(&self.pin);
        if let Some(parent) = self.pin.parent() {
            let _ = std::fs::remove_dir(parent);
        }
    }
}
