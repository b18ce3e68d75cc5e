//! The TOA reader's option search (dataplane-ebpf/include/toa_find.h) on a
//! table of SYN headers, run by the kernel through BPF_PROG_TEST_RUN
//! (dataplane-ebpf/test/toa_find.c includes the header as the reader does).
//! The end-to-end test (toa_reader.rs) sees only where Ballast's director
//! puts the option, first; other directors put it after the kernel's own
//! options, and a malformed list must find nothing. Needs root: it loads a
//! BPF program.
use aya::Ebpf;
use aya::programs::Xdp;
use ballast_testbed::packet::test_run;

const PROGRAM: &str = "toa_find_case";
const XDP_PASS: u32 = 2;
const ANSWER_LEN: usize = 8;

/// The option as the director writes it: port 0x1f90 (8080), 192.0.2.1.
const TOA: [u8; 8] = [254, 8, 0x1f, 0x90, 192, 0, 2, 1];
const MSS: [u8; 4] = [2, 4, 0x05, 0xb4];
const SACK_OK: [u8; 2] = [4, 2];
const TIMESTAMPS: [u8; 10] = [8, 10, 0, 0, 0, 1, 0, 0, 0, 0];
const WSCALE: [u8; 3] = [3, 3, 7];
const NOP: u8 = 1;
const EOL: u8 = 0;

/// A TCP header whose options are `opts`, padded with EOL to a multiple
/// of 4 unless `doff_words` says otherwise (a header shorter than its
/// options: the list runs past the end).
fn header(opts: &[u8], doff_words: Option<u8>) -> Vec<u8> {
    let mut h = vec![0u8; 20];
    h[0..2].copy_from_slice(&40000u16.to_be_bytes());
    h[2..4].copy_from_slice(&8080u16.to_be_bytes());
    h.extend_from_slice(opts);
    while !h.len().is_multiple_of(4) {
        h.push(EOL);
    }
    let words = doff_words.unwrap_or((h.len() / 4) as u8);
    h.truncate(words as usize * 4);
    h[12] = words << 4;
    h[13] = 0x02; // SYN
    h
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

/// (client port, client address bytes) when the option was found.
type Found = Option<(u16, [u8; 4])>;

/// The search's answer on `tcp`: Some((port, address bytes)) when found.
fn find(ebpf: &Ebpf, tcp: &[u8]) -> Found {
    let mut frame = vec![0u8; ANSWER_LEN];
    frame.extend_from_slice(tcp);
    let prog: &Xdp = ebpf.program(PROGRAM).unwrap().try_into().unwrap();
    // As if received on lo (ifindex 1), once.
    let (r, out) = test_run(prog, &frame, 1, 1);
    assert_eq!(
        r.return_value,
        XDP_PASS,
        "toa_find.c refused a {}-byte header",
        tcp.len()
    );
    (out[0] == 1).then(|| {
        (
            u16::from_be_bytes([out[2], out[3]]),
            [out[4], out[5], out[6], out[7]],
        )
    })
}

#[test]
fn the_option_is_found_wherever_it_is_and_only_when_well_formed() {
    ballast_testbed::require_root("the option search runs as a BPF program");
    let mut ebpf = Ebpf::load(ballast_testbed::objects::TOA_FIND).expect("load toa_find.bpf.o");
    let prog: &mut Xdp = ebpf.program_mut(PROGRAM).unwrap().try_into().unwrap();
    prog.load().expect("the verifier accepts toa_find.c");

    let found = Some((8080, [192, 0, 2, 1]));
    let linux_syn = cat(&[&MSS, &SACK_OK, &TIMESTAMPS, &[NOP], &WSCALE]);
    let cases: Vec<(&str, Vec<u8>, Found)> = vec![
        (
            "first, as Ballast's director writes it",
            header(&TOA, None),
            found,
        ),
        (
            "after a Linux SYN's options (20 bytes)",
            header(&cat(&[&linux_syn, &TOA]), None),
            found,
        ),
        ("after NOPs", header(&cat(&[&[NOP; 4], &TOA]), None), found),
        (
            "at the very end of 40 option bytes (32 NOPs first)",
            header(&cat(&[&[NOP; 32], &TOA]), None),
            found,
        ),
        (
            "after a kind-254 option of another length (RFC 6994 experiment)",
            header(&cat(&[&[254, 4, 0xf9, 0x89], &TOA]), None),
            found,
        ),
        ("no options", header(&[], None), None),
        ("only the kernel's options", header(&linux_syn, None), None),
        (
            "behind the end of the list",
            header(&cat(&[&[EOL, 0, 0, 0], &TOA]), None),
            None,
        ),
        (
            "behind an option of length 0 (malformed: the scan stops)",
            header(&cat(&[&[3, 0, 0, 0], &TOA]), None),
            None,
        ),
        (
            "cut by the header's end",
            header(&cat(&[&[NOP; 4], &TOA]), Some(7)),
            None,
        ),
        (
            "kind 254 with length 6",
            header(&[254, 6, 0x1f, 0x90, 192, 0], None),
            None,
        ),
        (
            "40 NOPs: the scan's longest walk",
            header(&[NOP; 40], None),
            None,
        ),
    ];
    for (desc, tcp, want) in cases {
        assert_eq!(find(&ebpf, &tcp), want, "{desc}");
    }
}
