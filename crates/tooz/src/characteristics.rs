//! What a driver guarantees: tooz's `Characteristics`.

use std::fmt;

/// One guarantee a driver may give (tooz's `Characteristics` enum).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Characteristic {
    /// Coordinates threads of one process.
    DistributedAcrossThreads,
    /// Coordinates processes of one host.
    DistributedAcrossProcesses,
    /// Coordinates processes on different hosts.
    DistributedAcrossHosts,
    /// Liveness does not rest on timeouts (sessions or kernel objects instead).
    NonTimeoutBased,
    /// Operations are linearizable.
    Linearizable,
    /// Operations are sequentially consistent.
    Sequential,
    /// Operations are causally consistent.
    Causal,
    /// Transactions are serializable.
    Serializable,
    /// Every client sees the same view even during a network partition.
    SameViewUnderPartitions,
    /// Every client sees the same view.
    SameViewAcrossClients,
}

impl Characteristic {
    /// Every characteristic, in tooz's order.
    pub const ALL: [Characteristic; 10] = [
        Self::DistributedAcrossThreads,
        Self::DistributedAcrossProcesses,
        Self::DistributedAcrossHosts,
        Self::NonTimeoutBased,
        Self::Linearizable,
        Self::Sequential,
        Self::Causal,
        Self::Serializable,
        Self::SameViewUnderPartitions,
        Self::SameViewAcrossClients,
    ];

    /// tooz's name, e.g. `DISTRIBUTED_ACROSS_HOSTS`.
    pub fn name(self) -> &'static str {
        match self {
            Self::DistributedAcrossThreads => "DISTRIBUTED_ACROSS_THREADS",
            Self::DistributedAcrossProcesses => "DISTRIBUTED_ACROSS_PROCESSES",
            Self::DistributedAcrossHosts => "DISTRIBUTED_ACROSS_HOSTS",
            Self::NonTimeoutBased => "NON_TIMEOUT_BASED",
            Self::Linearizable => "LINEARIZABLE",
            Self::Sequential => "SEQUENTIAL",
            Self::Causal => "CAUSAL",
            Self::Serializable => "SERIALIZABLE",
            Self::SameViewUnderPartitions => "SAME_VIEW_UNDER_PARTITIONS",
            Self::SameViewAcrossClients => "SAME_VIEW_ACROSS_CLIENTS",
        }
    }

    const fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

impl fmt::Display for Characteristic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of [`Characteristic`]s.
///
/// ```
/// use tooz::{Characteristic as C, Characteristics};
/// let set = Characteristics::from([C::DistributedAcrossThreads, C::NonTimeoutBased]);
/// assert!(set.contains(C::NonTimeoutBased));
/// assert!(!set.is_superset(Characteristics::from([C::Linearizable])));
/// ```
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Characteristics(u16);

impl Characteristics {
    /// The empty set.
    pub const fn empty() -> Self {
        Characteristics(0)
    }

    /// The set of the listed characteristics, usable in constants.
    pub const fn of(list: &[Characteristic]) -> Self {
        let mut bits = 0;
        let mut i = 0;
        while i < list.len() {
            bits |= list[i].bit();
            i += 1;
        }
        Characteristics(bits)
    }

    /// True if `c` is in the set.
    pub fn contains(self, c: Characteristic) -> bool {
        self.0 & c.bit() != 0
    }

    /// Adds `c`.
    pub fn insert(&mut self, c: Characteristic) {
        self.0 |= c.bit();
    }

    /// True if every member of `other` is in `self`.
    pub fn is_superset(self, other: Characteristics) -> bool {
        self.0 & other.0 == other.0
    }

    /// The members of `self` that are not in `other`.
    pub fn difference(self, other: Characteristics) -> Characteristics {
        Characteristics(self.0 & !other.0)
    }

    /// True if the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The members, in tooz's order.
    pub fn iter(self) -> impl Iterator<Item = Characteristic> {
        Characteristic::ALL
            .into_iter()
            .filter(move |c| self.contains(*c))
    }
}

impl<const N: usize> From<[Characteristic; N]> for Characteristics {
    fn from(list: [Characteristic; N]) -> Self {
        list.into_iter().collect()
    }
}

impl FromIterator<Characteristic> for Characteristics {
    fn from_iter<I: IntoIterator<Item = Characteristic>>(iter: I) -> Self {
        let mut set = Characteristics::empty();
        for c in iter {
            set.insert(c);
        }
        set
    }
}

impl fmt::Display for Characteristics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.iter().map(Characteristic::name).collect();
        write!(f, "{{{}}}", names.join(", "))
    }
}

impl fmt::Debug for Characteristics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}
