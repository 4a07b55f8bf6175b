//! Protocol version negotiation.
//!
//! The agent announces the range it speaks in `Hello`; the broker picks the highest common
//! version and answers with it in `Welcome`, so either side can be upgraded first.

use serde::{Deserialize, Serialize};

/// Version this build speaks natively.
pub const CURRENT: u16 = 2;
/// Oldest version this build still accepts.
pub const MIN_SUPPORTED: u16 = 2;

/// Inclusive range of protocol versions a peer supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct VersionRange {
    /// Lowest supported version.
    pub min: u16,
    /// Highest supported version.
    pub max: u16,
}

impl VersionRange {
    /// The range this build supports: `MIN_SUPPORTED..=CURRENT`.
    pub const fn ours() -> Self {
        VersionRange {
            min: MIN_SUPPORTED,
            max: CURRENT,
        }
    }

    /// Whether `v` lies inside the range.
    pub const fn contains(&self, v: u16) -> bool {
        self.min <= v && v <= self.max
    }
}

/// Highest version in both ranges, `None` if they are disjoint or either range is inverted
/// (an inverted range comes from a buggy or hostile peer and must not select anything).
pub fn negotiate(ours: VersionRange, theirs: VersionRange) -> Option<u16> {
    if ours.min > ours.max || theirs.min > theirs.max {
        return None;
    }
    let lo = ours.min.max(theirs.min);
    let hi = ours.max.min(theirs.max);
    (lo <= hi).then_some(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(min: u16, max: u16) -> VersionRange {
        VersionRange { min, max }
    }

    #[test]
    fn negotiation_cases() {
        assert_eq!(
            negotiate(VersionRange::ours(), VersionRange::ours()),
            Some(CURRENT)
        );
        assert_eq!(negotiate(r(1, 3), r(2, 5)), Some(3));
        assert_eq!(negotiate(r(2, 5), r(1, 3)), Some(3));
        assert_eq!(negotiate(r(1, 1), r(1, 1)), Some(1));
        assert_eq!(negotiate(r(1, 2), r(3, 4)), None);
        assert_eq!(negotiate(r(3, 4), r(1, 2)), None);
        assert_eq!(negotiate(r(1, 5), r(4, 2)), None, "inverted theirs");
        assert_eq!(negotiate(r(5, 1), r(1, 5)), None, "inverted ours");
        assert_eq!(negotiate(r(0, u16::MAX), r(7, 9)), Some(9));
    }

    #[test]
    fn ours_is_consistent() {
        let o = VersionRange::ours();
        assert!(o.min <= o.max);
        assert!(o.contains(CURRENT));
    }
}
