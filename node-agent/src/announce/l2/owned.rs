//! The announcer's two maps: `l2_owned` (the VIPs whose ARP this node
//! answers as their owner) and `l2_liveness` (until when, in the data
//! plane's jiffies, the announcer counts as alive). Only the announcer
//! writes them; the XDP program reads them on ARP requests.
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Duration;

use aya::maps::{Array, HashMap, MapData};

use crate::abi;
use crate::dataplane::DataplaneError;
use crate::dataplane::clock::DataplaneClock;

/// At the very start of a restarted agent, before the slow part (loading
/// and verifying the program takes a second or more): when the previous
/// agent's stamp is still ahead, push it `lifetime` further, so that the
/// restart window that moves nothing counts from the new process's start,
/// not from its announcer's. A stamp already passed stays passed (its VIPs
/// may have moved); no pins, nothing to do. Returns whether it extended.
pub fn extend_fresh_stamp(pin_dir: &Path, lifetime: Duration) -> Result<bool, DataplaneError> {
    if !pin_dir.join("l2_liveness").exists()
        || !pin_dir.join(crate::dataplane::clock::CLOCK_PIN).exists()
    {
        return Ok(false);
    }
    let mut maps = OwnedMaps::open_pinned(pin_dir)?;
    let until = maps.liveness.get(&0, 0).map_err(map_err("l2_liveness"))?;
    if until <= maps.clock.now()? {
        return Ok(false);
    }
    maps.stamp(lifetime)?;
    Ok(true)
}

pub struct OwnedMaps {
    owned: HashMap<MapData, u32, u32>,
    liveness: Array<MapData, u64>,
    clock: DataplaneClock,
    hz: u64,
}

fn map_err(map: &'static str) -> impl Fn(aya::maps::MapError) -> DataplaneError {
    move |e| DataplaneError::Map {
        map,
        reason: e.to_string(),
    }
}

impl OwnedMaps {
    pub fn open_pinned(pin_dir: &Path) -> Result<Self, DataplaneError> {
        let owned = MapData::from_pin(pin_dir.join("l2_owned")).map_err(map_err("l2_owned"))?;
        let liveness =
            MapData::from_pin(pin_dir.join("l2_liveness")).map_err(map_err("l2_liveness"))?;
        let clock = DataplaneClock::open_pinned(pin_dir)?;
        let hz = u64::from(clock.hz()?);
        Ok(OwnedMaps {
            owned: HashMap::try_from(aya::maps::Map::HashMap(owned))
                .map_err(map_err("l2_owned"))?,
            liveness: Array::try_from(aya::maps::Map::Array(liveness))
                .map_err(map_err("l2_liveness"))?,
            clock,
            hz,
        })
    }

    /// What the data plane answers for now: the owned VIPs when the stamp
    /// is still ahead (an agent restart inside its lifetime), else none,
    /// and the stale entries are removed (they answer nothing, and must not
    /// come back to life with the next stamp).
    pub fn adopt(&mut self) -> Result<BTreeSet<IpAddr>, DataplaneError> {
        let until = self.liveness.get(&0, 0).map_err(map_err("l2_liveness"))?;
        let keys: Vec<u32> = self
            .owned
            .keys()
            .collect::<Result<_, _>>()
            .map_err(map_err("l2_owned"))?;
        if until > self.clock.now()? {
            return Ok(keys
                .into_iter()
                .map(|k| IpAddr::V4(abi::addr_of_be(k)))
                .collect());
        }
        for k in keys {
            self.owned.remove(&k).map_err(map_err("l2_owned"))?;
        }
        Ok(BTreeSet::new())
    }

    /// Pushes the stamp to `lifetime` from now.
    pub fn stamp(&mut self, lifetime: Duration) -> Result<(), DataplaneError> {
        let ticks = (lifetime.as_millis() as u64 * self.hz).div_ceil(1000);
        let until = self.clock.now()? + ticks;
        self.liveness
            .set(0, until, 0)
            .map_err(map_err("l2_liveness"))
    }

    pub fn claim(&mut self, vip: Ipv4Addr) -> Result<(), DataplaneError> {
        self.owned
            .insert(abi::be_addr(vip), abi::L2_OWNER, 0)
            .map_err(map_err("l2_owned"))
    }

    pub fn release(&mut self, vip: Ipv4Addr) -> Result<(), DataplaneError> {
        match self.owned.remove(&abi::be_addr(vip)) {
            Ok(()) | Err(aya::maps::MapError::KeyNotFound) => Ok(()),
            Err(e) => Err(map_err("l2_owned")(e)),
        }
    }
}
