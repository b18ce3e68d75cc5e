//! The live-frames generator (traffic.c's `xdp_gen`) driven from user
//! space: its frame template, its pacing, and one probe at a given rate.
use super::*;

pub fn frame() -> Vec<u8> {
    let b = etherparse::PacketBuilder::ethernet2(GEN_MAC, DIR_MAC)
        .ipv4(CLIENT_ADDR.octets(), VIP.octets(), 64)
        .udp(10000, 53);
    let mut v = Vec::new();
    b.write(&mut v, &[0u8; 18]).unwrap();
    v
}

/// traffic.c's `struct gen_pace`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct GenPace {
    pub interval_ns: u64,
    pub frames: u64,
    pub sent: u64,
    pub first_ns: u64,
    pub last_ns: u64,
}

// SAFETY: plain integers, no padding.
unsafe impl aya::Pod for GenPace {}

/// One run of the generator.
pub struct Probe {
    pub sent: u64,
    /// From the first frame's departure to the last's.
    pub secs: f64,
    pub got: u64,
}

impl Probe {
    pub fn offered(&self) -> f64 {
        self.sent as f64 / self.secs
    }

    pub fn delivered(&self) -> f64 {
        self.got as f64 / self.secs
    }

    pub fn share(&self) -> f64 {
        self.got as f64 / self.sent as f64
    }

    pub fn ok(&self) -> bool {
        self.share() >= DELIVERED_OK
    }

    pub fn log(&self, what: &str) {
        eprintln!(
            "    {what}: offered {:.3} Mpps, delivered {:.3} Mpps ({:.1}% of {} frames)",
            self.offered() / 1e6,
            self.delivered() / 1e6,
            100.0 * self.share(),
            self.sent
        );
    }
}

/// The live-frames generator and the sink it is measured by. Its runs
/// must happen in the generator's namespace: the kernel resolves the
/// sending interface there.
pub struct Generator {
    pub ebpf: Ebpf,
    pub frame: Vec<u8>,
    /// `struct xdp_md`: data_end = frame length, ingress_ifindex = the veth.
    pub ctx: [u8; 24],
    pub sink: Ebpf,
}

impl Generator {
    pub fn load(gen_if: &str, sink: Ebpf) -> Self {
        let mut ebpf = EbpfLoader::new()
            .load(objects::TRAFFIC)
            .expect("traffic object");
        let p: &mut Xdp = ebpf.program_mut("xdp_gen").unwrap().try_into().unwrap();
        p.load().unwrap();
        let frame = frame();
        let mut template: Array<_, [u8; 48]> =
            Array::try_from(ebpf.map_mut("gen_template").unwrap()).unwrap();
        let mut hdr = [0u8; 48];
        hdr[..42].copy_from_slice(&frame[..42]);
        template.set(0, hdr, 0).unwrap();
        let name = std::ffi::CString::new(gen_if).unwrap();
        // SAFETY: `name` is a valid C string.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        assert_ne!(ifindex, 0, "no interface {gen_if}");
        let mut ctx = [0u8; 24];
        ctx[4..8].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        ctx[12..16].copy_from_slice(&ifindex.to_ne_bytes());
        Self {
            ebpf,
            frame,
            ctx,
            sink,
        }
    }

    /// Sends `frames` frames, evenly spaced at `rate` frames/s or (None)
    /// as fast as it can, in one syscall: see traffic.c's `gen_pace`.
    pub fn run(&mut self, frames: u32, rate: Option<f64>) -> Probe {
        self.set_pace(GenPace {
            interval_ns: rate.map_or(0, |r| (1e9 / r).round() as u64),
            frames: frames.into(),
            ..Default::default()
        });
        let before = self.settled_sink_count();
        let p: &mut Xdp = self
            .ebpf
            .program_mut("xdp_gen")
            .unwrap()
            .try_into()
            .unwrap();
        p.test_run(TestRunOptions {
            data_in: Some(&self.frame),
            ctx_in: Some(&self.ctx),
            repeat: frames,
            attrs: TestRunAttrs::new().xdp_live_frames(LIVE_BATCH),
            ..Default::default()
        })
        .expect("live frames");
        let got = self.settled_sink_count() - before;
        let pace = self.pace();
        assert_eq!(pace.sent, u64::from(frames));
        Probe {
            sent: pace.sent,
            secs: (pace.last_ns - pace.first_ns) as f64 / 1e9,
            got,
        }
    }

    /// A paced run of PROBE_SECS at `rate`.
    pub fn probe(&mut self, rate: f64) -> Probe {
        self.run((rate * PROBE_SECS) as u32, Some(rate))
    }

    pub fn set_pace(&mut self, pace: GenPace) {
        let mut m: Array<_, GenPace> =
            Array::try_from(self.ebpf.map_mut("gen_pace").unwrap()).unwrap();
        m.set(0, pace, 0).unwrap();
    }

    pub fn pace(&self) -> GenPace {
        let m: Array<_, GenPace> = Array::try_from(self.ebpf.map("gen_pace").unwrap()).unwrap();
        m.get(&0, 0).unwrap()
    }

    /// The sink's count once frames in flight have landed.
    pub fn settled_sink_count(&self) -> u64 {
        let mut last = self.sink_count();
        loop {
            std::thread::sleep(Duration::from_millis(20));
            let now = self.sink_count();
            if now == last {
                return now;
            }
            last = now;
        }
    }

    pub fn sink_count(&self) -> u64 {
        let m: PerCpuArray<_, u64> =
            PerCpuArray::try_from(self.sink.map("sink_count").unwrap()).unwrap();
        m.get(&0, 0).unwrap().iter().sum()
    }
}
