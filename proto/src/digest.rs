//! The content hash, kept incrementally. Both ends compare a node state's
//! hash after every version (the agent's Ack carries it, the controller
//! checks it), so it must cost what the change costs, not what the state
//! weighs: one endpoint change among 10k services re-encoding and hashing
//! a megabyte on each side, per node, per change (and on every Ack at the
//! controller), was a large share of the link's CPU. Services therefore enter the hash as a *sum* of their own
//! digests (SHA-256 of each service's encoding, added as 256-bit integers
//! mod 2^256, the AdHash construction): a delta subtracts the digests of
//! what it replaces and adds those of what it brings, without reading the
//! rest. The sum is order-independent, so the list's order does not enter
//! the hash (canonical order still matters for deltas and for comparing
//! states field by field).
//!
//! What this hash is for: noticing that two ends that should hold the same
//! state do not (a bug, a lost message, an agent restored from an older
//! file). It is not an authenticator: sums of digests are easier to
//! collide on purpose than one SHA-256, and the link's integrity comes from
//! TLS, not from this.

use prost::Message;

use crate::v1::{Announcements, NodeSettings, NodeState, Service};

/// A node state's content hash (see the module doc).
pub type ContentHash = [u8; 32];

/// What precedes the parts in the hashed text, so that this hash can never
/// equal the earlier whole-encoding one (or any other use of SHA-256 over
/// the same bytes).
const DOMAIN: &[u8] = b"ballast.v1.NodeState content, services summed\0";

/// SHA-256 of one service's encoding. Cost: one encode (~100 bytes for a
/// service of 4 backends) and one short SHA-256.
pub fn service_digest(service: &Service) -> [u8; 32] {
    sha256(&service.encode_to_vec())
}

/// The sum of a set of service digests, mod 2^256: kept beside a state and
/// moved by each change.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct DigestSum([u64; 4]);

impl DigestSum {
    /// The sum over `services`.
    pub fn of<'a>(services: impl IntoIterator<Item = &'a Service>) -> DigestSum {
        let mut sum = DigestSum::default();
        for s in services {
            sum.add(&service_digest(s));
        }
        sum
    }

    /// Adds one digest (a service entering the state).
    pub fn add(&mut self, digest: &[u8; 32]) {
        let mut carry = false;
        for (limb, d) in self.0.iter_mut().zip(limbs(digest)) {
            let (s, c1) = limb.overflowing_add(d);
            let (s, c2) = s.overflowing_add(u64::from(carry));
            *limb = s;
            carry = c1 || c2;
        }
    }

    /// Subtracts one digest (a service leaving the state). Subtracting
    /// what was added restores the sum exactly, whatever came between.
    pub fn sub(&mut self, digest: &[u8; 32]) {
        let mut borrow = false;
        for (limb, d) in self.0.iter_mut().zip(limbs(digest)) {
            let (s, b1) = limb.overflowing_sub(d);
            let (s, b2) = s.overflowing_sub(u64::from(borrow));
            *limb = s;
            borrow = b1 || b2;
        }
    }

    fn to_bytes(self) -> [u8; 32] {
        let mut out = [0; 32];
        for (chunk, limb) in out.chunks_exact_mut(8).zip(self.0) {
            chunk.copy_from_slice(&limb.to_le_bytes());
        }
        out
    }
}

/// A digest read as a little-endian 256-bit integer, low limb first.
fn limbs(digest: &[u8; 32]) -> [u64; 4] {
    let mut out = [0; 4];
    for (limb, chunk) in out.iter_mut().zip(digest.chunks_exact(8)) {
        *limb = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
    }
    out
}

/// The content hash from its parts: the node settings and announcements
/// (empty ones count as absent, as in canonical form) and the sum of the
/// services' digests. The version does not enter it: the same content
/// hashes the same at any version. Cost: encoding the settings and the
/// announcements (a few bytes per announced VIP) and one SHA-256 over them.
pub fn content_hash_of(
    settings: Option<&NodeSettings>,
    announcements: Option<&Announcements>,
    services: &DigestSum,
) -> ContentHash {
    let mut buf = DOMAIN.to_vec();
    let settings = settings.filter(|s| **s != NodeSettings::default());
    let announcements = announcements.filter(|a| !(a.l2.is_empty() && a.bgp.is_empty()));
    // Tagged like fields of a message so that the parts cannot run into
    // each other: settings (2), announcements (4), then the sum.
    if let Some(s) = settings {
        prost::encoding::message::encode(2, s, &mut buf);
    }
    if let Some(a) = announcements {
        prost::encoding::message::encode(4, a, &mut buf);
    }
    buf.extend_from_slice(&services.to_bytes());
    sha256(&buf)
}

/// The content hash of a whole state, from scratch (see [`content_hash_of`]
/// to keep it as the state changes).
pub fn content_hash(state: &NodeState) -> ContentHash {
    content_hash_of(
        state.settings.as_ref(),
        state.announcements.as_ref(),
        &DigestSum::of(&state.services),
    )
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .try_into()
        .expect("SHA-256 digests are 32 bytes")
}

#[cfg(test)]
mod tests;
