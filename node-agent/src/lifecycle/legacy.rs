//! Pins left by agents from before the identity key, at
//! `<pin root>/<interface>`. When their link drives this very interface
//! (its program is the one attached here), they are moved under this
//! interface's key before the data plane opens, so the new agent adopts them
//! as after any restart: forwarding and conntrack go on through the upgrade.
//! Pins of a same-named interface in another namespace are left alone.
use std::path::{Path, PathBuf};

use anyhow::Context;
use aya::programs::links::{FdLink, PinnedLink};

use super::identity::{self, Interface};

/// What to do with a legacy pin directory (pure: see [`decide`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// No legacy pins, or pins already under the key: nothing to do.
    Nothing,
    /// The legacy link drives this interface: move the pins to the key.
    Adopt,
    /// The legacy link drives another interface (or none we can see): keep.
    Foreign,
}

/// `legacy_link_program`: the program of the link pinned in the legacy
/// directory, if there is one; `attached`: the programs attached to this
/// interface; `keyed_pins_exist`: the interface's own pin directory exists.
pub fn decide(
    legacy_link_program: Option<u32>,
    attached: &[u32],
    keyed_pins_exist: bool,
) -> Decision {
    match legacy_link_program {
        None => Decision::Nothing,
        // Ours already: the legacy directory is some other interface's.
        Some(_) if keyed_pins_exist => Decision::Foreign,
        Some(p) if attached.contains(&p) => Decision::Adopt,
        Some(_) => Decision::Foreign,
    }
}

/// Moves this interface's legacy pins under its key when [`decide`] says so;
/// returns where they came from.
pub fn adopt(pin_root: &Path, iface: &Interface) -> anyhow::Result<Option<PathBuf>> {
    let legacy = identity::legacy_pin_dir(pin_root, &iface.name);
    let keyed = iface.pin_dir(pin_root);
    let link = legacy.join("link");
    let program = if link.exists() {
        let pinned = PinnedLink::from_pin(&link)
            .with_context(|| format!("opening the pinned link {}", link.display()))?;
        let info = FdLink::from(pinned)
            .info()
            .with_context(|| format!("reading the pinned link {}", link.display()))?;
        Some(info.program_id())
    } else {
        None
    };
    // Asked of `ip` only when there is a legacy link to compare with: most
    // starts have none, and need not pay for the process.
    let attached = match program {
        Some(_) => crate::dataplane::loader::attached_xdp(&iface.name)
            .map(|a| a.program_ids)
            .unwrap_or_default(),
        None => Vec::new(),
    };
    match decide(program, &attached, keyed.join("link").exists()) {
        Decision::Nothing | Decision::Foreign => Ok(None),
        Decision::Adopt => {
            // Maps without a link under the key are an earlier start that
            // could not attach (the legacy program held the interface):
            // nothing uses them.
            if keyed.exists() {
                crate::dataplane::loader::cleanup(&keyed)
                    .with_context(|| format!("removing the unattached {}", keyed.display()))?;
            }
            // Same bpffs, so a rename: the pins (and the attachment held by
            // the link pin) never go away.
            std::fs::rename(&legacy, &keyed)
                .with_context(|| format!("moving {} to {}", legacy.display(), keyed.display()))?;
            // The old inventory is rebuilt by the first apply.
            let _ = std::fs::remove_dir_all(identity::legacy_run_dir(pin_root, &iface.name));
            Ok(Some(legacy))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (desc, legacy link's program, programs attached here, keyed link
    /// exists, decision)
    type Case = (&'static str, Option<u32>, &'static [u32], bool, Decision);

    #[test]
    fn decisions() {
        let cases: &[Case] = &[
            ("no legacy pins", None, &[7], false, Decision::Nothing),
            (
                "legacy link drives this interface",
                Some(7),
                &[7],
                false,
                Decision::Adopt,
            ),
            (
                "legacy link drives this interface, replacement in progress",
                Some(7),
                &[9, 7],
                false,
                Decision::Adopt,
            ),
            (
                "another interface's (same name, other namespace)",
                Some(7),
                &[9],
                false,
                Decision::Foreign,
            ),
            (
                "nothing attached here",
                Some(7),
                &[],
                false,
                Decision::Foreign,
            ),
            (
                "this interface already has keyed pins",
                Some(7),
                &[7],
                true,
                Decision::Foreign,
            ),
        ];
        for (desc, program, attached, keyed, want) in cases {
            assert_eq!(decide(*program, attached, *keyed), *want, "{desc}");
        }
    }
}
